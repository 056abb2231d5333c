"""An upper bound on the prefix-cache hit rate at the cluster's real KV capacity (Belady's MIN).

The infinite-cache oracle (router.sim.oracle) ignores capacity, so where the workload's distinct blocks
far exceed what the replicas hold (the Mooncake slice on 16 replicas), no routing policy can come near
it, and "x% of the oracle" says nothing about routing. This bound keeps the capacity: at any moment the
union of all replicas' caches is at most `replicas x blocks per replica` distinct blocks, filled only with
blocks requests computed, so every policy's hits are at most those of one cache of that total size. For a
single cache the most hits any replacement policy gets is Belady's MIN: evict (or do not admit) the
block whose next use is farthest away. So: MIN over the block accesses in arrival order (each request's
prompt blocks, then its output blocks, which a later turn may resend), counting hits on prompt blocks.

It is looser than the truth in three ways, so it stays a bound: any cached block counts (not only the
leading prefix), arrival order stands in for completion times (a block is reusable at once), and blocks
pinned by running requests are not held back.
"""

from __future__ import annotations

import heapq

from router.sim.request import SimRequest, prompt_token_share

_NEVER = float("inf")


def capacity_bound_cached_tokens(requests: list[SimRequest], block_size: int, capacity_blocks: int) -> int:
    """Most prompt tokens any policy could find cached, over all `requests` (in arrival order), with at
    most `capacity_blocks` blocks cached cluster-wide. capacity_blocks >= 0."""
    accesses: list[tuple[int, bool]] = []  # (key, is a prompt block)
    for request in requests:
        prompt_blocks = request.prompt_len // block_size
        accesses.extend((key, i < prompt_blocks) for i, key in enumerate(request.keys))
    next_use = [_NEVER] * len(accesses)
    last_seen: dict[int, int] = {}
    for i in range(len(accesses) - 1, -1, -1):
        key = accesses[i][0]
        next_use[i] = last_seen.get(key, _NEVER)
        last_seen[key] = i
    cached: dict[int, float] = {}  # key -> its next use
    farthest: list[tuple[float, int]] = []  # max-heap by next use (negated), stale entries skipped
    hits = 0
    for i, (key, is_prompt) in enumerate(accesses):
        upcoming = next_use[i]
        if key in cached:
            hits += is_prompt
        elif upcoming == _NEVER or capacity_blocks <= 0:
            continue  # never used again, or nowhere to keep it: not admitted
        elif len(cached) >= capacity_blocks:
            while cached.get(farthest[0][1]) != -farthest[0][0]:
                heapq.heappop(farthest)  # an entry superseded by a later use of its key
            if -farthest[0][0] <= upcoming:
                continue  # every cached block is needed sooner than this one
            del cached[heapq.heappop(farthest)[1]]
        if upcoming == _NEVER:
            del cached[key]  # a hit on its last use: free its slot
            continue
        cached[key] = upcoming
        heapq.heappush(farthest, (-upcoming, key))
    return hits * block_size


def capacity_bound_hit_rate(requests: list[SimRequest], block_size: int, capacity_blocks: int) -> float:
    return prompt_token_share(requests, capacity_bound_cached_tokens(requests, block_size, capacity_blocks))
