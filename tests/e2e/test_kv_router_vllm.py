"""The KV-aware router in front of two real vLLM replicas (SmolLM2 on CPU): vLLM's own KV cache events
steer repeated prefixes back to their replica, and vLLM's own prefix-cache accounting
(`usage.prompt_tokens_details.cached_tokens`, from the engine's `num_cached_tokens`) shows the hit."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.conftest import DeployedApp

pytestmark = pytest.mark.e2e
# local.yaml keeps routed-but-unconfirmed prefixes for router.routed_blocks_ttl_s (default 5 s).
ROUTED_TTL_S = 5.0


def _system_prompt(tag: str) -> str:
    # ~40 facts are ~750 tokens (~23 KV blocks of 32): recomputing that elsewhere costs more than ten
    # one-token answers queued behind it, so the cost model keeps a burst together.
    facts = " ".join(f"Fact {i}: the {tag} archive lists item {i} under shelf {i * 7 % 13}." for i in range(40))
    return f"You are the {tag} librarian. {facts}"


def _ask(client: openai.OpenAI, model: str, system: str, question: str) -> tuple[str, int, int]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=1, temperature=0,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])
    reply = raw.parse()
    return (raw.headers["x-warmserve-replica"], reply.usage.prompt_tokens,
            reply.usage.prompt_tokens_details.cached_tokens)


@pytest.fixture(scope="module")
def client(vllm_app: DeployedApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm_app.base_url, api_key="unused", max_retries=0, timeout=180)


def test_vllm_kv_events_bring_a_prefix_back_to_its_replica(client: openai.OpenAI, vllm_app: DeployedApp) -> None:
    tags = ("harbor", "orchard", "glacier", "meadow")
    first = {tag: _ask(client, vllm_app.model, _system_prompt(tag), "Where is item 3?") for tag in tags}
    assert all(prompt_tokens >= 600 for _, prompt_tokens, _ in first.values())
    time.sleep(ROUTED_TTL_S + 1)  # the router's own memory has expired: only vLLM's events remain
    for tag in tags:
        replica, _, cached = _ask(client, vllm_app.model, _system_prompt(tag), "Where is item 5?")
        assert replica == first[tag][0], tag
        assert cached >= 512, (tag, cached)  # vLLM served the shared system prompt from its KV cache


def test_vllm_burst_with_a_new_prefix_is_colocated(client: openai.OpenAI, vllm_app: DeployedApp) -> None:
    system = _system_prompt("lighthouse")
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda i: _ask(client, vllm_app.model, system, f"Where is item {i}?"), range(10)))
    counts = Counter(replica for replica, _, _ in results)
    holder, count = counts.most_common(1)[0]
    assert count >= 9, counts
    # Requests vLLM schedules in the same step as the first all compute the prefix, so hits inside the
    # burst depend on timing; the next request with the prefix must find it where the burst went.
    replica, _, cached = _ask(client, vllm_app.model, system, "Where is item 11?")
    assert replica == holder and cached >= 512, (replica, holder, cached)
