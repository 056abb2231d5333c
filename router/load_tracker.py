"""Per-replica load in KV blocks: this router's own in-flight requests, topped up by the engine's view.

The router counts what it sent (exact, updated the moment a request is routed or finishes) and reads each
engine's running + waiting request counts from replica stats (periodic, but it also sees requests other
routers sent). Load = own in-flight work + the engine's extra requests at the mean size of our own, so a
replica busy with another ingress's traffic is not mistaken for idle. Pure logic: clocks and Ray stay out.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.prefix_index import ReplicaId

# Used for requests other routers sent before this router has seen any request of its own.
DEFAULT_REQUEST_BLOCKS = 4.0


@dataclass(slots=True)
class _InFlight:
    replica: ReplicaId
    work_blocks: float


@dataclass(slots=True)
class _ReplicaLoad:
    work_blocks: float = 0.0
    requests: int = 0
    engine_requests: int = 0  # running + waiting the engine reported beyond our own: other routers' work
    # Most of our own requests in flight since the engine's previous report: the engine's count was taken
    # somewhere in that interval, so only what exceeds this peak is surely someone else's work (a stale
    # report must not turn our own finished requests into phantom load).
    own_peak_since_report: int = 0


class ReplicaLoadTracker:
    """Who calls: the Serve adapter (and the simulator) on every routed and finished request, and when
    replica stats arrive. Not thread-safe: one owner (the router's event loop)."""

    def __init__(self, block_size: int) -> None:
        self._block_size = block_size
        self._inflight: dict[str, _InFlight] = {}
        self._replicas: dict[ReplicaId, _ReplicaLoad] = {}

    def request_work_blocks(self, uncached_prompt_blocks: int, max_tokens: int) -> float:
        """A request's work in blocks: the prompt blocks it must compute plus the blocks it will decode
        (fractional: a one-token answer is 1/block_size of a block, not a whole one)."""
        return uncached_prompt_blocks + max_tokens / self._block_size

    def started(self, request_id: str, replica: ReplicaId, uncached_prompt_blocks: int, max_tokens: int) -> None:
        work = self.request_work_blocks(uncached_prompt_blocks, max_tokens)
        self.finished(request_id)  # a retried id must not count twice
        self._inflight[request_id] = _InFlight(replica, work)
        load = self._replicas.setdefault(replica, _ReplicaLoad())
        load.work_blocks += work
        load.requests += 1
        load.own_peak_since_report = max(load.own_peak_since_report, load.requests)

    def finished(self, request_id: str) -> None:
        entry = self._inflight.pop(request_id, None)
        if entry is None:
            return
        load = self._replicas.get(entry.replica)
        if load is not None:
            load.work_blocks = max(0.0, load.work_blocks - entry.work_blocks)
            load.requests = max(0, load.requests - 1)

    def observe_engine(self, replica: ReplicaId, num_running: int, num_waiting: int) -> None:
        load = self._replicas.setdefault(replica, _ReplicaLoad())
        load.engine_requests = max(0, num_running + num_waiting - load.own_peak_since_report)
        load.own_peak_since_report = load.requests

    def load_blocks(self, replica: ReplicaId) -> float:
        load = self._replicas.get(replica)
        if load is None:
            return 0.0
        mean = load.work_blocks / load.requests if load.requests else DEFAULT_REQUEST_BLOCKS
        return load.work_blocks + load.engine_requests * mean

    def inflight_requests(self, replica: ReplicaId) -> int:
        load = self._replicas.get(replica)
        return load.requests if load else 0

    def forget_replica(self, replica: ReplicaId) -> None:
        self._replicas.pop(replica, None)
        for request_id in [r for r, e in self._inflight.items() if e.replica == replica]:
            del self._inflight[request_id]
