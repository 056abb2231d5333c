"""Shared-prefix groups: G groups x P prompts, each a long group system prompt plus a short question.

The 1024 requests of the default (64 x 16, 2048-token system prompts) arrive in a random interleaving
of groups, at Poisson times (unit rate here; `arrivals.scale_to_load` sets the real rate).
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass

from engines.block_hash import chained_block_hashes
from router.sim.request import VOCAB_SIZE, ListTokens, SimRequest
from router.sim.workloads.arrivals import poisson_times


@dataclass(slots=True, frozen=True)
class SharedPrefixSpec:
    groups: int = 64
    prompts_per_group: int = 16
    system_tokens: int = 2048
    question_tokens: tuple[int, int] = (32, 128)  # uniform, inclusive
    output_tokens: tuple[int, int] = (32, 256)


def _tokens(rng: random.Random, count: int) -> array:
    return array("i", [rng.randrange(VOCAB_SIZE) for _ in range(count)])


def shared_prefix(seed: int, block_size: int, spec: SharedPrefixSpec = SharedPrefixSpec()) -> list[SimRequest]:
    """Who calls: the workload registry. Deterministic for (seed, spec); keys use `block_size`."""
    rng = random.Random(seed)
    systems = [_tokens(rng, spec.system_tokens) for _ in range(spec.groups)]
    system_keys = [chained_block_hashes(s, block_size) for s in systems]
    order = [g for g in range(spec.groups) for _ in range(spec.prompts_per_group)]
    rng.shuffle(order)
    times = poisson_times(len(order), rng)
    requests: list[SimRequest] = []
    for number, (group, arrival) in enumerate(zip(order, times, strict=True)):
        question = _tokens(rng, rng.randint(*spec.question_tokens))
        answer_len = rng.randint(*spec.output_tokens)
        tokens = systems[group] + question + _tokens(rng, answer_len)
        # The system prompt's whole blocks are shared: hash only what follows them.
        shared_blocks = spec.system_tokens // block_size
        keys = system_keys[group][:shared_blocks]
        parent = keys[-1] if keys else None
        keys = keys + chained_block_hashes(tokens[shared_blocks * block_size :], block_size, parent=parent)
        requests.append(SimRequest(request_id=f"shared_prefix-{number}", arrival_s=arrival,
                                   prompt_len=spec.system_tokens + len(question), output_len=answer_len,
                                   source=ListTokens(tokens), keys=keys))
    return requests
