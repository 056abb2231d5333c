"""Per-replica load in KV blocks, the unit of the routing cost: what delays a request sent there now.

Three parts, each in prefill blocks (the time to compute one uncached prompt block):

- pending prefill: the uncached prompt blocks this router sent and the engine has not computed yet. They
  are what a new request queues behind for its first token. The engine's own `BlockStored` events say
  when blocks get computed (`observe_kv_events`); without events a request's blocks count until it
  finishes (never more than the in-flight requests' uncached blocks).
- requests in flight, `request_blocks` each: running requests slow every engine step down a little. Our
  own are exact (counted when routed and finished); the engine's running + waiting counts from replica
  stats add the requests other routers sent.
- recent share, `balance_blocks` per request: a decayed count of the requests this router sent each
  replica, remembering about `balance_memory` request lifetimes (the decay is per routed request, scaled
  by the requests in flight, so it needs no clock and fits any request rate). A replica that holds hot
  prefixes keeps drawing their requests; this sees it before its queue does, so new prefixes go elsewhere.

The defaults come from the simulator (`warmserve bench router`, docs/benchmarks.md). Pure logic: no clock,
no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.types import KVBlockStored, KVEventBatch
from router.prefix_index import ReplicaId

# What one request in flight adds to a replica's load, in prefill blocks (also the weight of requests other
# routers sent, which the engine reports without their sizes).
DEFAULT_REQUEST_BLOCKS = 2.0
# Per request of recent share. It should grow with how long a request stays in flight measured in prefill-
# block times: 30 fits GPU engines (a decode step of a batch of 64 ~ 19 block prefills); the 2-core CPU
# engine wants ~6 (router.sim.policies.kv_aware.balance_blocks_for derives it from an engine profile).
DEFAULT_BALANCE_BLOCKS = 30.0
DEFAULT_BALANCE_MEMORY = 10.0
_RENORMALIZE_AT = 1e100


@dataclass(slots=True)
class _InFlight:
    replica: ReplicaId
    uncached_blocks: float


@dataclass(slots=True)
class _ReplicaLoad:
    requests: int = 0
    uncached_blocks: float = 0.0  # uncached prompt blocks of our requests in flight
    pending_prefill: float = 0.0  # of those, not yet seen computed: <= uncached_blocks
    engine_requests: int = 0  # running + waiting the engine reported beyond our own: other routers' work
    # Most of our own requests in flight since the engine's previous report: the engine's count was taken
    # somewhere in that interval, so only what exceeds this peak is surely someone else's work (a stale
    # report must not turn our own finished requests into phantom load).
    own_peak_since_report: int = 0
    recent_scaled: float = 0.0  # decayed routed-request count x the tracker's current unit


class ReplicaLoadTracker:
    """Who calls: the Serve adapter (and the simulator) on every routed and finished request, when replica
    stats arrive, and with every KV event batch. Not thread-safe: one owner (the router's event loop).

    request_blocks, balance_blocks >= 0; balance_memory > 0 (request lifetimes the recent share spans).
    """

    def __init__(self, block_size: int, *, request_blocks: float = DEFAULT_REQUEST_BLOCKS,
                 balance_blocks: float = DEFAULT_BALANCE_BLOCKS,
                 balance_memory: float = DEFAULT_BALANCE_MEMORY) -> None:
        self._block_size = block_size
        self._request_blocks = request_blocks
        self._balance_blocks = balance_blocks
        self._balance_memory = balance_memory
        self._inflight: dict[str, _InFlight] = {}
        self._replicas: dict[ReplicaId, _ReplicaLoad] = {}
        # Decay without touching every replica: counts are stored multiplied by a growing unit.
        self._unit = 1.0

    def started(self, request_id: str, replica: ReplicaId, uncached_prompt_blocks: int, max_tokens: int) -> None:
        """The request was sent to `replica` with that many prompt blocks to compute (0..prompt blocks).

        `max_tokens` is accepted for the caller's convenience: decode length does not delay a first token
        beyond the per-request weight, so it does not enter the load.
        """
        self.finished(request_id)  # a retried id must not count twice
        uncached = float(max(0, uncached_prompt_blocks))
        self._inflight[request_id] = _InFlight(replica, uncached)
        load = self._replicas.setdefault(replica, _ReplicaLoad())
        load.requests += 1
        load.uncached_blocks += uncached
        load.pending_prefill += uncached
        load.own_peak_since_report = max(load.own_peak_since_report, load.requests)
        self._count_recent(load)

    def _count_recent(self, load: _ReplicaLoad) -> None:
        # One step of decay per routed request, sized so the memory spans `balance_memory` times the
        # requests in flight: about that many request lifetimes, whatever the request rate.
        decay = 1.0 / (self._balance_memory * max(1, len(self._inflight)))
        self._unit /= 1.0 - decay
        load.recent_scaled += self._unit
        if self._unit > _RENORMALIZE_AT:
            for each in self._replicas.values():
                each.recent_scaled /= self._unit
            self._unit = 1.0

    def finished(self, request_id: str) -> None:
        entry = self._inflight.pop(request_id, None)
        if entry is None:
            return
        load = self._replicas.get(entry.replica)
        if load is not None:
            load.requests = max(0, load.requests - 1)
            load.uncached_blocks = max(0.0, load.uncached_blocks - entry.uncached_blocks)
            # A finished request's prefill is done: whatever events did not account for goes now.
            load.pending_prefill = min(load.pending_prefill, load.uncached_blocks)

    def observe_kv_events(self, replica: ReplicaId, batch: KVEventBatch) -> None:
        """Blocks the engine stored were computed: that much of the replica's pending prefill is done.

        Who calls: whoever applies the replica's KV events to the prefix index, with the same batches.
        Decode blocks are stored too and drain a little early; a few blocks do not change a choice.
        """
        load = self._replicas.get(replica)
        if load is None or load.pending_prefill <= 0.0:
            return
        stored = 0
        for event in batch.events:
            if isinstance(event, KVBlockStored):
                stored += len(event.block_hashes)
        if stored:
            load.pending_prefill = max(0.0, load.pending_prefill - stored)

    def observe_engine(self, replica: ReplicaId, num_running: int, num_waiting: int) -> None:
        load = self._replicas.setdefault(replica, _ReplicaLoad())
        load.engine_requests = max(0, num_running + num_waiting - load.own_peak_since_report)
        load.own_peak_since_report = load.requests

    def load_blocks(self, replica: ReplicaId) -> float:
        load = self._replicas.get(replica)
        if load is None:
            return 0.0
        return (load.pending_prefill + self._request_blocks * (load.requests + load.engine_requests)
                + self._balance_blocks * load.recent_scaled / self._unit)

    def pending_prefill_blocks(self, replica: ReplicaId) -> float:
        load = self._replicas.get(replica)
        return load.pending_prefill if load else 0.0

    def inflight_requests(self, replica: ReplicaId) -> int:
        load = self._replicas.get(replica)
        return load.requests if load else 0

    def forget_replica(self, replica: ReplicaId) -> None:
        self._replicas.pop(replica, None)
        for request_id in [r for r, e in self._inflight.items() if e.replica == replica]:
            del self._inflight[request_id]
