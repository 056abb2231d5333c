"""Arrival times: Poisson at unit rate, then scaled so the cluster is loaded to a target utilisation.

The offered load is sized for a cluster that caches as well as the timing-free oracle (every earlier
request's blocks reusable): utilisation = sum of per-request engine work at the oracle's hit / (replicas x
span). Policies that reuse less than the oracle offer the engines more work than that, which is the point
of the comparison: a cluster provisioned for cache-aware serving.
"""

from __future__ import annotations

import random

from router.sim.oracle import oracle_cached_tokens
from router.sim.profiles import EngineProfile
from router.sim.request import SimRequest

DEFAULT_UTILIZATION = 0.75


def poisson_times(count: int, rng: random.Random) -> list[float]:
    """`count` arrival times of a unit-rate Poisson process, starting at 0."""
    times: list[float] = []
    now = 0.0
    for _ in range(count):
        times.append(now)
        now += rng.expovariate(1.0)
    return times


def scale_to_load(requests: list[SimRequest], profile: EngineProfile, replicas: int,
                  utilization: float = DEFAULT_UTILIZATION) -> float:
    """Rescale arrival times in place (keeping their order and relative gaps); returns the factor.

    Who calls: `bench.run_benchmark` after building a workload. 0 < utilization; replicas >= 1.
    """
    if not requests:
        return 1.0
    cached = oracle_cached_tokens(requests, profile.block_size)
    work_s = sum(profile.request_work_s(r.prompt_len - c, r.output_len)
                 for r, c in zip(requests, cached, strict=True))
    span = requests[-1].arrival_s - requests[0].arrival_s
    if span <= 0:
        return 1.0
    target_span = work_s / (utilization * replicas)
    factor = target_span / span
    origin = requests[0].arrival_s
    for request in requests:
        request.arrival_s = (request.arrival_s - origin) * factor
    return factor
