"""Deploying the warmserve application onto a running Ray cluster and waiting until it answers."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from configs.model_versions import split_version
from configs.schema import ClusterConfig
from engines.model_store.store import ModelStore

if TYPE_CHECKING:
    from ray.serve.schema import DeploymentStatusOverview

POLL_INTERVAL_S = 3.0
# A RUNNING app whose URL keeps refusing is served elsewhere: fail in ~30 s instead of waiting it out.
MAX_REFUSALS_WHILE_RUNNING = 10


def prepare_models(config: ClusterConfig) -> dict[str, Path]:
    """Build or locate every model's checkpoint or artifacts, LLM and vision (idempotent; shows progress
    when it builds)."""
    from deployments.vision_app import prepare_vision_models

    store = ModelStore(Path(config.model_cache_dir) if config.model_cache_dir else None)
    return {**{m.name: store.resolve(m.model) for m in config.models}, **prepare_vision_models(config)}


def deploy(config: ClusterConfig, model_paths: dict[str, Path], app_name: str, route_prefix: str = "/") -> None:
    """Deploy (or update) the app; returns at once, `wait_until_answering` follows its start."""
    from ray import serve

    from deployments.app_builder import build_app

    serve.start(http_options={"host": config.http.host, "port": config.http.port})
    app = build_app(config, model_paths)
    # serve.run waits for the replicas to become healthy (a minute for vLLM on CPU); run it beside the
    # caller's progress loop instead of in front of it.
    threading.Thread(target=serve.run, kwargs={"target": app, "name": app_name, "route_prefix": route_prefix},
                     daemon=True, name="serve-run").start()


def _replica_summary(app_name: str) -> str:
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return "application not deployed yet"
    parts = [f"{name}: {replica_counts(d) or status_name(d.status)}" for name, d in app.deployments.items()]
    return f"{status_name(app.status)}; " + "; ".join(parts)


def status_name(status: object) -> str:
    """Serve's status enums print as `ApplicationStatus.RUNNING`; people want `RUNNING`."""
    return str(getattr(status, "value", status))


def replica_counts(deployment: DeploymentStatusOverview) -> str:
    """`2 RUNNING, 1 STARTING` for one deployment of `serve.status()`."""
    return ", ".join(f"{count} {status_name(state)}" for state, count in deployment.replica_states.items())


def _post_json(url: str, payload: dict[str, object], timeout_s: float, api_key: str | None) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def _smoke_test_key(config: ClusterConfig) -> tuple[bool, str | None]:
    """(can the smoke request authenticate, with which key): with API keys configured it needs one given
    in clear (key, key_env, key_file); keys given only as digests leave nothing to present."""
    from configs.security_schema import read_key_secret

    if not config.security.api_keys:
        return True, None
    for key in config.security.api_keys:
        secret = read_key_secret(key)
        if secret is not None:
            return True, secret
    return False, None


def _answers_unauthenticated_with_401(base_url: str) -> str:
    try:
        urllib.request.urlopen(f"{base_url}/v1/models", timeout=30)
    except urllib.error.HTTPError as error:
        if error.code == 401:
            return "the endpoint answers (401 without a key; API keys are configured as digests only, so no "\
                   "chat request was tried)"
        raise
    raise RuntimeError(f"{base_url}/v1/models answered without an API key although security.api_keys is set")


def deployment_problem(app_name: str, deployment: str) -> str | None:
    """Why one deployment is not serving well now (UNHEALTHY, or gone), or None while it is."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    status = app.deployments.get(deployment) if app is not None else None
    if status is None:
        return f"deployment {deployment} is not running"
    if status_name(status.status) in ("UNHEALTHY", "DEPLOY_FAILED"):
        return f"deployment {deployment} is {status_name(status.status)}: {status.message}"
    return None


def _kserve_path(served_name: str) -> str:
    """The KServe model path of a served vision name: `resnet/versions/v2` for `resnet@v2`."""
    base, version = split_version(served_name)
    return f"{base}/versions/{version}" if version else base


def wait_until_answering(config: ClusterConfig, app_name: str, base_url: str, timeout_s: float,
                         model: str | None = None) -> str:
    """Poll until the app is RUNNING (every replica healthy) and `model` (default: the first) answers a
    chat request; print progress meanwhile; return the answer."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    model = model or (config.models[0].name if config.models else None)
    refused_while_running = 0
    while True:
        app = serve.status().applications.get(app_name)
        status = status_name(app.status) if app is not None else "NOT_STARTED"
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"deployment failed: {app.message}")
        if status == "RUNNING":  # replicas healthy: now prove the model answers end to end
            try:
                if model is None:  # vision models only: the KServe readiness route says it
                    with urllib.request.urlopen(f"{base_url}/v2/health/ready", timeout=30) as response:
                        return f"vision models ready (HTTP {response.status})"
                if any(m.name == model for m in config.vision_models):  # a vision version (a rollout's)
                    with urllib.request.urlopen(f"{base_url}/v2/models/{_kserve_path(model)}/ready",
                                                timeout=30) as response:
                        return f"{model} ready (HTTP {response.status})"
                can_authenticate, api_key = _smoke_test_key(config)
                if not can_authenticate:
                    return _answers_unauthenticated_with_401(base_url)
                answer = _post_json(f"{base_url}/v1/chat/completions", {
                    "model": model, "temperature": 0, "max_tokens": 16,
                    "messages": [{"role": "user", "content": "What is the capital of France?"}]}, timeout_s=120,
                    api_key=api_key)
                return str(answer["choices"][0]["message"]["content"])  # type: ignore[index]
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError) as error:
                refused_while_running += 1
                if refused_while_running >= MAX_REFUSALS_WHILE_RUNNING:
                    raise RuntimeError(
                        f"the app is RUNNING but {base_url} does not answer ({error}); is Serve already "
                        "running on this Ray cluster with another HTTP port? (`warmserve down` or use it)"
                    ) from None
        if time.monotonic() > deadline:
            raise TimeoutError(f"the model did not answer within {timeout_s:.0f} s ({_replica_summary(app_name)})")
        print(f"[warmserve] waiting for replicas ({time.monotonic() - started:.0f} s): "
              f"{_replica_summary(app_name)}", flush=True)
        time.sleep(POLL_INTERVAL_S)
