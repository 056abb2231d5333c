"""report.md of one load test: what ran, the headline numbers, per-kind latencies, errors, and the plots.

Called by `loadtests.run_loadtest` with the summary dict (loadtests.summary) and the PNG names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_METRICS = (("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT"), ("e2e", "E2E"))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _latency_table(latencies: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| metric | samples | mean ms | p50 ms | p90 ms | p95 ms | p99 ms | max ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in _METRICS:
        d = latencies[key]
        lines.append(f"| {label} | {d['count']:,} | {_ms(d['mean'])} | {_ms(d['p50'])} | {_ms(d['p90'])} | "
                     f"{_ms(d['p95'])} | {_ms(d['p99'])} | {_ms(d['max'])} |")
    return lines


def _slo_text(summary: dict[str, Any]) -> str:
    slo = summary["slo"]
    parts = [f"TTFT <= {slo['ttft_ms']:g} ms" if slo["ttft_ms"] else "",
             f"TPOT <= {slo['tpot_ms']:g} ms" if slo["tpot_ms"] else ""]
    return " and ".join(p for p in parts if p) or "none given"


def render_report(summary: dict[str, Any], plots: list[str]) -> str:
    requests, throughput, good = summary["requests"], summary["throughput"], summary["goodput"]
    scenario = summary["scenario"]
    shape = scenario["shape"]
    lines = [
        f"# Load test: {scenario['name']}",
        "",
        *([scenario["description"], ""] if scenario["description"] else []),
        f"- target: `{summary['target']}`, model `{scenario['workload']['model']}`; started {summary['started_at']}",
        f"- users: {', '.join(f'{k} x{w}' for k, w in scenario['users'].items())} (weights); shape "
        f"`{shape['kind']}` up to {shape['users']} users, {shape['duration_s']:g} s"
        + (f", at most {shape['max_requests']} requests" if shape.get("max_requests") else ""),
        f"- prompts: seed {scenario['workload']['seed']}, {scenario['workload']['max_tokens']} output tokens each "
        f"(EOS ignored); token counts {summary['token_sizing']}",
        f"- Locust: {summary.get('locust_processes', 'local runner')}; command in `command.txt`",
        "",
        "## Headline",
        "",
        "| requests | failed | duration | requests/s | output tokens/s | TTFT p50 | TTFT p99 | ITL p50 | TPOT p50 "
        "| goodput |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {requests['total']:,} | {requests['failed']:,} | {summary['duration_s']:.1f} s | "
        f"{throughput['requests_per_s']:.2f} | {throughput['output_tokens_per_s']:.1f} | "
        f"{_ms(summary['latency_ms']['ttft']['p50'])} ms | {_ms(summary['latency_ms']['ttft']['p99'])} ms | "
        f"{_ms(summary['latency_ms']['itl']['p50'])} ms | {_ms(summary['latency_ms']['tpot']['p50'])} ms | "
        f"{good['share']:.1%} |",
        "",
        f"Goodput: {good['requests_meeting_slo']:,} of {good['requests']:,} requests met the SLO "
        f"({_slo_text(summary)}), {good['per_s']:.2f}/s. Prefix-cache hit (the engines' own count): "
        + (f"{throughput['prefix_cache_hit_rate']:.1%} of {throughput['prompt_tokens']:,} prompt tokens."
           if throughput["prefix_cache_hit_rate"] is not None else "not reported by the server."),
        "",
        "Locust's counts and the per-request records "
        + ("agree exactly." if summary["counts_match"]
           else "differ: " + "; ".join(summary["count_mismatches"])),
        "",
        "## Latency, all requests",
        "",
        *_latency_table(summary["latency_ms"]),
        "",
    ]
    for kind, latencies in summary["latency_ms_by_kind"].items():
        counts = requests["by_kind"][kind]
        lines += [f"### {kind} ({counts['total']:,} requests, {counts['failed']:,} failed)", "",
                  *_latency_table(latencies), ""]
    if summary["errors"]:
        lines += ["## Errors", "", "| count | error |", "|---:|---|"]
        lines += [f"| {e['count']:,} | {e['error'][:300].replace('|', '/')} |" for e in summary["errors"]]
        lines.append("")
    lines += ["## Plots", ""]
    lines += [f"![{Path(p).stem.replace('_', ' ')}]({Path(p).name})\n" for p in plots]
    lines += ["## Files", "",
              "- `summary.json`: everything above, machine-readable",
              "- `locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv`, `locust_exceptions.csv`, "
              "`locust.html`: Locust's own report (rows `POST <kind>` per request; `TTFT`, `ITL`, `TPOT`, `E2E` "
              "in ms and `TOKENS/S` as custom metrics)",
              "- `records/`: one JSON line per request (the input of this report)",
              "- `locust.log`, `scenario.json`, `command.txt`", ""]
    return "\n".join(lines)
