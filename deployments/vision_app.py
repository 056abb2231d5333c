"""The vision part of the Serve application: prepare each vision model once (in the driver, with
progress), then one `VisionReplica` deployment per model, bound for the ingress."""

from __future__ import annotations

from pathlib import Path

from ray import serve
from ray.serve import Application

from configs.schema import ClusterConfig
from configs.vision_schema import VisionModelConfig
from deployments.deployment_version import versioned_bind
from deployments.vision_replica import VisionReplica
from engines.vision.store import load_artifacts, prepare_vision_model


def vision_deployment_name(model_name: str) -> str:
    return "vision-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in model_name)


def prepare_vision_models(config: ClusterConfig) -> dict[str, Path]:
    """Every vision model's prepared folder (idempotent; builds show a progress bar)."""
    cache = Path(config.model_cache_dir) if config.model_cache_dir else None
    return {m.name: prepare_vision_model(m, cache) for m in config.vision_models}


def vision_as_deployed(model: VisionModelConfig) -> VisionModelConfig:
    """The config as replicas and the ingress receive it: a traffic weight reaches the ingress as its user
    config, so changing it restarts nothing (as for LLMs: app_builder.as_deployed)."""
    return model.model_copy(update={"traffic_weight": 1.0})


def _vision_deployment(model: VisionModelConfig, artifacts_dir: Path) -> Application:
    options: dict[str, object] = {
        "name": vision_deployment_name(model.name),
        "num_replicas": model.num_replicas,
        "max_ongoing_requests": model.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": model.replica_num_cpus, "num_gpus": model.num_gpus},
        # A first TensorRT build of ResNet-50 takes minutes; the health check waits on the constructor.
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 60.0,
        "graceful_shutdown_timeout_s": 10.0,
    }
    return versioned_bind(serve.deployment(VisionReplica).options(**options), vision_as_deployed(model),
                          str(artifacts_dir))


def vision_deployments(config: ClusterConfig, prepared: dict[str, Path] | None = None
                       ) -> tuple[dict[str, Application], dict[str, list[str]]]:
    """Called by `build_app`: (deployments by model name, labels by model name for the ingress).
    `prepared` may hold folders a caller prepared already; the rest are prepared here."""
    known = prepared or {}
    paths = {m.name: known.get(m.name) or prepare_vision_model(
        m, Path(config.model_cache_dir) if config.model_cache_dir else None) for m in config.vision_models}
    deployments = {m.name: _vision_deployment(m, paths[m.name]) for m in config.vision_models}
    labels = {name: load_artifacts(path).labels for name, path in paths.items()}
    return deployments, labels
