"""Prometheus metrics of the ingress process, served at `GET /metrics` in the Prometheus text format.

Built on `prometheus_client` (not Ray's `ray.util.metrics`): one registry per ingress process
(`router.router_metrics.process_registry`), which the ingress serves itself (`deployments/metrics_routes.py`),
so a scrape of the API port sees this process's requests and its request routers' decisions together,
with no Ray metrics agent in between. Serve runs each DeploymentHandle's request router in the handle's
process, so the KV-aware router's metrics (defined in `router/router_metrics.py`) are in the same registry.

**With several ingress replicas each exposes its own share**: its own requests, latencies and tokens, its
own routers' decisions and views of the replicas. Counters and histograms add up across ingress replicas
(`sum by (...)` in PromQL); the per-replica gauges are each router's view of the same replicas, so take
`max` or `avg` of those rather than a sum. Behind HAProxy or Serve's proxy a scrape of the shared API port
reaches one ingress replica at a time; scrape each replica's own address, or run one ingress replica.

Metrics and labels (counters carry prometheus_client's `_total` suffix, histograms `_bucket`/`_sum`/
`_count`; the full table is in docs/operations.md, "Metrics"):

- `warmserve_requests_total{route, method, status}`: every response on a `/v1` or `/v2` route, 4xx and 5xx
  included; `route` is the route template (`/v2/models/{name}/infer`) or `unmatched`; status `499` when
  the client went away before a response started (MetricsMiddleware).
- `warmserve_time_to_first_token_seconds{model}`: the HTTP request's arrival to the first token reaching
  the ingress; `warmserve_inter_token_latency_seconds{model}`: the gap between consecutive token-carrying
  chunks of one choice, per token of the later chunk; `warmserve_e2e_request_latency_seconds{model}`:
  arrival to the last token, for generations that ran to their end.
- `warmserve_prompt_tokens_total{model}`, `warmserve_cached_prompt_tokens_total{model}`,
  `warmserve_generation_tokens_total{model}`: tokens in (of those, found in the prefix cache) and out,
  as in the responses' `usage`.
- `warmserve_generations_total{model, outcome}`: API requests that reached an LLM, by how they ended
  (`ok`, `error` after any failover, `cancelled` when the client went away); a canary's error rate.
- `warmserve_version_fallbacks_total{model}`: requests for a versioned model's bare name that failed on
  version `model` before answering and were answered by another version instead (the client saw no error;
  the failure is also in `warmserve_generations_total{model, outcome="error"}`).
- `warmserve_queue_depth{model}`: engine requests this ingress admitted and not yet finished, waiting for
  a replica or running (`n` choices count `n`; bounded by `admission.max_inflight`).
- `warmserve_vision_requests_total{model, outcome}`: vision infer/classify requests that reached a vision
  replica call, `ok` or `error` (the replica failed, was unavailable or timed out; not the client's bad
  input); `warmserve_vision_request_latency_seconds{model}`: the replica call's duration, for `ok`. A vision
  canary's error rate and latency, as the generation series are an LLM's.
- `warmserve_vision_batch_size{model, backend}`: images per batch a vision replica executed, reported
  once per batch with the results.
- From the routers (`router/router_metrics.py`): `warmserve_router_decisions_total{deployment, policy,
  outcome}`, `warmserve_router_matched_prefix_ratio{deployment, policy}`,
  `warmserve_router_prefix_index_blocks{deployment, policy}`, `warmserve_kv_event_lag_seconds{deployment}`,
  and per LLM replica `warmserve_replica_kv_cache_usage_ratio`, `warmserve_replica_healthy`,
  `warmserve_replica_running_requests`, `warmserve_replica_waiting_requests` (`{deployment, replica}`).

The per-replica series come from warmserve's own routers (`kv_aware`, `round_robin`) and disappear when a
replica goes away; Serve's `pow2` and Ray's `ray_prefix_affinity` routers record none of them.

State is looked up through the module at call time (`ingress_metrics`), never captured: Serve ships the
FastAPI app and the ingress class to the replica by value (cloudpickle), and a captured module global
would arrive as a private copy that `/metrics` never shows.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from deployments.admission import AdmissionGate
from deployments.completion_stream import IndexedChunk, Usage
from router.router_metrics import process_registry

Clock = Callable[[], float]
TTFT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
                  10.0, 20.0, 40.0, 80.0)
ITL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5,
                 5.0)
E2E_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
VISION_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
UNMATCHED_ROUTE = "unmatched"
CLIENT_CLOSED_STATUS = 499  # nginx's code for "client closed the request" (no response was started)


class _QueueDepthCollector(Collector):
    """Reads each model's admission gate at scrape time: nothing to update on the request path."""

    def __init__(self) -> None:
        self.gates: dict[str, AdmissionGate] = {}

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "warmserve_queue_depth", "Engine requests this ingress admitted for the model and not yet finished "
            "(waiting for a replica or running; n choices count n)", labels=["model"])

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for model, gate in sorted(self.gates.items()):
            family.add_metric([model], gate.in_flight)
        yield family


class IngressMetrics:
    """The ingress's metrics on one registry (the process's, or a test's own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "warmserve_requests", "Responses the ingress gave on /v1 and /v2 routes, by route template and status",
            ("route", "method", "status"), registry=registry)
        self.ttft_s = Histogram(
            "warmserve_time_to_first_token_seconds", "HTTP request arrival to the first generated token",
            ("model",), buckets=TTFT_BUCKETS_S, registry=registry)
        self.itl_s = Histogram(
            "warmserve_inter_token_latency_seconds",
            "Gap between consecutive token-carrying chunks of one choice, per token of the later chunk",
            ("model",), buckets=ITL_BUCKETS_S, registry=registry)
        self.e2e_s = Histogram(
            "warmserve_e2e_request_latency_seconds", "HTTP request arrival to the last token (completed generations)",
            ("model",), buckets=E2E_BUCKETS_S, registry=registry)
        self.prompt_tokens = Counter("warmserve_prompt_tokens", "Prompt tokens of requests that produced output",
                                     ("model",), registry=registry)
        self.cached_prompt_tokens = Counter(
            "warmserve_cached_prompt_tokens", "Prompt tokens the engine found in its prefix cache", ("model",),
            registry=registry)
        self.generation_tokens = Counter("warmserve_generation_tokens", "Tokens generated, all choices",
                                         ("model",), registry=registry)
        self.generations = Counter(
            "warmserve_generations", "API requests that reached an LLM, by how they ended: ok (ran to their end), "
            "error (failed, after any failover) or cancelled (the client went away)", ("model", "outcome"),
            registry=registry)
        self.version_fallbacks = Counter(
            "warmserve_version_fallbacks", "Bare-name requests that failed on this version before answering "
            "and were answered by another version", ("model",), registry=registry)
        self.vision_requests = Counter(
            "warmserve_vision_requests", "Vision requests that reached a replica call, by outcome (ok, error)",
            ("model", "outcome"), registry=registry)
        self.vision_latency_s = Histogram(
            "warmserve_vision_request_latency_seconds", "Duration of a vision request's replica call (ok ones)",
            ("model",), buckets=TTFT_BUCKETS_S, registry=registry)
        self.vision_batch_size = Histogram(
            "warmserve_vision_batch_size", "Images per batch a vision replica executed", ("model", "backend"),
            buckets=VISION_BATCH_BUCKETS, registry=registry)
        self._queue_depth = _QueueDepthCollector()
        registry.register(self._queue_depth)

    def record_response(self, route: str, method: str, status: int) -> None:
        self.requests.labels(route, method, str(status)).inc()

    def watch_admission(self, gates: dict[str, AdmissionGate]) -> None:
        """The gates whose `in_flight` is `warmserve_queue_depth` (model -> gate); replaces earlier ones."""
        self._queue_depth.gates = dict(gates)

    def observe_vision_batches(self, model: str, backend: str, batch_sizes: Iterable[int]) -> None:
        for size in batch_sizes:
            self.vision_batch_size.labels(model, backend).observe(size)

    def record_generation_end(self, model: str, usage: Usage, produced_output: bool, e2e_s: float | None,
                              outcome: str = "ok") -> None:
        self.generations.labels(model, outcome).inc()
        if produced_output:
            self.prompt_tokens.labels(model).inc(usage.prompt_tokens)
            self.cached_prompt_tokens.labels(model).inc(usage.cached_tokens)
        if usage.completion_tokens:
            self.generation_tokens.labels(model).inc(usage.completion_tokens)
        if e2e_s is not None:
            self.e2e_s.labels(model).observe(e2e_s)


_PROCESS_INGRESS_METRICS = IngressMetrics(process_registry())
# When the current HTTP request reached the ingress (time.monotonic), set by MetricsMiddleware for the
# route that runs in the same task; None outside a request.
_REQUEST_ARRIVAL_S: ContextVar[float | None] = ContextVar("warmserve_request_arrival_s", default=None)


def _module():  # the real module, not a by-value copy (see the module docstring)
    import deployments.metrics as metrics_module

    return metrics_module


def ingress_metrics() -> IngressMetrics:
    return _module()._PROCESS_INGRESS_METRICS


def arrival_var() -> ContextVar[float | None]:
    """The context variable holding the current request's arrival time (MetricsMiddleware sets it)."""
    return _module()._REQUEST_ARRIVAL_S


def exposition(accept: str | None, registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: the Prometheus text format, or OpenMetrics when `accept` asks."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry if registry is not None else process_registry()), content_type


def watch_admission(gates: dict[str, AdmissionGate]) -> None:
    """Called once by `Ingress.__init__` with each served model's admission gate."""
    ingress_metrics().watch_admission(gates)


def record_vision_call(model: str, latency_s: float | None) -> None:
    """One vision replica call of `model`: its duration when it answered, None when it failed."""
    metrics = ingress_metrics()
    metrics.vision_requests.labels(model, "ok" if latency_s is not None else "error").inc()
    if latency_s is not None:
        metrics.vision_latency_s.labels(model).observe(latency_s)


def observe_vision_batches(model: str, backend: str, batch_sizes: Iterable[int]) -> None:
    """Batch sizes a vision replica reported with its results (each executed batch reported once)."""
    ingress_metrics().observe_vision_batches(model, backend, batch_sizes)


async def observed_generation(model: str, stream: AsyncIterator[IndexedChunk], usage: Usage,
                              metrics: IngressMetrics | None = None,
                              clock: Clock = time.monotonic) -> AsyncIterator[IndexedChunk]:
    """`stream`, passed through unchanged, recording TTFT, ITL, E2E and tokens for `model`.

    Wraps the merged engine stream of one API request (`Ingress._run`), so the streaming and the full-body
    paths are measured alike. Times start at the request's arrival (MetricsMiddleware), or at this call
    outside an HTTP request. Tokens are counted when the stream closes, whatever ended it; E2E only for
    a generation that ran to its end. Closing this closes `stream`.
    """
    recorder = metrics or ingress_metrics()
    started = arrival_var().get()
    if started is None:
        started = clock()
    last_token_at: dict[int, float] = {}  # choice index -> when its latest tokens arrived
    first_seen = finished = False
    outcome = "cancelled"  # unless it ends or fails: closed early (client gone) or cancelled
    try:
        async for item in stream:
            tokens = len(item.chunk.token_ids)
            if tokens:
                now = clock()
                if not first_seen:
                    first_seen = True
                    recorder.ttft_s.labels(model).observe(now - started)
                previous = last_token_at.get(item.index)
                if previous is not None:
                    recorder.itl_s.labels(model).observe((now - previous) / tokens)
                last_token_at[item.index] = now
            yield item
        finished, outcome = True, "ok"
    except Exception:
        outcome = "error"
        raise
    finally:
        try:
            await stream.aclose()  # type: ignore[attr-defined]
        finally:
            recorder.record_generation_end(model, usage, first_seen, clock() - started if finished else None,
                                           outcome)
