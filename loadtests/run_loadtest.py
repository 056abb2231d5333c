"""`warmserve loadtest`: a bounded Locust load test against an OpenAI-compatible endpoint, and its report.

    warmserve loadtest [--scenario NAME|FILE] [--users N] [--duration S] [--host URL]
                       [--shape constant|step|spike|soak ...] [--max-requests N]
                       [--slo-ttft-ms X] [--slo-tpot-ms Y] [--workers N] [--out DIR]

Runs Locust headless on loadtests/locustfile.py (a master and N workers on the local host with --workers N),
then writes into --out: Locust's CSV and HTML, records/ (one JSON line per request), summary.json, PNG plots
and report.md. Command-line values override the scenario's. With --compare, the same run against several
systems the harness starts and stops (loadtests/compare_targets.py). Exit code: 0 when every request
succeeded, 1 when some failed (the report is written either way), 2 for bad input or an unreachable target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from loadtests.locust_runner import REPO_ROOT, LocustJob, run_locust
from loadtests.records import RECORD_GLOB
from loadtests.report_dir import RECORDS_DIR, write_report
from loadtests.scenarios import BUILTIN, Scenario, ScenarioError, load_scenario
from loadtests.shapes import SHAPES, ShapeError
from loadtests.slo import SLO
from loadtests.targets import TARGETS, build_targets, parse_targets, served_models, served_vision_models
from loadtests.text_source import resolve_tokenizer
from loadtests.workloads import VISION_KIND

USAGE_ERROR = 2
DEFAULT_HOST = "http://127.0.0.1:8000"
_SHAPE_FLAGS = ("users", "duration_s", "spawn_rate", "max_requests", "step_users", "step_s", "base_users",
                "spike_at_s", "spike_s", "ramp_s")
_WORKLOAD_FLAGS = ("seed", "max_tokens", "model", "vision_model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmserve loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="mixed",
                        help=f"built-in ({', '.join(BUILTIN)}) or a YAML/JSON file (default: mixed)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"server root URL, with or without /v1 "
                                                             f"(default {DEFAULT_HOST})")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default reports/loadtest-<time>)")
    shape = parser.add_argument_group("load shape (override the scenario's)")
    shape.add_argument("--shape", dest="kind", choices=SHAPES, default=None)
    shape.add_argument("--users", type=int, default=None, help="peak concurrent users")
    shape.add_argument("--duration", dest="duration_s", type=float, default=None, help="seconds (the hard bound)")
    shape.add_argument("--spawn-rate", type=float, default=None, help="users started per second (0: at once)")
    shape.add_argument("--max-requests", type=int, default=None, help="end after this many requests")
    shape.add_argument("--step-users", type=int, default=None)
    shape.add_argument("--step-s", type=float, default=None)
    shape.add_argument("--base-users", type=int, default=None, help="spike: users outside the spike")
    shape.add_argument("--spike-at-s", type=float, default=None)
    shape.add_argument("--spike-s", type=float, default=None)
    shape.add_argument("--ramp-s", type=float, default=None, help="soak: ramp-up time")
    work = parser.add_argument_group("workload")
    work.add_argument("--model", default=None, help="model name to request (default: the scenario's, or the "
                                                    "only model the server lists)")
    work.add_argument("--vision-model", default=None, help="vision model the `vision` users call (default: the "
                                                           "scenario's, or the only vision model the server lists)")
    work.add_argument("--seed", type=int, default=None)
    work.add_argument("--max-tokens", type=int, default=None, help="output tokens per request")
    work.add_argument("--tokenizer", default=None, help="model dir, tokenizer.json or model-store name for exact "
                                                        "prompt sizes (default: the model's in the model cache)")
    slo = parser.add_argument_group("SLO for goodput")
    slo.add_argument("--slo-ttft-ms", type=float, default=None)
    slo.add_argument("--slo-tpot-ms", type=float, default=None)
    run = parser.add_argument_group("running")
    run.add_argument("--workers", type=int, default=0, help="distributed: a master and N local workers (0: one "
                                                            "process)")
    run.add_argument("--stop-timeout", type=float, default=30.0, help="seconds in-flight requests get at the end")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--compare", default=None, metavar="TARGETS",
                     help=f"comparison mode: start, measure and stop each of these in turn ({', '.join(TARGETS)}; "
                          f"comma-separated); --host is then ignored")
    return parser


def resolve_scenario(args: argparse.Namespace) -> Scenario:
    """The scenario with command-line overrides applied. Raises ScenarioError/ShapeError/ValueError."""
    scenario = load_scenario(args.scenario)
    shape_overrides = {k: getattr(args, k) for k in ("kind", *_SHAPE_FLAGS) if getattr(args, k) is not None}
    work_overrides = {k: getattr(args, k) for k in _WORKLOAD_FLAGS if getattr(args, k) is not None}
    scenario.shape = replace(scenario.shape, **shape_overrides)
    scenario.workload = replace(scenario.workload, **work_overrides)
    if args.slo_ttft_ms is not None or args.slo_tpot_ms is not None:
        scenario.slo = SLO(ttft_ms=args.slo_ttft_ms if args.slo_ttft_ms is not None else scenario.slo.ttft_ms,
                           tpot_ms=args.slo_tpot_ms if args.slo_tpot_ms is not None else scenario.slo.tpot_ms)
    scenario.validate()
    return scenario


def normalize_host(host: str) -> str:
    root = host.rstrip("/")
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"--host must be an http(s) URL, got {host!r}")
    return root[:-3] if root.endswith("/v1") else root


def _pick_model(scenario: Scenario, explicit: bool, models: list[str]) -> str:
    if scenario.workload.model in models or not models:
        return scenario.workload.model
    if not explicit and len(models) == 1:
        print(f"[loadtest] the server serves {models[0]!r}, not {scenario.workload.model!r}: using it", flush=True)
        return models[0]
    raise ValueError(f"model {scenario.workload.model!r} is not served at this host (it serves: "
                     f"{', '.join(models)}); pass --model")


def _pick_vision_model(wanted: str | None, served: list[str]) -> str:
    if wanted is not None and wanted in served:
        return wanted
    if wanted is None and len(served) == 1:
        return served[0]
    served_text = ", ".join(served) if served else "none"
    if wanted is None:
        raise ValueError(f"the scenario has vision users; pass --vision-model (vision models served: {served_text})")
    raise ValueError(f"vision model {wanted!r} is not served at this host (vision models served: {served_text})")


def prepare_out_dir(out: Path | None) -> Path:
    out_dir = out or REPO_ROOT / "reports" / f"loadtest-{dt.datetime.now():%Y%m%d-%H%M%S}"
    (out_dir / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / RECORDS_DIR).glob(RECORD_GLOB):  # a previous run's records would mix in
        stale.unlink()
    return out_dir


def run(args: argparse.Namespace, log_prefix: str = "[loadtest]") -> tuple[int, dict[str, Any] | None]:
    """Validate, run, report. Returns (exit code, summary or None)."""
    try:
        if args.workers < 0 or args.workers > 64:
            raise ValueError(f"--workers must be in [0, 64], got {args.workers}")
        if not 0 <= args.stop_timeout <= 3600:
            raise ValueError(f"--stop-timeout must be in [0, 3600] s, got {args.stop_timeout:g}")
        scenario = resolve_scenario(args)
        host = normalize_host(args.host)
        if set(scenario.users) - {VISION_KIND}:
            scenario.workload.model = _pick_model(scenario, args.model is not None or _model_in_file(args.scenario),
                                                  served_models(host))
        if VISION_KIND in scenario.users:
            scenario.workload.vision_model = _pick_vision_model(scenario.workload.vision_model,
                                                                served_vision_models(host))
        tokenizer_file = resolve_tokenizer(args.tokenizer, scenario.workload.model)
    except (ScenarioError, ShapeError, ValueError, OSError) as error:
        print(f"warmserve loadtest: error: {error}", file=sys.stderr)
        return USAGE_ERROR, None
    out_dir = prepare_out_dir(args.out)
    scenario_file = out_dir / "scenario.json"
    scenario_file.write_text(scenario.to_json() + "\n", encoding="utf-8")
    sizing = (f"exact ({tokenizer_file})" if tokenizer_file else
              f"approximate (no tokenizer for {scenario.workload.model!r}: one word counted as one token)")
    job = LocustJob(host=host, out_dir=out_dir, scenario_file=scenario_file, records_dir=out_dir / RECORDS_DIR,
                    duration_s=scenario.shape.duration_s, tokenizer=str(tokenizer_file) if tokenizer_file else None,
                    workers=args.workers, stop_timeout_s=args.stop_timeout, quiet=args.quiet,
                    shape=scenario.shape, log_prefix=log_prefix)
    started_at = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"{log_prefix} {scenario.name}: {scenario.shape.kind} shape, up to {scenario.shape.users} users for "
          f"{scenario.shape.duration_s:g} s against {host} ({scenario.workload.model}); report in {out_dir}",
          flush=True)
    result = run_locust(job)
    (out_dir / "command.txt").write_text(
        "warmserve loadtest " + shlex.join(sys.argv[1:] if args.argv is None else args.argv) + "\n\n# Locust:\n"
        + "\n".join(shlex.join(c) for c in job.commands) + "\n", encoding="utf-8")
    if not any((out_dir / RECORDS_DIR).glob(RECORD_GLOB)):
        print(f"warmserve loadtest: error: Locust recorded no request (exit code {result.exit_code}); see "
              f"{out_dir / 'locust.log'}", file=sys.stderr)
        return 1, None
    context = {"scenario": json.loads(scenario.to_json()), "target": host, "started_at": started_at,
               "token_sizing": sizing, "locust_processes": result.processes, "locust_exit_code": result.exit_code}
    summary = write_report(out_dir, scenario.slo, context, plots=not args.no_plots)
    print(_headline(summary, out_dir, log_prefix), flush=True)
    return (0 if summary["requests"]["failed"] == 0 else 1), summary


def _model_in_file(scenario: str) -> bool:
    # A scenario file that names its model means it; a built-in's default model may give way to the served one.
    if scenario in BUILTIN:
        return False
    raw = yaml.safe_load(Path(scenario).read_text(encoding="utf-8"))
    return isinstance(raw, dict) and isinstance(raw.get("workload"), dict) and "model" in raw["workload"]


def _headline(summary: dict[str, Any], out_dir: Path, prefix: str) -> str:
    lat, req = summary["latency_ms"], summary["requests"]
    p50 = lat["ttft"]["p50"]
    itl = lat["itl"]["p50"]
    return (f"{prefix} done: {req['total']} requests ({req['failed']} failed) in {summary['duration_s']:.1f} s, "
            f"{summary['throughput']['output_tokens_per_s']:.1f} output tok/s, TTFT p50 "
            f"{p50 if p50 is None else round(p50)} ms, ITL p50 {itl if itl is None else round(itl, 1)} ms, "
            f"goodput {summary['goodput']['share']:.1%}"
            + ("" if summary["counts_match"] else " (WARNING: records and Locust's counts differ)")
            + f"\n{prefix} report: {out_dir / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    """Who calls: `warmserve loadtest` (cluster/loadtest_cmd.py) and tests. Returns the exit code."""
    args = build_parser().parse_args(argv)  # bad flags: argparse prints usage and exits 2
    args.argv = argv
    if args.compare is not None:
        return _compare(args)
    code, _ = run(args)
    return code


def _compare(args: argparse.Namespace) -> int:
    from loadtests.compare_targets import run_comparison

    try:
        names = parse_targets(args.compare)
        resolve_scenario(args)  # fail on bad scenario input now, not after the first target's start
    except (ScenarioError, ShapeError, ValueError) as error:
        print(f"warmserve loadtest: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    out_dir = args.out or REPO_ROOT / "reports" / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=True)
    return run_comparison(args, build_targets(names, out_dir), out_dir, run)


if __name__ == "__main__":
    raise SystemExit(main())
