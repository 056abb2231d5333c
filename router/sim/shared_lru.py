"""A reference point between the capacity bound and the routers: one LRU cache of the cluster's total size.

`capacity_bound` keeps the capacity but evicts by next use (Belady's MIN), which no engine does. This
keeps the engines' eviction instead: one vLLM-style LRU cache holding `replicas x blocks per replica`
blocks, shared by every request, so nothing is partitioned or duplicated across replicas. Where a policy
falls short of it, partitioning (which replica a request went to) lost the hits; where this reference
itself falls short of a target, LRU eviction at that capacity loses them whatever the router does. It is a
reference, not a bound: splitting a cache can occasionally shield blocks from LRU and beat it.

Timing-free, as the capacity bound: requests in arrival order, each served at once, its blocks freed tail
first (vLLM's order, so a prefix outlives its suffix) and its leading cached prompt blocks counted as hits.
"""

from __future__ import annotations

from collections import OrderedDict

from router.sim.request import SimRequest, prompt_token_share


def shared_lru_cached_tokens(requests: list[SimRequest], block_size: int, capacity_blocks: int) -> int:
    """Prompt tokens found cached, over all `requests` (in arrival order), by one LRU cache of
    `capacity_blocks` blocks (>= 0). At least one prompt token of each request is computed, as in vLLM."""
    cache: OrderedDict[int, None] = OrderedDict()  # least recently freed first
    hits = 0
    for request in requests:
        for key in request.keys[: (request.prompt_len - 1) // block_size]:
            if key not in cache:
                break
            hits += 1
        for key in reversed(request.keys):  # freed tail first: the first block is the most recent
            cache[key] = None
            cache.move_to_end(key)
        while len(cache) > capacity_blocks:
            cache.popitem(last=False)
    return hits * block_size


def shared_lru_hit_rate(requests: list[SimRequest], block_size: int, capacity_blocks: int) -> float:
    return prompt_token_share(requests, shared_lru_cached_tokens(requests, block_size, capacity_blocks))
