"""Real vLLM on CPU (SmolLM2, two replicas) behind real Ray Serve, driven by the official openai client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import DeployedApp

pytestmark = pytest.mark.e2e
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(vllm_app: DeployedApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm_app.base_url, api_key="unused", max_retries=0, timeout=180)


def _stream_text(client: openai.OpenAI, model: str, messages: list[dict], max_tokens: int) -> str:
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                            temperature=0, stream=True)
    return "".join(choice.delta.content or "" for chunk in stream for choice in chunk.choices)


def test_greedy_answer_names_paris(client: openai.OpenAI, vllm_app: DeployedApp) -> None:
    r = client.chat.completions.create(model=vllm_app.model, messages=FRANCE, max_tokens=32, temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0


def test_streaming_equals_non_streaming(client: openai.OpenAI, vllm_app: DeployedApp) -> None:
    messages = [{"role": "user", "content": "Name three colors."}]
    full = client.chat.completions.create(model=vllm_app.model, messages=messages, max_tokens=24,
                                          temperature=0)
    assert _stream_text(client, vllm_app.model, messages, 24) == full.choices[0].message.content


def test_completions_endpoint(client: openai.OpenAI, vllm_app: DeployedApp) -> None:
    r = client.completions.create(model=vllm_app.model, prompt="The capital of France is", max_tokens=8,
                                  temperature=0)
    assert "Paris" in r.choices[0].text
    assert r.usage.completion_tokens <= 8


def test_prefix_cache_reports_cached_tokens(client: openai.OpenAI, vllm_app: DeployedApp) -> None:
    messages = [{"role": "system", "content": "You answer questions about geography. " * 12}, *FRANCE]
    cached = [client.chat.completions.create(model=vllm_app.model, messages=messages, max_tokens=1,
                                             temperature=0).usage.prompt_tokens_details.cached_tokens
              for _ in range(5)]
    assert max(cached) >= 64, cached  # at least two 32-token blocks served from the KV cache


@pytest.mark.parametrize(("patch", "status", "param"), [
    ({"model": "gpt-unknown"}, 404, "model"),
    ({"max_tokens": -5}, 400, "max_tokens"),
    ({"n": 1000}, 400, "n"),
    ({"messages": [{"role": "user", "content": "word " * 2100}]}, 400, "messages"),
])
def test_bad_requests(vllm_app: DeployedApp, patch: dict, status: int, param: str) -> None:
    body = {"model": vllm_app.model, "messages": FRANCE, "max_tokens": 4, **patch}
    r = httpx.post(f"{vllm_app.base_url}/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_client_disconnect_aborts_engine_request(vllm_app: DeployedApp, client: openai.OpenAI) -> None:
    body = {"model": vllm_app.model, "messages": FRANCE, "max_tokens": 1500, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{vllm_app.base_url}/chat/completions", json=body, timeout=60) as r:
        for _ in zip(range(3), r.iter_lines()):
            pass  # read a few events, then hang up
    # The server must still answer promptly: the abandoned 1500-token request is not hogging the engine.
    r = client.chat.completions.create(model=vllm_app.model, messages=FRANCE, max_tokens=8, temperature=0,
                                       timeout=60)
    assert r.choices[0].message.content
