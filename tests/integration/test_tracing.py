"""One streamed chat request's trace, through real Ray Serve and the real OTLP/HTTP exporter, received
by an OTLP receiver on loopback: every span of the request path, parented as the request flowed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import DeployedApp, deploy_profile
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration
ROOT = "POST /v1/chat/completions"
EXPECTED = {ROOT, "ingress.parse", "ingress.template", "ingress.tokenize", "llm.attempt", "router.choose_replica",
            "serve.queue", "replica.generate"}


@pytest.fixture(scope="module")
def traced_app(serve_instance: None, otlp_receiver: OtlpReceiver) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("test-fake", "traced", "/traced", cluster_overrides={"observability": {"tracing": {
        "otlp_endpoint": otlp_receiver.endpoint, "export_delay_s": 0.2}}})
    serve.delete("traced")


def test_a_streamed_chat_request_is_one_trace_across_ingress_router_and_replica(
        traced_app: DeployedApp, otlp_receiver: OtlpReceiver) -> None:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    body = {"model": traced_app.model, "messages": [{"role": "user", "content": "trace me"}], "max_tokens": 12,
            "stream": True}
    with httpx.stream("POST", f"{traced_app.base_url}/chat/completions", json=body, timeout=60,
                      headers={"traceparent": f"00-{trace_id}-{client_span}-01"}) as response:
        assert response.status_code == 200
        assert response.headers["x-trace-id"] == trace_id  # the client's trace continued, and said so
        assert response.read().endswith(b"data: [DONE]\n\n")

    spans = otlp_receiver.wait_for_trace(trace_id, EXPECTED)
    by_name = {s.name: s for s in spans}
    assert EXPECTED <= set(by_name), sorted(by_name)
    root, attempt = by_name[ROOT], by_name["llm.attempt"]
    assert root.parent_span_id == client_span and root.service == "ingress"
    for name in ("ingress.parse", "ingress.template", "ingress.tokenize", "llm.attempt"):
        assert by_name[name].parent_span_id == root.span_id, name
    for name in ("ingress.template", "ingress.tokenize"):  # off the event loop, on the model's own thread
        assert by_name[name].attributes["thread.name"].startswith("tokenizer-"), by_name[name].attributes
    for name in ("router.choose_replica", "serve.queue", "replica.generate"):
        assert by_name[name].parent_span_id == attempt.span_id, name
    assert by_name["replica.generate"].service == "llm-replica"

    route = by_name["router.choose_replica"].attributes
    assert route["warmserve.router.policy"] == "kv_aware"
    candidates = route["warmserve.router.candidates"]
    assert len(candidates) == 2 and route["warmserve.router.replica"] in candidates
    assert all(isinstance(route[f"warmserve.router.cost.{c}"], float) for c in candidates)
    assert route["warmserve.router.replica"] == attempt.attributes["warmserve.replica"]

    generate = by_name["replica.generate"]
    assert "first_token" in generate.events and generate.attributes["gen_ai.usage.output_tokens"] == 12
    assert "first_token" in root.events and root.attributes["gen_ai.usage.output_tokens"] == 12
    assert root.attributes["http.response.status_code"] == 200
    # A request that completed is no error anywhere in its trace.
    assert [(s.name, s.status_message) for s in spans if s.status == "ERROR"] == []
    # The stream's span lasts until the stream ends, so it encloses the generation.
    assert root.start_ns <= generate.start_ns and generate.end_ns <= root.end_ns


def test_an_untraced_client_gets_a_new_trace_id_and_errors_are_traced(
        traced_app: DeployedApp, otlp_receiver: OtlpReceiver) -> None:
    ok = httpx.post(f"{traced_app.base_url}/chat/completions", timeout=60, json={
        "model": traced_app.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert ok.status_code == 200 and len(ok.headers["x-trace-id"]) == 32
    bad = httpx.post(f"{traced_app.base_url}/chat/completions", timeout=60,
                     headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"},
                     json={"model": traced_app.model, "messages": []})
    assert bad.status_code == 400
    spans = otlp_receiver.wait_for_trace("ab" * 16, {ROOT})
    root = next(s for s in spans if s.name == ROOT)
    assert root.attributes["http.response.status_code"] == 400
