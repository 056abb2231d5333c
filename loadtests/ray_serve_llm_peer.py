"""Deploy the peer, Ray Serve LLM (`ray.serve.llm.build_openai_app`), on a running local Ray head.

The serving-path benchmark (`loadtests/compare_raw_vllm.py`) runs it beside raw vLLM and warmserve with
the same checkpoint and engine settings, so the three are measured in one session. Ray Serve LLM runs as
its documentation sets it up: Serve's proxy, its OpenAI ingress and one `LLMServer` replica; nothing of
warmserve's is in its path. Never imported by warmserve itself (it is the comparison, not a dependency).

    python -m loadtests.ray_serve_llm_peer --model-dir DIR --name NAME --port 8000 [--replicas 2 --prefix-router]

With `--prefix-router` its deployment routes with Ray Serve LLM's own `PrefixCacheAffinityRouter`
(configured as Ray's docs show, defaults unchanged) instead of Serve's power-of-two default: the peer's
prefix-aware setup, which `warmserve loadtest --compare ray_serve_llm` measures against warmserve's router.
"""

from __future__ import annotations

import argparse
import time

# vLLM engine arguments; compare_raw_vllm.ENGINE_FLAGS and configs/profiles/bench-1replica.yaml say the same.
ENGINE_KWARGS: dict[str, object] = {
    "dtype": "float32", "max_model_len": 2048, "max_num_seqs": 16, "block_size": 32, "enforce_eager": True,
    "enable_prefix_caching": True, "seed": 0,
}
APP_NAME = "ray-serve-llm"
PREFIX_ROUTER_CLASS = "ray.serve.llm.request_router.PrefixCacheAffinityRouter"


def deploy(model_dir: str, name: str, port: int, engine_env: dict[str, str], timeout_s: float,
           replicas: int = 1, prefix_router: bool = False, stream_interval: int = 1) -> None:
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    deployment_config: dict[str, object] = {"num_replicas": replicas}
    if prefix_router:
        deployment_config["request_router_config"] = {"request_router_class": PREFIX_ROUTER_CLASS}
    ray.init(address="auto", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = LLMConfig(
        model_loading_config={"model_id": name, "model_source": model_dir},
        # CPU: one bundle without GPUs, which Ray Serve LLM reads as a CPU deployment.
        placement_group_config={"bundles": [{"CPU": 1}]},
        engine_kwargs={**ENGINE_KWARGS, "stream_interval": stream_interval},
        runtime_env={"env_vars": engine_env},
        deployment_config=deployment_config,
        log_engine_metrics=False,
    )
    serve.run(build_openai_app({"llm_configs": [config]}), name=APP_NAME, blocking=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(APP_NAME)
        state = str(getattr(status.status, "value", status.status)) if status else "NOT_STARTED"
        if state == "RUNNING":
            print("[peer] Ray Serve LLM is running", flush=True)
            return
        if state == "DEPLOY_FAILED":
            raise RuntimeError(f"Ray Serve LLM failed to deploy: {status.message}")
        print(f"[peer] waiting for Ray Serve LLM: {state}", flush=True)
        time.sleep(5)
    raise TimeoutError(f"Ray Serve LLM not running after {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the engine's process")
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--replicas", type=int, default=1, help="LLMServer replicas, one engine each")
    parser.add_argument("--prefix-router", action="store_true",
                        help="route with Ray Serve LLM's PrefixCacheAffinityRouter (default: power of two)")
    parser.add_argument("--stream-interval", type=int, default=1, help="vLLM's stream_interval")
    args = parser.parse_args()
    if args.replicas < 1 or args.stream_interval < 1:
        parser.error(f"--replicas and --stream-interval must be at least 1, got {args.replicas}, "
                     f"{args.stream_interval}")
    engine_env = dict(item.split("=", 1) for item in args.env)
    deploy(args.model_dir, args.name, args.port, engine_env, args.timeout_s, args.replicas, args.prefix_router,
           args.stream_interval)


if __name__ == "__main__":
    main()
