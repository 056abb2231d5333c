"""The one-LRU-cache reference on hand-built access sequences: LRU order, tail-first freeing, capacity."""

from __future__ import annotations

from router.sim.capacity_bound import capacity_bound_cached_tokens
from router.sim.request import ListTokens, SimRequest
from router.sim.shared_lru import shared_lru_cached_tokens

BS = 2


def _request(i: int, keys: list[int], output_keys: list[int] = ()) -> SimRequest:
    # One more prompt token than the full blocks, so every prompt block may be a hit.
    all_keys = list(keys) + list(output_keys)
    return SimRequest(f"r{i}", float(i), len(keys) * BS + 1, len(output_keys) * BS,
                      ListTokens(list(range(len(all_keys) * BS + 1))), all_keys)


def test_the_least_recently_used_prefix_is_evicted_first() -> None:
    # Room for two blocks: A, B, then C evicts A (least recent), so A misses again while B still hits.
    requests = [_request(i, [key]) for i, key in enumerate([1, 2, 3, 2, 1])]
    assert shared_lru_cached_tokens(requests, BS, capacity_blocks=2) == 1 * BS  # only the second B


def test_a_prefix_outlives_its_suffix() -> None:
    # [1, 2] then [3] with room for two: freed tail first, block 2 is older than block 1, so 3 evicts 2
    # and a repeat of [1, 2] still finds its first block.
    requests = [_request(0, [1, 2]), _request(1, [3]), _request(2, [1, 2])]
    assert shared_lru_cached_tokens(requests, BS, capacity_blocks=2) == 1 * BS


def test_output_blocks_are_cached_for_the_next_turn() -> None:
    requests = [_request(0, [1], output_keys=[2]), _request(1, [1, 2, 3])]
    assert shared_lru_cached_tokens(requests, BS, capacity_blocks=10) == 2 * BS
    assert shared_lru_cached_tokens(requests, BS, capacity_blocks=0) == 0


def test_never_above_beladys_min_at_the_same_capacity() -> None:
    requests = [_request(i, [i % 5, 10 + i % 3]) for i in range(40)]
    for capacity in (1, 2, 4, 8, 100):
        assert (shared_lru_cached_tokens(requests, BS, capacity)
                <= capacity_bound_cached_tokens(requests, BS, capacity))
