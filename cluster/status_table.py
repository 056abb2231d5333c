"""`warmserve status`'s per-replica table, read from the ingress's `/metrics` (the replicas' own reports
as the router last saw them): load, KV cache use, prefix-cache hit ratio and health; before it, whether
each router still follows its engines' KV events."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

_FIELDS = {
    "warmserve_replica_running_requests": "running",
    "warmserve_replica_waiting_requests": "waiting",
    "warmserve_replica_kv_cache_usage_ratio": "kv_cache_usage",
    "warmserve_replica_prefix_cache_hit_ratio": "prefix_hit_ratio",
    "warmserve_replica_healthy": "healthy",
}


@dataclass(slots=True)
class ReplicaRow:
    deployment: str
    replica: str
    running: float = 0.0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    prefix_hit_ratio: float | None = None
    healthy: float = 1.0


def replica_rows(metrics_text: str) -> list[ReplicaRow]:
    rows: dict[tuple[str, str], ReplicaRow] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            field = _FIELDS.get(sample.name)
            if field is None:
                continue
            key = (sample.labels.get("deployment", "?"), sample.labels.get("replica", "?"))
            row = rows.setdefault(key, ReplicaRow(*key))
            setattr(row, field, sample.value)
    return [rows[key] for key in sorted(rows)]


def format_rows(rows: list[ReplicaRow]) -> list[str]:
    lines = [f"{'deployment/replica':40} {'running':>7} {'waiting':>7} {'kv cache':>8} {'prefix hit':>10}  health"]
    for row in rows:
        hit = "-" if row.prefix_hit_ratio is None else f"{row.prefix_hit_ratio:.0%}"
        lines.append(f"{row.deployment + '/' + row.replica:40} {row.running:7.0f} {row.waiting:7.0f} "
                     f"{row.kv_cache_usage:8.0%} {hit:>10}  {'healthy' if row.healthy >= 1 else 'UNHEALTHY'}")
    return lines


@dataclass(slots=True)
class SubscriberRow:
    """One deployment's KV event subscriber, as its router reports it."""

    deployment: str
    up: float = 0.0
    troubles: dict[str, float] = field(default_factory=dict)  # kind -> count


def subscriber_rows(metrics_text: str) -> list[SubscriberRow]:
    rows: dict[str, SubscriberRow] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            deployment = sample.labels.get("deployment", "?")
            if sample.name == "warmserve_kv_event_subscriber_up":
                rows.setdefault(deployment, SubscriberRow(deployment)).up = sample.value
            elif sample.name == "warmserve_kv_event_errors_total":
                row = rows.setdefault(deployment, SubscriberRow(deployment))
                row.troubles[sample.labels.get("kind", "?")] = sample.value
    return [rows[key] for key in sorted(rows)]


def format_subscriber_rows(rows: list[SubscriberRow]) -> list[str]:
    lines = []
    for row in rows:
        state = "following the engines" if row.up >= 1 else "DOWN (the router's prefix index is frozen)"
        troubles = ", ".join(f"{count:.0f} {kind}" for kind, count in sorted(row.troubles.items()) if count)
        lines.append(f"KV events of {row.deployment}: {state}" + (f"; survived: {troubles}" if troubles else ""))
    return lines


def fetch_metrics(root_url: str, api_key: str | None, timeout_s: float = 10.0) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(f"{root_url}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read().decode()


def replica_table(root_url: str, api_key: str | None) -> list[str]:
    """The KV event subscribers' state, then the table's lines, or one line saying why there is none."""
    try:
        text = fetch_metrics(root_url, api_key)
        rows = replica_rows(text)
    except urllib.error.HTTPError as error:
        hint = " (security.metrics_require_key: pass --api-key)" if error.code == 401 else ""
        return [f"replicas: {root_url}/metrics answered HTTP {error.code}{hint}"]
    except (urllib.error.URLError, OSError) as error:
        return [f"replicas: {root_url}/metrics unreachable ({error})"]
    subscribers = format_subscriber_rows(subscriber_rows(text))
    if not rows:
        return [*subscribers, "replicas: no LLM replica has reported to the router yet"]
    return [*subscribers, *format_rows(rows)]
