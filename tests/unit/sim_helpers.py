"""Small building blocks for the simulator's unit tests (tiny engines, hand-made requests)."""

from __future__ import annotations

import random

from engines.block_hash import chained_block_hashes
from router.sim.policy_api import SimContext
from router.sim.profiles import EngineProfile
from router.sim.request import ListTokens, SimRequest

BS = 4


def tiny_profile(capacity_blocks: int = 64, max_num_seqs: int = 4, token_budget: int = 64) -> EngineProfile:
    return EngineProfile(name="tiny", block_size=BS, kv_capacity_blocks=capacity_blocks,
                         max_num_seqs=max_num_seqs, token_budget=token_budget, step_overhead_s=0.01,
                         prefill_token_s=0.001, decode_seq_s=0.002, typical_batch=2, source="unit tests")


def request(number: int, tokens: list[int], output_len: int, arrival_s: float = 0.0) -> SimRequest:
    answer = [30_000 + number] * output_len
    full = tokens + answer
    return SimRequest(request_id=f"t-{number}", arrival_s=arrival_s, prompt_len=len(tokens), output_len=output_len,
                      source=ListTokens(full), keys=chained_block_hashes(full, BS))


def context(replicas: int = 3, seed: int = 0, profile: EngineProfile | None = None) -> SimContext:
    return SimContext(profile=profile or tiny_profile(), replica_ids=[f"r{i}" for i in range(replicas)],
                      clock=lambda: 0.0, rng=random.Random(seed))
