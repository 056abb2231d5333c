"""Deploying the warmserve application onto a running Ray cluster and waiting until it answers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from configs.schema import ClusterConfig
from engines.model_store.store import ModelStore

POLL_INTERVAL_S = 3.0


def prepare_models(config: ClusterConfig) -> dict[str, Path]:
    """Build or locate every model's checkpoint (idempotent; shows progress when it builds)."""
    store = ModelStore(Path(config.model_cache_dir) if config.model_cache_dir else None)
    return {m.name: store.resolve(m.model) for m in config.models}


def deploy(config: ClusterConfig, model_paths: dict[str, Path], app_name: str, route_prefix: str = "/") -> None:
    """Deploy (or update) the app; returns at once, `wait_until_answering` follows its start."""
    from ray import serve

    from deployments.app_builder import build_app

    serve.start(http_options={"host": config.http.host, "port": config.http.port})
    serve.run(build_app(config, model_paths), name=app_name, route_prefix=route_prefix, blocking=False)


def _replica_summary(app_name: str) -> str:
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return "application not deployed yet"
    parts = []
    for name, deployment in app.deployments.items():
        counts = ", ".join(f"{n} {state}" for state, n in deployment.replica_states.items())
        parts.append(f"{name}: {counts or deployment.status}")
    return f"{app.status}; " + "; ".join(parts)


def _post_json(url: str, payload: dict[str, object], timeout_s: float) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def wait_until_answering(config: ClusterConfig, app_name: str, base_url: str, timeout_s: float) -> str:
    """Poll until every model answers a short chat request; print progress; return the first answer."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    model = config.models[0].name
    while True:
        app = serve.status().applications.get(app_name)
        if app is not None and app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"deployment failed: {app.message}")
        try:
            answer = _post_json(f"{base_url}/v1/chat/completions", {
                "model": model, "temperature": 0, "max_tokens": 16,
                "messages": [{"role": "user", "content": "What is the capital of France?"}]}, timeout_s=60)
            return str(answer["choices"][0]["message"]["content"])  # type: ignore[index]
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the model did not answer within {timeout_s:.0f} s ({_replica_summary(app_name)})")
        print(f"[warmserve] waiting for replicas ({time.monotonic() - started:.0f} s): "
              f"{_replica_summary(app_name)}", flush=True)
        time.sleep(POLL_INTERVAL_S)
