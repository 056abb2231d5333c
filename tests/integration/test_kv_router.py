"""The KV-aware router inside real Ray Serve, with FakeLLMEngine replicas publishing real ZMQ KV events.

The replica that answered is read from the `x-warmserve-replica` response header; the prefix-cache hit
from `usage.prompt_tokens_details.cached_tokens`, which the engine itself reports.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.conftest import DeployedApp

pytestmark = pytest.mark.integration
# test-fake.yaml: routed prefixes are remembered for 0.5 s; replicas report stats every 0.5 s.
ROUTED_TTL_S = 0.5


def _system_prompt(tag: str, words: int = 60) -> str:
    # The tag comes first, so distinct tags differ from the first KV block on (the tiny model's tokenizer
    # spends a few tokens per word; 60 words are ~250 tokens, well inside its 512-token window).
    return f"{tag} context: " + " ".join(f"w{i}" for i in range(words))


def _ask(client: openai.OpenAI, model: str, system: str, question: str,
         max_tokens: int = 2) -> tuple[str, int, int]:
    """(replica, prompt tokens, cached prompt tokens) of one short greedy chat request."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=max_tokens, temperature=0,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])
    reply = raw.parse()
    return (raw.headers["x-warmserve-replica"], reply.usage.prompt_tokens,
            reply.usage.prompt_tokens_details.cached_tokens)


@pytest.fixture(scope="module")
def client(fake_app: DeployedApp) -> openai.OpenAI:
    client = openai.OpenAI(base_url=fake_app.base_url, api_key="unused", max_retries=0, timeout=60)
    # Routers learn each replica's KV event endpoint from Serve's routing stats (every 0.5 s here); give
    # them a few periods to subscribe before a test relies on events.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        _ask(client, fake_app.model, "warm-up", "hello")
        time.sleep(0.25)
    return client


def test_concurrent_distinct_prompts_spread_over_both_replicas(client: openai.OpenAI,
                                                               fake_app: DeployedApp) -> None:
    """Distinct prompts in flight together: load, not cache, decides, so both replicas get work."""
    def ask(i: int) -> str:
        return _ask(client, fake_app.model, _system_prompt(f"spread{i}", 30), "hi", max_tokens=48)[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = Counter(pool.map(ask, range(16)))
    assert len(counts) == 2 and min(counts.values()) >= 4, counts


def test_same_prefix_returns_to_its_replica_through_kv_events(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    """After the router's own routing memory has expired, only the engines' KV events can say where the
    prefix lives: each second request must land where the first one did and hit the cache there."""
    for tag in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot"):
        system = _system_prompt(tag)
        first_replica, prompt_tokens, _ = _ask(client, fake_app.model, system, "What is one?")
        assert prompt_tokens > 64
        time.sleep(ROUTED_TTL_S * 2)
        second_replica, _, cached = _ask(client, fake_app.model, system, "And what is two?")
        assert second_replica == first_replica, tag
        assert cached >= 64, (tag, cached)  # the shared system prompt's blocks came from the cache


def test_a_burst_with_a_new_prefix_stays_together(client: openai.OpenAI, fake_app: DeployedApp) -> None:
    """20 concurrent requests sharing a new ~380-token prefix: the first is routed before any KV event can
    arrive, and the routed-blocks memory keeps the rest with it. Recomputing the prefix elsewhere costs
    more than 20 two-token decodes, so the load does not require a split."""
    system = _system_prompt("burst", 60)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: _ask(client, fake_app.model, system, f"Question {i}?"), range(20)))
    counts = Counter(replica for replica, _, _ in results)
    assert counts.most_common(1)[0][1] >= 18, counts
    hits = sum(1 for _, _, cached in results if cached >= 64)
    assert hits >= 17, [cached for _, _, cached in results]


def test_round_robin_policy_alternates_whatever_the_prefix(fake_app_round_robin: DeployedApp) -> None:
    """`router.policy: round_robin` selects the baseline router: the same prompt visits both replicas."""
    client = openai.OpenAI(base_url=fake_app_round_robin.base_url, api_key="unused", max_retries=0, timeout=60)
    system = _system_prompt("roundrobin")
    replicas = [_ask(client, fake_app_round_robin.model, system, "Same question?")[0] for _ in range(6)]
    assert len(set(replicas)) == 2
    assert all(a != b for a, b in zip(replicas, replicas[1:])), replicas
