"""`GET /metrics` of the fake-engine app on real Ray Serve, read with prometheus_client's text parser (what a
Prometheus server reads): request counts by route and status, latency histograms, tokens, the KV-aware
router's decisions and its per-replica view. The session's app is shared, so every count is a difference
between two scrapes around this test's own requests."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from deployments.app_builder import llm_deployment_name
from tests.conftest import DeployedApp
from tests.prometheus_scrape import scrape, series, value

pytestmark = pytest.mark.integration
CHAT_ROUTE = "/v1/chat/completions"


def test_metrics_count_this_tests_requests(fake_app: DeployedApp) -> None:
    client = openai.OpenAI(base_url=fake_app.base_url, api_key="unused", max_retries=0, timeout=60)
    model, deployment = fake_app.model, llm_deployment_name(fake_app.model)
    messages = [{"role": "system", "content": "metrics " + " ".join(f"m{i}" for i in range(40))},
                {"role": "user", "content": "count me"}]
    before = scrape(fake_app)
    replicas = set()
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=4,
                                                               temperature=0)
        replicas.add(raw.headers["x-warmserve-replica"])
        assert raw.parse().usage.completion_tokens > 0
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(
                model=model, messages=messages, max_tokens=4, temperature=0, stream=True) as response:
            replicas.add(response.headers["x-warmserve-replica"])
            assert sum(1 for chunk in response.parse() if chunk.choices and chunk.choices[0].delta.content) > 0
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
    bad = httpx.post(f"{fake_app.base_url}/chat/completions", content=b"{not json",
                     headers={"content-type": "application/json"}, timeout=30)
    assert bad.status_code == 400

    time.sleep(1.0)  # routing stats come every 0.5 s in test-fake
    after = scrape(fake_app)
    # KV events reach the router asynchronously. On a fresh app the router subscribes to a replica's
    # events only once its first routing stats arrive, and ZMQ drops what was published before, so new
    # prompts (on another route and model-level counts taken above) keep coming until a batch is seen.
    deadline = time.monotonic() + 20
    probe = 0
    while True:
        latest = scrape(fake_app)
        lag = (value(latest, "warmserve_kv_event_lag_seconds_count", deployment=deployment)
               - value(before, "warmserve_kv_event_lag_seconds_count", deployment=deployment))
        if lag > 0 or time.monotonic() > deadline:
            break
        probe += 1
        client.completions.create(model=model, prompt=f"lag probe {probe} " + "x " * 40, max_tokens=1)
        time.sleep(0.5)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for status, count in (("200", 5), ("404", 1), ("400", 1)):
        assert delta("warmserve_requests_total", route=CHAT_ROUTE, method="POST", status=status) == count, status
    assert delta("warmserve_time_to_first_token_seconds_count", model=model) == 5
    assert delta("warmserve_e2e_request_latency_seconds_count", model=model) == 5
    assert delta("warmserve_time_to_first_token_seconds_sum", model=model) > 0
    assert delta("warmserve_inter_token_latency_seconds_count", model=model) > 0
    assert delta("warmserve_generation_tokens_total", model=model) >= 5
    assert delta("warmserve_prompt_tokens_total", model=model) > 5 * 40
    assert delta("warmserve_router_decisions_total", deployment=deployment, policy="kv_aware",
                 outcome="routed") >= 5
    assert delta("warmserve_router_matched_prefix_ratio_count", deployment=deployment, policy="kv_aware") >= 5
    assert lag > 0  # the fake engines publish real KV events, which the router applied
    assert value(latest, "warmserve_router_prefix_index_blocks", deployment=deployment, policy="kv_aware") > 0
    assert value(after, "warmserve_queue_depth", model=model) == 0  # every request finished

    healthy = {labels["replica"]: value(after, "warmserve_replica_healthy", **labels)
               for labels in series(after, "warmserve_replica_healthy", deployment=deployment)}
    assert len(healthy) >= 2 and replicas <= set(healthy), (healthy, replicas)  # test-fake runs 2 replicas
    assert all(healthy[replica] == 1 for replica in replicas)
    usage = series(after, "warmserve_replica_kv_cache_usage_ratio", deployment=deployment)
    assert {labels["replica"] for labels in usage} == set(healthy)
    assert all(0 <= value(after, "warmserve_replica_kv_cache_usage_ratio", **labels) <= 1 for labels in usage)


def test_made_up_methods_do_not_grow_the_metrics(fake_app: DeployedApp) -> None:
    """Each HTTP method an unauthenticated client sends would otherwise be a series of its own. The HTTP
    parser refuses tokens it does not know (400, before the ingress); these are the ones it passes."""
    methods = ["PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
               "CHECKOUT", "MERGE", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "LINK", "UNLINK"]
    with httpx.Client(timeout=30) as client:
        for method in methods:
            assert client.request(method, f"{fake_app.base_url}/models").status_code == 405, method
    text = httpx.get(f"{fake_app.root_url}/metrics", timeout=30).text
    assert not any(f'method="{method}"' in text for method in methods)
    samples = scrape(fake_app)
    others = series(samples, "warmserve_requests_total", method="other")
    assert sum(value(samples, "warmserve_requests_total", **labels) for labels in others) >= len(methods)


def test_metrics_is_not_counted_as_an_api_request(fake_app: DeployedApp) -> None:
    scrape(fake_app)
    samples = scrape(fake_app)
    routes = {labels["route"] for labels in series(samples, "warmserve_requests_total")}
    assert "/metrics" not in routes and "/health" not in routes


def test_round_robin_router_is_counted_too(fake_app_round_robin: DeployedApp) -> None:
    app = fake_app_round_robin
    deployment = llm_deployment_name(app.model)
    client = openai.OpenAI(base_url=app.base_url, api_key="unused", max_retries=0, timeout=60)
    before = scrape(app)
    for _ in range(2):
        client.chat.completions.create(model=app.model, messages=[{"role": "user", "content": "rr"}], max_tokens=2)
    after = scrape(app)
    labels = {"deployment": deployment, "policy": "round_robin", "outcome": "routed"}
    assert value(after, "warmserve_router_decisions_total", **labels) - value(
        before, "warmserve_router_decisions_total", **labels) >= 2
    assert len(series(after, "warmserve_replica_healthy", deployment=deployment)) >= 2
