"""Multi-turn chat: Zipf-popular conversations that resend their growing history every turn.

Users (conversation slots) have Zipf popularity (exponent `zipf_s`): each arrival of a Poisson process
picks a user by popularity, and that user sends the next turn of its conversation: the system prompt (one
of a few shared ones), every earlier question and answer, and a new question. The answer the engine
"generates" is fixed in advance, so the next turn resends exactly those tokens. A conversation whose
history would pass `max_history_tokens` (or an eighth of a replica's KV cache) ends and the user starts a
new one.

A user cannot send a turn before reading the previous answer: a user is ready again only after an
estimate of the turn's response time on an idle replica (prefill of the uncached part plus decode at the
profile's typical batch) plus a think time (exponential, mean `think_factor` x that estimate). A popular
user who is not ready yet yields the arrival to someone else, so popular users chat back to back and the
rest now and then. The number of users and the request count scale with the cluster, so every cluster
size sees conversations of several turns and enough of them in flight.
"""

from __future__ import annotations

import bisect
import itertools
import random
from array import array
from dataclasses import dataclass

from engines.block_hash import chained_block_hashes
from router.sim.profiles import EngineProfile
from router.sim.request import VOCAB_SIZE, ListTokens, SimRequest

_MAX_DRAWS = 64


@dataclass(slots=True, frozen=True)
class ChatSpec:
    requests_per_replica: int = 320
    zipf_s: float = 0.9
    think_factor: float = 0.5
    # Users per conversation turn the cluster must carry at once (rate x turn cycle): enough that an
    # arrival finds a ready user, few enough that users come back for several turns.
    user_pool_factor: float = 1.5
    system_prompts: int = 8
    system_tokens: int = 512
    question_tokens: tuple[int, int] = (32, 256)  # uniform, inclusive
    output_tokens: tuple[int, int] = (64, 384)
    max_history_tokens: int = 8192  # also at most an eighth of a replica's KV cache (`chat`)


def _tokens(rng: random.Random, count: int) -> array:
    return array("i", [rng.randrange(VOCAB_SIZE) for _ in range(count)])


def _mean(bounds: tuple[int, int]) -> float:
    return (bounds[0] + bounds[1]) / 2.0


def chat(seed: int, profile: EngineProfile, replicas: int, utilization: float,
         spec: ChatSpec = ChatSpec()) -> list[SimRequest]:
    """Who calls: the workload registry. Deterministic for (seed, profile, replicas, utilization, spec).

    Arrival times are already at about the target load (`arrivals.scale_to_load` then corrects them).
    """
    rng = random.Random(seed)
    block_size = profile.block_size
    # A small engine serves short contexts (the cpu profile's cache holds 23k tokens, its model 2k): a history
    # that filled a large share of the cache would leave room for no one else's.
    max_history = min(spec.max_history_tokens, profile.kv_capacity_blocks * block_size // 8)
    decode_step_s = profile.step_s(0, profile.typical_batch)
    # Expected engine work of a turn whose history is cached: the new question and the previous answer.
    turn_work_s = profile.request_work_s(int(_mean(spec.question_tokens) + _mean(spec.output_tokens)),
                                         int(_mean(spec.output_tokens)))
    rate = utilization * replicas / turn_work_s
    mean_cycle_s = (1.0 + spec.think_factor) * _mean(spec.output_tokens) * decode_step_s
    users = max(64, int(spec.user_pool_factor * rate * mean_cycle_s))
    weights = [1.0 / (rank ** spec.zipf_s) for rank in range(1, users + 1)]
    cumulative = list(itertools.accumulate(weights))
    ready_at = [0.0] * users
    systems = [_tokens(rng, spec.system_tokens) for _ in range(spec.system_prompts)]
    history: dict[int, array] = {}
    history_keys: dict[int, list[int]] = {}
    now = 0.0
    requests: list[SimRequest] = []
    for number in range(spec.requests_per_replica * replicas):
        now += rng.expovariate(rate)
        user = -1
        for _ in range(_MAX_DRAWS):
            candidate = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
            if ready_at[candidate] <= now:
                user = candidate
                break
        if user < 0:  # everyone drawn is still reading: the user who will be ready first goes next
            user = min(range(users), key=ready_at.__getitem__)
            now = max(now, ready_at[user])
        question = _tokens(rng, rng.randint(*spec.question_tokens))
        answer = _tokens(rng, rng.randint(*spec.output_tokens))
        past = history.get(user)
        if past is None or len(past) + len(question) + len(answer) > max_history:
            past = systems[user % spec.system_prompts]
            history_keys[user] = chained_block_hashes(past, block_size)
        tokens = past + question + answer
        # The history's full blocks keep their keys; hash only from the first block that changes.
        known = history_keys[user][: len(past) // block_size]
        parent = known[-1] if known else None
        keys = known + chained_block_hashes(tokens[len(known) * block_size :], block_size, parent=parent)
        history[user] = tokens
        history_keys[user] = keys
        response_s = (len(question) + len(answer)) * profile.prefill_token_s + len(answer) * decode_step_s
        ready_at[user] = now + response_s + rng.expovariate(1.0 / (spec.think_factor * response_s))
        requests.append(SimRequest(request_id=f"chat-{number}", arrival_s=now,
                                   prompt_len=len(past) + len(question), output_len=len(answer),
                                   source=ListTokens(tokens), keys=keys))
    return requests
