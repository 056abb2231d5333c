"""Real faults on a running warmserve cluster: find an LLM deployment's replicas, then SIGKILL one's engine
process, `ray.kill` its actor, or stall its engine (SIGSTOP, then SIGCONT after a while).

Signals go to processes on the local host: run the chaos tool on the node that hosts the replica (on a
single-node cluster, always). The driver must be connected to the cluster (`ray.init`).
"""

from __future__ import annotations

import os
import random
import signal
import threading
from typing import Literal

FaultKind = Literal["engine_kill", "replica_kill", "engine_stall"]
FAULT_KINDS: tuple[FaultKind, ...] = ("engine_kill", "replica_kill", "engine_stall")
SERVE_NAMESPACE = "serve"


def replica_actor_names(app: str, deployment: str) -> list[str]:
    """The deployment's replica actors, from the GCS (no dashboard needed): Serve names them
    SERVE_REPLICA::<app>#<deployment>#<replica id>."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == SERVE_NAMESPACE and a["name"].startswith(prefix))


def _local_replica_pids(app: str, deployment: str) -> list[int]:
    """Processes on the local host titled as the deployment's replica actors (Ray sets the title
    `ray::ServeReplica:<app>:<deployment>`, with the running method appended after a dot)."""
    import psutil

    title = f"ray::ServeReplica:{app}:{deployment}"
    pids = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline == title or cmdline.startswith((title + ".", title + " ")):
            pids.append(process.pid)
    return pids


def engine_processes(replica_pid: int) -> list[int]:
    """The engine processes a replica spawned: vLLM's engine core (and its workers), children of the actor."""
    import psutil

    try:
        children = psutil.Process(replica_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c.pid for c in children if _is_engine_process(c)]


def _is_engine_process(process: object) -> bool:
    import psutil

    try:
        cmdline = " ".join(process.cmdline())  # type: ignore[attr-defined]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    # vLLM titles its processes (setproctitle): "VLLM::EngineCore", "VLLM::Worker...".
    return cmdline.startswith("VLLM::")


def inject(kind: FaultKind, app: str, deployment: str, rng: random.Random, stall_s: float = 10.0) -> str:
    """Apply one fault to a replica of the deployment; returns what was done. Every fault picks the replica
    that is busiest (its engine's CPU, or the replica's own with an in-process engine), so the fault meets
    requests in flight; `replica_kill` of replicas on other nodes picks with `rng` (`ray.kill`)."""
    if kind == "replica_kill":
        local = _local_replica_pids(app, deployment)
        if local:  # a crash of the actor's process, as the OOM killer or a segfault would cause
            victim_pid = _busiest_replica({pid: [pid, *engine_processes(pid)] for pid in local}, rng)
            _signal(victim_pid, signal.SIGKILL)
            return f"SIGKILL replica actor pid {victim_pid}"
        import ray

        names = replica_actor_names(app, deployment)
        if not names:
            raise RuntimeError(f"no replica actor of {app}/{deployment} is alive")
        victim = rng.choice(names)
        ray.kill(ray.get_actor(victim, namespace=SERVE_NAMESPACE), no_restart=True)
        return f"ray.kill replica {victim.rsplit('#', 1)[-1]}"
    engines = {pid: engine_processes(pid) for pid in _local_replica_pids(app, deployment)}
    engines = {pid: children for pid, children in engines.items() if children}
    if not engines:
        raise RuntimeError(f"no replica of {app}/{deployment} on this node has an engine process (an "
                           "in-process fake engine, or replicas on other nodes): use replica_kill")
    replica_pid = _busiest_replica(engines, rng)
    engine = engines[replica_pid]
    if kind == "engine_kill":
        for pid in engine:
            _signal(pid, signal.SIGKILL)
        return f"SIGKILL engine pids {engine} of replica pid {replica_pid}"
    for pid in engine:
        _signal(pid, signal.SIGSTOP)
    resume = threading.Timer(stall_s, lambda: [_signal(pid, signal.SIGCONT) for pid in engine])
    resume.daemon = True
    resume.start()
    return f"SIGSTOP engine pids {engine} of replica pid {replica_pid} for {stall_s:.0f} s"


def _busiest_replica(engines: dict[int, list[int]], rng: random.Random, sample_s: float = 0.5) -> int:
    """The replica whose engine burns the most CPU over `sample_s`: a fault is only worth injecting into
    a replica with requests in flight, and the router may well have put the whole load on one replica
    (prefix affinity). When none is busy, `rng` picks."""
    import time

    import psutil

    processes = {replica: [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
                 for replica, pids in engines.items()}
    for replica_processes in processes.values():
        for process in replica_processes:
            _cpu_percent(process)  # the first call only starts psutil's measurement interval
    time.sleep(sample_s)
    load = {replica: sum(_cpu_percent(p) for p in ps) for replica, ps in processes.items()}
    busiest = max(load.values(), default=0.0)
    if busiest < 5.0:  # percent of one core: nothing is decoding
        return rng.choice(sorted(engines))
    return rng.choice(sorted(replica for replica, cpu in load.items() if cpu == busiest))


def _cpu_percent(process: object) -> float:
    import psutil

    try:
        return float(process.cpu_percent(None))  # type: ignore[attr-defined]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # already gone: the fault happened anyway
        pass
