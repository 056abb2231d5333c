"""Each re-implemented baseline router decides as its published description says, on hand-built states."""

from __future__ import annotations

from engines.types import KVBlockStored, KVEventBatch
from router.sim.policies.dynamo import DynamoKV
from router.sim.policies.llmd import LlmdScorers
from router.sim.policies.ray_prefix import RayPrefixAffinity
from router.sim.policies.sglang import SGLangCacheAware
from router.sim.policies.simple import PowerOfTwo, RoundRobin
from tests.unit.sim_helpers import BS, context, request

SYSTEM = list(range(100, 132))  # 8 blocks
OTHER = list(range(500, 532))


def _route(policy, req) -> int:  # noqa: ANN001
    return policy.route(policy.prepare(req), req)


def test_round_robin_cycles() -> None:
    policy = RoundRobin(context(3))
    assert [_route(policy, request(n, SYSTEM, 1)) for n in range(4)] == [0, 1, 2, 0]


def test_power_of_two_takes_the_shorter_queue_of_its_two_samples() -> None:
    policy = PowerOfTwo(context(2))
    policy._inflight = [10, 0]
    assert {_route(policy, request(9, SYSTEM, 1)) for _ in range(5)} == {1}
    policy.on_finished(request(9, SYSTEM, 1), 1)
    assert policy._inflight == [10, 4]


def test_ray_prefix_follows_the_longest_match_else_the_emptiest_tree() -> None:
    policy = RayPrefixAffinity(context(3))
    first = _route(policy, request(0, SYSTEM + [1, 2, 3, 4], 1))  # empty tree: power of two
    # 32 of 36 characters match (>= 10%): the same replica, whatever the queues.
    assert _route(policy, request(1, SYSTEM + [7, 8, 9, 9], 1)) == first
    # Nothing matches: one of the replicas holding no text at all.
    assert _route(policy, request(2, OTHER, 1)) != first


def test_ray_prefix_falls_back_to_power_of_two_when_queues_are_imbalanced() -> None:
    policy = RayPrefixAffinity(context(2), imbalanced_threshold=2)
    first = _route(policy, request(0, SYSTEM, 1))
    policy._queue[first] = 5  # spread 5 >= 2: load decides, not the prefix
    assert _route(policy, request(1, SYSTEM, 1)) == 1 - first


def test_sglang_cache_threshold_and_balance_thresholds() -> None:
    policy = SGLangCacheAware(context(3))
    first = _route(policy, request(0, SYSTEM + [1, 2, 3, 4], 1))
    assert _route(policy, request(1, SYSTEM + [5, 6, 7, 8], 1)) == first  # 89% > 30% matched
    low = _route(policy, request(2, SYSTEM[:4] + OTHER, 1))  # 11% <= 30%: the smallest tree
    assert low != first
    policy._load = [100, 10, 10]  # 90 > 64 and 100 > 1.5 x 10: imbalanced, least loaded wins
    policy._load[first], policy._load[0] = policy._load[0], policy._load[first]
    assert _route(policy, request(3, SYSTEM + [1, 2, 3, 4], 1)) != first


def _stored(tokens: list[int], hashes: list[int]) -> KVEventBatch:
    return KVEventBatch(0, 0.0, [KVBlockStored(hashes, None, tokens, BS)])


def test_dynamo_cost_is_overlap_weighted_prefill_plus_decode_blocks() -> None:
    policy = DynamoKV(context(3))
    policy.on_kv_events(2, _stored(SYSTEM, list(range(8))))  # replica 2 caches all 8 prompt blocks
    req = request(0, SYSTEM + [1, 2, 3, 4], 1)
    assert _route(policy, req) == 2  # prefill 1 block vs 9 elsewhere
    # Replica 2 now has 9 decode blocks and 1 prefill block active; a second request still fits there
    # (1 + 1 prefill + 9 + 1 decode = 12 < 9 + 9 elsewhere)...
    assert _route(policy, request(1, SYSTEM + [5, 6, 7, 8], 1)) == 2
    # ...but with a long prefill queued there, recomputing elsewhere is cheaper.
    policy._prefill_tokens[2] += 400
    assert _route(policy, request(2, SYSTEM + [9, 9, 9, 9], 1)) != 2
    policy.on_first_token(req, 2)
    policy.on_finished(req, 2)
    # The second request is still active there: its 9 blocks (8 shared) remain, its prefill too.
    assert policy._prefill_tokens[2] == 400 + 4 and len(policy._active[2]) == 9


def test_llm_d_weighs_prefix_3_queue_2_kv_utilisation_2() -> None:
    policy = LlmdScorers(context(3))
    first = _route(policy, request(0, SYSTEM, 1))
    assert _route(policy, request(1, SYSTEM, 1)) == first  # prefix 3 x 1.0 beats everything else equal
    for replica in range(3):
        policy.on_engine_stats(replica, 1, 10 if replica == first else 0, 0.0)
    # first: 3 x 1 + 2 x 1 + 2 x 0 = 5; others: 0 + 2 + 2 = 4: still first.
    assert _route(policy, request(2, SYSTEM, 1)) == first
    policy.on_engine_stats(first, 1, 10, 0.9)  # 3 + 0.2 + 0 = 3.2 < 4: now an idle, empty pod wins
    assert _route(policy, request(3, SYSTEM, 1)) != first
