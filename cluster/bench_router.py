"""`warmserve bench router`: routing policies on the simulated cluster (router/sim), or the router micro-benchmark.

    warmserve bench router [--workload NAME | --trace FILE] [--replicas N] [--policies a,b,...]
                           [--profile cpu|gpu] [--seed S] [--json]
    warmserve bench router --micro [--replicas N] [--micro-blocks N] [--json]

With --json, stdout is exactly one JSON object: {"policies": {NAME: {"hit_rate", "ttft_p50_ms", "ttft_p90_ms",
"max_mean_load", "decision_us_p50"}}, "oracle_hit_rate": X, "capacity_bound_hit_rate": Y, "shared_lru_hit_rate": Z}
(Y: the hit-rate bound at the cluster's KV capacity, router/sim/capacity_bound.py; Z: one LRU cache of that
size, router/sim/shared_lru.py; or {"micro": {...}}). Bad flags, an unknown
policy / workload / profile, or a malformed trace line: a message naming the problem on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from router.sim.bench import BenchConfig, BenchReport, run_benchmark
from router.sim.micro import MicroReport, run_micro
from router.sim.policies.registry import ABLATIONS, DEFAULT_POLICIES, parse_policies
from router.sim.profiles import PROFILES
from router.sim.workloads.mooncake import TraceError
from router.sim.workloads.registry import WORKLOADS

USAGE_ERROR = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _bounded_float(low: float, high: float, include_low: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low <= value <= high if include_low else low < value <= high):
            bracket = "[" if include_low else "("
            raise argparse.ArgumentTypeError(f"must be in {bracket}{low:g}, {high:g}], got {value:g}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmserve bench router",
                                     description="Compare routing policies on a simulated cluster (router/sim).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--workload", choices=list(WORKLOADS), default=None,
                        help="named workload (default: shared_prefix)")
    source.add_argument("--trace", type=Path, default=None, help="a trace file in the Mooncake JSONL format")
    parser.add_argument("--replicas", type=_positive_int, default=None,
                        help="simulated replicas (default 16; 64 with --micro)")
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help=f"comma-separated, from: {', '.join(DEFAULT_POLICIES)} (default: all of these); "
                             f"ablations of kv_aware: {', '.join(ABLATIONS)}")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu",
                        help="engine calibration (router/sim/profiles.py; default gpu)")
    parser.add_argument("--seed", type=int, default=0, help="workload and tie-break seed (default 0)")
    parser.add_argument("--utilization", type=_bounded_float(0.0, 2.0, False), default=0.75,
                        help="offered load at the oracle's hit rate, (0, 2] (default 0.75)")
    parser.add_argument("--event-delay-ms", type=_bounded_float(0.0, 60_000.0, True), default=0.0,
                        help="KV event delivery delay in ms (default 0)")
    parser.add_argument("--kv-blocks", type=_positive_int, default=None,
                        help="override the profile's KV cache capacity per replica, in blocks")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--micro", action="store_true",
                        help="micro-benchmark the production index and policy instead of simulating")
    parser.add_argument("--micro-blocks", type=_positive_int, default=1_000_000,
                        help="indexed blocks for --micro (default 1,000,000)")
    return parser


def _table(config: BenchConfig, report: BenchReport) -> str:
    source = str(config.trace) if config.trace else config.workload
    lines = [f"workload {source}, profile {config.profile}, {config.replicas} replicas, seed {config.seed}: "
             f"{report.requests} requests over {report.span_s:.1f} s simulated"
             + (f" ({report.dropped} larger than a replica's KV cache left out)" if report.dropped else ""),
             f"oracle hit rate (one infinite cache): {report.oracle_hit_rate:.3f}; bound at the cluster's KV "
             f"capacity (Belady's MIN over {config.replicas} replicas' blocks): {report.capacity_bound_hit_rate:.3f}; "
             f"one LRU cache of that size: {report.shared_lru_hit_rate:.3f}",
             "",
             f"{'policy':12} {'hit rate':>8} {'/oracle':>7} {'/bound':>6} {'TTFT p50 ms':>11} {'TTFT p90 ms':>11} "
             f"{'max/mean':>8} {'decision us':>11}"]
    for name, m in report.policies.items():
        share = m.hit_rate / report.oracle_hit_rate if report.oracle_hit_rate else 0.0
        bound_share = m.hit_rate / report.capacity_bound_hit_rate if report.capacity_bound_hit_rate else 0.0
        lines.append(f"{name:12} {m.hit_rate:8.3f} {share:7.2f} {bound_share:6.2f} {m.ttft_p50_ms:11.1f} "
                     f"{m.ttft_p90_ms:11.1f} {m.max_mean_load:8.2f} {m.decision_us_p50:11.1f}")
    ours = report.policies.get("kv_aware")
    others = {n: m for n, m in report.policies.items() if not n.startswith("kv_aware")}
    if ours and others:
        best50 = min(others, key=lambda n: others[n].ttft_p50_ms)
        best90 = min(others, key=lambda n: others[n].ttft_p90_ms)
        lines += ["", f"kv_aware TTFT p50 / best baseline ({best50}): "
                      f"{ours.ttft_p50_ms / others[best50].ttft_p50_ms:.2f}x; "
                      f"p90 / best ({best90}): {ours.ttft_p90_ms / others[best90].ttft_p90_ms:.2f}x"]
        if "pow2" in others:
            lines.append(f"pow2 TTFT p50 / kv_aware: {others['pow2'].ttft_p50_ms / ours.ttft_p50_ms:.1f}x")
    lines.append("max/mean = requests routed to the busiest replica / mean per replica; decision = wall time "
                 "of one routing call here (baselines: this package's Python re-implementations)")
    return "\n".join(lines)


def _micro_table(report: MicroReport) -> str:
    return (f"router micro-benchmark: {report.replicas} replicas, {report.indexed_blocks:,} indexed blocks, "
            f"prompts of {report.prompt_blocks} blocks\n"
            f"  event ingestion: {report.ingest_blocks_per_s:,.0f} blocks/s (target >= 200,000)\n"
            f"  decision: p50 {report.decision_us_p50:.1f} us, p90 {report.decision_us_p90:.1f} us "
            f"(target p50 <= 200 us)")


def main(argv: list[str]) -> int:
    """Who calls: `cluster.cli` for `warmserve bench router ...`, and tests. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits with code 2 and a usage message on bad flags
    if args.micro:
        replicas = args.replicas or 64
        report = run_micro(replicas=replicas, total_blocks=max(args.micro_blocks, replicas * 128))
        print(json.dumps({"micro": report.as_json()}) if args.json else _micro_table(report))
        return 0
    try:
        policies = parse_policies(args.policies)
    except ValueError as error:
        parser.error(str(error))
    config = BenchConfig(workload=None if args.trace else (args.workload or "shared_prefix"), trace=args.trace,
                         replicas=args.replicas or 16, policies=policies, profile=args.profile, seed=args.seed,
                         utilization=args.utilization, event_delay_s=args.event_delay_ms / 1000.0,
                         kv_capacity_blocks=args.kv_blocks)
    try:
        report = run_benchmark(config)
    except TraceError as error:
        print(f"warmserve bench router: error: malformed trace: {error}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as error:
        print(f"warmserve bench router: error: cannot read the trace: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(json.dumps(report.as_json()) if args.json else _table(config, report))
    return 0
