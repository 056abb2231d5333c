"""`warmserve status`'s replica table from a /metrics exposition (the real prometheus_client output)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from cluster.status_table import format_rows, format_subscriber_rows, replica_rows, subscriber_rows
from router.replica_stats import ReplicaRoutingStats
from router.router_metrics import RouterMetrics


def test_rows_come_from_the_routers_replica_gauges() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    metrics.set_replica("llm-m", "r1", ReplicaRoutingStats(num_running=3, num_waiting=1, kv_cache_usage=0.42,
                                                           prefix_cache_hit_rate=0.75), healthy=True)
    metrics.set_replica("llm-m", "r2", ReplicaRoutingStats(), healthy=False)
    rows = replica_rows(generate_latest(registry).decode())
    assert [(r.replica, r.running, r.waiting, r.kv_cache_usage, r.prefix_hit_ratio, r.healthy) for r in rows] == [
        ("r1", 3, 1, 0.42, 0.75, 1.0), ("r2", 0, 0, 0.0, None, 0.0)]
    lines = format_rows(rows)
    assert lines[0].split() == ["deployment/replica", "running", "waiting", "kv", "cache", "prefix", "hit", "health"]
    assert lines[1].split() == ["llm-m/r1", "3", "1", "42%", "75%", "healthy"]
    assert lines[2].split() == ["llm-m/r2", "0", "0", "0%", "-", "UNHEALTHY"]


def test_the_kv_event_subscriber_line_says_whether_the_index_follows_the_engines() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    metrics.watch_subscriber("llm-a", lambda: True)
    metrics.count_kv_event_trouble("llm-a", "decode")
    metrics.watch_subscriber("llm-b", lambda: False)
    lines = format_subscriber_rows(subscriber_rows(generate_latest(registry).decode()))
    assert lines == ["KV events of llm-a: following the engines; survived: 1 decode",
                     "KV events of llm-b: DOWN (the router's prefix index is frozen)"]
