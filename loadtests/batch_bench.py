"""Offline batch throughput: `ray job submit -- python -m cluster.batch` vs vLLM's own `LLM.generate`.

Same model, engine settings (the config's), machine and requests (one generated input file, greedy,
`ignore_eos` so both sides generate exactly `--max-tokens` per request), run back to back in alternating
order. Each side starts its engine before its clock starts:

- batch: a private Ray head per run, the job submitted through the real CLI; its `summary.json` gives
  `generation_tokens_per_s`, completion tokens from the moment an engine was ready to the last commit
  (Ray Data scheduling, result transfer, framing and the atomic shard commits included);
- vLLM: a fresh process per run builds `vllm.LLM(...)` with the same engine arguments and environment
  as `engines.vllm_engine`, then times one `LLM.generate` over the same prompt token ids (built by the
  batch job's own request path, so the prompts are identical).

    python -m loadtests.batch_bench --requests 200 --max-tokens 32 --runs 3 --config bench-1replica

Honours /tmp/warmserve-bench.lock (waits while another benchmark holds it). Writes reports/batch-bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = Path("/tmp/warmserve-bench.lock")
PORTS = (6393, 8277, 6394, 52377)  # GCS, dashboard, client server, dashboard agent: not Ray's defaults


def _vllm_side(input_path: Path, config_name: str, out: Path) -> None:
    """One `LLM.generate` run (a subprocess of the harness: a fresh engine each time, like the batch job)."""
    from cluster.batch_input import read_input
    from cluster.batch_requests import PreparedRequest, prepare
    from cluster.config_check import load_checked_config
    from cluster.serve_control import prepare_models
    from engines.platform import resolve_dtype
    from engines.tokenizer import PromptTokenizer
    from engines.vllm_engine import apply_cpu_environment

    started = time.monotonic()
    config = load_checked_config(config_name)
    model = config.models[0]
    path = prepare_models(config)[model.name]
    tokenizer = PromptTokenizer(path)
    prepared = [prepare(line, model, tokenizer) for line in read_input(input_path).lines]
    requests = [p for p in prepared if isinstance(p, PreparedRequest)]
    engine = model.engine
    if model.placement.device == "cpu":
        apply_cpu_environment(engine)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=str(path), tokenizer=str(path), dtype=resolve_dtype(engine.dtype, model.placement.device),
              max_model_len=engine.max_model_len, max_num_seqs=engine.max_num_seqs,
              max_num_batched_tokens=engine.max_num_batched_tokens, block_size=engine.block_size,
              enable_prefix_caching=engine.enable_prefix_caching, enforce_eager=engine.enforce_eager,
              tensor_parallel_size=engine.tensor_parallel_size, seed=engine.seed)
    spec = requests[0].sampling[0]
    params = SamplingParams(max_tokens=spec["max_tokens"], temperature=spec["temperature"], top_p=spec["top_p"],
                            ignore_eos=spec["ignore_eos"])
    prompts = [TokensPrompt(prompt_token_ids=r.prompt_token_ids) for r in requests]
    clock = time.monotonic()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    generate_s = time.monotonic() - clock
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    out.write_text(json.dumps({"tokens": tokens, "generate_s": generate_s, "tokens_per_s": tokens / generate_s,
                               "wall_s": time.monotonic() - started, "requests": len(requests)}))


def _run_vllm(input_path: Path, config: str, work: Path, index: int) -> dict[str, Any]:
    import subprocess

    out = work / f"vllm-{index}.json"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "loadtests.batch_bench", "--vllm-side", "--input", str(input_path),
                           "--config", config, "--result", str(out)], cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"LLM.generate run failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["process_wall_s"] = time.monotonic() - started
    return result


def _run_batch(input_path: Path, config: str, work: Path, index: int, shard_size: int,
               shards_in_flight: int) -> dict[str, Any]:
    from loadtests.private_ray_head import HeadPorts, PrivateHead, head_environment, ray_bin

    head = PrivateHead(HeadPorts(*PORTS), Path(tempfile.mkdtemp(prefix="wsbb-", dir="/tmp")),
                       head_environment({}, REPO_ROOT))
    output = work / f"batch-{index}" / "results.jsonl"
    try:
        head.start()
        started = time.monotonic()
        done = head.cli(ray_bin("ray"), "job", "submit", "--address", head.ports.dashboard_url, "--working-dir",
                        str(REPO_ROOT), "--", "python", "-m", "cluster.batch", "--config", config, "--input",
                        str(input_path), "--output", str(output), "--shard-size", str(shard_size),
                        "--shards-in-flight", str(shards_in_flight), timeout_s=1800)
        job_wall_s = time.monotonic() - started
    finally:
        head.stop()
    if done.returncode != 0:
        raise RuntimeError(f"batch job failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    summary = json.loads((output.with_name(output.name + ".shards") / "summary.json").read_text())
    return {"tokens": summary["completion_tokens_this_run"], "tokens_per_s": summary["generation_tokens_per_s"],
            "generate_s": summary["generation_window_s"], "job_wall_s": job_wall_s,
            "failed": summary["failed_requests"]}


def _acquire_lock(name: str) -> None:
    while True:
        try:
            fd = os.open(LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            print(f"[bench] waiting for {LOCK} ({LOCK.read_text().strip() if LOCK.exists() else ''})", flush=True)
            time.sleep(20)
            continue
        os.write(fd, name.encode())
        os.close(fd)
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--config", default="bench-1replica")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--shards-in-flight", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "batch-bench.json")
    parser.add_argument("--vllm-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.vllm_side:
        _vllm_side(args.input, args.config, args.result)
        return 0

    from cluster.ray_control import use_token_auth
    from loadtests.batch_inputs import batch_lines, write_jsonl

    use_token_auth()
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    input_path = write_jsonl(work / "requests.jsonl",
                             batch_lines(args.requests, args.max_tokens, seed=args.seed, ignore_eos=True))
    _acquire_lock("batch_bench")
    runs: dict[str, list[dict[str, Any]]] = {"batch": [], "vllm": []}
    try:
        for index in range(args.runs):
            for side in ("batch", "vllm"):
                if side == "batch":
                    result = _run_batch(input_path, args.config, work, index, args.shard_size, args.shards_in_flight)
                else:
                    result = _run_vllm(input_path, args.config, work, index)
                runs[side].append(result)
                print(f"[bench] run {index + 1} {side}: {result['tokens']} tokens, "
                      f"{result['tokens_per_s']:.1f} tokens/s over {result['generate_s']:.1f} s", flush=True)
    finally:
        LOCK.unlink(missing_ok=True)
    medians = {side: statistics.median(r["tokens_per_s"] for r in results) for side, results in runs.items()}
    report = {"requests": args.requests, "max_tokens": args.max_tokens, "config": args.config,
              "shard_size": args.shard_size, "shards_in_flight": args.shards_in_flight, "runs": runs,
              "median_tokens_per_s": medians, "ratio": medians["batch"] / medians["vllm"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("| side | tokens/s per run | median |")
    print("|---|---|---|")
    for side, results in runs.items():
        per_run = ", ".join(f"{r['tokens_per_s']:.1f}" for r in results)
        print(f"| {side} | {per_run} | {medians[side]:.1f} |")
    print(f"ratio batch / LLM.generate: {report['ratio']:.2f}x   ({args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
