"""The simulator's engine, KV cache and event loop: invariants and determinism on small runs."""

from __future__ import annotations

import random

from engines.types import KVBlockRemoved
from router.sim.engine import SimEngine
from router.sim.policies.kv_aware import KVAwareSim
from router.sim.policies.simple import PowerOfTwo, RoundRobin
from router.sim.simulator import simulate
from tests.unit.sim_helpers import BS, request, tiny_profile


def _workload(seed: int = 0, count: int = 60) -> list:
    rng = random.Random(seed)
    systems = [[rng.randrange(1000) for _ in range(24)] for _ in range(5)]
    out = []
    for number in range(count):
        prompt = systems[rng.randrange(5)] + [rng.randrange(1000) for _ in range(rng.randint(1, 9))]
        out.append(request(number, prompt, rng.randint(1, 9), arrival_s=number * 0.02))
    return out


def test_capacity_is_never_exceeded_and_every_request_finishes_once() -> None:
    profile = tiny_profile(capacity_blocks=24)  # a few requests' worth: admission waits and evictions happen
    for factory in (KVAwareSim, PowerOfTwo, RoundRobin):
        run = simulate(_workload(), factory, profile, replicas=3, seed=1)
        assert all(o.finishes == 1 and o.ttft_s >= 0 for o in run.outcomes)
        assert len(run.outcomes) == len(run.requests)
        assert max(run.max_used_blocks) <= profile.kv_capacity_blocks
        assert all(e.cache.used_blocks <= profile.kv_capacity_blocks for e in run.engines)
        assert all(e.num_running == 0 and e.num_waiting == 0 for e in run.engines)
        assert all(e.cache.active_blocks == 0 for e in run.engines)  # everything released


def test_same_seed_same_run() -> None:
    first = simulate(_workload(), KVAwareSim, tiny_profile(), replicas=3, seed=7)
    second = simulate(_workload(), KVAwareSim, tiny_profile(), replicas=3, seed=7)
    assert [(o.replica, o.ttft_s, o.cached_tokens) for o in first.outcomes] == \
        [(o.replica, o.ttft_s, o.cached_tokens) for o in second.outcomes]


def test_kv_events_keep_the_prefix_index_equal_to_the_caches() -> None:
    policies: list[KVAwareSim] = []

    def factory(context):  # keep the policy to inspect its index afterwards
        policies.append(KVAwareSim(context))
        return policies[-1]

    requests = _workload(count=80)
    run = simulate(requests, factory, tiny_profile(capacity_blocks=20), replicas=3, seed=2, event_delay_s=0.05)
    index = policies[0].index
    for number, engine in enumerate(run.engines):
        replica = f"r{number}"
        cached = engine.cache.cached_keys()
        assert index.block_count(replica) == len(cached)
        for req in requests:
            keys = req.prompt_keys(BS)
            leading = 0
            while leading < len(keys) and keys[leading] in cached:
                leading += 1
            assert index.matched_blocks(keys, [replica])[replica] == leading


def test_prefix_reuse_lru_eviction_and_published_events() -> None:
    engine = SimEngine(tiny_profile(capacity_blocks=6), engine_salt=99)
    first = request(0, list(range(12)), 1)  # 3 prompt blocks, output in the last partial block
    engine.add(first)
    assert engine.start_step() is not None
    result = engine.finish_step()
    assert result.finished == [result.first_tokens[0]] and engine.cache.used_blocks == 3
    stored = engine.cache.events[0]
    assert stored.block_hashes == [k ^ (99 & (2**63 - 1)) for k in first.keys[:3]]  # engine's own hashes
    engine.cache.events.clear()
    again = request(1, list(range(8)) + [50, 51, 52, 53], 1)  # shares 2 leading blocks
    engine.add(again)
    engine.start_step()
    engine.finish_step()
    assert engine.cache.used_blocks == 4
    third = request(2, list(range(100, 112)), 1)  # needs 4 slots (3 blocks + the answer's): evicts 2
    engine.add(third)
    engine.start_step()
    removed = [e for e in engine.cache.events if isinstance(e, KVBlockRemoved)]
    salt = 99 & (2**63 - 1)
    # Freed tail first: the two third blocks go, the shared two-block prefix stays cached.
    assert removed[0].block_hashes == [first.keys[2] ^ salt, again.keys[2] ^ salt]
    engine.finish_step()
    assert engine.cache.used_blocks == 5 and {first.keys[0], first.keys[1]} <= engine.cache.cached_keys()
