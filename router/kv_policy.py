"""The KV-aware routing decision: cost = w * uncached prompt blocks + load, cheapest live replica wins.

Pure logic (no Ray): the Serve adapter feeds it candidates with their load, and it answers with the
chosen replica and the numbers behind the choice, so every decision can be logged and counted.
Blocks routed to a replica are marked there at once (`RoutedBlocks`, expiring unless an engine event
confirms them) so a burst of requests sharing a new prefix lands together before any event arrives.
A prompt no replica holds any block of also pays, per replica, `new_prefix_spread_blocks` for each
live prefix (young or recurring) the replica owns (router.prefix_owners), so new shared prefixes spread evenly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from router.prefix_index import PrefixIndex, ReplicaId
from router.prefix_owners import PrefixOwners
from router.routed_blocks import Clock, RoutedBlocks

__all__ = ["Candidate", "Clock", "DEFAULT_NEW_PREFIX_SPREAD_BLOCKS", "DEFAULT_UNCACHED_BLOCK_WEIGHT", "Decision",
           "KVAwarePolicy", "NoReplicaAvailable", "PrefixOwners", "RoutedBlocks"]

# An uncached block costs its prefill now and as much again in capacity taken from later requests (and it
# evicts cached blocks), so recomputing a prefix elsewhere must save several times its own blocks. Loads
# are in prefill blocks (router.load_tracker); 5 measured best across the simulator's workloads, 1-2 split
# shared prefixes needlessly (docs/benchmarks.md, "Router: simulated").
DEFAULT_UNCACHED_BLOCK_WEIGHT = 5.0
# What a prompt that no replica holds any block of pays per live prefix a replica already owns
# (router.prefix_owners): large next to loads, so new shared prefixes spread evenly over the replicas
# (as Ray's and SGLang's smallest-tree placement does) and load only breaks ties between equal owners.
DEFAULT_NEW_PREFIX_SPREAD_BLOCKS = 1024.0


@dataclass(slots=True)
class Candidate:
    """One replica as the adapter sees it now. Not frozen: the adapter builds one per replica per
    request, and a frozen dataclass costs three times as much to construct."""

    replica: ReplicaId
    # Load in prefill blocks (router.load_tracker): pending prefill, requests in flight, recent share.
    load_blocks: float
    accepting: bool = True  # False when full, draining or unhealthy: never chosen


@dataclass(slots=True)
class Decision:
    replica: ReplicaId
    matched_blocks: int
    prompt_blocks: int
    costs: dict[ReplicaId, float] = field(default_factory=dict)


class NoReplicaAvailable(RuntimeError):
    """Every candidate is full, draining or unhealthy."""


class KVAwarePolicy:
    """Who calls: the Serve adapter and the simulator, once per request. uncached_block_weight >= 0."""

    def __init__(self, index: PrefixIndex, routed: RoutedBlocks,
                 uncached_block_weight: float = DEFAULT_UNCACHED_BLOCK_WEIGHT,
                 rng: random.Random | None = None, owners: PrefixOwners | None = None,
                 new_prefix_spread_blocks: float = DEFAULT_NEW_PREFIX_SPREAD_BLOCKS) -> None:
        """`owners` None (or a spread of 0) places new prefixes by load alone."""
        self._index = index
        self._routed = routed
        self._weight = uncached_block_weight
        self._rng = rng or random.Random()
        self._owners = owners
        self._spread = new_prefix_spread_blocks if owners is not None else 0.0

    def choose(self, prompt_keys: list[int], candidates: list[Candidate]) -> Decision:
        live = [c for c in candidates if c.accepting]
        if not live:
            raise NoReplicaAvailable(f"none of {len(candidates)} replicas is accepting requests")
        indexed = self._index.matched_blocks(prompt_keys, [c.replica for c in live])
        matched = dict(indexed)
        self._routed.extend_matches(prompt_keys, matched)
        blocks = len(prompt_keys)
        weight = self._weight
        placing = blocks > 0 and not any(matched.values())  # a prefix no replica holds: this places it
        spread, owners = (self._spread, self._owners) if placing else (0.0, None)
        costs: dict[ReplicaId, float] = {}
        best = float("inf")
        ties: list[ReplicaId] = []
        for candidate in live:
            cost = weight * (blocks - matched[candidate.replica]) + candidate.load_blocks
            if spread and owners is not None:
                cost += spread * owners.owned(candidate.replica)
            costs[candidate.replica] = cost
            if cost < best:
                best, ties = cost, [candidate.replica]
            elif cost == best:
                ties.append(candidate.replica)
        chosen = ties[0] if len(ties) == 1 else self._rng.choice(sorted(ties))
        # Blocks the engine already confirmed need no mark; the rest bridge until its events arrive.
        self._routed.mark(chosen, prompt_keys, start=indexed[chosen])
        if self._owners is not None and blocks:
            self._owners.record(prompt_keys[0], chosen, placed=placing)
        return Decision(replica=chosen, matched_blocks=matched[chosen], prompt_blocks=blocks, costs=costs)
