"""Turn a validated `ClusterConfig` into a Ray Serve application: one LLM deployment per model + ingress."""

from __future__ import annotations

from pathlib import Path

from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from configs.schema import ClusterConfig, LLMModelConfig
from deployments.ingress import Ingress
from deployments.llm_replica import LLMReplica
from engines.placement import ReplicaResources, replica_resources

APP_NAME = "warmserve"
INGRESS_ROUTE = "/"
# vLLM on 2 CPU cores takes about a minute to import and load; Serve's defaults would kill it first.
REPLICA_STARTUP_HEALTH_TIMEOUT_S = 60.0


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
        return RequestRouterConfig(request_router_class=RoundRobinRequestRouter, **common)
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
    }
    return RequestRouterConfig(request_router_class=KVAwareRequestRouter, request_router_kwargs=kwargs, **common)


def _llm_deployment(model: LLMModelConfig, model_path: Path) -> Application:
    resources = replica_resources(model)
    options: dict[str, object] = {
        "name": llm_deployment_name(model.name),
        "num_replicas": model.num_replicas,
        "max_ongoing_requests": model.max_ongoing_requests,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": REPLICA_STARTUP_HEALTH_TIMEOUT_S,
        "graceful_shutdown_timeout_s": 30.0,
        "request_router_config": request_router_config(model),
    }
    options.update(replica_placement_options(resources))
    return serve.deployment(LLMReplica).options(**options).bind(model, str(model_path))


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
    handles = {m.name: _llm_deployment(m, model_paths[m.name]) for m in config.models}
    ingress = Ingress.options(ray_actor_options={"num_cpus": 1.0},
                              max_ongoing_requests=config.http.ingress_max_ongoing_requests)
    return ingress.bind(
        list(config.models), {name: str(path) for name, path in model_paths.items()}, handles, config.http
    )
