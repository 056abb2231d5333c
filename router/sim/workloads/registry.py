"""Named workloads (`--workload`) and trace files (`--trace`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from router.sim.profiles import EngineProfile
from router.sim.request import SimRequest
from router.sim.workloads.chat import chat
from router.sim.workloads.mooncake import read_trace, trace_requests
from router.sim.workloads.shared_prefix import shared_prefix

SHIPPED_TRACE = Path(__file__).resolve().parent.parent / "traces" / "mooncake_conversation_2k.jsonl"


Builder = Callable[[int, EngineProfile, int, float], list[SimRequest]]


def _shared_prefix(seed: int, profile: EngineProfile, replicas: int, utilization: float) -> list[SimRequest]:
    return shared_prefix(seed, profile.block_size)


def _mooncake(seed: int, profile: EngineProfile, replicas: int, utilization: float) -> list[SimRequest]:
    return trace_requests(read_trace(SHIPPED_TRACE), profile.block_size, seed=seed, name="mooncake")


WORKLOADS: dict[str, Builder] = {
    "shared_prefix": _shared_prefix,
    "chat": chat,
    "mooncake": _mooncake,
}


def build_workload(name: str, seed: int, profile: EngineProfile, replicas: int,
                   utilization: float) -> list[SimRequest]:
    """Who calls: `bench.load_requests`. Raises KeyError naming the choices for an unknown name."""
    builder = WORKLOADS.get(name)
    if builder is None:
        raise KeyError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return builder(seed, profile, replicas, utilization)


def build_trace(path: Path, seed: int, block_size: int) -> list[SimRequest]:
    """Raises TraceError for malformed lines, OSError for an unreadable file."""
    return trace_requests(read_trace(path), block_size, seed=seed, name=path.stem)
