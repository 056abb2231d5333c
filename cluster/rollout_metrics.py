"""Each served version's counters, read from the ingress's `/metrics` (deployments/metrics.py).

With several ingress replicas a scrape of the shared port reaches one of them, so a rollout judges the
share of traffic that replica saw (docs/operations.md, "Rollouts").
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from cluster.rollout_plan import VersionWindow
from cluster.status_table import fetch_metrics


# Per kind of model: the outcome counter, and the latency the canary is compared on (an LLM's time to first
# token; a vision model's whole replica call, its first and only answer). Both kinds fill the same window.
OUTCOMES = ("warmserve_generations_total", "warmserve_vision_requests_total")
LATENCIES = ("warmserve_time_to_first_token_seconds", "warmserve_vision_request_latency_seconds")


def version_counters(metrics_text: str) -> dict[str, VersionWindow]:
    """Cumulative counters by the `model` label (the served name, `chat@v2`, `resnet@v2`)."""
    counters: dict[str, VersionWindow] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            if sample.name in OUTCOMES:
                window = counters.setdefault(model, VersionWindow())
                if sample.labels.get("outcome") == "ok":
                    window.ok += sample.value
                elif sample.labels.get("outcome") == "error":
                    window.errors += sample.value
            elif sample.name.endswith("_sum") and sample.name.removesuffix("_sum") in LATENCIES:
                counters.setdefault(model, VersionWindow()).ttft_sum_s += sample.value
            elif sample.name.endswith("_count") and sample.name.removesuffix("_count") in LATENCIES:
                counters.setdefault(model, VersionWindow()).ttft_count += sample.value
    return counters


def scrape_versions(root_url: str, api_key: str | None) -> dict[str, VersionWindow]:
    return version_counters(fetch_metrics(root_url, api_key))


def window_between(earlier: dict[str, VersionWindow], later: dict[str, VersionWindow],
                   versions: list[str]) -> VersionWindow:
    """What `versions` did together between two scrapes."""
    total = VersionWindow()
    for name in versions:
        total = total.plus(later.get(name, VersionWindow()).minus(earlier.get(name, VersionWindow())))
    return total
