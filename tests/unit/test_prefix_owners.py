"""New-prefix placement: new shared prefixes spread evenly over replicas; roots that never recur age out."""

from __future__ import annotations

import random

import pytest

from router.kv_policy import Candidate, KVAwarePolicy, RoutedBlocks
from router.prefix_index import PrefixIndex
from router.prefix_owners import PrefixOwners

BS = 4


def test_young_roots_count_then_only_recurring_ones() -> None:
    owners = PrefixOwners(young_window=3)
    owners.record(1, "a", placed=True)
    assert owners.owned("a") == 1  # young: its group's next requests are on their way
    owners.record(1, "b", placed=False)  # it recurs; a copy routed elsewhere keeps the first owner
    owners.record(2, "a", placed=True)
    owners.record(3, "b", placed=True)
    assert (owners.owned("a"), owners.owned("b")) == (2, 1)
    owners.record(4, "b", placed=True)
    assert (owners.owned("a"), owners.owned("b")) == (2, 2)  # root 2 is among the last 3 placements
    owners.record(5, "b", placed=True)  # now it is not, and it never recurred: it stops counting
    assert (owners.owned("a"), owners.owned("b")) == (1, 3)  # root 1 recurred: it still counts


def test_lru_evicts_and_uncounts() -> None:
    owners = PrefixOwners(capacity_roots=2)
    for root, replica in ((1, "a"), (2, "b"), (3, "b")):
        owners.record(root, replica, placed=True)
    assert (owners.owned("a"), owners.owned("b")) == (0, 2)  # root 1, the least recent, is gone


def test_a_prefix_placed_anew_moves_to_its_new_owner() -> None:
    owners = PrefixOwners()
    owners.record(7, "a", placed=True)
    owners.record(7, "a", placed=False)
    owners.record(7, "b", placed=True)  # evicted everywhere, placed again on b
    assert (owners.owned("a"), owners.owned("b")) == (0, 1)
    owners.forget_replica("b")
    assert owners.owned("b") == 0
    with pytest.raises(ValueError):
        PrefixOwners(capacity_roots=0)


def _policy(spread: float) -> tuple[KVAwarePolicy, PrefixIndex]:
    index = PrefixIndex(BS)
    routed = RoutedBlocks(ttl_s=5.0, capacity_blocks=10_000, clock=lambda: 0.0)
    return KVAwarePolicy(index, routed, uncached_block_weight=5.0, rng=random.Random(0), owners=PrefixOwners(),
                         new_prefix_spread_blocks=spread), index


def _groups_per_replica(spread: float, loads: dict[str, float]) -> dict[str, int]:
    """12 shared prefixes arriving one after another, each followed by a second request of its group."""
    policy, index = _policy(spread)
    placed: dict[str, int] = {replica: 0 for replica in loads}
    for group in range(12):
        prompt = [1000 * group + i for i in range(64)]  # 16 blocks: following it beats any load here
        first = policy.choose(index.prompt_keys(prompt), [Candidate(r, load) for r, load in loads.items()])
        second = policy.choose(index.prompt_keys(prompt + [7]), [Candidate(r, load) for r, load in loads.items()])
        assert second.replica == first.replica  # the group follows its prefix (routed marks)
        placed[first.replica] += 1
    return placed


def test_new_shared_prefixes_spread_evenly_despite_uneven_load() -> None:
    # Replica a looks idle right now (its groups are between turns): by load alone it takes every group.
    loads = {"a": 0.0, "b": 20.0, "c": 40.0}
    assert _groups_per_replica(0.0, loads) == {"a": 12, "b": 0, "c": 0}
    assert _groups_per_replica(1024.0, loads) == {"a": 4, "b": 4, "c": 4}


def test_unique_prompts_weigh_only_while_young() -> None:
    policy, index = _policy(1024.0)
    loads = {"a": 0.0, "b": 30.0}
    chosen = []
    for i in range(300):  # every root new and never seen again
        decision = policy.choose(index.prompt_keys([50_000 + 100 * i + t for t in range(16)]),
                                 [Candidate(r, load) for r, load in loads.items()])
        chosen.append(decision.replica)
    # While young they alternate (each is a possible new group); none recurs, so no replica's count grows
    # without bound and the lightly loaded one is never starved of work by the term.
    assert chosen.count("a") >= 150
