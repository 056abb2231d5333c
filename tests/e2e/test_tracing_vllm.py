"""One streamed chat request on real vLLM, traced end to end into the OTLP receiver on loopback."""

from __future__ import annotations

import secrets

import openai
import pytest

from tests.conftest import DeployedApp
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e
EXPECTED = {"POST /v1/chat/completions", "ingress.parse", "ingress.template", "ingress.tokenize", "llm.attempt",
            "router.choose_replica", "serve.queue", "replica.generate"}


def test_a_vllm_stream_is_one_trace_with_every_span(vllm_app: DeployedApp, otlp_receiver: OtlpReceiver) -> None:
    trace_id = secrets.token_hex(16)
    client = openai.OpenAI(base_url=vllm_app.base_url, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=vllm_app.model, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=8, temperature=0, stream=True,
        extra_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert raw.headers["x-trace-id"] == trace_id
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert "Paris" in text

    spans = {s.name: s for s in otlp_receiver.wait_for_trace(trace_id, EXPECTED, timeout_s=60)}
    assert EXPECTED <= set(spans), sorted(spans)
    generate = spans["replica.generate"]
    assert generate.service == "llm-replica" and "first_token" in generate.events
    assert 1 <= generate.attributes["gen_ai.usage.output_tokens"] <= 8
    assert spans["router.choose_replica"].attributes["warmserve.router.replica"] == generate.attributes[
        "warmserve.replica"]
