"""Shared fixtures: one local Ray + Serve instance for the whole session, apps deployed on demand.

Integration and e2e tests deploy their app under their own route prefix on the same Serve HTTP port, so
the ~1 minute vLLM start is paid once per profile per session, not per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cluster.serve_environment import serve_environment
from configs.schema import HttpConfig, RayConfig

# The same Serve data plane and tuning as `warmserve up` gives a local head. Set at import, before any test
# module imports `ray.serve` (it reads them once); the raylet that ray.init starts, and every actor under
# it, inherit this process's environment.
os.environ.update(serve_environment(RayConfig(), HttpConfig()))

SERVE_PORT = int(os.environ.get("WARMSERVE_TEST_PORT", "8123"))
# Serve's HAProxy also binds a metrics and a stats port, fixed by default (9101, 8404): derived from the
# test port instead, so two test sessions (or a test session beside `warmserve up`) can share a machine.
# (Offset by 1000: the CLI test serves on SERVE_PORT + 1, and its `warmserve up` inherits this environment.)
os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(SERVE_PORT + 1001))
os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(SERVE_PORT + 1002))
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


def deploy_profile(profile: str, app_name: str, route_prefix: str, router_policy: str | None = None,
                   model_overrides: dict[str, Any] | None = None,
                   cluster_overrides: dict[str, Any] | None = None) -> DeployedApp:
    """Deploy a shipped profile as its own app; `model_overrides` are merged (one level deep) into every
    model entry, e.g. {"engine": {"fake_token_latency_s": 0.02}, "failover": {"stall_timeout_s": 1}};
    `cluster_overrides` replace top-level sections, e.g. {"security": {"api_keys": [...]}}."""
    from cluster.config_check import load_checked_config
    from configs.schema import ClusterConfig

    loaded = load_checked_config(profile)
    raw = {**loaded.model_dump(), "http": {"host": "127.0.0.1", "port": SERVE_PORT}, **(cluster_overrides or {})}
    for model in raw["models"]:
        if router_policy is not None:
            model["router"]["policy"] = router_policy
        for section, values in (model_overrides or {}).items():
            model[section] = {**(model[section] or {}), **values} if isinstance(values, dict) else values
    return deploy_config(ClusterConfig.model_validate(raw), app_name, route_prefix)


def deploy_config(config: Any, app_name: str, route_prefix: str) -> DeployedApp:
    """Deploy (or re-apply, as `warmserve up` on a running head does) a validated ClusterConfig as an app."""
    from cluster.serve_control import prepare_models
    from deployments.app_builder import build_app
    from ray import serve

    serve.run(build_app(config, prepare_models(config)), name=app_name, route_prefix=route_prefix, blocking=False)
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
def otlp_receiver() -> Iterator[Any]:
    """An OTLP/HTTP trace receiver on loopback that the shared vLLM app exports its spans to."""
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def vllm_app(serve_instance: None, otlp_receiver: Any) -> Iterator[DeployedApp]:
    from ray import serve

    # Traced, as an operator would run it: the tracing e2e test reads the spans, the others pay its cost.
    yield deploy_profile("local", "local", "/local", cluster_overrides={"observability": {"tracing": {
        "otlp_endpoint": otlp_receiver.endpoint, "export_delay_s": 0.5}}})
    serve.delete("local")


# Tests that must run first or last, whatever order the paths were given in: the CLI test starts and
# stops its own Ray head (`./warmserve up/down`) before anything creates the shared test cluster; the
# real-vLLM failover test SIGKILLs an engine, leaving the shared app a replica short while Serve replaces it.
# The rollout and TP=2 tests delete the shared vLLM app to free the cores, so they come after everything
# using that app.
RUN_ORDER = {"test_cli_up.py": 0, "test_failover_vllm.py": 2, "test_rollout_vllm.py": 2.5, "test_tp2_profile.py": 3}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: RUN_ORDER.get(item.path.name, 1))
