"""Tracing helpers with the SDK's in-memory exporter: spans, parents and attributes (no Ray)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from configs.observability_schema import TracingConfig
from deployments.openai_protocol import ChatCompletionRequest
from deployments.prompt_encoding import chat_prompt_ids
from deployments.tracing import configure_tracing, end_span
from engines.trace_context import carrier_of, context_from_carrier, context_from_headers, trace_id_of, tracer
from engines.types import GenerationRequest, SamplingSpec
from router.kv_policy import Decision
from router.routing_trace import record_routing_span

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # One provider per process (OpenTelemetry allows one): installed by the first test that asks.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        assert configure_tracing(TracingConfig(), "unit-test", exporter=EXPORTER)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def _finished(exporter: InMemorySpanExporter) -> dict[str, object]:
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    return {s.name: s for s in exporter.get_finished_spans()}


def test_tracing_is_off_without_an_endpoint() -> None:
    # A fresh interpreter: this one may have the SDK installed by another test already.
    probe = ("from opentelemetry import trace; from configs.observability_schema import TracingConfig; "
             "from deployments.tracing import configure_tracing; "
             "print(configure_tracing(TracingConfig(), 'x'), type(trace.get_tracer_provider()).__name__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "ProxyTracerProvider"]


def test_a_client_traceparent_is_continued_and_carried_across_processes(spans: InMemorySpanExporter) -> None:
    client = context_from_headers({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    root = tracer().start_span("root", context=client)
    assert trace_id_of(root) == "0af7651916cd43dd8448eb211c80319c"
    carrier = carrier_of(root)
    assert carrier is not None and carrier["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    child = tracer().start_span("child", context=context_from_carrier(carrier))
    child.end()
    end_span(root, 503)
    finished = _finished(spans)
    assert finished["child"].parent.span_id == root.get_span_context().span_id
    assert finished["root"].attributes["http.response.status_code"] == 503
    assert finished["root"].status.status_code == trace.StatusCode.ERROR
    assert context_from_carrier(None) is None and carrier_of(trace.INVALID_SPAN) is None


class OneCharTokenizer:
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return "".join(m["content"] for m in messages)

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_template_and_tokenize_are_spans_of_the_request(spans: InMemorySpanExporter) -> None:
    body = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hey"}]})
    with tracer().start_as_current_span("request") as parent:
        assert chat_prompt_ids(OneCharTokenizer(), body) == [104, 101, 121]  # type: ignore[arg-type]
    finished = _finished(spans)
    for name in ("ingress.template", "ingress.tokenize"):
        assert finished[name].parent.span_id == parent.get_span_context().span_id
    assert finished["ingress.tokenize"].attributes["gen_ai.usage.input_tokens"] == 3


def test_the_routing_span_names_the_choice_and_every_candidates_cost(spans: InMemorySpanExporter) -> None:
    attempt = tracer().start_span("llm.attempt")
    request = GenerationRequest("r", [1, 2], SamplingSpec(max_tokens=4), trace_context=carrier_of(attempt))
    record_routing_span(request, "kv_aware", Decision("rep-a", 3, 4, {"rep-a": 2.0, "rep-b": 9.5}), 1)
    record_routing_span(GenerationRequest("untraced", [1], SamplingSpec(max_tokens=1)), "kv_aware",
                        Decision("rep-a", 0, 1, {"rep-a": 1.0}), 1)  # no trace context: no span
    attempt.end()
    finished = _finished(spans)
    route = finished["router.choose_replica"]
    assert route.parent.span_id == attempt.get_span_context().span_id
    assert dict(route.attributes) == {
        "warmserve.router.policy": "kv_aware", "warmserve.router.replica": "rep-a",
        "warmserve.router.matched_blocks": 3, "warmserve.router.prompt_blocks": 4,
        "warmserve.router.candidates": ("rep-a", "rep-b"),
        "warmserve.router.cost.rep-a": 2.0, "warmserve.router.cost.rep-b": 9.5}
    assert len(spans.get_finished_spans()) == 2
