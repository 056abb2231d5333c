"""Ray Serve request routers for the LLM deployment: the KV-aware router and a round-robin baseline.

The only router module that imports Ray. Serve runs one router per DeploymentHandle (here: in the
ingress replica, on the handle's event loop) and calls `choose_replicas` for each pending request; the
request's first argument is our `GenerationRequest`, so the prompt's token ids are hashed right here.
Replica load and KV event endpoints arrive as Serve routing stats (`LLMReplica.record_routing_stats`);
KV events arrive on the subscriber's thread and are applied on the router's loop, so the index has one
owner. Every decision is logged at debug level and counted in the process's Prometheus registry
(`router/router_metrics.py`), which the ingress serves at `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from engines.types import GenerationRequest, KVEventBatch
from router.kv_event_subscriber import KVEventSource, KVEventSubscriber
from router.kv_policy import (
    DEFAULT_NEW_PREFIX_SPREAD_BLOCKS,
    DEFAULT_UNCACHED_BLOCK_WEIGHT,
    Candidate,
    Decision,
    KVAwarePolicy,
    NoReplicaAvailable,
    PrefixOwners,
    RoutedBlocks,
)
from router.load_tracker import DEFAULT_BALANCE_BLOCKS, ReplicaLoadTracker
from router.prefix_index import PrefixIndex
from router.replica_exclusions import deployment_key, process_exclusions
from router.replica_stats import ReplicaRoutingStats
from router.router_metrics import router_metrics
from router.routing_trace import record_routing_span

logger = logging.getLogger("warmserve.router")
# Decisions remembered between `choose_replicas` and completion; requests cancelled before being routed
# never complete, so the map is bounded and the oldest entries go first.
MAX_TRACKED_REQUESTS = 100_000


@dataclass(slots=True)
class _Routing:
    keys: list[int]
    max_tokens: int
    decision: Decision | None = None


def _is_full(replica: RunningReplica) -> bool:
    return ReplicaRoutingStats.from_dict(replica.routing_stats).is_full


# A replica whose engine reports itself dead, before any call to it failed, stays out this long at most.
DEFAULT_EXCLUDE_S = 30.0


def usable_replicas(deployment: str, candidates: list[RunningReplica]) -> list[RunningReplica]:
    """The candidates not excluded after a failure; all of them when every one is (better to try a
    suspect replica than to fail a request outright: its failure is retried)."""
    exclusions = process_exclusions()
    usable = [r for r in candidates if not exclusions.is_excluded(deployment, r.replica_id.unique_id)]
    return usable or candidates


def observe_replica_health(deployment: str, replicas: list[RunningReplica], exclude_s: float) -> None:
    """Feed each replica's reported engine health to the exclusion registry (on every stats update)."""
    exclusions = process_exclusions()
    for replica in replicas:
        stats = ReplicaRoutingStats.from_dict(replica.routing_stats)
        key = replica.replica_id.unique_id
        if stats.engine_healthy:
            exclusions.observe_stats(deployment, key, stats.reported_at, engine_healthy=True)
        elif not exclusions.is_excluded(deployment, key):
            logger.warning("replica %s reports a dead engine: excluded from routing", key)
            exclusions.exclude(deployment, key, exclude_s)


def record_replica_gauges(deployment: str, exclusion_key: str, replicas: list[RunningReplica],
                          gone: Iterable[str] = ()) -> None:
    """Per-replica metrics from the latest routing stats (after `observe_replica_health`, on every stats
    update); the series of replicas that are `gone` are removed."""
    recorder, exclusions = router_metrics(), process_exclusions()
    for replica in replicas:
        key = replica.replica_id.unique_id
        stats = ReplicaRoutingStats.from_dict(replica.routing_stats)
        healthy = stats.engine_healthy and not exclusions.is_excluded(exclusion_key, key)
        recorder.set_replica(deployment, key, stats, healthy)
    for key in gone:
        recorder.remove_replica(deployment, key)


# The least time between two replays of one replica's KV events (after sequence gaps).
RESYNC_MIN_INTERVAL_S = 5.0


def kv_event_source(stats: ReplicaRoutingStats, own_node_id: str | None) -> KVEventSource | None:
    """Where this router reads a replica's KV events: the engine's local socket on the same node, its
    encrypted relay from another node, or nowhere (another node, no relay)."""
    if stats.kv_events_endpoint is None:
        return None
    if stats.node_id is None or own_node_id is None or stats.node_id == own_node_id:
        return KVEventSource(stats.kv_events_endpoint, replay=stats.kv_events_replay_endpoint)
    if stats.kv_events_remote_endpoint is not None:
        return KVEventSource(stats.kv_events_remote_endpoint, secure=True,
                             replay=stats.kv_events_remote_replay_endpoint)
    return None


def _own_node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (unit tests)
        return None


class KVAwareRequestRouter(RequestRouter):
    """Cost = w x uncached prompt blocks + load; the cheapest accepting replica first, the rest by cost."""

    def initialize_state(self, *, block_size: int, uncached_block_weight: float = DEFAULT_UNCACHED_BLOCK_WEIGHT,
                         balance_blocks: float = DEFAULT_BALANCE_BLOCKS, routed_blocks_ttl_s: float = 5.0,
                         routed_blocks_capacity: int = 16_384, use_kv_events: bool = True,
                         new_prefix_spread_blocks: float = DEFAULT_NEW_PREFIX_SPREAD_BLOCKS,
                         seed: int | None = None, exclude_s: float = DEFAULT_EXCLUDE_S, **_: Any) -> None:
        """Called by Serve with `request_router_kwargs` (built by the app builder from `RouterConfig`)."""
        self._block_size = block_size
        self._index = PrefixIndex(block_size)
        self._routed = RoutedBlocks(ttl_s=routed_blocks_ttl_s, capacity_blocks=routed_blocks_capacity)
        self._owners = PrefixOwners()
        self._policy = KVAwarePolicy(self._index, self._routed, uncached_block_weight=uncached_block_weight,
                                     rng=random.Random(seed), owners=self._owners,
                                     new_prefix_spread_blocks=new_prefix_spread_blocks)
        self._load = ReplicaLoadTracker(block_size, balance_blocks=balance_blocks)
        self._requests: OrderedDict[str, _Routing] = OrderedDict()
        self._use_kv_events = use_kv_events
        self._subscriber: KVEventSubscriber | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live_keys: set[str] = set()
        self._metrics = router_metrics()
        self._deployment_name = self._deployment_id.name  # the `deployment` label of its metrics
        self._exclusion_key = deployment_key(self._deployment_id.app_name, self._deployment_id.name)
        self._exclude_s = exclude_s
        self._cache_dropped: set[str] = set()  # excluded replicas whose index entries are already gone
        self._node_id = _own_node_id()
        self._last_resync: dict[str, float] = {}  # replica -> when a replay was last asked for
        self._remote_replicas_told: set[str] = set()

    # ---- replica set and stats -------------------------------------------------------------------

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        """Serve calls this on the router's loop when replicas or their routing stats change."""
        previous = set(self._replicas)
        super().update_replicas(replicas)
        self._loop = self._event_loop  # Serve's router loop: KV events are applied there
        self._live_keys = {r.replica_id.unique_id for r in replicas}
        observe_replica_health(self._exclusion_key, replicas, self._exclude_s)
        record_replica_gauges(self._deployment_name, self._exclusion_key, replicas)
        endpoints: dict[str, KVEventSource] = {}
        for replica in replicas:
            replica_key = replica.replica_id.unique_id
            stats = ReplicaRoutingStats.from_dict(replica.routing_stats)
            self._load.observe_engine(replica_key, stats.num_running, stats.num_waiting)
            if stats.block_size not in (None, self._block_size):
                logger.warning("replica %s reports block size %s, router hashes %s: prefix matching is off "
                               "for it", replica_key, stats.block_size, self._block_size)
            elif stats.kv_events_endpoint and self._use_kv_events:
                source = kv_event_source(stats, self._node_id)
                if source is not None:
                    endpoints[replica_key] = source
                elif replica_key not in self._remote_replicas_told:
                    self._remote_replicas_told.add(replica_key)
                    logger.info("replica %s runs on another node and its KV events stay there (they carry "
                                "prompt tokens; `engine.kv_events_network: cluster` relays them encrypted): "
                                "routing to it uses this router's own placements", replica_key)
        for gone in previous - set(self._replicas):
            self._forget(gone.unique_id)
        if self._use_kv_events:
            self._ensure_subscriber().set_endpoints(endpoints)
        self._metrics.set_prefix_index_blocks(self._deployment_name, "kv_aware", self._index.size)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._live_keys.discard(replica_id.unique_id)
        self._forget(replica_id.unique_id)
        logger.warning("replica %s died: excluded from routing, its prefix index entries dropped",
                       replica_id.unique_id)

    def _drop_cache_state_of(self, excluded: Iterable[str]) -> None:
        """An excluded replica's engine may have lost its KV cache (it died, or Serve restarts it): what the
        index says it holds is dropped once; events it publishes after recovering rebuild it."""
        for replica_key in excluded:
            if replica_key not in self._cache_dropped:
                self._cache_dropped.add(replica_key)
                self._drop_cache_state(replica_key)

    def _drop_cache_state(self, replica_key: str) -> None:
        self._index.remove_replica(replica_key)
        self._routed.forget_replica(replica_key)

    def _forget(self, replica_key: str) -> None:
        self._cache_dropped.discard(replica_key)
        self._remote_replicas_told.discard(replica_key)
        self._last_resync.pop(replica_key, None)
        process_exclusions().forget(self._exclusion_key, replica_key)
        self._drop_cache_state(replica_key)
        self._load.forget_replica(replica_key)
        self._owners.forget_replica(replica_key)
        self._metrics.remove_replica(self._deployment_name, replica_key)

    def _ask_resync(self, replica_key: str) -> None:
        """Replay the replica's buffered events, at most once per RESYNC_MIN_INTERVAL_S (a publisher that
        keeps dropping messages must not turn every batch into a replay)."""
        now = time.monotonic()
        if self._subscriber is None or now - self._last_resync.get(replica_key, -1e9) < RESYNC_MIN_INTERVAL_S:
            return
        self._last_resync[replica_key] = now
        self._subscriber.request_resync(replica_key)

    def _ensure_subscriber(self) -> KVEventSubscriber:
        if self._subscriber is None:
            deployment = self._deployment_name
            self._subscriber = KVEventSubscriber(
                self._on_batch_from_thread,
                on_trouble=lambda kind: self._metrics.count_kv_event_trouble(deployment, kind),
                on_replay=self._on_replay_from_thread)
            self._metrics.watch_subscriber(deployment, lambda: self._subscriber is not None and self._subscriber.alive)
            self._subscriber.start()
        return self._subscriber

    def _on_batch_from_thread(self, replica_key: str, batch: KVEventBatch) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._apply_batch, replica_key, batch)

    def _on_replay_from_thread(self, replica_key: str) -> None:
        """A replay of the replica's buffered events follows: what the index holds for it is superseded."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._index.reset_replica, replica_key)

    def _apply_batch(self, replica_key: str, batch: KVEventBatch) -> None:
        try:
            self._apply_batch_unguarded(replica_key, batch)
        except Exception:  # one bad batch must not cost the index the ones after it
            self._metrics.count_kv_event_trouble(self._deployment_name, "apply")
            logger.exception("applying a KV event batch from %s failed; dropped", replica_key)

    def _apply_batch_unguarded(self, replica_key: str, batch: KVEventBatch) -> None:
        if replica_key in self._live_keys:  # late events of a removed replica: ignore
            resets = self._index.reset_count(replica_key)
            self._index.apply(replica_key, batch)
            if self._index.reset_count(replica_key) > resets:  # a sequence gap: the view of it was reset
                self._metrics.count_kv_event_trouble(self._deployment_name, "gap")
                self._ask_resync(replica_key)
            self._load.observe_kv_events(replica_key, batch)  # stored blocks: that prefill is done
            # Lag until the index knows: publishing, transport, decoding and the hop onto this loop.
            self._metrics.observe_kv_event_lag(self._deployment_name, time.time() - batch.timestamp_s)
            self._metrics.set_prefix_index_blocks(self._deployment_name, "kv_aware", self._index.size)

    # ---- decisions --------------------------------------------------------------------------------

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        started_ns = time.time_ns()  # the routing span's start (router/routing_trace.py)
        # Every candidate is considered at once, so when all ranks fail the framework must back off
        # rather than spin on the same choice.
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True
        routing = self._routing_for(pending_request)
        usable = usable_replicas(self._exclusion_key, candidate_replicas)
        self._drop_cache_state_of(r.replica_id.unique_id for r in candidate_replicas if r not in usable)
        if self._cache_dropped:  # readmitted replicas: a later exclusion drops their state again
            readmitted = self._cache_dropped.intersection(r.replica_id.unique_id for r in usable)
            self._cache_dropped.difference_update(readmitted)
            for replica_key in readmitted:  # what it still caches comes back from its publisher's replay
                self._ask_resync(replica_key)
        candidate_replicas = usable
        if routing is None or not candidate_replicas:
            return [candidate_replicas] if candidate_replicas else []
        available = {r.replica_id for r in self.select_available_replicas(candidate_replicas)}
        by_key = {r.replica_id.unique_id: r for r in candidate_replicas}
        candidates = [
            Candidate(key, self._load.load_blocks(key), accepting=r.replica_id in available and not _is_full(r))
            for key, r in by_key.items()
        ]
        try:
            decision = self._policy.choose(routing.keys, candidates)
        except NoReplicaAvailable:
            # Every queue looks full in the cached view: let Serve probe them all and take the shortest.
            self._metrics.record_decision(self._deployment_name, "kv_aware", "all_full")
            return [candidate_replicas]
        routing.decision = decision
        self._log_decision(pending_request, decision)
        record_routing_span(pending_request.args[0], "kv_aware", decision, started_ns)  # type: ignore[union-attr]
        ranked = sorted(decision.costs, key=lambda key: (key != decision.replica, decision.costs[key]))
        return [[by_key[key]] for key in ranked]

    def _routing_for(self, pending_request: PendingRequest | None) -> _Routing | None:
        """The request's block keys, hashed once even when Serve asks again after a backoff."""
        if pending_request is None or not pending_request.args:
            return None
        request = pending_request.args[0]
        if not isinstance(request, GenerationRequest):
            return None  # e.g. a `stats` call: any replica will do
        request_id = pending_request.metadata.internal_request_id
        routing = self._requests.get(request_id)
        if routing is None:
            routing = _Routing(self._index.prompt_keys(request.prompt_token_ids), request.sampling.max_tokens)
            self._requests[request_id] = routing
            while len(self._requests) > MAX_TRACKED_REQUESTS:
                self._requests.popitem(last=False)
        return routing

    def _log_decision(self, pending_request: PendingRequest | None, decision: Decision) -> None:
        ratio = decision.matched_blocks / decision.prompt_blocks if decision.prompt_blocks else 0.0
        self._metrics.record_decision(self._deployment_name, "kv_aware", "routed", ratio)
        if logger.isEnabledFor(logging.DEBUG):
            request_id = pending_request.metadata.request_id if pending_request else "?"
            logger.debug("route %s -> %s matched %d/%d blocks costs %s", request_id, decision.replica,
                         decision.matched_blocks, decision.prompt_blocks,
                         {k: round(v, 1) for k, v in decision.costs.items()})

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        process_exclusions().placed(self._exclusion_key, pending_request.metadata.internal_request_id,
                                    replica_id.unique_id)
        routing = self._requests.get(pending_request.metadata.internal_request_id)
        if routing is None:
            return
        replica_key = replica_id.unique_id
        decision = routing.decision
        if decision is not None and decision.replica == replica_key:
            matched = decision.matched_blocks  # counted before the policy marked the prefix as routed here
        else:
            # Serve fell back to a lower rank (the first choice's queue was full): the prefix lands here.
            indexed = self._index.matched_blocks(routing.keys, [replica_key])[replica_key]
            matched = indexed + self._routed.leading_blocks(replica_key, routing.keys, start=indexed)
            self._routed.mark(replica_key, routing.keys)
        self._load.started(pending_request.metadata.internal_request_id, replica_key,
                           len(routing.keys) - matched, routing.max_tokens)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        process_exclusions().completed(self._exclusion_key, internal_request_id)
        self._load.finished(internal_request_id)
        self._requests.pop(internal_request_id, None)


class RoundRobinRequestRouter(RequestRouter):
    """Each request to the next replica in a fixed order: the simplest baseline for comparisons."""

    def initialize_state(self, exclude_s: float = DEFAULT_EXCLUDE_S, **_: Any) -> None:
        self._next = 0
        self._exclusion_key = deployment_key(self._deployment_id.app_name, self._deployment_id.name)
        self._exclude_s = exclude_s
        self._metrics = router_metrics()
        self._deployment_name = self._deployment_id.name

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        previous = {r.unique_id for r in self._replicas}
        super().update_replicas(replicas)
        observe_replica_health(self._exclusion_key, replicas, self._exclude_s)
        record_replica_gauges(self._deployment_name, self._exclusion_key, replicas,
                              gone=previous - {r.unique_id for r in self._replicas})

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True
        if not candidate_replicas:
            return []
        usable = usable_replicas(self._exclusion_key, candidate_replicas)
        ordered = sorted(usable, key=lambda r: r.replica_id.unique_id)
        start = self._next % len(ordered)
        self._next += 1
        if pending_request is not None and pending_request.args and isinstance(pending_request.args[0],
                                                                               GenerationRequest):
            self._metrics.record_decision(self._deployment_name, "round_robin", "routed")
        return [[r] for r in ordered[start:] + ordered[:start]]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        process_exclusions().placed(self._exclusion_key, pending_request.metadata.internal_request_id,
                                    replica_id.unique_id)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        process_exclusions().completed(self._exclusion_key, internal_request_id)
