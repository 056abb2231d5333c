"""Where the CPU went during a benchmark run: CPU seconds per process group, read from /proc via psutil.

On a 2-core machine every CPU second the serving path spends is taken from the engine, so the benchmark
records, beside tokens/s and TTFT, how much CPU each part of the system used over the measured run
(engine, request path, Ray's own daemons, the benchmark client). Groups are named by process title,
which Ray and vLLM set (`ray::ServeReplica:warmserve:ingress`, `VLLM::EngineCore`, ...).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

import psutil

# First match wins: (group name, substrings of the process title or command line).
PROCESS_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("engine", ("VLLM::EngineCore", "VLLM::Worker", "EngineCore")),
    # warmserve's ingress, and Ray Serve LLM's (`ServeReplica:<app>:OpenAiIngress`).
    ("ingress", (":ingress", ":OpenAiIngress")),
    ("llm_replica", ("ServeReplica:",)),
    ("serve_proxy", ("ProxyActor", "HAProxyManager", "haproxy")),
    ("serve_controller", ("ServeController",)),
    ("raw_api_server", ("vllm.entrypoints.openai.api_server", "APIServer")),
    ("ray_daemons", ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env",
                     "ray::IDLE", "default_worker.py")),
]


def _group_of(title: str) -> str | None:
    for group, needles in PROCESS_GROUPS:
        if any(needle in title for needle in needles):
            return group
    return None


def command_line(process: psutil.Process) -> str:
    """The process title or command line, "" for a process that is gone or not ours to read."""
    try:
        return " ".join(process.cmdline()) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


@dataclass(slots=True)
class CpuSnapshot:
    """CPU seconds (user + system) per live process id, with the group each belongs to."""

    seconds_by_pid: dict[int, tuple[str, float]]

    @staticmethod
    def take() -> CpuSnapshot:
        own = os.getpid()
        seen: dict[int, tuple[str, float]] = {}
        for process in psutil.process_iter():
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            group = "bench_client" if process.pid == own else _group_of(command_line(process))
            if group is not None:
                seen[process.pid] = (group, times.user + times.system)
        return CpuSnapshot(seen)


def cpu_seconds_by_group(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds each group used between the snapshots (processes started in between count from 0)."""
    used: dict[str, float] = defaultdict(float)
    for pid, (group, seconds) in after.seconds_by_pid.items():
        start = before.seconds_by_pid.get(pid)
        used[group] += seconds - (start[1] if start and start[0] == group else 0.0)
    return {group: round(seconds, 2) for group, seconds in sorted(used.items())}
