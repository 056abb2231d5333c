"""The `warmserve` command line: up, down, status, validate, prepare, preflight, test, bench, loadtest, batch,
chaos.

Run through the `./warmserve` script in the repository root, which builds the virtual environment first,
or as the `warmserve` console script of an installed package.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from configs.loader import ConfigError
from configs.schema import ClusterConfig
from cluster.config_check import load_checked_config
from cluster.loadtest_cmd import cmd_loadtest
from cluster.preflight_cmd import add_preflight_arguments, cmd_preflight
from cluster.ray_control import use_token_auth

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "warmserve"
DEFAULT_CONFIG = "local"
READY_TIMEOUT_S = 900.0


def _load_or_exit(name_or_path: str) -> ClusterConfig:
    try:
        return load_checked_config(name_or_path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    print("ok")
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from cluster.serve_control import prepare_models

    config = _load_or_exit(args.config)
    for name, path in prepare_models(config).items():
        print(f"[warmserve] model {name}: {path}")
    return 0


def _connect(address: str, namespace: str, joined: bool) -> dict[str, str]:
    """Join the cluster as a driver; returns Ray's address info (`session_dir`, `gcs_address`, ...)."""
    import ray

    # Joining a cluster we did not start: ship the code; a local head already has it on PYTHONPATH.
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": [".git", "reports"]} if joined else None
    context = ray.init(address=address, namespace=namespace, runtime_env=runtime_env, log_to_driver=False)
    return dict(context.address_info)


def _warn_if_open_to_the_network(config: ClusterConfig) -> None:
    from configs.ray_schema import is_loopback

    if not is_loopback(config.http.host) and not config.security.api_keys:
        print(f"[warmserve] WARNING: http.host={config.http.host} accepts connections from the network and "
              "security.api_keys is empty, so anyone who reaches it can use the models; set API keys and "
              "front it with TLS (docs/operations.md)", file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    from cluster.cpu_affinity import serving_cpus_problem
    from cluster.ray_control import ClusterState, local_head_is_running, start_local_head
    from cluster.serve_control import deploy, prepare_models, wait_until_answering
    from cluster.serve_environment import serve_environment
    from cluster.session_processes import SESSION_ENV, new_session_id

    config = _load_or_exit(args.config)
    _warn_if_open_to_the_network(config)
    if config.ray.serving_cpus is not None and (args.address or config.ray.address) is None:
        problem = serving_cpus_problem(config)
        if problem is not None:
            print(f"[warmserve] {problem}", file=sys.stderr, flush=True)
            return 2
    # Serve reads these switches in every process that touches it, this driver included (it creates the
    # deployment handles the ingress uses), when `ray.serve` is first imported: so before anything that
    # imports it, preparing the vision models included.
    serve_env = serve_environment(config.ray, config.http)
    os.environ.update(serve_env)
    model_paths = prepare_models(config)
    address = args.address or config.ray.address
    base_url = f"http://{config.http.host}:{config.http.port}"
    started_head = False
    session: str | None = None
    if address is not None:
        settings = " ".join(f"{k}={v}" for k, v in serve_env.items())
        print(f"[warmserve] joining {address}: Serve runs with the environment its nodes were started with; "
              f"this config expects {settings}", flush=True)
    if address is None:
        previous = ClusterState.load()
        if local_head_is_running():
            address = "auto"
            started_head = bool(previous and previous.started_head)
            session = previous.session if previous and previous.started_head else None
            print("[warmserve] a local Ray head is already running: deploying onto it (its Serve data plane "
                  "and tuning stay as it was started)", flush=True)
        else:
            session = new_session_id()
            address = start_local_head(config.ray, {**serve_env, SESSION_ENV: session})
            started_head = True
    # Saved before anything else can fail, so `warmserve down` always finds what we started.
    ClusterState(address=address, started_head=started_head, http_url=base_url, session=session).save()
    ray_info = _connect(address, config.ray.namespace, joined=not started_head)
    from cluster.preflight import preflight_before_deploy  # checks only models whose replicas span nodes

    if not args.skip_preflight and not preflight_before_deploy(config):
        print("[warmserve] preflight failed: not deploying (see above; `up --skip-preflight` to force)")
        return 1
    print(f"[warmserve] deploying {', '.join(m.name for m in config.models)} "
          f"({sum(m.num_replicas for m in config.models)} LLM replicas)", flush=True)
    deploy(config, model_paths, APP_NAME)
    answer = wait_until_answering(config, APP_NAME, base_url, READY_TIMEOUT_S)
    print(f"[warmserve] {config.models[0].name} answered: {answer!r}")
    if started_head and config.ray.background_niceness is not None:
        _lower_ray_daemons(config.ray.background_niceness, ray_info)
    print(f"[warmserve] up: OpenAI base URL {base_url}/v1   (stop with: ./warmserve down)")
    return 0


def _lower_ray_daemons(niceness: int, ray_info: dict[str, str]) -> None:
    """After the first answer, when every daemon and dashboard module has started (some start lazily)."""
    from cluster.background_priority import lower_background_priority

    changed = lower_background_priority(niceness, ray_info["session_dir"], ray_info["gcs_address"])
    # The dashboard's module processes (titled `ray-dashboard-<Module>-0`, or plain `python -c`) as one count.
    modules = [name for name in changed if name.startswith("ray-dashboard-") or name == "-c"]
    names = sorted(set(changed) - set(modules)) + ([f"{len(modules)} dashboard module processes"] if modules else [])
    print(f"[warmserve] Ray's background daemons at nice {niceness}: {', '.join(names) or 'none found'}")


def cmd_down(_: argparse.Namespace) -> int:
    from cluster.ray_control import ClusterState, stop_local_head

    state = ClusterState.load()
    if state is None:
        print("[warmserve] nothing to stop (no cluster started by `warmserve up`)")
        return 0
    try:
        from ray import serve

        _connect(state.address, "warmserve", joined=not state.started_head)
        serve.shutdown()
    except Exception as error:  # the cluster may already be gone; stopping must still finish
        print(f"[warmserve] could not reach Serve ({type(error).__name__}: {error}); continuing")
    if state.started_head:
        stop_local_head()
    if state.session is not None:
        from cluster.session_processes import end_session_processes

        ended, survivors = end_session_processes(state.session)
        if ended:
            print(f"[warmserve] ended {len(ended)} processes of this session that outlived Ray: {', '.join(ended)}")
        if survivors:
            print(f"[warmserve] could not end these processes of this session: {', '.join(survivors)}",
                  file=sys.stderr)
            return 1
    ClusterState.clear()
    print("[warmserve] down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ray import serve

    from cluster.ray_control import ClusterState
    from cluster.serve_control import replica_counts, status_name
    from cluster.status_table import replica_table
    from cluster.traffic_status import traffic_lines

    state = ClusterState.load()
    if state is None:
        print("[warmserve] no cluster started by `warmserve up`")
        return 1
    _connect(state.address, "warmserve", joined=not state.started_head)
    status = serve.status()
    print(f"endpoint: {state.http_url}/v1   ray: {state.address}")
    print(f"{'application/deployment':40} {'status':14} replicas")
    for app_name, app in status.applications.items():
        print(f"{app_name:40} {status_name(app.status):14}")
        for name, deployment in app.deployments.items():
            print(f"  {name:38} {status_name(deployment.status):14} {replica_counts(deployment) or '-'}")
    print()
    for line in traffic_lines(state.http_url, args.api_key):  # versioned models' splits, if any
        print(line)
    for line in replica_table(state.http_url, args.api_key):
        print(line)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from cluster.serve_control import prepare_models

    # The tests' models (SmolLM2 and its TP copy, the tiny Llama, the vision ResNets); building them here
    # shows progress outside pytest's capture.
    for profile in ("local", "local-tp2", "test-fake", "test-vision"):
        prepare_models(_load_or_exit(profile))
    command = [sys.executable, "-m", "pytest", *(args.passthrough or ["tests"])]
    print(f"[warmserve] {' '.join(command[2:])}", flush=True)
    return subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}).returncode


def cmd_bench(args: argparse.Namespace) -> int:
    if args.passthrough[:2] == ["router", "--live"]:
        # Routers side by side on real vLLM replicas, over HTTP: a load test, so a subprocess like below.
        command = [sys.executable, "-m", "loadtests.compare_routers", *args.passthrough[2:]]
        return subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}).returncode
    if args.passthrough[:1] == ["vision"]:
        # Vision backends side by side on the local CPU or GPU (engines only, docs/benchmarks.md).
        from cluster.bench_vision import main as bench_vision

        return bench_vision(args.passthrough[1:])
    if args.passthrough[:1] == ["router"]:
        # The simulated router comparison: pure Python, no cluster (docs/benchmarks.md, "Router: simulated").
        from cluster.bench_router import main as bench_router

        return bench_router(args.passthrough[1:])
    # A subprocess, not an import: loadtests talk to the cluster over HTTP and sit outside the layering.
    command = [sys.executable, "-m", "loadtests.compare_raw_vllm", *args.passthrough]
    return subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}).returncode


def cmd_batch(args: argparse.Namespace) -> int:
    # The batch job's own parser (cluster/batch.py); the same command `ray job submit` runs.
    from cluster.batch import main as batch_main

    return batch_main(args.passthrough)


def cmd_chaos(args: argparse.Namespace) -> int:
    from cluster.chaos import cmd_chaos as chaos_main

    return chaos_main(args.passthrough)


def cmd_rollout(args: argparse.Namespace) -> int:
    from cluster.rollout import cmd_rollout as rollout_main

    return rollout_main(args.passthrough)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmserve", description="LLM serving cluster on Ray Serve + vLLM")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or join) a Ray cluster and serve the configured models")
    up.add_argument("--config", default=DEFAULT_CONFIG, help="config file or shipped profile (default: local)")
    up.add_argument("--address", default=None, help="join this Ray cluster instead of starting a local head")
    up.add_argument("--skip-preflight", action="store_true", help="deploy without the multi-node link check")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show deployments, and each LLM replica's load, KV cache use, "
                                           "prefix-cache hits and health")
    status.add_argument("--api-key", default=None, help="an API key: for /v1/models (version splits) when API "
                                                        "keys are set, /metrics when security.metrics_require_key is")
    status.set_defaults(func=cmd_status)
    validate = sub.add_parser("validate", help="validate a config file and print it resolved")
    validate.add_argument("config")
    validate.set_defaults(func=cmd_validate)
    prepare = sub.add_parser("prepare", help="build the config's models into the model cache")
    prepare.add_argument("--config", default=DEFAULT_CONFIG)
    prepare.set_defaults(func=cmd_prepare)
    preflight = sub.add_parser("preflight", help="check torch.distributed (NCCL/gloo) links of every replica's "
                                                 "placement group: latency, bandwidth, failures by node pair")
    add_preflight_arguments(preflight)
    preflight.set_defaults(func=lambda args: cmd_preflight(args, _connect))
    test = sub.add_parser("test", help="run the test suite (unit, integration, e2e)")
    test.set_defaults(func=cmd_test)
    # add_help=False: `--help` goes on to the benchmark itself (`bench --help`, `bench router --help`).
    bench = sub.add_parser("bench", add_help=False,
                           help="benchmark warmserve against raw vLLM, or `bench router ...`: routing policies "
                                "on a simulated cluster (docs/benchmarks.md)")
    bench.set_defaults(func=cmd_bench)
    # add_help=False: `loadtest --help` shows the harness's own options (loadtests/run_loadtest.py).
    loadtest = sub.add_parser("loadtest", add_help=False,
                              help="Locust load test of an endpoint with a report: TTFT, ITL, goodput, plots")
    loadtest.set_defaults(func=cmd_loadtest)
    # add_help=False: `batch --help` shows the job's own options.
    batch = sub.add_parser("batch", add_help=False,
                           help="batch inference over an OpenAI batch file, offline (Ray Data) or online; "
                                "resumable, exactly-once (docs/batch.md)")
    batch.set_defaults(func=cmd_batch)
    # add_help=False: `chaos --help` shows the tool's own options (cluster/chaos.py).
    chaos = sub.add_parser("chaos", add_help=False,
                           help="kill or stall replicas under load and check that no request was lost "
                                "(docs/reliability.md)")
    chaos.set_defaults(func=cmd_chaos)
    # add_help=False: `rollout --help` shows the command's own options (cluster/rollout.py).
    rollout = sub.add_parser("rollout", add_help=False,
                             help="shift a model's traffic to a new version in steps; roll back automatically "
                                  "on a worse error rate or TTFT (docs/operations.md)")
    rollout.set_defaults(func=cmd_rollout)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `test`, `bench`, `loadtest`, `batch`, `chaos` and `rollout` pass everything they do not know on (to
    # pytest / the benchmark / Locust / the batch job / the chaos tool / the rollout).
    args, passthrough = parser.parse_known_args(argv)
    if passthrough and args.command not in ("test", "bench", "loadtest", "batch", "chaos", "rollout"):
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    args.passthrough = passthrough
    # Before anything imports ray: Ray reads the auth mode once, at import.
    use_token_auth()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
