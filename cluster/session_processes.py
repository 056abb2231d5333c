"""Every process of one `warmserve up` session, found by a marker in its environment, for `down`.

`up` starts the Ray head with `WARMSERVE_SESSION=<id>` in its environment; Ray's daemons, the Serve
replicas and the engine processes they spawn all inherit it. After Ray is stopped, anything still carrying
the marker (an engine whose replica was killed before its guard could act, a worker Ray did not reap) is
ended here, so a stopped session leaves no process behind.
"""

from __future__ import annotations

import os
import secrets

import psutil

from engines.engine_guard import Identity, end_processes

SESSION_ENV = "WARMSERVE_SESSION"


def new_session_id() -> str:
    return secrets.token_hex(8)


def session_processes(session: str) -> set[Identity]:
    """Processes (other than this one) whose environment carries `session`'s marker."""
    found = set()
    for process in psutil.process_iter(["pid", "create_time"]):
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(SESSION_ENV) == session:
                found.add((process.pid, process.info["create_time"]))
        except psutil.Error:  # gone meanwhile, or another user's
            continue
    return found


def end_session_processes(session: str) -> tuple[list[str], list[str]]:
    """End what is left of `session`; returns (what was ended, what still runs after SIGKILL)."""
    ended = end_processes(session_processes(session))
    survivors = [f"pid {pid}" for pid, _ in session_processes(session)]
    return ended, survivors
