"""`warmserve rollout`: move a model's traffic to a new version in steps, rolling back on a bad canary.

    ./warmserve rollout --config FILE --model chat --to v2 [--steps 10,50,100] [--step-s 30]

FILE is the config the cluster runs, with the new version (`chat@v2`) added as an entry. The rollout
deploys it with the new version at weight 0 (the other models and versions keep running untouched),
waits until the new version answers, then gives it each step's share of `chat`'s traffic. After each
step's `--step-s` it compares the new version's error rate and mean TTFT (a vision model's: mean request
latency) with the old versions' over that step (the ingress's `/metrics`), and rolls back, restoring the
starting weights, when the new version is worse by more than the bounds, unhealthy, past its canary
budget, or got too few requests to judge. Weight changes
reach the running ingress in place: no replica restarts and no request is dropped. Exit status 0 when
the new version took all traffic, 1 after a rollback. The file is not edited: `--save PATH` writes the
config with the final weights, to apply next time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from cluster.rollout_metrics import scrape_versions
from cluster.rollout_run import bring_up, run_rollout
from configs.model_versions import VERSION_SEPARATOR, split_version
from configs.rollout_schema import RolloutPolicy
from configs.schema import ClusterConfig


def with_weights(config: ClusterConfig, weights: dict[str, float]) -> ClusterConfig:
    """`config` with these versions' traffic weights, LLM and vision entries alike."""
    def reweighted(entries: list[Any]) -> list[Any]:
        return [m.model_copy(update={"traffic_weight": weights[m.name]}) if m.name in weights else m for m in entries]

    return config.model_copy(update={"models": reweighted(config.models),
                                     "vision_models": reweighted(config.vision_models)})


def without_model(config: ClusterConfig, name: str) -> ClusterConfig:
    return config.model_copy(update={"models": [m for m in config.models if m.name != name],
                                     "vision_models": [m for m in config.vision_models if m.name != name]})


def is_vision_version(config: ClusterConfig, name: str) -> bool:
    return any(m.name == name for m in config.vision_models)


def starting_weights(config: ClusterConfig, model: str, target: str) -> dict[str, float]:
    """The versions' weights from the config, the target's set to 0; raises ValueError naming the problem."""
    versions = {m.name: m.traffic_weight for m in [*config.models, *config.vision_models]
                if split_version(m.name)[0] == model and split_version(m.name)[1] is not None}
    if not versions:
        raise ValueError(f"the config has no versions of {model!r} (entries named '{model}@<version>')")
    if target not in versions:
        raise ValueError(f"the config has no entry {target!r}; versions of {model!r}: {sorted(versions)}")
    start = {**versions, target: 0.0}
    if sum(start.values()) <= 0:
        raise ValueError(f"no version of {model!r} but {target} has traffic_weight > 0: nothing to roll from")
    return start


def _policy(args: argparse.Namespace) -> RolloutPolicy:
    return RolloutPolicy(steps_percent=[float(s) for s in args.steps.split(",") if s.strip()], step_s=args.step_s,
                         min_requests=args.min_requests, step_timeout_s=args.step_timeout_s,
                         max_error_rate_increase=args.max_error_rate_increase,
                         max_canary_errors=args.max_canary_errors, max_ttft_ratio=args.max_ttft_ratio,
                         ready_timeout_s=args.ready_timeout_s)


def cmd_rollout(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="warmserve rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="local", help="the running cluster's config, with the new version added")
    parser.add_argument("--model", required=True, help="the bare model name, e.g. chat")
    parser.add_argument("--to", required=True, help="the new version, e.g. v2 (config entry chat@v2)")
    parser.add_argument("--steps", default="10,50,100", help="the new version's share at each step, percent")
    parser.add_argument("--step-s", type=float, default=30.0, help="seconds each step runs before it is judged")
    parser.add_argument("--min-requests", type=int, default=20, help="new-version requests a step needs")
    parser.add_argument("--step-timeout-s", type=float, default=300.0,
                        help="roll back when a step has not seen --min-requests by then")
    parser.add_argument("--max-error-rate-increase", type=float, default=0.02,
                        help="allowed error rate above the old version's (fraction)")
    parser.add_argument("--max-canary-errors", type=int, default=10,
                        help="the canary budget: failed requests of the new version the rollout tolerates in all")
    parser.add_argument("--max-ttft-ratio", type=float, default=2.0, help="allowed mean TTFT over the old version's")
    parser.add_argument("--ready-timeout-s", type=float, default=900.0)
    parser.add_argument("--api-key", default=None, help="for /metrics when security.metrics_require_key is set")
    parser.add_argument("--save", type=Path, default=None, help="write the config with the final weights here")
    args = parser.parse_args(argv)

    from cluster.config_check import load_checked_config
    from cluster.serve_environment import serve_environment

    config = load_checked_config(args.config)
    target = f"{args.model}{VERSION_SEPARATOR}{args.to}"
    try:
        policy = _policy(args)
        start = starting_weights(config, args.model, target)
    except ValueError as error:
        parser.error(str(error))
    # Before `ray.serve` is imported, as for `warmserve up` (cluster/cli.py).
    os.environ.update(serve_environment(config.ray, config.http))
    import ray

    from cluster.ray_control import use_token_auth
    from cluster.serve_control import deploy, deployment_problem, prepare_models, wait_until_answering
    from deployments.app_builder import APP_NAME, llm_deployment_name
    from deployments.vision_app import vision_deployment_name

    use_token_auth()
    ray.init(address="auto", namespace=config.ray.namespace, log_to_driver=False)
    model_paths = prepare_models(config)
    root = f"http://{config.http.host}:{config.http.port}"

    def apply(weights: dict[str, float]) -> None:
        deploy(with_weights(config, weights), model_paths, APP_NAME)

    def log(line: str) -> None:
        print(f"[warmserve] rollout: {line}", flush=True)

    log(f"deploying {target} at weight 0")
    failed = bring_up(target, lambda: apply(start),
                      lambda: wait_until_answering(config, APP_NAME, root, policy.ready_timeout_s, model=target),
                      lambda: deploy(without_model(with_weights(config, start), target), model_paths, APP_NAME), log)
    if failed is not None:
        print(f"[warmserve] rolled back: {failed}", file=sys.stderr)
        return 1
    vision = is_vision_version(config, target)
    deployment = vision_deployment_name(target) if vision else llm_deployment_name(target)
    result = run_rollout(start, target, policy, apply, lambda: scrape_versions(root, args.api_key),
                         lambda: deployment_problem(APP_NAME, deployment), log=log,
                         latency="latency" if vision else "TTFT")
    final = with_weights(config, result.weights)
    if args.save is not None:
        args.save.write_text(yaml.safe_dump(final.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
        print(f"[warmserve] rollout: wrote the config with the final weights to {args.save}")
    weights = ", ".join(f"{name}: {weight:g}" for name, weight in result.weights.items())
    if result.completed:
        print(f"[warmserve] rollout done: {result.reason} ({weights}); set these weights in {args.config} "
              "(or pass --save) so the next `up` keeps them")
        return 0
    print(f"[warmserve] rolled back: {result.reason} ({weights})", file=sys.stderr)
    return 1
