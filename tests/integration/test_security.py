"""API keys, per-key limits and request bounds through real Ray Serve and real HTTP (the official openai
client where it applies), on the fake engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import DeployedApp, deploy_profile

pytestmark = pytest.mark.integration
OPEN = "sk-open-0123456789abcdef"  # no limits
RATED = "sk-rated-0123456789abcdef"  # 2 requests/s, burst 2
TOKENS = "sk-tokens-0123456789abcdef"  # 300 tokens/min
SINGLE = "sk-single-0123456789abcdef"  # one request at a time
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def secured_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile(
        "test-fake", "secured", "/secured",
        model_overrides={"engine": {"fake_token_latency_s": 0.01},
                         "limits": {"max_prompt_tokens": 200, "max_tokens_limit": 300}},
        cluster_overrides={"security": {"max_body_bytes": MAX_BODY, "api_keys": [
            {"name": "open", "key": OPEN},
            {"name": "rated", "key": RATED, "requests_per_s": 2, "burst": 2},
            {"name": "tokens", "key": TOKENS, "tokens_per_min": 300},
            {"name": "single", "key": SINGLE, "max_concurrent": 1},
        ]}})
    serve.delete("secured")


def _client(app: DeployedApp, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.base_url, api_key=key, max_retries=0)


def _chat(app: DeployedApp, key: str, max_tokens: int = 4, content: str = "hello") -> str:
    reply = _client(app, key).chat.completions.create(
        model=app.model, messages=[{"role": "user", "content": content}], max_tokens=max_tokens, temperature=0)
    return reply.choices[0].finish_reason


def _error_body(response: httpx.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["type"]
    return error


def test_api_routes_need_a_valid_key_and_health_does_not(secured_app: DeployedApp) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        _chat(secured_app, OPEN + "-wrong")
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    assert OPEN not in str(wrong.value.body)
    missing = httpx.get(f"{secured_app.base_url}/models")
    assert missing.status_code == 401 and "didn't provide an API key" in _error_body(missing)["message"]
    assert httpx.get(f"{secured_app.root_url}/health").status_code == 200
    assert _chat(secured_app, OPEN) == "length"
    models = _client(secured_app, OPEN).models.list()
    assert [m.id for m in models.data] == [secured_app.model]


def test_request_rate_over_the_key_limit_gets_429_with_retry_after(secured_app: DeployedApp) -> None:
    headers = {"Authorization": f"Bearer {RATED}"}
    statuses = [httpx.get(f"{secured_app.base_url}/models", headers=headers) for _ in range(4)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused, [r.status_code for r in statuses]
    assert int(refused[0].headers["retry-after"]) >= 1
    assert _error_body(refused[0])["code"] == "rate_limit_exceeded"
    # Other keys are not affected.
    assert httpx.get(f"{secured_app.base_url}/models", headers={"Authorization": f"Bearer {OPEN}"}).status_code == 200


def test_tokens_per_minute_are_reserved_and_refused_beyond_the_budget(secured_app: DeployedApp) -> None:
    # A request that could never fit is told so (400, naming the budget), not asked to retry forever.
    with pytest.raises(openai.BadRequestError) as too_large:
        _chat(secured_app, TOKENS, max_tokens=299, content="hi " * 10)
    assert too_large.value.code == "request_too_large" and "tokens_per_min" in too_large.value.message
    assert "retry-after" not in too_large.value.response.headers
    assert _chat(secured_app, TOKENS, max_tokens=200) == "length"  # reserves ~210, uses ~210
    with pytest.raises(openai.RateLimitError) as over:
        _chat(secured_app, TOKENS, max_tokens=200)
    assert over.value.status_code == 429 and "tokens/min" in over.value.message


def test_concurrency_cap_holds_a_slot_until_the_stream_ends(secured_app: DeployedApp) -> None:
    async def run() -> tuple[int, int]:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": secured_app.model, "messages": [{"role": "user", "content": "x"}],
                    "max_tokens": 150, "stream": True}
            headers = {"Authorization": f"Bearer {SINGLE}"}
            async with http.stream("POST", f"{secured_app.base_url}/chat/completions", json=body,
                                   headers=headers) as first:
                assert first.status_code == 200
                lines = first.aiter_lines()
                await anext(lines)  # streaming: the slot is held
                second = await http.post(f"{secured_app.base_url}/chat/completions",
                                         json={**body, "stream": False}, headers=headers)
                async for _ in lines:  # drain to the end
                    pass
            third = await http.post(f"{secured_app.base_url}/chat/completions",
                                    json={**body, "stream": False, "max_tokens": 2}, headers=headers)
            return second.status_code, third.status_code

    assert asyncio.run(run()) == (429, 200)


def test_bounds_are_enforced_before_engine_work(secured_app: DeployedApp) -> None:
    headers = {"Authorization": f"Bearer {OPEN}"}
    url = f"{secured_app.base_url}/chat/completions"
    base = {"model": secured_app.model, "messages": [{"role": "user", "content": "hello"}]}
    big = httpx.post(url, content=b'{"pad": "' + b"x" * MAX_BODY + b'"}', headers=headers)
    assert big.status_code == 413 and _error_body(big)["code"] == "payload_too_large"
    long_prompt = httpx.post(url, json={**base, "messages": [{"role": "user", "content": "word " * 300}]},
                             headers=headers)
    assert long_prompt.status_code == 400 and _error_body(long_prompt)["code"] == "prompt_too_long"
    too_many = httpx.post(url, json={**base, "max_tokens": 301}, headers=headers)
    assert too_many.status_code == 400 and _error_body(too_many)["param"] == "max_tokens"


def test_no_key_in_clear_travels_into_the_serve_app(serve_instance: None) -> None:
    """What Serve ships to the ingress replicas is the app's pickled arguments: digests only."""
    import cloudpickle

    from cluster.config_check import load_checked_config
    from cluster.serve_control import prepare_models
    from configs.schema import ClusterConfig
    from deployments.api_keys import digest
    from deployments.app_builder import build_app

    raw = load_checked_config("test-fake").model_dump()
    raw["security"] = {"api_keys": [{"name": "open", "key": OPEN}]}
    config = ClusterConfig.model_validate(raw)
    shipped = cloudpickle.dumps(build_app(config, prepare_models(config)))
    assert OPEN.encode() not in shipped
    assert digest(OPEN) in shipped


def test_online_batch_sends_the_jobs_key_and_never_commits_a_refusal(
        secured_app: DeployedApp, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from cluster.batch import main as batch_main
    from loadtests.batch_inputs import batch_lines, write_jsonl

    source = write_jsonl(tmp_path / "in.jsonl", batch_lines(4, 8, seed=2, groups=2, sentences=1,
                                                                 model=secured_app.model))
    output = tmp_path / "out.jsonl"
    run = ["--config", "test-fake", "--mode", "online", "--endpoint", secured_app.root_url,
           "--input", str(source), "--output", str(output)]
    monkeypatch.delenv("WARMSERVE_API_KEY", raising=False)
    assert batch_main(run) == 2  # no key: the job stops, naming the variable
    assert not list((tmp_path / "out.jsonl.shards").glob("shard-*")), "a 401 was committed as an answer"
    monkeypatch.setenv("WARMSERVE_API_KEY", OPEN)
    assert batch_main(run) == 0
    statuses = [json.loads(line)["response"]["status_code"] for line in output.read_text().splitlines()]
    assert statuses == [200] * 4
