"""Rollouts through real Ray Serve and real HTTP on the fake engine, under a paced client load.

The rollout's control loop (cluster/rollout_run.py) applies each step's weights by re-applying the config
to the running app, as `warmserve rollout` does, and judges the canary from the ingress's /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from cluster.rollout import starting_weights, with_weights
from cluster.rollout_metrics import scrape_versions
from cluster.rollout_run import run_rollout
from cluster.serve_control import deployment_problem
from configs.rollout_schema import RolloutPolicy
from configs.schema import ClusterConfig
from deployments.app_builder import llm_deployment_name
from tests.conftest import SERVE_PORT, DeployedApp, deploy_config
from tests.paced_load import PacedLoad

pytestmark = pytest.mark.integration
APP, ROUTE = "rollout", "/rollout"
RATE_PER_S = 20.0  # the client load: paced, so the canary's errors before a rollback are bounded
POLICY = RolloutPolicy(steps_percent=[20, 100], step_s=4, min_requests=10, step_timeout_s=60,
                       max_error_rate_increase=0.05, max_ttft_ratio=20)


def _config() -> ClusterConfig:
    from cluster.config_check import load_checked_config

    raw = load_checked_config("test-rollout").model_dump()
    return ClusterConfig.model_validate({**raw, "http": {"host": "127.0.0.1", "port": SERVE_PORT}})


@pytest.fixture(scope="module")
def rollout_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_config(_config(), APP, ROUTE)
    serve.delete(APP)


def _chat_load(app: DeployedApp) -> PacedLoad:
    body = {"model": "roll", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return PacedLoad(lambda client: client.post(f"{app.base_url}/chat/completions", json=body), RATE_PER_S)


def _rollout(app: DeployedApp, target: str):  # type: ignore[no-untyped-def]
    config = _config()
    start = starting_weights(config, "roll", target)
    return run_rollout(start, target, POLICY, lambda w: deploy_config(with_weights(config, w), APP, ROUTE),
                       lambda: scrape_versions(app.root_url, None),
                       lambda: deployment_problem(APP, llm_deployment_name(target)))


def test_a_version_that_fails_is_rolled_back_and_its_clients_are_answered_by_the_old_one(
        rollout_app: DeployedApp) -> None:
    with _chat_load(rollout_app) as load:
        result = _rollout(rollout_app, "roll@bad")
        rolled_back_at = time.monotonic()
        time.sleep(2)  # requests after the rollback: all on v1 again
    assert not result.completed, result
    # Every request the canary failed was answered by v1 instead (version_fallback.py): no client saw an
    # error. The rollout saw them (warmserve_generations_total) and rolled back on the rate or the budget.
    assert set(load.outcomes) == {(200, "v1")}, (load.outcomes, load.error_bodies)
    # How many reached the canary before the rollback depends on the host's speed (polls, the redeploy);
    # that none is sent to it once the rollback's deploy has returned (a second's grace for requests
    # already routed) does not.
    assert sum(load.fallbacks.values()) >= 1 and set(load.fallbacks) == {"bad"}, load.fallbacks
    late = [t - rolled_back_at for t in load.fallback_sent_at if t > rolled_back_at + 1.0]
    assert not late, f"requests sent {late} s after the rollback still reached the bad version"
    print(f"rolled back: {result.reason}; outcomes {dict(load.outcomes)}; fallbacks {dict(load.fallbacks)}")


def test_a_version_that_fails_with_fallback_impossible_fails_only_its_pinned_clients(
        rollout_app: DeployedApp) -> None:
    pinned = httpx.post(f"{rollout_app.base_url}/chat/completions", timeout=30, json={
        "model": "roll@bad", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    assert pinned.status_code == 500 and "InjectedRequestError" in pinned.json()["error"]["message"]


def test_a_good_version_takes_all_traffic_with_no_failed_request(rollout_app: DeployedApp) -> None:
    with _chat_load(rollout_app) as load:
        result = _rollout(rollout_app, "roll@v2")
        time.sleep(2)
    assert result.completed, result
    assert result.weights == {"roll@v1": 0.0, "roll@v2": 100.0, "roll@bad": 0.0}
    assert all(status == 200 for status, _ in load.outcomes), load.outcomes
    assert {version for _, version in load.outcomes} == {"v1", "v2"}
    last = httpx.post(f"{rollout_app.base_url}/chat/completions", timeout=30, json={
        "model": "roll", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    assert last.headers["x-warmserve-version"] == "v2"
    print(f"rolled out: {result.steps}; outcomes {dict(load.outcomes)}")
