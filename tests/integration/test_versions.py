"""Versions and traffic splitting through real Ray Serve and real HTTP, on the fake engine.

One app serves `plain-fake` and `chat` in two versions (`chat@v1` 90, `chat@v2` 10; configs/profiles/
test-versions.yaml). The last test re-applies a changed config, as `warmserve up` on a running head does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import SERVE_PORT, DeployedApp, deploy_config, deploy_profile

pytestmark = pytest.mark.integration
APP, ROUTE = "versions", "/versions"


@pytest.fixture(scope="module")
def versions_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("test-versions", APP, ROUTE)
    serve.delete(APP)


def _chat(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **extra}


async def _versions_of(url: str, bodies: list[dict[str, object]], headers: list[dict[str, str]],
                       concurrency: int = 32) -> list[tuple[str | None, str | None]]:
    """(x-warmserve-version, x-warmserve-replica) of each request, sent `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(body: dict[str, object], header: dict[str, str]) -> tuple[str | None, str | None]:
            async with limit:
                reply = await client.post(f"{url}/chat/completions", json=body, headers=header)
                assert reply.status_code == 200, reply.text
                return reply.headers.get("x-warmserve-version"), reply.headers.get("x-warmserve-replica")
        return await asyncio.gather(*(one(b, h) for b, h in zip(bodies, headers, strict=True)))


def test_models_lists_versions_and_the_split(versions_app: DeployedApp) -> None:
    cards = {card["id"]: card for card in httpx.get(f"{versions_app.base_url}/models").json()["data"]}
    assert sorted(cards) == ["chat", "chat@v1", "chat@v2", "plain-fake"]
    assert cards["chat"]["versions"] == {"chat@v1": 0.9, "chat@v2": 0.1}


def test_split_over_1000_requests_is_within_bounds_and_never_crosses_models(versions_app: DeployedApp) -> None:
    n = 1000
    got = asyncio.run(_versions_of(versions_app.base_url, [_chat("chat")] * n, [{}] * n))
    counts = Counter(version for version, _ in got)
    assert set(counts) == {"v1", "v2"}, counts
    # Binomial(1000, 0.1): standard deviation 9.5; 5 of them either side.
    assert 52 <= counts["v2"] <= 148, counts
    # Each version's requests were served by that version's replicas only, and plain-fake's by its own.
    replicas = {v: {r for version, r in got if version == v} for v in ("v1", "v2")}
    plain = asyncio.run(_versions_of(versions_app.base_url, [_chat("plain-fake")] * 20, [{}] * 20))
    assert {version for version, _ in plain} == {None}
    plain_replicas = {r for _, r in plain}
    assert not replicas["v1"] & replicas["v2"] and not plain_replicas & (replicas["v1"] | replicas["v2"])


def test_sessions_stick_by_header_and_by_user(versions_app: DeployedApp) -> None:
    url = versions_app.base_url
    sessions = [f"conversation-{i}" for i in range(40)]
    by_header = [asyncio.run(_versions_of(url, [_chat("chat")] * 5, [{"x-warmserve-session": s}] * 5))
                 for s in sessions[:20]]
    by_user = [asyncio.run(_versions_of(url, [_chat("chat", user=s)] * 5, [{}] * 5)) for s in sessions[20:]]
    for turns in by_header + by_user:
        assert len({version for version, _ in turns}) == 1, turns


def test_pinned_version_is_honoured(versions_app: DeployedApp) -> None:
    url = versions_app.base_url
    pinned = asyncio.run(_versions_of(url, [_chat("chat")] * 30, [{"x-warmserve-version": "v2"}] * 30))
    assert {version for version, _ in pinned} == {"v2"}
    named = asyncio.run(_versions_of(url, [_chat("chat@v2")] * 10, [{}] * 10))
    assert {version for version, _ in named} == {"v2"}
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    reply = client.chat.completions.with_raw_response.create(**_chat("chat@v1"))
    assert reply.headers["x-warmserve-version"] == "v1" and reply.parse().model == "chat@v1"


@pytest.mark.parametrize(("model", "headers"), [("chat@v9", {}), ("chat", {"x-warmserve-version": "v9"}),
                                                ("nope", {})])
def test_unknown_model_or_version_is_404_listing_the_known_ones(versions_app: DeployedApp, model: str,
                                                                 headers: dict[str, str]) -> None:
    reply = httpx.post(f"{versions_app.base_url}/chat/completions", json=_chat(model), headers=headers, timeout=30)
    assert reply.status_code == 404, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "chat, chat@v1, chat@v2, plain-fake" in error["message"]


def test_reapplied_config_changes_only_what_changed(versions_app: DeployedApp) -> None:
    """Weights shift in place and a model is added and another removed; the versions keep their replicas."""
    from cluster.config_check import load_checked_config
    from configs.schema import ClusterConfig

    url = versions_app.base_url
    before = {v: {r for _, r in asyncio.run(_versions_of(url, [_chat(f"chat@{v}")] * 10, [{}] * 10))}
              for v in ("v1", "v2")}
    raw = load_checked_config("test-versions").model_dump()
    models = [m for m in raw["models"] if m["name"] != "plain-fake"]
    for m in models:
        m["traffic_weight"] = 0.0 if m["name"] == "chat@v1" else 1.0
    added = {**models[0], "name": "added-fake", "traffic_weight": 1.0}
    config = ClusterConfig.model_validate({**raw, "models": [*models, added],
                                           "http": {"host": "127.0.0.1", "port": SERVE_PORT}})
    deploy_config(config, APP, ROUTE)
    shifted = asyncio.run(_versions_of(url, [_chat("chat")] * 50, [{}] * 50))
    assert {version for version, _ in shifted} == {"v2"}
    after = {v: {r for _, r in asyncio.run(_versions_of(url, [_chat(f"chat@{v}")] * 10, [{}] * 10))}
             for v in ("v1", "v2")}
    assert after == before  # the same replicas: no version was restarted
    assert httpx.post(f"{url}/chat/completions", json=_chat("plain-fake"), timeout=30).status_code == 404
    assert httpx.post(f"{url}/chat/completions", json=_chat("added-fake"), timeout=30).status_code == 200
