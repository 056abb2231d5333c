"""The Prometheus metrics (deployments/metrics.py, router/router_metrics.py), read back through
prometheus_client's own text-format parser, as a Prometheus server would read `/metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from configs.reliability_schema import AdmissionConfig
from deployments.admission import AdmissionGate
from deployments.completion_stream import IndexedChunk, Usage
from deployments.metrics import IngressMetrics, arrival_var, exposition, ingress_metrics, observed_generation
from deployments.metrics_middleware import MetricsMiddleware
from engines.types import OutputChunk
from router.replica_stats import ReplicaRoutingStats
from router.router_metrics import RouterMetrics, process_registry

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(registry: CollectorRegistry | None = None) -> Samples:
    """Every sample of a scrape, parsed by the real Prometheus text parser: (name, sorted labels) -> value."""
    body, content_type = exposition(None, registry)
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_router_metrics_round_trip_through_the_parser(registry: CollectorRegistry) -> None:
    metrics = RouterMetrics(registry)
    metrics.record_decision("llm-a", "kv_aware", "routed", 0.5)
    metrics.record_decision("llm-a", "kv_aware", "routed", 1.0)
    metrics.record_decision("llm-a", "kv_aware", "all_full")
    metrics.record_decision("llm-a", "round_robin", "routed")
    metrics.set_prefix_index_blocks("llm-a", "kv_aware", 42)
    metrics.observe_kv_event_lag("llm-a", 0.004)
    metrics.observe_kv_event_lag("llm-a", -3.0)  # the engine's clock ahead of ours: counted as 0
    samples = _samples(registry)
    assert _value(samples, "warmserve_router_decisions_total", deployment="llm-a", policy="kv_aware",
                  outcome="routed") == 2
    assert _value(samples, "warmserve_router_decisions_total", deployment="llm-a", policy="kv_aware",
                  outcome="all_full") == 1
    assert _value(samples, "warmserve_router_decisions_total", deployment="llm-a", policy="round_robin",
                  outcome="routed") == 1
    ratio = {"deployment": "llm-a", "policy": "kv_aware"}
    assert _value(samples, "warmserve_router_matched_prefix_ratio_count", **ratio) == 2
    assert _value(samples, "warmserve_router_matched_prefix_ratio_sum", **ratio) == 1.5
    assert _value(samples, "warmserve_router_matched_prefix_ratio_bucket", le="0.5", **ratio) == 1
    assert _value(samples, "warmserve_router_prefix_index_blocks", **ratio) == 42
    assert _value(samples, "warmserve_kv_event_lag_seconds_count", deployment="llm-a") == 2
    assert _value(samples, "warmserve_kv_event_lag_seconds_bucket", deployment="llm-a", le="0.005") == 2
    assert _value(samples, "warmserve_kv_event_lag_seconds_sum", deployment="llm-a") == pytest.approx(0.004)


def test_replica_gauges_follow_the_replica_set(registry: CollectorRegistry) -> None:
    metrics = RouterMetrics(registry)
    metrics.set_replica("llm-a", "r1", ReplicaRoutingStats(num_running=3, num_waiting=1, kv_cache_usage=0.25), True)
    metrics.set_replica("llm-a", "r2", ReplicaRoutingStats(engine_healthy=False), False)
    samples = _samples(registry)
    assert _value(samples, "warmserve_replica_kv_cache_usage_ratio", deployment="llm-a", replica="r1") == 0.25
    assert _value(samples, "warmserve_replica_running_requests", deployment="llm-a", replica="r1") == 3
    assert _value(samples, "warmserve_replica_waiting_requests", deployment="llm-a", replica="r1") == 1
    assert _value(samples, "warmserve_replica_healthy", deployment="llm-a", replica="r1") == 1
    assert ("warmserve_replica_healthy", (("deployment", "llm-a"), ("replica", "r2"))) in samples
    assert _value(samples, "warmserve_replica_healthy", deployment="llm-a", replica="r2") == 0
    metrics.remove_replica("llm-a", "r2")
    metrics.remove_replica("llm-a", "never-seen")  # no error
    replicas = {dict(labels).get("replica") for (name, labels) in _samples(registry)
                if name.startswith("warmserve_replica_")}
    assert replicas == {"r1"}


def _chunk(tokens: int, finish: str | None = None, cached: int | None = None) -> OutputChunk:
    return OutputChunk("r", list(range(tokens)), "x" * tokens, finish_reason=finish, num_cached_prompt_tokens=cached)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _engine_stream(clock: _Clock, items: list[tuple[float, IndexedChunk]]) -> AsyncIterator[IndexedChunk]:
    for delay, item in items:
        clock.now += delay
        yield item


def test_generation_latencies_and_tokens(registry: CollectorRegistry) -> None:
    metrics, clock = IngressMetrics(registry), _Clock()
    usage = Usage(prompt_tokens=20, completion_tokens=0, cached_tokens=16)
    items = [(0.25, IndexedChunk(0, _chunk(1, cached=16))),  # TTFT 0.25 s
             (0.0, IndexedChunk(1, _chunk(1))),  # choice 1's first token: no gap yet
             (0.04, IndexedChunk(0, _chunk(2))),  # 0.04 s for 2 tokens: ITL 0.02 s
             (0.01, IndexedChunk(1, _chunk(0, finish="stop"))),  # no tokens: no ITL
             (0.02, IndexedChunk(0, _chunk(1, finish="stop")))]  # 0.03 s since choice 0's last: ITL 0.03 s

    async def run() -> int:
        seen = 0
        async for item in observed_generation("m", _engine_stream(clock, items), usage, metrics, clock):
            usage.completion_tokens += len(item.chunk.token_ids)
            seen += 1
        return seen

    assert asyncio.run(run()) == len(items)
    samples = _samples(registry)
    assert _value(samples, "warmserve_time_to_first_token_seconds_count", model="m") == 1
    assert _value(samples, "warmserve_time_to_first_token_seconds_sum", model="m") == pytest.approx(0.25)
    assert _value(samples, "warmserve_inter_token_latency_seconds_count", model="m") == 2
    assert _value(samples, "warmserve_inter_token_latency_seconds_sum", model="m") == pytest.approx(0.05)
    assert _value(samples, "warmserve_e2e_request_latency_seconds_sum", model="m") == pytest.approx(0.32)
    assert _value(samples, "warmserve_prompt_tokens_total", model="m") == 20
    assert _value(samples, "warmserve_cached_prompt_tokens_total", model="m") == 16
    assert _value(samples, "warmserve_generation_tokens_total", model="m") == 5
    assert _value(samples, "warmserve_generations_total", model="m", outcome="ok") == 1


def test_a_stream_closed_early_counts_tokens_but_no_e2e(registry: CollectorRegistry) -> None:
    metrics, clock = IngressMetrics(registry), _Clock()
    usage = Usage(prompt_tokens=7)
    closed = []

    async def engine() -> AsyncIterator[IndexedChunk]:
        try:
            for _ in range(10):
                clock.now += 0.1
                usage.completion_tokens += 1
                yield IndexedChunk(0, _chunk(1))
        finally:
            closed.append(True)

    async def run() -> None:
        stream = observed_generation("m", engine(), usage, metrics, clock)
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # the client went away

    asyncio.run(run())
    samples = _samples(registry)
    assert closed == [True]  # closing the wrapper closed the engine stream
    assert _value(samples, "warmserve_generation_tokens_total", model="m") == 2
    assert _value(samples, "warmserve_prompt_tokens_total", model="m") == 7
    assert _value(samples, "warmserve_e2e_request_latency_seconds_count", model="m") == 0
    assert _value(samples, "warmserve_generations_total", model="m", outcome="cancelled") == 1
    assert _value(samples, "warmserve_generations_total", model="m", outcome="ok") == 0


def test_a_failed_generation_counts_as_an_error(registry: CollectorRegistry) -> None:
    metrics = IngressMetrics(registry)

    async def engine() -> AsyncIterator[IndexedChunk]:
        yield IndexedChunk(0, _chunk(1))
        raise RuntimeError("engine bug")

    async def run() -> None:
        async for _ in observed_generation("m@v2", engine(), Usage(), metrics):
            pass

    with pytest.raises(RuntimeError, match="engine bug"):
        asyncio.run(run())
    samples = _samples(registry)
    assert _value(samples, "warmserve_generations_total", model="m@v2", outcome="error") == 1
    assert _value(samples, "warmserve_generations_total", model="m@v2", outcome="ok") == 0


def test_times_start_at_the_request_arrival(registry: CollectorRegistry) -> None:
    metrics, clock = IngressMetrics(registry), _Clock()

    async def run() -> None:
        arrival_var().set(clock.now - 1.0)  # arrived a second ago (tokenizing, admission...)
        async for _ in observed_generation("m", _engine_stream(clock, [(0.5, IndexedChunk(0, _chunk(1)))]),
                                           Usage(), metrics, clock):
            pass

    asyncio.run(run())
    samples = _samples(registry)
    assert _value(samples, "warmserve_time_to_first_token_seconds_sum", model="m") == pytest.approx(1.5)


def test_queue_depth_reads_the_admission_gates(registry: CollectorRegistry) -> None:
    metrics = IngressMetrics(registry)
    gate = AdmissionGate(AdmissionConfig(), "m")
    metrics.watch_admission({"m": gate})
    ticket = gate.admit(None, 3)
    assert _value(_samples(registry), "warmserve_queue_depth", model="m") == 3
    ticket.release()
    assert _value(_samples(registry), "warmserve_queue_depth", model="m") == 0


def test_vision_batch_sizes(registry: CollectorRegistry) -> None:
    metrics = IngressMetrics(registry)
    metrics.observe_vision_batches("resnet", "onnxruntime", [8, 3])
    metrics.observe_vision_batches("resnet", "onnxruntime", [])
    samples = _samples(registry)
    labels = {"model": "resnet", "backend": "onnxruntime"}
    assert _value(samples, "warmserve_vision_batch_size_count", **labels) == 2
    assert _value(samples, "warmserve_vision_batch_size_sum", **labels) == 11
    assert _value(samples, "warmserve_vision_batch_size_bucket", le="4.0", **labels) == 1


def _counted_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(MetricsMiddleware)

    @app.get("/v1/things/{name}")
    async def thing(name: str) -> dict[str, object]:
        return {"name": name, "arrival_known": arrival_var().get() is not None}

    @app.get("/v1/fails")
    async def fails() -> None:
        raise RuntimeError("boom")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _requests_total(route: str, status: str, method: str = "GET") -> float:
    return _value(_samples(process_registry()), "warmserve_requests_total", route=route, method=method,
                  status=status)


def test_middleware_counts_api_responses_by_route_template() -> None:
    client = TestClient(_counted_app(), raise_server_exceptions=False)
    before = {key: _requests_total(*key) for key in [("/v1/things/{name}", "200"), ("unmatched", "404"),
                                                     ("/v1/fails", "500"), ("/health", "200")]}
    first = client.get("/v1/things/a")
    assert first.json() == {"name": "a", "arrival_known": True}
    client.get("/v1/things/b")
    assert client.get("/v1/nothing-here").status_code == 404
    assert client.get("/v1/fails").status_code == 500
    client.get("/health")  # not an API route: not counted
    assert _requests_total("/v1/things/{name}", "200") - before[("/v1/things/{name}", "200")] == 2
    assert _requests_total("unmatched", "404") - before[("unmatched", "404")] == 1
    assert _requests_total("/v1/fails", "500") - before[("/v1/fails", "500")] == 1
    assert _requests_total("/health", "200") == before[("/health", "200")] == 0
    labels = {dict(labels)["route"] for (name, labels) in _samples(process_registry())
              if name == "warmserve_requests_total"}
    assert "/v1/things/a" not in labels  # templates, never raw paths


def test_middleware_names_the_route_of_a_request_answered_before_routing() -> None:
    """The security middleware answers 401/413 before Starlette routes: the template is still found."""
    app = _counted_app()

    async def refuse(scope, receive, send) -> None:  # answers without routing, like SecurityMiddleware
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = MetricsMiddleware(refuse)
    scope = {"type": "http", "method": "GET", "path": "/app/v1/things/x", "root_path": "/app", "app": app,
             "headers": [], "query_string": b""}
    sent = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message) -> None:
        sent.append(message)

    before = _requests_total("/v1/things/{name}", "401")
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == 401
    assert _requests_total("/v1/things/{name}", "401") - before == 1


def test_process_metrics_are_one_registry() -> None:
    assert ingress_metrics().registry is process_registry()
    names = {family.name for family in text_string_to_metric_families(exposition(None)[0].decode())}
    assert {"warmserve_requests", "warmserve_time_to_first_token_seconds", "warmserve_router_decisions",
            "warmserve_replica_kv_cache_usage_ratio", "warmserve_queue_depth", "warmserve_vision_batch_size",
            "warmserve_kv_event_lag_seconds"} <= names


def test_openmetrics_when_asked() -> None:
    body, content_type = exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
