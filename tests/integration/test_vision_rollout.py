"""A rollout of vision model versions through real Ray Serve, ONNX Runtime replicas and real HTTP, under a
paced client load on the bare name: a failing version rolled back with its clients answered by the old
version, a good one rolled out. The same control loop as `warmserve rollout` (cluster/rollout_run.py),
judging each version's errors and mean request latency from the ingress's /metrics."""

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
from deployments.vision_app import vision_deployment_name
from tests.conftest import SERVE_PORT, DeployedApp, deploy_config
from tests.paced_load import PacedLoad
from tests.vision_images import solid_png

pytestmark = pytest.mark.integration
APP, ROUTE, MODEL = "vision-rollout", "/vision-rollout", "resnet-tiny"
RATE_PER_S = 20.0
POLICY = RolloutPolicy(steps_percent=[20, 100], step_s=4, min_requests=10, step_timeout_s=60,
                       max_error_rate_increase=0.05, max_ttft_ratio=20)


def _config() -> ClusterConfig:
    from cluster.config_check import load_checked_config

    raw = load_checked_config("test-vision").model_dump()
    base = raw["vision_models"][0]
    raw["vision_models"] = [
        {**base, "name": f"{MODEL}@v1", "traffic_weight": 1.0},
        {**base, "name": f"{MODEL}@bad", "traffic_weight": 0.0,
         "engine": {**base["engine"], "injected_error_rate": 1.0}},  # every request fails
        {**base, "name": f"{MODEL}@v2", "traffic_weight": 0.0, "seed": 1},
    ]
    return ClusterConfig.model_validate({**raw, "http": {"host": "127.0.0.1", "port": SERVE_PORT}})


@pytest.fixture(scope="module")
def vision_rollout_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_config(_config(), APP, ROUTE)
    serve.delete(APP)


def _classify_load(app: DeployedApp) -> PacedLoad:
    png = solid_png((30, 200, 30), (64, 48))
    url = f"{app.root_url}/v1/vision/classify?model={MODEL}&top_k=1"
    return PacedLoad(lambda client: client.post(url, content=png), RATE_PER_S)


def _rollout(app: DeployedApp, target: str):  # type: ignore[no-untyped-def]
    config = _config()
    start = starting_weights(config, MODEL, target)
    return run_rollout(start, target, POLICY, lambda w: deploy_config(with_weights(config, w), APP, ROUTE),
                       lambda: scrape_versions(app.root_url, None),
                       lambda: deployment_problem(APP, vision_deployment_name(target)), latency="latency")


def test_a_failing_vision_version_is_rolled_back_and_its_clients_answered_by_the_old_one(
        vision_rollout_app: DeployedApp) -> None:
    with _classify_load(vision_rollout_app) as load:
        result = _rollout(vision_rollout_app, f"{MODEL}@bad")
        rolled_back_at = time.monotonic()
        time.sleep(2)
    assert not result.completed and ("error rate" in result.reason or "canary budget" in result.reason), result
    assert set(load.outcomes) == {(200, "v1")}, load.outcomes
    assert sum(load.fallbacks.values()) >= 1 and set(load.fallbacks) == {"bad"}, load.fallbacks
    # How many reach the bad version before the rollback depends on the host's speed; that none is sent to it
    # once the rollback's deploy has returned (a second's grace for requests already routed) does not.
    late = [t - rolled_back_at for t in load.fallback_sent_at if t > rolled_back_at + 1.0]
    assert not late, f"requests sent {late} s after the rollback still reached the bad version"
    print(f"rolled back: {result.reason}; outcomes {dict(load.outcomes)}; fallbacks {dict(load.fallbacks)}")


def test_a_pinned_request_to_the_failing_version_gets_its_error(vision_rollout_app: DeployedApp) -> None:
    reply = httpx.post(f"{vision_rollout_app.root_url}/v2/models/{MODEL}/versions/bad/infer", timeout=30,
                       json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                         "data": [0.0] * (3 * 224 * 224)}]})
    assert reply.status_code == 500 and "InjectedRequestError" in reply.json()["error"], reply.text


def test_a_good_vision_version_takes_all_traffic_with_no_failed_request(vision_rollout_app: DeployedApp) -> None:
    with _classify_load(vision_rollout_app) as load:
        result = _rollout(vision_rollout_app, f"{MODEL}@v2")
        time.sleep(2)
    assert result.completed, result
    assert result.weights == {f"{MODEL}@v1": 0.0, f"{MODEL}@bad": 0.0, f"{MODEL}@v2": 100.0}
    assert all(status == 200 for status, _ in load.outcomes), load.outcomes
    assert {version for _, version in load.outcomes} == {"v1", "v2"}
    assert any("mean latency" in step for step in result.steps), result.steps
    print(f"rolled out: {result.steps}; outcomes {dict(load.outcomes)}")
