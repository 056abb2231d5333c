from __future__ import annotations

import random

import pytest

from engines.types import KVBlockStored, KVEventBatch
from router.kv_policy import Candidate, KVAwarePolicy, NoReplicaAvailable, RoutedBlocks
from router.prefix_index import PrefixIndex

BS = 4
PROMPT = list(range(100, 132))  # 8 blocks


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _policy(clock: FakeClock | None = None, seed: int = 0) -> tuple[KVAwarePolicy, PrefixIndex]:
    index = PrefixIndex(BS)
    routed = RoutedBlocks(ttl_s=5.0, capacity_blocks=1000, clock=clock or FakeClock())
    return KVAwarePolicy(index, routed, uncached_block_weight=1.0, rng=random.Random(seed)), index


def _cache(index: PrefixIndex, replica: str, tokens: list[int]) -> None:
    hashes = list(range(len(tokens) // BS))
    index.apply(replica, KVEventBatch(0, 0.0, [KVBlockStored(hashes, None, tokens, BS)]))


def test_prefers_the_replica_holding_the_prefix() -> None:
    policy, index = _policy()
    _cache(index, "b", PROMPT[:24])  # 6 of 8 blocks
    decision = policy.choose(index.prompt_keys(PROMPT), [Candidate("a", 0), Candidate("b", 0)])
    assert decision.replica == "b" and decision.matched_blocks == 6
    assert decision.costs == {"a": 8.0, "b": 2.0}


def test_load_outweighs_a_small_prefix() -> None:
    policy, index = _policy()
    _cache(index, "b", PROMPT[:8])  # 2 blocks cached, but b is busy
    decision = policy.choose(index.prompt_keys(PROMPT), [Candidate("a", 1), Candidate("b", 10)])
    assert decision.replica == "a"


def test_never_chooses_a_replica_that_is_not_accepting() -> None:
    policy, index = _policy()
    _cache(index, "b", PROMPT)
    decision = policy.choose(index.prompt_keys(PROMPT), [Candidate("a", 50), Candidate("b", 0, accepting=False)])
    assert decision.replica == "a" and "b" not in decision.costs
    with pytest.raises(NoReplicaAvailable):
        policy.choose(index.prompt_keys(PROMPT), [Candidate("b", 0, accepting=False)])


def test_ties_are_broken_by_the_injected_rng() -> None:
    chosen = set()
    for seed in range(20):
        policy, index = _policy(seed=seed)
        chosen.add(policy.choose(index.prompt_keys(PROMPT), [Candidate("a", 0), Candidate("b", 0)]).replica)
    assert chosen == {"a", "b"}
    first = [_policy(seed=3)[0].choose([1], [Candidate("a", 0), Candidate("b", 0)]).replica for _ in range(3)]
    assert len(set(first)) == 1  # same seed, same choice


def test_burst_with_new_prefix_lands_together_then_pending_expires() -> None:
    clock = FakeClock()
    policy, index = _policy(clock)
    keys = index.prompt_keys(PROMPT)
    first = policy.choose(keys, [Candidate("a", 0), Candidate("b", 0)]).replica
    # No engine event yet: the routed blocks count as cached on the first replica for the burst.
    for load in range(1, 5):
        loads = {first: float(load), "a" if first == "b" else "b": 0.0}
        assert policy.choose(keys, [Candidate(r, l) for r, l in loads.items()]).replica == first
    clock.now = 10.0  # past the TTL with no confirming event: the mark no longer attracts requests
    other = "a" if first == "b" else "b"
    assert policy.choose(keys, [Candidate(first, 3), Candidate(other, 0)]).replica == other


def test_approximate_mode_uses_routing_history_with_capacity_and_aging() -> None:
    clock = FakeClock()
    routed = RoutedBlocks(ttl_s=60.0, capacity_blocks=10, clock=clock)
    policy = KVAwarePolicy(PrefixIndex(BS), routed, rng=random.Random(0))  # no events ever arrive
    keys = PrefixIndex(BS).prompt_keys(PROMPT)
    first = policy.choose(keys, [Candidate("a", 0), Candidate("b", 0)]).replica
    clock.now = 30.0
    assert policy.choose(keys, [Candidate("a", 1), Candidate("b", 1)]).replica == first
    other_prompt = PrefixIndex(BS).prompt_keys(list(range(500, 532)))
    routed.mark(first, other_prompt)  # 8 more blocks: capacity 10 evicts the oldest 6 of PROMPT's
    assert routed.size(first) == 10 and routed.leading_blocks(first, keys) == 0
    routed.mark(first, keys)
    clock.now = 200.0  # aged out
    assert routed.leading_blocks(first, keys) == 0
