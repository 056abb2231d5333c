"""Real Ray Serve + real HTTP with the deterministic fake engine: the API surface, fast."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import DeployedApp

pytestmark = pytest.mark.integration
CHAT = [{"role": "user", "content": "Hello, how are you today?"}]


@pytest.fixture(scope="module")
def client(fake_app: DeployedApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_app.base_url, api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_configured_model(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    assert [m.id for m in client.models.list().data] == [fake_app.model]


def test_health_and_ready(fake_app: DeployedApp) -> None:
    assert httpx.get(f"{fake_app.root_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{fake_app.root_url}/ready", timeout=30)
    assert ready.status_code == 200, ready.text


def test_chat_non_streaming_matches_streaming(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    full = client.chat.completions.create(model=fake_app.model, messages=CHAT, max_tokens=12, temperature=0)
    assert full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == 12
    assert full.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=fake_app.model, messages=CHAT, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == full.choices[0].message.content
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 12


def test_repeated_prompt_reports_cached_tokens(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    messages = [{"role": "system", "content": "You are terse. " * 20}, *CHAT]
    hits = []
    for _ in range(6):  # two replicas, random routing: some repeats land where the prefix is cached
        r = client.chat.completions.create(model=fake_app.model, messages=messages, max_tokens=2, temperature=0)
        hits.append(r.usage.prompt_tokens_details.cached_tokens)
    assert max(hits) >= 16, hits


def test_n_choices_and_seed(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    r = client.chat.completions.create(model=fake_app.model, messages=CHAT, max_tokens=5, n=3, seed=7,
                                       temperature=1.0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    again = client.chat.completions.create(model=fake_app.model, messages=CHAT, max_tokens=5, n=3, seed=7,
                                           temperature=1.0)
    assert [c.message.content for c in r.choices] == [c.message.content for c in again.choices]
    assert r.usage.completion_tokens == 15


def test_completions_endpoint_text_and_token_prompt(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    r = client.completions.create(model=fake_app.model, prompt="The quick brown fox", max_tokens=4,
                                  temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    ids = client.completions.create(model=fake_app.model, prompt=[5, 6, 7], max_tokens=3, temperature=0)
    assert ids.usage.prompt_tokens == 3


def test_stop_sequence_ends_generation(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    base = client.completions.create(model=fake_app.model, prompt="The quick brown fox jumps", max_tokens=8,
                                     temperature=0).choices[0].text
    stop = base.strip().split()[1] if len(base.split()) > 1 else base.strip()[-2:]
    r = client.completions.create(model=fake_app.model, prompt="The quick brown fox jumps", max_tokens=8,
                                  temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert stop not in r.choices[0].text


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "nope", "messages": CHAT}, 404, "model"),
    ({"model": "MODEL", "messages": CHAT, "max_tokens": -1}, 400, "max_tokens"),
    ({"model": "MODEL", "messages": CHAT, "n": 99}, 400, "n"),
    ({"model": "MODEL", "messages": CHAT, "temperature": 5}, 400, "temperature"),
    ({"model": "MODEL", "messages": []}, 400, "messages"),
    ({"model": "MODEL"}, 400, "messages"),
    ({"model": "MODEL", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ({"model": "MODEL", "messages": [{"role": "user", "content": "hi " * 600}]}, 400, "messages"),
    ({"model": "MODEL", "messages": CHAT, "max_tokens": 100_000}, 400, "max_tokens"),
])
def test_bad_requests_get_openai_errors(fake_app: DeployedApp, body: dict, status: int, param: str) -> None:
    if body.get("model") == "MODEL":
        body = {**body, "model": fake_app.model}
    r = httpx.post(f"{fake_app.base_url}/chat/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert error["message"] and error["type"]


def test_malformed_json_is_400(fake_app: DeployedApp) -> None:
    r = httpx.post(f"{fake_app.base_url}/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=CHAT)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=client.models.list().data[0].id, messages=CHAT, max_tokens=0)


def test_raw_sse_framing(fake_app: DeployedApp) -> None:
    body = {"model": fake_app.model, "messages": CHAT, "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{fake_app.base_url}/chat/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["choices"][0]["delta"]["role"] == "assistant"
