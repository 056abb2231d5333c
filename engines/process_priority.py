"""Scheduling priority of an engine's processes and threads.

Ray starts every worker (Serve replicas included) at nice 15. On a 2-core CPU host that puts the engine and
its front end behind anything else runnable, so warmserve gives them the priorities its config names
(`engine.process_niceness`, `engine.frontend_niceness`; docs/benchmarks.md has the measurements).
Lowering niceness needs CAP_SYS_NICE (or a matching RLIMIT_NICE); without it the process keeps Ray's and a
warning says so: a slower engine, never a failed one.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("warmserve.engine")


def set_child_niceness(niceness: int) -> None:
    """Give the engine-core and worker processes vLLM spawned (children of this process) `niceness`."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.nice(niceness)
        except (psutil.AccessDenied, psutil.NoSuchProcess) as error:
            logger.warning("cannot set niceness %d on engine process %s: %s", niceness, child.pid, error)


def set_own_niceness(niceness: int, what: str = "the engine front end") -> None:
    """Give every thread of this process `niceness`.

    On Linux a niceness belongs to a thread, and `setpriority(PRIO_PROCESS, pid)` changes only the thread
    whose id is `pid`: the event-loop and gRPC threads Ray already started would stay at 15. So each thread
    in /proc/self/task is reniced; threads started later inherit their creator's niceness.
    """
    task_dir = "/proc/self/task"
    thread_ids = [int(tid) for tid in os.listdir(task_dir)] if os.path.isdir(task_dir) else [0]
    for thread_id in thread_ids:
        try:
            os.setpriority(os.PRIO_PROCESS, thread_id, niceness)
        except ProcessLookupError:  # the thread ended since the listing
            continue
        except PermissionError as error:
            logger.warning("cannot set niceness %d on %s (thread %d): %s", niceness, what, thread_id, error)
            return
