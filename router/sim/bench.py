"""One benchmark: a workload (named or a trace) against several policies on the same simulated cluster."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from router.sim.metrics import PolicyMetrics, summarize
from router.sim.capacity_bound import capacity_bound_hit_rate
from router.sim.oracle import oracle_hit_rate
from router.sim.shared_lru import shared_lru_hit_rate
from router.sim.policies.registry import DEFAULT_POLICIES, POLICIES
from router.sim.profiles import EngineProfile, profile_by_name
from router.sim.request import SimRequest
from router.sim.simulator import simulate
from router.sim.workloads.arrivals import DEFAULT_UTILIZATION, scale_to_load
from router.sim.workloads.registry import build_trace, build_workload


@dataclass(slots=True)
class BenchConfig:
    """Who builds it: the CLI (`cluster/bench_router.py`) and tests. Exactly one of workload / trace."""

    workload: str | None = "shared_prefix"
    trace: Path | None = None
    replicas: int = 16  # >= 1
    policies: list[str] = field(default_factory=lambda: list(DEFAULT_POLICIES))
    profile: str = "gpu"
    seed: int = 0
    utilization: float = DEFAULT_UTILIZATION  # offered load at the oracle's hit rate, (0, 2]
    event_delay_s: float = 0.0  # KV event transport delay, >= 0
    kv_capacity_blocks: int | None = None  # overrides the profile's per-replica KV capacity, >= 1


@dataclass(slots=True)
class BenchReport:
    policies: dict[str, PolicyMetrics]
    oracle_hit_rate: float
    # The tighter of the oracle and Belady's MIN at the cluster's total KV capacity (router.sim.capacity_bound).
    capacity_bound_hit_rate: float
    # One LRU cache of the cluster's total KV capacity (router.sim.shared_lru): the engines' eviction
    # without partitioning. A reference, not a bound.
    shared_lru_hit_rate: float
    requests: int
    dropped: int  # requests larger than one replica's KV cache, left out
    span_s: float  # simulated arrival span

    def as_json(self) -> dict[str, object]:
        return {"policies": {name: m.as_json() for name, m in self.policies.items()},
                "oracle_hit_rate": round(self.oracle_hit_rate, 4),
                "capacity_bound_hit_rate": round(self.capacity_bound_hit_rate, 4),
                "shared_lru_hit_rate": round(self.shared_lru_hit_rate, 4)}


def bench_profile(config: BenchConfig) -> EngineProfile:
    profile = profile_by_name(config.profile)
    if config.kv_capacity_blocks is not None:
        profile = replace(profile, kv_capacity_blocks=config.kv_capacity_blocks)
    return profile


def load_requests(config: BenchConfig) -> tuple[list[SimRequest], int]:
    """The workload's requests scaled to the configured load, and how many were dropped as too large."""
    profile = bench_profile(config)
    if config.trace is not None:
        requests = build_trace(config.trace, config.seed, profile.block_size)
    else:
        requests = build_workload(config.workload or "", config.seed, profile, config.replicas,
                                  config.utilization)
    capacity_tokens = profile.kv_capacity_blocks * profile.block_size
    kept = [r for r in requests if r.prompt_len + r.output_len <= capacity_tokens]
    kept.sort(key=lambda r: r.arrival_s)
    scale_to_load(kept, profile, config.replicas, config.utilization)
    return kept, len(requests) - len(kept)


def run_benchmark(config: BenchConfig) -> BenchReport:
    profile = bench_profile(config)
    requests, dropped = load_requests(config)
    results: dict[str, PolicyMetrics] = {}
    for name in config.policies:
        run = simulate(requests, POLICIES[name], profile, config.replicas, seed=config.seed,
                       event_delay_s=config.event_delay_s)
        results[name] = summarize(run, config.replicas)
    span = requests[-1].arrival_s - requests[0].arrival_s if requests else 0.0
    oracle = oracle_hit_rate(requests, profile.block_size, profile.min_step_s)
    cluster_blocks = config.replicas * profile.kv_capacity_blocks
    at_capacity = capacity_bound_hit_rate(requests, profile.block_size, cluster_blocks)
    return BenchReport(policies=results, oracle_hit_rate=oracle, capacity_bound_hit_rate=min(oracle, at_capacity),
                       shared_lru_hit_rate=shared_lru_hit_rate(requests, profile.block_size, cluster_blocks),
                       requests=len(requests), dropped=dropped, span_s=span)
