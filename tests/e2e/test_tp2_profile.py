"""The local-tp2 profile: one replica whose vLLM engine runs tensor_parallel_size=2 on the CPU."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import DeployedApp, deploy_profile

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tp2_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    # Free the two-replica app's cores first (if an earlier module started it): TP=2 binds one worker
    # to each core.
    if "local" in serve.status().applications:
        serve.delete("local")
    yield deploy_profile("local-tp2", "tp2", "/tp2")
    serve.delete("tp2")


def test_tp2_answers_paris(tp2_app: DeployedApp) -> None:
    client = openai.OpenAI(base_url=tp2_app.base_url, api_key="unused", max_retries=0, timeout=180)
    r = client.chat.completions.create(model=tp2_app.model, temperature=0, max_tokens=32,
                                       messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in r.choices[0].message.content
