"""The KV-aware routing decision: cost = w * uncached prompt blocks + load, cheapest live replica wins.

Pure logic (no Ray): the Serve adapter feeds it candidates with their load, and it answers with the
chosen replica and the numbers behind the choice, so every decision can be logged and counted.
Blocks routed to a replica are marked there at once (`PendingBlocks`, expiring unless an engine event
confirms them) so a burst of requests sharing a new prefix lands together before any event arrives.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from router.prefix_index import PrefixIndex, ReplicaId

Clock = Callable[[], float]


@dataclass(slots=True, frozen=True)
class Candidate:
    replica: ReplicaId
    # Active work in blocks: the engine's running + queued, plus this router's own in-flight requests.
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


class PendingBlocks:
    """Blocks the router has just sent to a replica, counted as cached there until `ttl_s` passes."""

    def __init__(self, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry: dict[tuple[ReplicaId, int], float] = {}

    def mark(self, replica: ReplicaId, keys: list[int]) -> None:
        deadline = self._clock() + self._ttl_s
        for key in keys:
            self._expiry[(replica, key)] = deadline

    def leading_blocks(self, replica: ReplicaId, keys: list[int]) -> int:
        now = self._clock()
        count = 0
        for key in keys:
            deadline = self._expiry.get((replica, key))
            if deadline is None or deadline < now:
                break
            count += 1
        return count

    def forget_replica(self, replica: ReplicaId) -> None:
        for item in [k for k in self._expiry if k[0] == replica]:
            del self._expiry[item]

    def prune(self) -> None:
        now = self._clock()
        for item in [k for k, deadline in self._expiry.items() if deadline < now]:
            del self._expiry[item]


class KVAwarePolicy:
    def __init__(self, index: PrefixIndex, pending: PendingBlocks, uncached_block_weight: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self._index = index
        self._pending = pending
        self._weight = uncached_block_weight
        self._rng = rng or random.Random()

    def choose(self, prompt_keys: list[int], candidates: list[Candidate]) -> Decision:
        live = [c for c in candidates if c.accepting]
        if not live:
            raise NoReplicaAvailable(f"none of {len(candidates)} replicas is accepting requests")
        indexed = self._index.matched_blocks(prompt_keys, [c.replica for c in live])
        blocks = len(prompt_keys)
        costs: dict[ReplicaId, float] = {}
        matched: dict[ReplicaId, int] = {}
        for candidate in live:
            cached = max(indexed[candidate.replica], self._pending.leading_blocks(candidate.replica, prompt_keys))
            matched[candidate.replica] = cached
            costs[candidate.replica] = self._weight * (blocks - cached) + candidate.load_blocks
        best = min(costs.values())
        chosen = self._rng.choice(sorted(r for r, cost in costs.items() if cost == best))
        self._pending.mark(chosen, prompt_keys)
        return Decision(replica=chosen, matched_blocks=matched[chosen], prompt_blocks=blocks, costs=costs)
