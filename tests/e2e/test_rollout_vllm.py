"""Rollouts on real vLLM under a bounded Locust load: `chat@bad` (tiny-random-llama whose replica fails every
request, `engine.injected_error_rate: 1.0`) is rolled back with no failed client request; `chat@tiny`
(tiny-random-llama) to `chat@smol` (SmolLM2) completes with no failed request. Three real engines.

Runs after the failover test and before the TP=2 one (conftest's RUN_ORDER): it deletes the shared
two-replica app first, so its two engines get the cores.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from cluster.rollout import starting_weights, with_weights
from cluster.rollout_metrics import scrape_versions
from cluster.rollout_run import RolloutResult, run_rollout
from cluster.serve_control import deployment_problem
from configs.rollout_schema import RolloutPolicy
from configs.schema import ClusterConfig
from deployments.app_builder import llm_deployment_name
from loadtests.run_loadtest import main as loadtest_main
from tests.conftest import SERVE_PORT, DeployedApp, deploy_config

pytestmark = pytest.mark.e2e
APP, ROUTE = "rollout-vllm", "/rollout-vllm"
SMOLLM2_TOKENIZER = Path.home() / ".cache" / "warmserve" / "models" / "smollm2-135m-instruct" / "tokenizer.json"
# The two versions are different models, so their TTFTs differ by design: the ratio bound is loose here;
# errors are what this rollout is judged on.
POLICY = RolloutPolicy(steps_percent=[50, 100], step_s=10, min_requests=5, step_timeout_s=120,
                       max_error_rate_increase=0.0, max_ttft_ratio=100)


def _config() -> ClusterConfig:
    from cluster.config_check import load_checked_config

    raw = load_checked_config("local").model_dump()
    base = raw["models"][0]
    versions = [{**base, "name": "chat@tiny", "model": "tiny-random-llama", "num_replicas": 1, "traffic_weight": 1.0},
                {**base, "name": "chat@smol", "num_replicas": 1, "traffic_weight": 0.0},
                {**base, "name": "chat@bad", "model": "tiny-random-llama", "num_replicas": 1, "traffic_weight": 0.0,
                 "engine": {**base["engine"], "injected_error_rate": 1.0}}]
    return ClusterConfig.model_validate({**raw, "models": versions, "http": {"host": "127.0.0.1", "port": SERVE_PORT}})


@pytest.fixture(scope="module")
def rollout_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    if "local" in serve.status().applications:  # free the shared app's cores for these two engines
        serve.delete("local")
    config = _config()
    # Start at the rollout's first state: the new version deployed at weight 0.
    yield deploy_config(with_weights(config, starting_weights(config, "chat", "chat@smol")), APP, ROUTE)
    serve.delete(APP)


def _locust(app: DeployedApp, tmp_path: Path, duration_s: int) -> tuple[threading.Thread, list[int], Path]:
    """A bounded Locust load on the bare name `chat` in a thread: (thread, its exit codes, its report dir)."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "ci-rollout",
        "users": {"shared_prefix": 1, "completions": 1},
        "shape": {"kind": "constant", "users": 2, "duration_s": duration_s},
        "workload": {"model": "chat", "max_tokens": 8, "prefix_groups": 2, "prefix_tokens": 64,
                     "question_tokens": 16, "completion_prompt_tokens": 32},
    }))
    out = tmp_path / "report"
    codes: list[int] = []
    locust = threading.Thread(target=lambda: codes.append(loadtest_main([
        "--host", app.base_url, "--scenario", str(scenario), "--tokenizer", str(SMOLLM2_TOKENIZER),
        "--slo-ttft-ms", "10000", "--out", str(out), "--quiet", "--stop-timeout", "20"])))
    locust.start()
    return locust, codes, out


def _rollout(app: DeployedApp, target: str, locust: threading.Thread) -> RolloutResult:
    config = _config()
    try:
        return run_rollout(starting_weights(config, "chat", target), target, POLICY,
                           lambda w: deploy_config(with_weights(config, w), APP, ROUTE),
                           lambda: scrape_versions(app.root_url, None),
                           lambda: deployment_problem(APP, llm_deployment_name(target)))
    finally:
        locust.join(timeout=300)


def test_a_version_that_fails_every_request_is_rolled_back_and_no_client_request_fails(
        rollout_app: DeployedApp, tmp_path: Path) -> None:
    locust, codes, out = _locust(rollout_app, tmp_path, duration_s=25)
    result = _rollout(rollout_app, "chat@bad", locust)
    summary = json.loads((out / "summary.json").read_text())
    print(f"rollout: {result.reason}; locust: {summary['requests']}")
    assert not result.completed and "chat@bad at 50%" in result.reason, result
    # The canary failed requests (that is what rolled it back); the ingress answered each from chat@tiny.
    assert codes == [0] and summary["requests"]["failed"] == 0, summary["errors"]
    assert summary["requests"]["total"] >= 10
    metrics = httpx.get(f"{rollout_app.root_url}/metrics", timeout=30).text
    assert 'warmserve_version_fallbacks_total{model="chat@bad"}' in metrics
    after = httpx.post(f"{rollout_app.base_url}/chat/completions", timeout=120, json={
        "model": "chat", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    assert after.status_code == 200 and after.headers["x-warmserve-version"] == "tiny"


def test_rollout_from_tiny_to_smollm2_under_locust_loses_no_request(rollout_app: DeployedApp,
                                                                      tmp_path: Path) -> None:
    locust, codes, out = _locust(rollout_app, tmp_path, duration_s=50)
    result = _rollout(rollout_app, "chat@smol", locust)
    summary = json.loads((out / "summary.json").read_text())
    print(f"rollout: {result.reason}; steps {result.steps}; locust: {summary['requests']}")
    assert result.completed, result.reason
    assert codes == [0] and summary["requests"]["failed"] == 0, summary["errors"]
    assert summary["requests"]["total"] >= 20
    after = httpx.post(f"{rollout_app.base_url}/chat/completions", timeout=120, json={
        "model": "chat", "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    assert after.headers["x-warmserve-version"] == "smol" and "Paris" in after.json()["choices"][0]["message"]["content"]
