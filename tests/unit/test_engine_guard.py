"""The engine guard on real processes: a killed 'replica' leaves no 'engine' behind, a live one keeps its."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from engines import engine_guard
from engines.engine_processes import EngineProcesses

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
# A stand-in replica: starts a stubborn child (it ignores SIGTERM, as a busy vLLM engine core does),
# prints the child's pid, then waits.
REPLICA = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _start_replica() -> tuple[subprocess.Popen[str], int]:
    replica = subprocess.Popen([sys.executable, "-c", REPLICA], stdout=subprocess.PIPE, text=True)
    engine_pid = int(replica.stdout.readline())
    return replica, engine_pid


def _kill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_replicas_stubborn_engine_is_ended_by_the_guard() -> None:
    replica, engine_pid = _start_replica()
    guard = subprocess.Popen([sys.executable, "-I", engine_guard.__file__, "--watch", str(replica.pid),
                              "--poll-s", "0.2"], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(1.0)  # the guard has seen the engine
        os.kill(replica.pid, signal.SIGKILL)
        replica.wait()
        assert psutil.pid_exists(engine_pid)  # orphaned, and deaf to SIGTERM
        assert _gone_within(engine_pid, 15), "the orphaned engine outlived its replica"
        assert guard.wait(timeout=15) == 0
        assert f"pid {engine_pid}" in guard.stderr.read()
    finally:
        _kill(engine_pid, replica.pid, guard.pid)


def test_the_guard_leaves_a_live_replicas_engine_alone() -> None:
    replica, engine_pid = _start_replica()
    guard = subprocess.Popen([sys.executable, "-I", engine_guard.__file__, "--watch", str(replica.pid),
                              "--poll-s", "0.1"])
    try:
        time.sleep(1.0)
        assert psutil.pid_exists(engine_pid) and guard.poll() is None
    finally:
        _kill(engine_pid, replica.pid, guard.pid)
        replica.wait()
        guard.wait()


# `end_all` ends every process under the one that calls it, so it runs in a child of its own: called in
# the test process it would end everything this process started (the test session's Ray cluster too).
END_ALL = f"""
import json, subprocess, sys, time
from engines.engine_processes import EngineProcesses
processes = EngineProcesses()
processes.start_guard()
stubborn = subprocess.Popen([sys.executable, "-c", {STUBBORN!r}])
time.sleep(0.5)
guard = processes._guard
ended = processes.end_all()
print(json.dumps({{"ended": ended, "stubborn": stubborn.pid, "stubborn_alive": stubborn.poll() is None,
                  "guard_alive": guard.poll() is None}}))
"""


def test_end_all_ends_what_the_engine_shutdown_left_and_the_guard() -> None:
    import json
    from pathlib import Path

    repo = Path(engine_guard.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", END_ALL], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert any(f"pid {report['stubborn']}" in e for e in report["ended"])
    assert not report["stubborn_alive"] and not report["guard_alive"]
