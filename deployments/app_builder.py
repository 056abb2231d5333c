"""Turn a validated `ClusterConfig` into a Ray Serve application: one LLM deployment per model + ingress."""

from __future__ import annotations

from pathlib import Path

from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from configs.observability_schema import ObservabilityConfig
from configs.model_versions import split_version
from configs.schema import ClusterConfig, LLMModelConfig
from deployments.api_keys import resolve_key
from deployments.deployment_version import versioned_bind
from deployments.ingress import Ingress
from deployments.llm_autoscaling import serve_autoscaling_config
from deployments.llm_replica import LLMReplica
from deployments.vision_app import vision_as_deployed, vision_deployments
from engines.placement import ReplicaResources, replica_resources

APP_NAME = "warmserve"
INGRESS_ROUTE = "/"


def llm_deployment_name(model_name: str) -> str:
    return "llm-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in model_name)


# RouterConfig.balance_blocks when unset: the simulator's calibration for each device (docs/benchmarks.md).
CPU_BALANCE_BLOCKS = 6.0
GPU_BALANCE_BLOCKS = 30.0


def request_router_config(model: LLMModelConfig) -> RequestRouterConfig:
    """The Serve request router for the model's `router.policy` (pow2 is Serve's own default router)."""
    from router.serve_adapter import KVAwareRequestRouter, RoundRobinRequestRouter

    cfg = model.router
    common: dict[str, object] = {"request_routing_stats_period_s": cfg.stats_period_s,
                                 "request_routing_stats_timeout_s": max(5.0, 5 * cfg.stats_period_s)}
    if cfg.policy == "pow2":
        return RequestRouterConfig(**common)
    if cfg.policy == "round_robin":
        return RequestRouterConfig(request_router_class=RoundRobinRequestRouter,
                                   request_router_kwargs={"exclude_s": model.failover.exclude_s}, **common)
    if cfg.policy == "ray_prefix_affinity":
        # An import path, so the ingress imports Ray Serve LLM only when this baseline is chosen.
        return RequestRouterConfig(request_router_class="deployments.ray_prefix_router.TokenPrefixCacheAffinityRouter",
                                   **common)
    events = model.engine.kv_events
    balance = cfg.balance_blocks
    if balance is None:
        balance = CPU_BALANCE_BLOCKS if model.placement.device == "cpu" else GPU_BALANCE_BLOCKS
    kwargs = {
        "block_size": model.engine.block_size,
        "uncached_block_weight": cfg.uncached_block_weight,
        "balance_blocks": balance,
        # Without engine events the routing memory is the only evidence, kept about a cache lifetime.
        "routed_blocks_ttl_s": cfg.routed_blocks_ttl_s if events else cfg.approximate_ttl_s,
        "routed_blocks_capacity": cfg.routed_blocks_capacity,
        "use_kv_events": events,
        "new_prefix_spread_blocks": cfg.new_prefix_spread_blocks,
        "exclude_s": model.failover.exclude_s,
    }
    return RequestRouterConfig(request_router_class=KVAwareRequestRouter, request_router_kwargs=kwargs, **common)


def as_deployed(model: LLMModelConfig) -> LLMModelConfig:
    """The model's config as replicas and the ingress receive it, without what may change while they run:
    how many replicas run is Serve's business, so a changed count (or autoscaling bounds) is a scale
    operation on the running deployment (new replicas added, surplus ones drained), not a redeploy of every
    replica; a version's traffic weight reaches the running ingress replicas as their user config."""
    return model.model_copy(update={"num_replicas": 1, "autoscaling": None, "traffic_weight": 1.0})


def traffic_user_config(config: ClusterConfig) -> dict[str, object]:
    """The ingress's user config: the versions' weights. Serve hands a changed one to every running
    ingress replica (`Ingress.reconfigure`), so shifting traffic restarts nothing."""
    return {"traffic_weights": {m.name: m.traffic_weight for m in [*config.models, *config.vision_models]
                                if split_version(m.name)[1]}}


def _llm_deployment(model: LLMModelConfig, model_path: Path, observability: ObservabilityConfig) -> Application:
    resources = replica_resources(model)
    scaling: dict[str, object] = (
        {"autoscaling_config": serve_autoscaling_config(model.autoscaling)} if model.autoscaling is not None
        else {"num_replicas": model.num_replicas})
    options: dict[str, object] = {
        "name": llm_deployment_name(model.name),
        **scaling,
        "max_ongoing_requests": model.max_ongoing_requests,
        # Serve's health check calls `LLMReplica.check_health`, which asks the engine: a dead or wedged
        # engine fails it and Serve replaces the replica.
        "health_check_period_s": model.health.period_s,
        "health_check_timeout_s": model.health.timeout_s,
        # Drain: a stopping replica gets no new requests and this long for its streams; the ingress
        # resumes whatever is still running after it on another replica.
        "graceful_shutdown_timeout_s": model.drain.grace_s,
        "graceful_shutdown_wait_loop_s": 0.5,
        "max_queued_requests": model.admission.max_queued_requests,
        "request_router_config": request_router_config(model),
    }
    options.update(replica_placement_options(resources))
    return versioned_bind(serve.deployment(LLMReplica).options(**options), as_deployed(model), str(model_path),
                          observability)


def replica_placement_options(resources: ReplicaResources) -> dict[str, object]:
    """Serve deployment options that give each replica `resources` (engines.placement): the replica actor
    takes `resources.actor` out of bundle 0 (Serve's convention), the other bundles reserve engine
    workers. Called by `_llm_deployment`; the simulated multi-node tests deploy through it too."""
    actor = dict(resources.actor)
    actor_options: dict[str, object] = {"num_cpus": actor.pop("CPU", 0.0), "num_gpus": actor.pop("GPU", 0.0)}
    if actor:
        actor_options["resources"] = actor
    options: dict[str, object] = {"ray_actor_options": actor_options}
    # A single bundle needs no group: the actor's own resources hold it. Several bundles form one placement
    # group per replica; vLLM's Ray executor finds it from inside the replica and fills its GPU bundles.
    if len(resources.bundles) > 1:
        options["placement_group_bundles"] = [dict(bundle) for bundle in resources.bundles]
        options["placement_group_strategy"] = resources.strategy
    return options


def build_app(config: ClusterConfig, model_paths: dict[str, Path]) -> Application:
    handles = {m.name: _llm_deployment(m, model_paths[m.name], config.observability) for m in config.models}
    # Vision models are prepared here unless model_paths already holds their folders.
    vision_handles, vision_labels = vision_deployments(config, model_paths)
    # On `warmserve down` the ingress drains too: it outlasts the LLM replicas' grace period, so streams
    # those replicas finish in time still reach their clients.
    drain_s = max(m.drain.grace_s for m in config.models) + 5.0 if config.models else 20.0
    ingress = Ingress.options(ray_actor_options={"num_cpus": 1.0}, graceful_shutdown_timeout_s=drain_s,
                              max_ongoing_requests=config.http.ingress_max_ongoing_requests,
                              user_config=traffic_user_config(config))
    return versioned_bind(
        ingress,
        [as_deployed(m) for m in config.models], {name: str(path) for name, path in model_paths.items()},
        handles, config.http,
        [vision_as_deployed(m) for m in config.vision_models], vision_handles, vision_labels,
        # Only digests of the keys travel into the app (deployments/api_keys.py): the security section goes
        # without its key list, which may hold keys in clear.
        config.security.model_copy(update={"api_keys": []}), [resolve_key(k) for k in config.security.api_keys],
        config.observability,
    )
