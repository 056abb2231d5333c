"""The replica's hold on its engine's processes: a guard from before the engine starts, and an end that
leaves none of them behind (engines/engine_guard.py says why both are needed)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import psutil

from engines import engine_guard

logger = logging.getLogger("warmserve.engine")


class EngineProcesses:
    def __init__(self) -> None:
        self._guard: subprocess.Popen[bytes] | None = None

    def start_guard(self) -> None:
        """Before the engine starts, so processes of a start that never finishes are covered too. In a
        session of its own: signals to the replica's process group do not reach it."""
        self._guard = subprocess.Popen(
            [sys.executable, "-I", engine_guard.__file__, "--watch", str(os.getpid())],
            stdin=subprocess.DEVNULL, start_new_session=True)

    def end_all(self) -> list[str]:
        """After the engine's own shutdown: end every process this replica still has under it (the
        engine's, if its shutdown left any), then the guard. Returns what had to be ended."""
        guard_pid = self._guard.pid if self._guard is not None else -1
        ended = engine_guard.end_processes(engine_guard.descendants(psutil.Process(), exclude=guard_pid))
        if ended:
            logger.warning("engine processes left after the engine's shutdown, ended: %s", ", ".join(ended))
        if self._guard is not None:
            self._guard.terminate()
            try:
                self._guard.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._guard.kill()
            self._guard = None
        return ended
