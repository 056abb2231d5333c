"""Routers side by side on real vLLM replicas: warmserve `kv_aware` vs Serve's `pow2` vs Ray Serve LLM's
`PrefixCacheAffinityRouter` (`ray_prefix_affinity`), same cluster shape, workload and seeds, one run.

For each policy: `./warmserve up` with the `local` profile (2 SmolLM2 replicas) and that router, one
warm-up request, `--runs` measured runs of the shared-prefix workload (a new seed each run, so no run
finds the previous one's prefixes cached), `./warmserve down`. The prefix-cache hit rate is the engines'
own: the sum of `usage.prompt_tokens_details.cached_tokens` (vLLM's `num_cached_tokens`) over the sum of
prompt tokens. HTTP only, like every load test.

    python -m loadtests.compare_routers [--policies kv_aware,pow2,ray_prefix_affinity] [--runs 2]
        [--workload shared|skewed] [--groups 64] [--questions 4] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtests.chat_bench import RequestResult, run_prompts, summarize
from loadtests.shared_prefix_workload import build_skewed_workload, build_workload
from loadtests.targets import write_policy_config

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "http://127.0.0.1:8000/v1"


@dataclass(slots=True)
class PolicyRun:
    policy: str
    seed: int
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    hit_rate: float
    prefill_tokens: int  # prompt tokens the engines computed (not served from their caches)
    max_mean_requests: float  # busiest replica's request count over the mean
    failures: int


def _score(policy: str, seed: int, results: list[RequestResult], duration_s: float) -> PolicyRun:
    summary = summarize(results, duration_s)
    good = [r for r in results if r.ok]
    prompt = sum(r.prompt_tokens for r in good)
    cached = sum(r.cached_tokens for r in good)
    per_replica = Counter(r.replica for r in good)
    mean = sum(per_replica.values()) / max(1, len(per_replica))
    return PolicyRun(policy, seed, summary.output_tokens_per_s, summary.ttft_p50_ms, summary.ttft_p90_ms,
                     cached / prompt if prompt else 0.0, prompt - cached,
                     max(per_replica.values(), default=0) / mean if mean else 0.0, summary.failures)


def _measure(policy: str, args: argparse.Namespace, reports: Path) -> list[PolicyRun]:
    warmserve = str(REPO_ROOT / "warmserve")
    config = write_policy_config(policy, reports / f"router-{policy}.yaml")
    subprocess.run([warmserve, "up", "--config", str(config)], check=True)
    try:
        warm = [[{"role": "user", "content": "Say hello."}]] * 2
        asyncio.run(run_prompts(BASE_URL, args.model, warm, 2, 4))
        runs = []
        for seed in range(args.runs):
            if args.workload == "skewed":
                prompts = build_skewed_workload(args.groups, args.groups * args.questions, args.zipf_s,
                                                seed=1000 + seed)
            else:
                prompts = build_workload(args.groups, args.questions, seed=1000 + seed)
            results, duration = asyncio.run(run_prompts(BASE_URL, args.model, prompts, args.concurrency,
                                                        args.max_tokens))
            run = _score(policy, seed, results, duration)
            print(f"[routers] {policy} run {seed + 1}/{args.runs}: hit {run.hit_rate:.1%}, TTFT p50 "
                  f"{run.ttft_p50_ms:.0f} ms p90 {run.ttft_p90_ms:.0f} ms, {run.output_tokens_per_s:.1f} tok/s, "
                  f"max/mean {run.max_mean_requests:.2f}, failures {run.failures}", flush=True)
            runs.append(run)
        return runs
    finally:
        subprocess.run([warmserve, "down"], check=False)


def _medians(runs: list[PolicyRun]) -> dict[str, float]:
    fields = ("output_tokens_per_s", "ttft_p50_ms", "ttft_p90_ms", "hit_rate", "prefill_tokens",
              "max_mean_requests")
    return {f: statistics.median(getattr(r, f) for r in runs) for f in fields}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", default="kv_aware,pow2,ray_prefix_affinity")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workload", choices=("shared", "skewed"), default="shared",
                        help="shared: every prompt asked --questions times in rounds; skewed: Zipf-popular prompts")
    parser.add_argument("--zipf-s", type=float, default=1.2, help="skewed workload's Zipf exponent")
    parser.add_argument("--groups", type=int, default=64, help="distinct system prompts per run")
    parser.add_argument("--questions", type=int, default=4, help="requests per system prompt")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--output", default=str(REPO_ROOT / "reports" / "compare-routers.json"))
    args = parser.parse_args()
    reports = REPO_ROOT / "reports"
    reports.mkdir(exist_ok=True)
    all_runs = {policy: _measure(policy, args, reports) for policy in args.policies.split(",")}
    medians = {policy: _medians(runs) for policy, runs in all_runs.items()}
    Path(args.output).write_text(json.dumps(
        {"workload": vars(args), "runs": {p: [asdict(r) for r in runs] for p, runs in all_runs.items()},
         "median": medians}, indent=2))
    print(f"{'policy':22} {'hit':>6} {'TTFT p50':>9} {'TTFT p90':>9} {'tok/s':>7} {'prefill tok':>11} {'max/mean':>8}")
    for policy, m in medians.items():
        print(f"{policy:22} {m['hit_rate']:6.1%} {m['ttft_p50_ms']:7.0f}ms {m['ttft_p90_ms']:7.0f}ms "
              f"{m['output_tokens_per_s']:7.1f} {m['prefill_tokens']:11.0f} {m['max_mean_requests']:8.2f}")


if __name__ == "__main__":
    main()
