"""Start the local Ray head on `ray.serving_cpus`: the cores the host has, and the affinity the head's
processes get (inherited by everything Ray starts, so the serving path stays off the engine's cores).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from configs.cpu_sets import engine_bind_cpus, format_cpus, parse_cpu_list
from configs.schema import ClusterConfig

# The cores a container may use (cgroup v2), else the cores online on the machine. Not this process's own
# affinity: `warmserve up` run under `taskset` must still be able to name the other cores.
CPU_SOURCES = (Path("/sys/fs/cgroup/cpuset.cpus.effective"), Path("/sys/devices/system/cpu/online"))


def machine_cpus(sources: tuple[Path, ...] = CPU_SOURCES) -> frozenset[int]:
    for source in sources:
        try:
            text = source.read_text().strip()
        except OSError:
            continue
        if text:
            return parse_cpu_list(text)
    return frozenset(range(os.cpu_count() or 1))


def serving_cpus_problem(config: ClusterConfig, available: frozenset[int] | None = None) -> str | None:
    """Why the local host cannot run the config's `ray.serving_cpus` and engine binds, or None when it can."""
    have = machine_cpus() if available is None else available
    wanted = {"ray.serving_cpus": config.ray.serving_cpus or ""}
    wanted.update({f"model {m.name!r}: engine.cpu_threads_bind": m.engine.cpu_threads_bind.replace("|", ",")
                   for m in config.models if engine_bind_cpus(m.engine.cpu_threads_bind) is not None})
    for field, cores in wanted.items():
        lacking = parse_cpu_list(cores) - have if cores else frozenset()
        if lacking:
            return (f"{field}={cores!r}: this machine has no core(s) {format_cpus(lacking)} "
                    f"(it has {format_cpus(have)})")
    return None


def serving_affinity(serving_cpus: str) -> Callable[[], None]:
    """A `preexec_fn` for `ray start`: the head's daemons, and all they spawn, run on these cores."""
    cpus = parse_cpu_list(serving_cpus)

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin
