"""The router's own memory of which prompt blocks it sent where, capacity-bounded and aged.

Two uses, one mechanism: with KV events it bridges the gap until the engine's `BlockStored` arrives
(short `ttl_s`), so a burst with a new shared prefix lands together; without events (approximate mode)
it is the only source of `cached`, with `ttl_s` near the engine's cache lifetime and `capacity_blocks`
near its KV capacity, so stale guesses age out instead of attracting traffic.

Only the probed depths of a prompt are stored (`prefix_index.probe_depths`: every block of a short prompt,
every 8th of a long one's tail): a chained key stands for its whole prefix, so a marked key at depth d
means the prompt up to d was routed there.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import islice

from router.prefix_index import DENSE_BLOCKS, ReplicaId, probe_depths, probe_keys

Clock = Callable[[], float]


class RoutedBlocks:
    """Who calls: `KVAwarePolicy` (mark on every decision, extend_matches) and the Serve adapter.

    ttl_s > 0; capacity_blocks >= 1 per replica (held to within 1/8 above it: trimming is done in bulk).
    Not thread-safe: one owner (the router's event loop).
    """

    def __init__(self, ttl_s: float, capacity_blocks: int, clock: Clock = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._capacity_blocks = capacity_blocks
        self._trim_above = capacity_blocks + capacity_blocks // 8
        self._clock = clock
        # replica -> key -> deadline, in marking order (a plain dict: bulk inserts and trims at C speed)
        self._expiry: dict[ReplicaId, dict[int, float]] = {}

    def mark(self, replica: ReplicaId, keys: Sequence[int], start: int = 0) -> None:
        """Remember `keys[start:]` as routed to `replica` now; re-marked keys become the most recent again."""
        probed = probe_keys(keys)
        if start:
            probed = probed[bisect_left(probe_depths(len(keys)), start) :]
        if not probed:
            return
        blocks = self._expiry.setdefault(replica, {})
        if not blocks.keys().isdisjoint(probed):
            for key in probed:
                blocks.pop(key, None)  # so that the insert below moves it to the newest end
        blocks.update(dict.fromkeys(probed, self._clock() + self._ttl_s))
        if len(blocks) > self._trim_above:
            # Least recently routed go first, as in the engine's LRU.
            newest = list(islice(reversed(blocks.items()), self._capacity_blocks))
            newest.reverse()
            self._expiry[replica] = dict(newest)

    def leading_blocks(self, replica: ReplicaId, keys: Sequence[int], start: int = 0) -> int:
        """How many of `keys[start:]`, from the first on, are marked on `replica` and not expired."""
        blocks = self._expiry.get(replica)
        if not blocks:
            return 0
        return _run_end(blocks, keys, start, self._clock(), probe_keys(keys)) - start

    def extend_matches(self, keys: Sequence[int], matched: dict[ReplicaId, int]) -> None:
        """Lengthen each replica's match in place by the routed blocks that follow it.

        Who calls: `KVAwarePolicy.choose`, with the index's matches. A replica's cached prefix is the blocks
        its engine confirmed plus the blocks routed there since that events have not confirmed yet, so
        the walk continues where the index's match ends; replicas with no marks cost one dict lookup.
        """
        if not self._expiry:
            return
        now = self._clock()
        total = len(keys)
        probed = probe_keys(keys)
        expiry = self._expiry
        for replica, start in matched.items():
            blocks = expiry.get(replica)
            if not blocks or start >= total:
                continue
            if start < DENSE_BLOCKS:
                # Most replicas hold no mark at the next block: one lookup, no walk.
                deadline = blocks.get(probed[start])
                if deadline is None or deadline < now:
                    continue
            matched[replica] = _run_end(blocks, keys, start, now, probed)

    def forget_replica(self, replica: ReplicaId) -> None:
        self._expiry.pop(replica, None)

    def size(self, replica: ReplicaId) -> int:
        return len(self._expiry.get(replica, ()))


def _run_end(blocks: dict[int, float], keys: Sequence[int], start: int, now: float,
             probed: Sequence[int]) -> int:
    """The depth where the marked, unexpired run that continues from `start` ends."""
    end = start
    get = blocks.get
    depths = probe_depths(len(keys))
    for depth, key in islice(zip(depths, probed), bisect_left(depths, start), None):
        deadline = get(key)
        if deadline is None or deadline < now:
            break
        end = depth + 1
    return end
