"""Shared fixtures: one local Ray + Serve instance for the whole session, apps deployed on demand.

Integration and e2e tests deploy their app under their own route prefix on the same Serve HTTP port, so
the ~1 minute vLLM start is paid once per profile per session, not per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cluster.serve_environment import serve_environment
from configs.schema import HttpConfig, RayConfig

# The same Serve data plane and tuning as `warmserve up` gives a local head. Set at import, before any test
# module imports `ray.serve` (it reads them once); the raylet that ray.init starts, and every actor under
# it, inherit this process's environment.
os.environ.update(serve_environment(RayConfig(), HttpConfig()))

SERVE_PORT = int(os.environ.get("WARMSERVE_TEST_PORT", "8123"))
DEPLOY_TIMEOUT_S = 600.0


@dataclass(slots=True)
class DeployedApp:
    name: str
    base_url: str  # ends with /v1
    root_url: str  # the app's route prefix, for /health and /ready
    model: str


@pytest.fixture(scope="session")
def serve_instance() -> Iterator[None]:
    import ray
    from ray import serve

    # address="local": always a fresh cluster for the tests, never a user's running one.
    ray.init(address="local", num_cpus=16, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    serve.start(http_options={"host": "127.0.0.1", "port": SERVE_PORT})
    yield
    serve.shutdown()
    ray.shutdown()


def deploy_profile(profile: str, app_name: str, route_prefix: str, router_policy: str | None = None) -> DeployedApp:
    from cluster.config_check import load_checked_config
    from cluster.serve_control import prepare_models
    from configs.schema import ClusterConfig
    from deployments.app_builder import build_app
    from ray import serve

    loaded = load_checked_config(profile)
    raw = {**loaded.model_dump(), "http": {"host": "127.0.0.1", "port": SERVE_PORT}}
    if router_policy is not None:
        for model in raw["models"]:
            model["router"]["policy"] = router_policy
    config = ClusterConfig.model_validate(raw)
    paths = prepare_models(config)
    serve.run(build_app(config, paths), name=app_name, route_prefix=route_prefix, blocking=False)
    _wait_ready(app_name)
    root = f"http://127.0.0.1:{SERVE_PORT}{route_prefix}"
    return DeployedApp(app_name, f"{root}/v1", root, config.models[0].name)


def _wait_ready(app_name: str) -> None:
    import time

    from ray import serve

    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        if app is not None and app.status == "RUNNING":
            return
        if app is not None and app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"{app_name} failed to deploy: {app.message}")
        time.sleep(2)
    raise TimeoutError(f"{app_name} not running after {DEPLOY_TIMEOUT_S:.0f} s")


@pytest.fixture(scope="session")
def fake_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("test-fake", "fake", "/fake")
    serve.delete("fake")


@pytest.fixture(scope="session")
def fake_app_round_robin(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("test-fake", "fake-rr", "/fake-rr", router_policy="round_robin")
    serve.delete("fake-rr")


@pytest.fixture(scope="session")
def vllm_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("local", "local", "/local")
    serve.delete("local")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the CLI test (its own Ray head, started and stopped by `./warmserve up/down`) before anything
    creates the session's shared test cluster, whatever order the paths were given in."""
    items.sort(key=lambda item: 0 if item.path.name == "test_cli_up.py" else 1)
