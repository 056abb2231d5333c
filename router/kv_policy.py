"""The KV-aware routing decision: cost = w * uncached prompt blocks + load, cheapest live replica wins.

Pure logic (no Ray): the Serve adapter feeds it candidates with their load, and it answers with the
chosen replica and the numbers behind the choice, so every decision can be logged and counted.
Blocks routed to a replica are marked there at once (`RoutedBlocks`, expiring unless an engine event
confirms them) so a burst of requests sharing a new prefix lands together before any event arrives.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
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


class RoutedBlocks:
    """The router's own memory of which prompt blocks it sent where, LRU-bounded and aged.

    Two uses, one mechanism: with KV events it bridges the gap until the engine's `BlockStored` arrives
    (short `ttl_s`), so a burst with a new shared prefix lands together; without events (approximate mode)
    it is the only source of `cached`, with `ttl_s` near the engine's cache lifetime and
    `capacity_blocks` near its KV capacity, so stale guesses age out instead of attracting traffic.
    """

    def __init__(self, ttl_s: float, capacity_blocks: int, clock: Clock = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._capacity_blocks = capacity_blocks
        self._clock = clock
        self._expiry: dict[ReplicaId, OrderedDict[int, float]] = {}

    def mark(self, replica: ReplicaId, keys: list[int]) -> None:
        blocks = self._expiry.setdefault(replica, OrderedDict())
        deadline = self._clock() + self._ttl_s
        for key in keys:
            blocks[key] = deadline
            blocks.move_to_end(key)
        while len(blocks) > self._capacity_blocks:
            blocks.popitem(last=False)  # least recently routed goes first, as in the engine's LRU

    def leading_blocks(self, replica: ReplicaId, keys: list[int]) -> int:
        blocks = self._expiry.get(replica)
        if not blocks:
            return 0
        now = self._clock()
        count = 0
        for key in keys:
            deadline = blocks.get(key)
            if deadline is None or deadline < now:
                break
            count += 1
        return count

    def forget_replica(self, replica: ReplicaId) -> None:
        self._expiry.pop(replica, None)

    def size(self, replica: ReplicaId) -> int:
        return len(self._expiry.get(replica, ()))


class KVAwarePolicy:
    def __init__(self, index: PrefixIndex, routed: RoutedBlocks, uncached_block_weight: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self._index = index
        self._routed = routed
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
            cached = max(indexed[candidate.replica], self._routed.leading_blocks(candidate.replica, prompt_keys))
            matched[candidate.replica] = cached
            costs[candidate.replica] = self._weight * (blocks - cached) + candidate.load_blocks
        best = min(costs.values())
        chosen = self._rng.choice(sorted(r for r, cost in costs.items() if cost == best))
        self._routed.mark(chosen, prompt_keys)
        return Decision(replica=chosen, matched_blocks=matched[chosen], prompt_blocks=blocks, costs=costs)
