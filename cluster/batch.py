"""`python -m cluster.batch`: batch inference over an OpenAI batch input file, resumable and exactly-once.

Meant to run as a Ray job (it is also `warmserve batch`):

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m cluster.batch --input /data/requests.jsonl --output /data/results.jsonl

Reads JSONL or Parquet lines `{custom_id, method, url, body}` for /v1/chat/completions and /v1/completions,
writes one OpenAI batch output line per request (`cluster.batch_format`), malformed lines to an errors
file, progress to the log. Modes: `offline` (Ray Data + the engine adapter, `cluster.batch_offline`) and
`online` (HTTP to the running app, `cluster.batch_online`). Output is committed in shards
(`cluster.batch_store`); running the same command again after a kill finishes what is missing.
Guide: docs/batch.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cluster.batch_backoff import BackoffPolicy
from cluster.batch_format import completion_tokens, succeeded
from cluster.batch_input import BatchInput, InputError, read_input
from cluster.batch_online import EndpointAuthError
from cluster.batch_plan import cut_shards, pending_lines, prefix_sorted
from cluster.batch_progress import Progress, summary
from cluster.batch_store import ShardStore, StoreError, atomic_write, default_errors_path, write_errors_file
from cluster.ray_control import use_token_auth
from configs.loader import ConfigError, ConfigIssue
from configs.schema import ClusterConfig, LLMModelConfig

# Where online mode reads the endpoint's API key (a key on the command line would show in `ps` and job logs).
API_KEY_ENV = "WARMSERVE_API_KEY"


def _log(message: str) -> None:
    print(f"[batch] {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.batch",
        description="Batch inference over an OpenAI batch file (JSONL or Parquet); resumable, exactly-once.")
    parser.add_argument("--input", required=True, type=Path, help="OpenAI batch input (.jsonl or .parquet)")
    parser.add_argument("--output", required=True, type=Path,
                        help="merged output file (.jsonl); shards are kept in OUTPUT.shards/ (use an absolute "
                             "path: a Ray job runs in a temporary copy of --working-dir)")
    parser.add_argument("--errors", type=Path, default=None,
                        help="malformed input lines (default: OUTPUT with .errors.jsonl)")
    parser.add_argument("--mode", choices=("offline", "online"), default="offline",
                        help="offline: Ray Data drives engine replicas directly; online: HTTP to the running app")
    parser.add_argument("--config", default="local", help="config file or shipped profile (default: local)")
    parser.add_argument("--model", default=None, help="the config's model to run (default: its first)")
    parser.add_argument("--shard-size", type=_positive, default=64, help="requests per committed shard")
    parser.add_argument("--shards-in-flight", type=_positive, default=2,
                        help="shards running at once per engine (offline) or in all (online)")
    parser.add_argument("--replicas", type=_positive, default=1, help="offline: engine replicas (Ray Data actors)")
    parser.add_argument("--endpoint", default=None,
                        help="online: the app's base URL (default: http://HOST:PORT from the config)")
    parser.add_argument("--concurrency", type=_positive, default=8, help="online: requests in flight")
    parser.add_argument("--api-key-env", default=API_KEY_ENV,
                        help=f"online: the environment variable holding the endpoint's API key (default: "
                             f"{API_KEY_ENV}; with `ray job submit`, pass it in --runtime-env-json env_vars)")
    parser.add_argument("--max-attempts", type=_positive, default=8,
                        help="online: tries per request on 429/503/no answer")
    parser.add_argument("--request-timeout-s", type=float, default=600.0, help="online: per-request timeout")
    parser.add_argument("--address", default=None,
                        help="offline: Ray address (default: the job's cluster, or a private local instance)")
    parser.add_argument("--progress-interval-s", type=float, default=30.0,
                        help="seconds between progress lines while no shard commits")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _pick_model(config: ClusterConfig, name: str | None) -> LLMModelConfig:
    if name is None:
        return config.models[0]
    for model in config.models:
        if model.name == name:
            return model
    names = [m.name for m in config.models]
    raise ConfigError("--model", [ConfigIssue("--model", f"no model {name!r} in the config; it has {names}")])


class _Run:
    """One run of the job: the store, the progress and the commit path both runners share."""

    def __init__(self, args: argparse.Namespace, config: ClusterConfig, model: LLMModelConfig,
                 batch_input: BatchInput, store: ShardStore) -> None:
        self.args, self.config, self.model = args, config, model
        self.input, self.store = batch_input, store
        self.pending = pending_lines(batch_input.lines, store.committed)
        self.progress = Progress(total_rows=len(batch_input.lines),
                                 skipped_rows=len(batch_input.lines) - len(self.pending))
        self._commit_lock = threading.Lock()
        self.extra: dict[str, Any] = {}

    def commit(self, records: list[dict[str, Any]], shard_elapsed_s: float) -> None:
        with self._commit_lock:  # one writer: shard numbers and the manifest stay consistent
            fresh = [r for r in records if r["custom_id"] not in self.store.committed]
            name = self.store.commit(records)
            if name is None:
                return
            self.progress.shard_committed(name, len(fresh), sum(completion_tokens(r) for r in fresh),
                                          sum(not succeeded(r) for r in fresh), shard_elapsed_s)

    def run_offline(self) -> None:
        from cluster.batch_offline import actor_resources, engine_result, run_offline
        from cluster.batch_requests import PreparedRequest, frame, prepare
        from cluster.serve_control import prepare_models
        from engines.tokenizer import PromptTokenizer

        actor_resources(self.model)  # fail on an unsupported shape before loading anything
        one_model = self.config.model_copy(update={"models": [self.model]})
        model_path = prepare_models(one_model)[self.model.name]
        tokenizer = PromptTokenizer(model_path)
        prepared: list[PreparedRequest] = []
        answered: list[dict[str, Any]] = []  # 4xx answers: what the ingress says before any engine work
        for line in self.pending:
            outcome = prepare(line, self.model, tokenizer)
            (prepared if isinstance(outcome, PreparedRequest) else answered).append(outcome)
        for records in cut_shards(answered, self.args.shard_size):
            self.commit(records, 0.0)
        if not prepared:
            return
        shards = cut_shards(prefix_sorted(prepared, lambda p: p.prompt_token_ids), self.args.shard_size)
        by_id = {p.custom_id: p for p in prepared}
        _log(f"offline: {len(prepared)} requests in {len(shards)} shards on {self.args.replicas} engine "
             f"replica(s) of {self.model.name} (TP {self.model.engine.tensor_parallel_size} x PP "
             f"{self.model.engine.pipeline_parallel_size}); engines take about a minute to start")
        _connect_ray(self.args.address, self.config.ray.num_cpus)
        first_ready: float | None = None
        tokens_before = self.progress.tokens_done
        for shard in run_offline(shards, self.model, model_path, self.args.replicas, self.args.shards_in_flight):
            records = [frame(by_id[r["custom_id"]], engine_result(r)) for r in shard["results"]]
            self.commit(records, shard["finished_at"] - shard["started_at"])
            ready = shard.get("engine_ready_at")
            if ready is not None:
                first_ready = ready if first_ready is None else min(first_ready, ready)
        if first_ready is not None:
            # Throughput once an engine was serving (engine start excluded): what the benchmark compares
            # with vLLM's own LLM.generate, whose engine also starts before the clock.
            window_s = max(1e-9, time.time() - first_ready)
            tokens = self.progress.tokens_done - tokens_before
            self.extra.update(generation_window_s=round(window_s, 2),
                              generation_tokens_per_s=round(tokens / window_s, 2))

    def run_online(self) -> None:
        from cluster.batch_online import OnlineSettings, run_online

        endpoint = self.args.endpoint or f"http://{self.config.http.host}:{self.config.http.port}"
        settings = OnlineSettings(endpoint=endpoint, concurrency=self.args.concurrency,
                                  shards_in_flight=self.args.shards_in_flight,
                                  request_timeout_s=self.args.request_timeout_s,
                                  policy=BackoffPolicy(max_attempts=self.args.max_attempts),
                                  api_key=os.environ.get(self.args.api_key_env) or None)
        shards = cut_shards(self.pending, self.args.shard_size)
        _log(f"online: {len(self.pending)} requests in {len(shards)} shards to {endpoint} "
             f"(concurrency {self.args.concurrency})")

        async def on_shard(records: list[dict[str, Any]], elapsed_s: float) -> None:
            await asyncio.to_thread(self.commit, records, elapsed_s)  # fsync off the event loop

        asyncio.run(run_online(shards, settings, on_shard, log=_log))


def job_identity(model: LLMModelConfig) -> dict[str, str]:
    """What a resumed run must share with the first one for their answers to belong in one output: the
    model, its checkpoint, the engine settings that change what it computes, and the request limits
    (defaults such as max_tokens); serving settings (replicas, routing, threads) may change freely."""
    engine = model.engine
    shaping = {"checkpoint": model.model, "limits": model.limits.model_dump(mode="json"),
               "engine": {"kind": engine.kind, "dtype": engine.dtype, "max_model_len": engine.max_model_len,
                          "quantization": engine.quantization, "seed": engine.seed}}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
    return {"model": model.name, "model_config_sha256": digest[:16]}


def _connect_ray(address: str | None, num_cpus: int) -> None:
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):  # `ray job submit` sets RAY_ADDRESS for the driver
        ray.init(address=address)
    else:
        # A private instance with the config's logical CPUs, more than the host's cores, so that a 2-core CPU
        # host can still place every actor.
        ray.init(address="local", num_cpus=num_cpus)


def main(argv: list[str] | None = None) -> int:
    use_token_auth()  # before anything imports ray
    args = build_parser().parse_args(argv)
    if not args.output.is_absolute() or not args.input.is_absolute():
        _log(f"note: relative paths resolve against {Path.cwd()} (inside a Ray job: a temporary copy of "
             "--working-dir, removed later); prefer absolute --input/--output")
    input_path, output = args.input.resolve(), args.output.resolve()
    errors_path = (args.errors or default_errors_path(output)).resolve()
    started = time.monotonic()
    try:
        from cluster.config_check import load_checked_config

        config = load_checked_config(args.config)
        model = _pick_model(config, args.model)
        batch_input = read_input(input_path)
        output.parent.mkdir(parents=True, exist_ok=True)
        store = ShardStore(output)
        store.open(input_path, batch_input.sha256, job_identity(model))
        # Only once the store accepted this input: a refused resume must leave the earlier errors file.
        write_errors_file(errors_path, [m.record() for m in batch_input.malformed])
    except ConfigError as error:
        print(f"[batch] {error}", file=sys.stderr)
        return 2
    except (InputError, StoreError, OSError) as error:
        print(f"[batch] {error}", file=sys.stderr)
        return 2
    try:
        return _run_job(args, config, model, batch_input, store, input_path, output, errors_path, started)
    except EndpointAuthError as error:
        print(f"[batch] {error}; set the key in ${args.api_key_env} (--api-key-env names another variable). "
              f"Lines committed so far are kept; rerun to resume.", file=sys.stderr)
        return 2
    finally:
        store.close()


def _run_job(args: argparse.Namespace, config: ClusterConfig, model: LLMModelConfig, batch_input: BatchInput,
             store: ShardStore, input_path: Path, output: Path, errors_path: Path, started: float) -> int:
    run = _Run(args, config, model, batch_input, store)
    _log(f"input {input_path}: {batch_input.total_lines} lines, {len(batch_input.lines)} requests, "
         f"{len(batch_input.malformed)} malformed (-> {errors_path}); {run.progress.skipped_rows} already "
         f"committed in {store.directory}, {len(run.pending)} to run ({args.mode} mode)")
    if run.pending:
        stop_heartbeat = run.progress.start_heartbeat(args.progress_interval_s, lambda: "running")
        try:
            run.run_offline() if args.mode == "offline" else run.run_online()
        finally:
            stop_heartbeat.set()
    line_of = {line.custom_id: line.line for line in batch_input.lines}
    written = store.merge(line_of)
    records = [store.committed[cid] for cid in line_of]
    result = summary(mode=args.mode, input_lines=batch_input.total_lines, malformed=len(batch_input.malformed),
                     requests=len(batch_input.lines), skipped=run.progress.skipped_rows, progress=run.progress,
                     failed_total=sum(not succeeded(r) for r in records),
                     tokens_total=sum(completion_tokens(r) for r in records),
                     wall_s=time.monotonic() - started, output=str(output), errors_file=str(errors_path),
                     extra={**run.extra, "duplicates_dropped": store.duplicates_dropped})
    atomic_write(store.directory / "summary.json", json.dumps(result, indent=1).encode())
    _log(f"done: {written} output lines in {output}; {result['failed_requests']} failed requests, "
         f"{result['malformed_lines']} malformed lines, {result['completion_tokens_this_run']} tokens this run "
         f"in {result['wall_s']:.1f} s")
    _log("summary " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
