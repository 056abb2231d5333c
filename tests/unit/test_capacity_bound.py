"""Belady's MIN bound on the hit rate at a given KV capacity, on hand-built access sequences."""

from __future__ import annotations

from router.sim.capacity_bound import capacity_bound_cached_tokens
from router.sim.oracle import oracle_cached_tokens
from router.sim.request import ListTokens, SimRequest

BS = 2


def _request(i: int, prompt_keys: list[int], output_keys: list[int] = ()) -> SimRequest:
    keys = list(prompt_keys) + list(output_keys)
    return SimRequest(f"r{i}", float(i), len(prompt_keys) * BS, len(output_keys) * BS,
                      ListTokens(list(range(len(keys) * BS))), keys)


def test_alternating_blocks_in_one_slot_keep_the_one_needed_sooner() -> None:
    # A B A B with room for one block: MIN keeps A (needed at 2) and never admits B: one hit.
    requests = [_request(i, [key]) for i, key in enumerate([1, 2, 1, 2])]
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=1) == 1 * BS
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=2) == 2 * BS
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=0) == 0


def test_with_room_for_everything_it_counts_every_reuse() -> None:
    requests = [_request(0, [1, 2, 3]), _request(1, [1, 2, 4]), _request(2, [1, 5]), _request(3, [6])]
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=100) == 3 * BS  # 1, 2 again; 1 again


def test_output_blocks_count_when_a_later_prompt_resends_them() -> None:
    requests = [_request(0, [1], output_keys=[2]), _request(1, [1, 2, 3])]
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=10) == 2 * BS
    # With one slot, only one of the two reused blocks can be kept.
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=1) == 1 * BS


def test_never_above_what_an_infinite_cache_allows_when_capacity_is_ample() -> None:
    requests = [_request(i, [i % 3, 10 + i % 2]) for i in range(12)]
    infinite = sum(oracle_cached_tokens(requests, BS, min_step_s=None))
    bound = capacity_bound_cached_tokens(requests, BS, capacity_blocks=1000)
    # The oracle leaves at least the last prompt block to compute; the bound counts any cached block.
    assert bound >= infinite
    assert capacity_bound_cached_tokens(requests, BS, capacity_blocks=2) < bound
