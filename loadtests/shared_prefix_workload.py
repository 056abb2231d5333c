"""Shared-prefix chat workload: many long system prompts, each asked several questions, interleaved.

Deterministic from a seed. Prompts of one group share a long system prompt (its own words from the first
sentence on, so groups share no KV block); rounds visit every group once in a shuffled order, so a
group's next request comes after all the others: a router that scatters a group re-computes its prefix,
and with more prefix tokens than one replica's KV cache holds, an engine that sees every group evicts.
"""

from __future__ import annotations

import random

WORDS = ("archive ledger harbor orchard glacier meadow lantern compass quarry beacon canal granary "
         "vineyard foundry observatory monastery caravan citadel estuary plateau tundra savanna delta "
         "lagoon fjord steppe atoll mesa canyon prairie").split()
QUESTIONS = ("Summarise the rules in one sentence.", "What should I ask first?", "Name two key facts.",
             "Which item matters most?", "Give me a short checklist.", "What is the main risk?",
             "Explain the second rule.", "What changed last year?")


def system_prompt(group: int, seed: int, sentences: int) -> str:
    rng = random.Random(f"{seed}-{group}")
    body = " ".join(
        f"Rule {i}: the {rng.choice(WORDS)} near the {rng.choice(WORDS)} keeps {rng.randint(2, 999)} "
        f"{rng.choice(WORDS)} records for the {rng.choice(WORDS)}."
        for i in range(sentences))
    return f"Group {group} (run {seed}) handbook. You answer questions about site {group}. {body}"


def build_workload(groups: int, questions_per_group: int, seed: int,
                   sentences: int = 24) -> list[list[dict[str, str]]]:
    """`groups x questions_per_group` chat requests in round order (every group once per round)."""
    rng = random.Random(seed)
    systems = [system_prompt(g, seed, sentences) for g in range(groups)]
    requests: list[list[dict[str, str]]] = []
    for round_index in range(questions_per_group):
        order = list(range(groups))
        rng.shuffle(order)
        for group in order:
            question = QUESTIONS[(round_index + group) % len(QUESTIONS)]
            requests.append([{"role": "system", "content": systems[group]}, {"role": "user", "content": question}])
    return requests


def build_skewed_workload(groups: int, requests: int, zipf_s: float, seed: int,
                          sentences: int = 24) -> list[list[dict[str, str]]]:
    """`requests` chat requests whose system prompt is drawn Zipf(`zipf_s`)-popular over `groups`: a few hot
    prefixes carry most traffic, so a router that pins a prefix to one replica overloads it."""
    rng = random.Random(seed)
    systems = [system_prompt(g, seed, sentences) for g in range(groups)]
    weights = [1.0 / (rank + 1) ** zipf_s for rank in range(groups)]
    picks = rng.choices(range(groups), weights=weights, k=requests)
    return [[{"role": "system", "content": systems[g]}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
            for i, g in enumerate(picks)]
