"""Prometheus metrics of the request routers, and the process's metrics registry.

Serve runs a DeploymentHandle's request router in the handle's own process, the ingress replica, so the
routers and the ingress record into one `prometheus_client` registry per ingress process, which the ingress
serves at `GET /metrics` (`deployments/metrics.py` defines the ingress's own metrics on the same registry
and documents the whole set). The registry lives here, in the lowest layer that records into it, because
routers may not import from `deployments`.

Label values are bounded: `deployment` is a Serve deployment name, `policy` one of warmserve's router
policies, `outcome` one of `OUTCOMES`, `replica` a live replica's id (removed when the replica goes away).
prometheus_client is thread-safe, so the KV event subscriber's thread could record too.

State is looked up through the module at call time (`process_registry`, `router_metrics`), never
captured: Serve ships router classes and the FastAPI app to the ingress process by value (cloudpickle),
and a captured module global would arrive there as a private copy that nothing scrapes.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router.replica_stats import ReplicaRoutingStats

# routed: a replica was chosen by cost (kv_aware) or in turn (round_robin); all_full: every queue looked
# full in the router's cached view, so Serve was left to probe every candidate.
OUTCOMES = ("routed", "all_full")
MATCHED_PREFIX_RATIO_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
KV_EVENT_LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RouterMetrics:
    """The routers' metrics on one registry. Called from the routers' event loop (Serve's router loop)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "warmserve_router_decisions", "Routing decisions the request routers of this process made",
            ("deployment", "policy", "outcome"), registry=registry)
        self.matched_prefix_ratio = Histogram(
            "warmserve_router_matched_prefix_ratio",
            "Share of the prompt's full KV blocks already cached on the chosen replica (kv_aware)",
            ("deployment", "policy"), buckets=MATCHED_PREFIX_RATIO_BUCKETS, registry=registry)
        self.prefix_index_blocks = Gauge(
            "warmserve_router_prefix_index_blocks", "Distinct block keys in the router's prefix index",
            ("deployment", "policy"), registry=registry)
        self.kv_event_lag_s = Histogram(
            "warmserve_kv_event_lag_seconds",
            "From an engine publishing a KV event batch (its wall-clock timestamp) to the router's index "
            "applying it", ("deployment",), buckets=KV_EVENT_LAG_BUCKETS_S, registry=registry)
        self.kv_event_errors = Counter(
            "warmserve_kv_event_errors",
            "KV event trouble the router survived: gap (lost messages; the replica's entries were reset and "
            "replayed), decode (a malformed message, dropped), apply (applying a batch to the index failed), "
            "connect (an endpoint it cannot follow), replay (a replay without a complete answer), restart "
            "(the subscriber's loop restarted on fresh sockets)", ("deployment", "kind"), registry=registry)
        self.kv_event_subscriber_up = Gauge(
            "warmserve_kv_event_subscriber_up",
            "1 while the router's KV event subscriber thread runs; 0 means its prefix index no longer "
            "follows the engines", ("deployment",), registry=registry)
        self.replica_kv_cache_usage = Gauge(
            "warmserve_replica_kv_cache_usage_ratio", "KV cache in use on the replica's engine (0..1), as reported",
            ("deployment", "replica"), registry=registry)
        self.replica_healthy = Gauge(
            "warmserve_replica_healthy",
            "1 while the replica's engine reports itself healthy and this process has not excluded it after "
            "a failure, else 0", ("deployment", "replica"), registry=registry)
        self.replica_running = Gauge(
            "warmserve_replica_running_requests", "Requests running on the replica's engine, as reported",
            ("deployment", "replica"), registry=registry)
        self.replica_prefix_hit = Gauge(
            "warmserve_replica_prefix_cache_hit_ratio",
            "Share of prompt tokens the replica's engine found in its prefix cache, over its lifetime, as reported",
            ("deployment", "replica"), registry=registry)
        self.replica_waiting = Gauge(
            "warmserve_replica_waiting_requests", "Requests queued in the replica's engine, as reported",
            ("deployment", "replica"), registry=registry)
        self._replica_gauges = (self.replica_kv_cache_usage, self.replica_healthy, self.replica_running,
                                self.replica_waiting, self.replica_prefix_hit)

    def record_decision(self, deployment: str, policy: str, outcome: str,
                        matched_prefix_ratio: float | None = None) -> None:
        """One decision; `matched_prefix_ratio` (0..1) where the policy knows it."""
        self.decisions.labels(deployment, policy, outcome).inc()
        if matched_prefix_ratio is not None:
            self.matched_prefix_ratio.labels(deployment, policy).observe(matched_prefix_ratio)

    def set_prefix_index_blocks(self, deployment: str, policy: str, blocks: int) -> None:
        self.prefix_index_blocks.labels(deployment, policy).set(blocks)

    def observe_kv_event_lag(self, deployment: str, lag_s: float) -> None:
        """Clamped at 0: the engine's clock may run ahead of this node's."""
        self.kv_event_lag_s.labels(deployment).observe(max(0.0, lag_s))

    def watch_subscriber(self, deployment: str, alive: Callable[[], bool]) -> None:
        """`kv_event_subscriber_up` is read from `alive` at each scrape."""
        self.kv_event_subscriber_up.labels(deployment).set_function(lambda: 1.0 if alive() else 0.0)

    def count_kv_event_trouble(self, deployment: str, kind: str) -> None:
        self.kv_event_errors.labels(deployment, kind).inc()

    def set_replica(self, deployment: str, replica: str, stats: ReplicaRoutingStats, healthy: bool) -> None:
        """The replica's latest routing stats (on every `update_replicas`)."""
        self.replica_kv_cache_usage.labels(deployment, replica).set(stats.kv_cache_usage)
        self.replica_healthy.labels(deployment, replica).set(1.0 if healthy else 0.0)
        self.replica_running.labels(deployment, replica).set(stats.num_running)
        self.replica_waiting.labels(deployment, replica).set(stats.num_waiting)
        if stats.prefix_cache_hit_rate is not None:
            self.replica_prefix_hit.labels(deployment, replica).set(stats.prefix_cache_hit_rate)

    def remove_replica(self, deployment: str, replica: str) -> None:
        """The replica is gone: its series disappear instead of freezing at their last value."""
        for gauge in self._replica_gauges:
            try:
                gauge.remove(deployment, replica)
            except KeyError:  # never reported
                pass


_PROCESS_REGISTRY = CollectorRegistry()
_PROCESS_ROUTER_METRICS = RouterMetrics(_PROCESS_REGISTRY)


def process_registry() -> CollectorRegistry:
    """The process's registry: routers and the ingress record into it, `/metrics` serves it."""
    import router.router_metrics as metrics_module

    return metrics_module._PROCESS_REGISTRY


def router_metrics() -> RouterMetrics:
    """The routers' metrics on the process registry (see the module docstring for why a function)."""
    import router.router_metrics as metrics_module

    return metrics_module._PROCESS_ROUTER_METRICS
