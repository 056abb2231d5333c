"""Ray's control-plane daemons at a lower CPU priority than the serving path, on a head `warmserve up` started.

Ray starts every worker (the ingress, the LLM replicas, Serve's controller and proxy) at nice 15, and
warmserve renices its engines to `engine.process_niceness` (0); but Ray's own daemons (dashboard and its
module processes, dashboard agent, runtime-env agent, log monitor, autoscaler monitor, Ray client server)
stay at 0. On a 2-core machine they then outrank the ingress and replicas: about 6% of the machine while
idle (docs/benchmarks.md). `ray.background_niceness` (default 15, Ray's own niceness for its workers) puts
them level with the request path and below the engine.

Left alone: the raylet and GCS (worker leases, actor calls and health checks go through them), Serve's
processes and the engines. Only processes of this head's session are touched, so a second Ray cluster on
the machine (the test suite's simulated ones) keeps its priorities. Niceness is only raised, which needs
no privilege.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

# The programs lowered: a script path's tail, a module run with `-m`, or the title Ray gives a process.
DAEMON_PROGRAMS = (
    "ray/dashboard/dashboard.py",
    "ray/autoscaler/_private/monitor.py",
    "ray/_private/log_monitor.py",
    "ray.util.client.server",
    "ray::DashboardAgent",
    "ray::RuntimeEnvAgent",
)
_PYTHON_FLAGS_WITH_VALUE = {"-W", "-X"}


@dataclass(slots=True, frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    cmdline: tuple[str, ...]
    niceness: int


def program_of(cmdline: Iterable[str]) -> str:
    """The program a command line runs: the title Ray set (`ray::DashboardAgent`), the script or `-m`
    module a Python interpreter runs, else the executable. Options are never read: the raylet's embed
    the agents' own command lines, and matching them would lower the raylet."""
    args = [a for a in cmdline if a]
    if not args:
        return ""
    first = args[0].strip()
    if first.startswith("ray::"):
        return first.split()[0]
    if not os.path.basename(first).startswith("python"):
        return first
    rest = iter(args[1:])
    for arg in rest:
        if arg == "-m":
            return next(rest, "")
        if arg == "-c":
            return "-c"
        if arg in _PYTHON_FLAGS_WITH_VALUE:
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return first


def is_daemon(program: str) -> bool:
    return any(program == name or program.endswith("/" + name) for name in DAEMON_PROGRAMS)


def select_daemons(processes: list[ProcessInfo], session_dir: str, gcs_address: str) -> list[ProcessInfo]:
    """This session's daemons and every process they started (the dashboard's module processes).

    A process is of this session when its command line names the session directory or the GCS address,
    or when an ancestor's does (the agents are the raylet's children, and their titles hide their options)."""
    children: dict[int, list[ProcessInfo]] = {}
    for process in processes:
        children.setdefault(process.ppid, []).append(process)

    def subtree(root: ProcessInfo) -> list[ProcessInfo]:
        found, stack = [], [root]
        while stack:
            process = stack.pop()
            found.append(process)
            stack.extend(children.get(process.pid, []))
        return found

    markers = (session_dir, f"--address={gcs_address}", f"--gcs-address={gcs_address}")
    roots = [p for p in processes if any(marker in arg for arg in p.cmdline for marker in markers)]
    in_session = {p.pid: p for root in roots for p in subtree(root)}
    daemons = [p for p in in_session.values() if is_daemon(program_of(p.cmdline))]
    selected = {p.pid: p for daemon in daemons for p in subtree(daemon)}
    return sorted(selected.values(), key=lambda p: p.pid)


def process_table() -> list[ProcessInfo]:
    import psutil

    table = []
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "nice"]):
        info = process.info
        if info["cmdline"] is None or info["nice"] is None:  # gone, or not ours to read
            continue
        table.append(ProcessInfo(info["pid"], info["ppid"], tuple(info["cmdline"]), info["nice"]))
    return table


def lower_background_priority(niceness: int, session_dir: str, gcs_address: str) -> list[str]:
    """Raise the niceness of this session's daemons to `niceness` (never lowers one already nicer).
    Called by `warmserve up` once the app answers, when every daemon and dashboard module has started.
    Returns the programs changed, for the log line; a process that vanished or refuses is skipped."""
    import psutil

    changed = []
    for process in select_daemons(process_table(), session_dir, gcs_address):
        if process.niceness >= niceness:
            continue
        try:
            psutil.Process(process.pid).nice(niceness)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        changed.append(short_name(program_of(process.cmdline)))
    return changed


def short_name(program: str) -> str:
    """`dashboard.py` for a script path, `ray-dashboard-JobHead-0` for a title with its command appended."""
    return program.split(" (", 1)[0].rsplit("/", 1)[-1]
