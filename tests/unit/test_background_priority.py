"""Which processes `warmserve up` lowers: this session's Ray daemons and their children, by program, never
the raylet (whose options embed the agents' command lines), GCS, Serve's workers or another cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from cluster.background_priority import (ProcessInfo, lower_background_priority, program_of, select_daemons,
                                         short_name)

SESSION = "/tmp/ray/session_2026-12-04_10-00-00_1_1"
OTHER_SESSION = "/tmp/wsim-abc/session_2026-12-04_11-00-00_2_2"
GCS = "10.0.0.5:6379"
PY = "/venv/bin/python"
RAY = "/venv/lib/python3.11/site-packages/ray"


def _proc(pid: int, ppid: int, *cmdline: str, niceness: int = 0) -> ProcessInfo:
    return ProcessInfo(pid, ppid, cmdline, niceness)


def _table() -> list[ProcessInfo]:
    return [
        _proc(10, 1, f"{RAY}/core/src/ray/gcs/gcs_server", f"--log_dir={SESSION}/logs"),
        # The raylet's options name the agents' scripts: it must not be mistaken for one.
        _proc(11, 1, f"{RAY}/core/src/ray/raylet/raylet", f"--raylet_socket_name={SESSION}/sockets/raylet",
              f"--dashboard_agent_command={PY} -u {RAY}/dashboard/agent.py"),
        _proc(12, 1, PY, "-u", f"{RAY}/autoscaler/_private/monitor.py", f"--logs-dir={SESSION}/logs"),
        _proc(13, 1, PY, "-m", "ray.util.client.server", f"--address={GCS}", "--mode=proxy"),
        _proc(14, 1, PY, f"{RAY}/dashboard/dashboard.py", "--host=127.0.0.1", f"--session-dir={SESSION}"),
        _proc(15, 14, PY, "-B", "-c", "from multiprocessing.forkserver import main; main(25)"),
        _proc(16, 15, "ray-dashboard-JobHead-0 (/venv/bin/python -B -c ...)"),
        _proc(17, 1, PY, "-u", f"{RAY}/_private/log_monitor.py", f"--session-dir={SESSION}"),
        _proc(18, 11, "ray::DashboardAgent", "", ""),
        _proc(19, 11, "ray::RuntimeEnvAgent"),
        _proc(20, 11, "ray::ServeController.listen_for_change", niceness=15),
        _proc(21, 11, "ray::ServeReplica:warmserve:ingress", niceness=15),
        _proc(22, 21, "VLLM::EngineCore"),
        # Another cluster on the same machine (the test suite's simulated ones): left alone.
        _proc(30, 1, PY, f"{RAY}/dashboard/dashboard.py", f"--session-dir={OTHER_SESSION}"),
        _proc(31, 1, f"{RAY}/core/src/ray/raylet/raylet", f"--raylet_socket_name={OTHER_SESSION}/sockets/raylet"),
        _proc(32, 31, "ray::DashboardAgent"),
        _proc(33, 1, PY, "-m", "ray.util.client.server", "--address=10.0.0.5:50111"),
    ]


@pytest.mark.parametrize(("cmdline", "program"), [
    ((PY, "-u", f"{RAY}/_private/log_monitor.py", "--x=1"), f"{RAY}/_private/log_monitor.py"),
    ((PY, "-W", "ignore", "-m", "ray.util.client.server"), "ray.util.client.server"),
    (("ray::DashboardAgent", "", ""), "ray::DashboardAgent"),
    (("ray::ServeReplica:warmserve:ingress",), "ray::ServeReplica:warmserve:ingress"),
    ((f"{RAY}/core/src/ray/raylet/raylet", f"--agent={RAY}/dashboard/agent.py"), f"{RAY}/core/src/ray/raylet/raylet"),
    ((PY, "-c", "print(1)"), "-c"),
    ((), ""),
])
def test_program_of_reads_the_program_never_its_options(cmdline: tuple[str, ...], program: str) -> None:
    assert program_of(cmdline) == program


def test_selects_this_sessions_daemons_and_their_children_only() -> None:
    selected = {p.pid for p in select_daemons(_table(), SESSION, GCS)}
    assert selected == {12, 13, 14, 15, 16, 17, 18, 19}
    # Named for the log line.
    assert short_name(program_of(_table()[2].cmdline)) == "monitor.py"
    assert short_name(program_of(_table()[6].cmdline)) == "ray-dashboard-JobHead-0"


def test_nothing_selected_for_a_session_with_no_processes() -> None:
    assert select_daemons(_table(), "/tmp/ray/session_gone", "10.9.9.9:1") == []


def test_lowers_a_real_process_once_and_not_another_sessions(tmp_path: Path) -> None:
    script = tmp_path / "ray" / "_private" / "log_monitor.py"  # a stand-in with the daemon's path
    script.parent.mkdir(parents=True)
    script.write_text("import time\ntime.sleep(60)\n")
    ours_session, other_session = str(tmp_path / "session_ours"), str(tmp_path / "session_other")
    ours = subprocess.Popen([sys.executable, "-u", str(script), f"--session-dir={ours_session}"])
    other = subprocess.Popen([sys.executable, "-u", str(script), f"--session-dir={other_session}"])
    try:
        assert lower_background_priority(15, ours_session, "10.9.9.9:1") == ["log_monitor.py"]
        assert psutil.Process(ours.pid).nice() == 15
        assert psutil.Process(other.pid).nice() == 0
        assert lower_background_priority(15, ours_session, "10.9.9.9:1") == []  # already at 15: untouched
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
