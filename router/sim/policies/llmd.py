"""llm-d's inference scheduler with its default weighted scorers, from its documentation.

score(pod) = 3 x prefix + 2 x kv-cache utilisation + 2 x queue, highest wins (ties at random):
- prefix-cache scorer (approximate mode): blocks of the prompt this scheduler routed to the pod, longest
  leading run / prompt blocks, from an LRU of `lru_capacity_per_server` (31,250) blocks per pod;
- kv-cache-utilization scorer: 1 - the pod's reported KV cache usage;
- queue scorer: (max - q) / (max - min) of the pods' reported waiting queues (1 when all are equal).
KV usage and queue come from the pods' scraped metrics (`on_engine_stats`), so they lag by up to one
scrape interval.
"""

from __future__ import annotations

from collections import OrderedDict

from router.sim.policy_api import SimContext, SimPolicy
from router.sim.request import SimRequest


class LlmdScorers(SimPolicy):
    name = "llm_d"

    def __init__(self, context: SimContext, prefix_weight: float = 3.0, kv_weight: float = 2.0,
                 queue_weight: float = 2.0, lru_capacity_per_server: int = 31_250) -> None:
        n = len(context.replica_ids)
        self._rng = context.rng
        self._bs = context.profile.block_size
        self._weights = (prefix_weight, kv_weight, queue_weight)
        self._capacity = lru_capacity_per_server
        self._lru: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n)]
        self._holders: dict[int, int] = {}  # key -> bitmask of pods whose LRU holds it
        self._waiting = [0] * n
        self._kv_usage = [0.0] * n

    def prepare(self, request: SimRequest) -> object:
        return request.prompt_keys(self._bs)

    def _prefix_matches(self, keys: list[int]) -> list[int]:
        n = len(self._lru)
        matched = [0] * n
        mask = (1 << n) - 1
        for depth, key in enumerate(keys):
            still = mask & self._holders.get(key, 0)
            dropped = mask ^ still
            while dropped:
                low = dropped & -dropped
                matched[low.bit_length() - 1] = depth
                dropped ^= low
            mask = still
            if not mask:
                return matched
        while mask:
            low = mask & -mask
            matched[low.bit_length() - 1] = len(keys)
            mask ^= low
        return matched

    def route(self, prepared: object, request: SimRequest) -> int:
        keys: list[int] = prepared  # type: ignore[assignment]
        prefix_w, kv_w, queue_w = self._weights
        matched = self._prefix_matches(keys)
        high, low = max(self._waiting), min(self._waiting)
        spread = high - low
        best = -1.0
        ties: list[int] = []
        for pod in range(len(matched)):
            prefix = matched[pod] / len(keys) if keys else 0.0
            queue = 1.0 if spread == 0 else (high - self._waiting[pod]) / spread
            score = prefix_w * prefix + kv_w * (1.0 - self._kv_usage[pod]) + queue_w * queue
            if score > best:
                best, ties = score, [pod]
            elif score == best:
                ties.append(pod)
        chosen = ties[0] if len(ties) == 1 else self._rng.choice(ties)
        self._remember(chosen, keys)
        return chosen

    def _remember(self, pod: int, keys: list[int]) -> None:
        lru = self._lru[pod]
        bit = 1 << pod
        holders = self._holders
        for key in keys:
            if key in lru:
                lru.move_to_end(key)
            else:
                lru[key] = None
                holders[key] = holders.get(key, 0) | bit
        while len(lru) > self._capacity:
            key, _ = lru.popitem(last=False)
            mask = holders[key] & ~bit
            if mask:
                holders[key] = mask
            else:
                del holders[key]

    def on_engine_stats(self, replica: int, num_running: int, num_waiting: int, kv_usage: float) -> None:
        self._waiting[replica] = num_waiting
        self._kv_usage[replica] = kv_usage
