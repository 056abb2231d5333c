"""Scraping an app's `/metrics` as Prometheus does: prometheus_client's own text-format parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DeployedApp

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(app: DeployedApp) -> Samples:
    response = httpx.get(f"{app.root_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels; 0 when absent (a counter nothing has touched yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: Samples, name: str, **labels: str) -> list[dict[str, str]]:
    """The label sets of every sample of `name` that carries `labels`."""
    return [dict(key) for (sample, key) in samples if sample == name and labels.items() <= dict(key).items()]
