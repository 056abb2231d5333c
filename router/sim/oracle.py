"""An upper bound on the prefix-cache hit rate: one cache of infinite capacity shared by all replicas.

A request reuses the longest prefix of its blocks that any earlier request could have put in the cache
by its arrival: prompt blocks from their request's arrival, output blocks (which a next turn resends)
from the earliest their request could have finished, `output_len` steps of at least `min_step_s` after
arrival. No policy on the simulated cluster can reuse more (every replica's cache is a subset of this
one, filled no earlier), so it bounds every policy's hit rate. With `min_step_s` None the bound is
timing-free (output blocks count from arrival), used to size the offered load.
"""

from __future__ import annotations

from router.sim.request import SimRequest, prompt_token_share


def oracle_cached_tokens(requests: list[SimRequest], block_size: int,
                         min_step_s: float | None = None) -> list[int]:
    """Cached prompt tokens per request (in the given order, which must be arrival order)."""
    available: dict[int, float] = {}  # key -> earliest time it can be in the cache
    cached: list[int] = []
    for request in requests:
        now = request.arrival_s
        prompt_blocks = request.prompt_len // block_size
        limit = (request.prompt_len - 1) // block_size  # at least one prompt token is computed
        hit = 0
        for key in request.keys[:limit]:
            ready = available.get(key)
            if ready is None or ready > now:
                break
            hit += 1
        cached.append(hit * block_size)
        for key in request.keys[:prompt_blocks]:
            if available.get(key, now + 1.0) > now:
                available[key] = now
        out_ready = now if min_step_s is None else now + request.output_len * min_step_s
        for key in request.keys[prompt_blocks:]:
            if available.get(key, out_ready + 1.0) > out_ready:
                available[key] = out_ready
    return cached


def oracle_hit_rate(requests: list[SimRequest], block_size: int, min_step_s: float | None) -> float:
    return prompt_token_share(requests, sum(oracle_cached_tokens(requests, block_size, min_step_s)))
