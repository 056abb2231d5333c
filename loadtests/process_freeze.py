"""Pause and resume a whole serving system (every one of its processes) with SIGSTOP / SIGCONT.

Why: on this shared 2-core host, tokens/s drifts by +-10% between minutes, as much as the differences
the serving-path benchmark looks for. Starting each system once and measuring them one after the other
compares different stretches of the host. Keeping both systems up and measuring them in alternation,
one run each, compares neighbouring stretches instead; the system not being measured is paused, so it
takes no CPU at all (an idle Ray cluster alone uses ~10% of one core, which would tax the other side).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from loadtests.process_cpu import command_line

# A process belongs to the local Ray session when its command line has one of these: Ray's daemons
# (`gcs_server`, `raylet`, the dashboard, agents and monitors live under `.../ray/`), its workers
# (`ray::ServeReplica:...`, `ray::IDLE`), the engines they start (`VLLM::EngineCore`, `VLLM::Worker`)
# and Serve's HAProxy.
RAY_SESSION_MARKERS = ("/ray/", "ray::", "raylet", "gcs_server", "VLLM::", "haproxy")


def _own_lineage() -> set[int]:
    """This process and its ancestors: never paused (the harness would stop itself)."""
    lineage = {os.getpid()}
    try:
        lineage.update(parent.pid for parent in psutil.Process().parents())
    except psutil.Error:
        pass
    return lineage


@dataclass(frozen=True, slots=True)
class ProcessGroup:
    """A named set of process ids that are paused and resumed together."""

    name: str
    pids: tuple[int, ...]

    @staticmethod
    def tree(name: str, root_pid: int) -> ProcessGroup:
        """`root_pid` and every process below it (a raw `vllm serve`: API server, engine core, worker)."""
        root = psutil.Process(root_pid)
        return ProcessGroup(name, (root_pid, *(child.pid for child in root.children(recursive=True))))

    @staticmethod
    def ray_session(name: str, exclude: Iterable[int] = ()) -> ProcessGroup:
        """Every process of the local Ray session (see RAY_SESSION_MARKERS), less `exclude` and this
        process's own lineage."""
        skip = _own_lineage() | set(exclude)
        pids = tuple(process.pid for process in psutil.process_iter()
                     if process.pid not in skip
                     and any(marker in command_line(process) for marker in RAY_SESSION_MARKERS))
        if not pids:
            raise RuntimeError(f"{name}: no process of a local Ray session found to pause")
        return ProcessGroup(name, pids)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: signal.Signals) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # a process that exited meanwhile (a Ray worker recycled) has nothing to pause
