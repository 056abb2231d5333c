"""Comparison mode of `warmserve loadtest --compare a,b,...`: one scenario and seed against several systems,
each started and stopped by the harness in turn, then one side-by-side table and overlaid plots.

    warmserve loadtest --compare kv_aware,pow2,ray_serve_llm,raw_vllm --scenario chat --users 4 \\
        --duration 120 [--slo-ttft-ms 2000 --slo-tpot-ms 200] [--out DIR]

Writes DIR/<target>/ (each target's full report), DIR/comparison.json, DIR/comparison.md and the overlaid PNGs
in DIR. A target that fails to start is reported as such and the others still run. Targets: loadtests.targets.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtests.locust_csv import read_user_history
from loadtests.locust_runner import CSV_PREFIX
from loadtests.plots import write_plots
from loadtests.records import read_records
from loadtests.report_dir import RECORDS_DIR
from loadtests.targets import Target, served_models, warm_up
from loadtests.timeseries import build_series

RunOne = Callable[[argparse.Namespace, str], tuple[int, "dict[str, Any] | None"]]


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def comparison_table(summaries: dict[str, dict[str, Any] | None], failures: dict[str, str]) -> list[str]:
    """Markdown rows, one per target in run order; a target without a summary shows why."""
    lines = ["| target | requests | failed | out tok/s | req/s | TTFT p50 | TTFT p90 | TTFT p99 | ITL p50 | ITL p99 "
             "| TPOT p50 | E2E p50 | prefix-cache hit | goodput |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, summary in summaries.items():
        if summary is None:
            lines.append(f"| {name} | {failures.get(name, 'no result')} |" + " |" * 12)
            continue
        lat, thr = summary["latency_ms"], summary["throughput"]
        lines.append(
            f"| {name} | {summary['requests']['total']} | {summary['requests']['failed']} | "
            f"{thr['output_tokens_per_s']:.1f} | {thr['requests_per_s']:.2f} | "
            f"{_cell(lat['ttft']['p50'], ',.0f')} ms | {_cell(lat['ttft']['p90'], ',.0f')} ms | "
            f"{_cell(lat['ttft']['p99'], ',.0f')} ms | {_cell(lat['itl']['p50'], '.1f')} ms | "
            f"{_cell(lat['itl']['p99'], ',.0f')} ms | {_cell(lat['tpot']['p50'], '.1f')} ms | "
            f"{_cell(lat['e2e']['p50'], ',.0f')} ms | {_cell(thr['prefix_cache_hit_rate'], '.1%')} | "
            f"{summary['goodput']['share']:.1%} |")
    return lines


def _slo_text(slo: dict[str, Any]) -> str:
    parts = [f"{label} <= {slo[key]:g} ms" for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"))
             if slo.get(key)]
    return " and ".join(parts) or "none given (goodput = share of successful requests)"


def render_comparison(summaries: dict[str, dict[str, Any] | None], failures: dict[str, str],
                      descriptions: dict[str, str], plots: list[str], command: str) -> str:
    first = next((s for s in summaries.values() if s is not None), None)
    scenario = first["scenario"] if first else {}
    slo = first["slo"] if first else {}
    lines = [f"# Comparison: {scenario.get('name', '?')}", "",
             f"Same scenario and seed ({scenario.get('workload', {}).get('seed', '?')}) against each target in turn; "
             f"goodput SLO: {_slo_text(slo)}.",
             "", f"Command: `{command}`", "", *comparison_table(summaries, failures), "", "Targets:", ""]
    lines += [f"- `{name}`: {descriptions.get(name, '')} (report: [{name}/report.md]({name}/report.md))"
              for name in summaries]
    lines += ["", "## Plots (overlaid)", ""]
    lines += [f"![{Path(p).stem.replace('_', ' ')}]({Path(p).name})\n" for p in plots]
    return "\n".join(lines)


def run_comparison(args: argparse.Namespace, targets: list[Target], out_dir: Path, run_one: RunOne) -> int:
    """Who calls: loadtests.run_loadtest for --compare (run_one = its single-run function), and tests with
    stub targets. Returns 0 when every target ran with no failed request, else 1."""
    summaries: dict[str, dict[str, Any] | None] = {}
    failures: dict[str, str] = {}
    for index, target in enumerate(targets, start=1):
        print(f"[compare] {index}/{len(targets)} {target.name}: starting ({target.description})", flush=True)
        summaries[target.name] = None
        try:
            root = target.start()
            one = copy.copy(args)
            one.host, one.out, one.compare = root, out_dir / target.name, None
            models = served_models(root)
            warm_up(root, args.model or (models[0] if models else ""))
            code, summary = run_one(one, f"[compare {target.name}]")
            summaries[target.name] = summary
            if summary is None:
                failures[target.name] = f"no report (exit code {code})"
        except Exception as error:  # one target's failure must not lose the others' results
            failures[target.name] = f"{type(error).__name__}: {error}"[:300]
            print(f"[compare] {target.name} failed: {failures[target.name]}", file=sys.stderr, flush=True)
        finally:
            print(f"[compare] {target.name}: stopping", flush=True)
            target.stop()
    plots = _overlaid_plots(out_dir, [name for name, s in summaries.items() if s is not None], args.no_plots)
    command = "warmserve loadtest " + " ".join(args.argv if args.argv is not None else sys.argv[1:])
    descriptions = {t.name: t.description for t in targets}
    (out_dir / "comparison.json").write_text(json.dumps(
        {"targets": descriptions, "summaries": summaries, "failures": failures, "command": command}, indent=2) + "\n")
    (out_dir / "comparison.md").write_text(render_comparison(summaries, failures, descriptions, plots, command))
    print("\n".join(comparison_table(summaries, failures)), flush=True)
    print(f"[compare] report: {out_dir / 'comparison.md'}", flush=True)
    ok = all(s is not None and s["requests"]["failed"] == 0 for s in summaries.values())
    return 0 if ok else 1


def _overlaid_plots(out_dir: Path, names: list[str], skip: bool) -> list[str]:
    records = {name: read_records(out_dir / name / RECORDS_DIR) for name in names}
    records = {name: r for name, r in records.items() if r}
    if skip or not records:
        return []
    # Each target's own time axis (seconds since its first request), so the runs line up.
    series = {name: build_series(r) for name, r in records.items()}
    interval = max(s.interval_s for s in series.values())
    series = {name: build_series(r, interval) for name, r in records.items()}
    users = {name: read_user_history(out_dir / name / f"{CSV_PREFIX}_stats_history.csv") for name in records}
    return [p.name for p in write_plots(out_dir, series, records, users)]
