"""`warmserve loadtest` end to end on real Locust runs: against the fake-engine cluster (fake_app), and against
a stub server for failure reporting and distributed mode. Each run is bounded to seconds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from loadtests.run_loadtest import main as loadtest_main
from tests.conftest import DeployedApp
from tests.sse_stub_server import stub_server

TINY_TOKENIZER = Path.home() / ".cache" / "warmserve" / "models" / "tiny-random-llama" / "tokenizer.json"
REPORT_FILES = ("summary.json", "report.md", "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                "locust.html", "ttft_over_time.png", "itl_over_time.png", "throughput_over_time.png",
                "latency_histograms.png", "scenario.json", "command.txt")


def _scenario(tmp_path: Path, model: str, **shape: object) -> Path:
    # Small prompts: the fake profile's context window is 512 tokens of the tiny tokenizer.
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ci-mixed",
        "users": {"shared_prefix": 2, "multi_turn": 1, "long_context": 1, "completions": 1},
        "shape": {"kind": "constant", "users": 4, "duration_s": 20, **shape},
        "workload": {"model": model, "max_tokens": 12, "prefix_groups": 4, "prefix_tokens": 96,
                     "question_tokens": 12, "turns": 3, "turn_tokens": 24, "long_context_tokens": 300,
                     "completion_prompt_tokens": 64},
    }))
    return path


def _locust_request_counts(out: Path) -> dict[tuple[str, str], tuple[int, int]]:
    with (out / "locust_stats.csv").open(newline="") as handle:
        return {(row["Type"], row["Name"]): (int(row["Request Count"]), int(row["Failure Count"]))
                for row in csv.DictReader(handle) if row["Name"] != "Aggregated"}


def _check_report(out: Path) -> dict:
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    locust = _locust_request_counts(out)
    posts = {name: count for (kind, name), count in locust.items() if kind == "POST"}
    assert summary["counts_match"], summary["count_mismatches"]
    assert summary["requests"]["total"] == sum(c for c, _ in posts.values()) == summary["locust"]["requests"]
    for kind, counts in summary["requests"]["by_kind"].items():
        assert posts[kind] == (counts["total"], counts["failed"])
    assert sum(locust[key][0] for key in locust if key[0] == "TTFT") == summary["latency_ms"]["ttft"]["count"]
    assert sum(locust[key][0] for key in locust if key[0] == "ITL") == summary["latency_ms"]["itl"]["count"]
    report = (out / "report.md").read_text()
    assert "![ttft over time](ttft_over_time.png)" in report
    return summary


@pytest.mark.integration
def test_loadtest_against_the_fake_cluster(fake_app: DeployedApp, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = loadtest_main(["--host", fake_app.base_url, "--scenario", str(_scenario(tmp_path, fake_app.model)),
                          "--tokenizer", str(TINY_TOKENIZER), "--slo-ttft-ms", "2000", "--slo-tpot-ms", "500",
                          "--out", str(out), "--quiet"])
    summary = _check_report(out)
    assert code == 0, summary["errors"]
    assert summary["requests"]["failed"] == 0 and summary["requests"]["total"] > 20
    assert set(summary["requests"]["by_kind"]) == {"shared_prefix", "multi_turn", "long_context", "completions"}
    assert summary["latency_ms"]["ttft"]["count"] > 0 and summary["latency_ms"]["ttft"]["p50"] > 0
    assert summary["latency_ms"]["itl"]["count"] > 0 and summary["latency_ms"]["itl"]["p50"] > 0
    assert summary["latency_ms"]["tpot"]["count"] > 0
    assert summary["token_sizing"].startswith("exact")
    assert summary["goodput"]["requests"] == summary["requests"]["total"]
    assert summary["throughput"]["prefix_cache_hit_rate"] > 0  # shared system prompts hit the engines' caches


@pytest.mark.integration
def test_failures_carry_the_http_status_and_body(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with stub_server() as root:
        code = loadtest_main(["--host", root, "--scenario", str(_scenario(tmp_path, "reject", duration_s=3)),
                              "--out", str(out), "--quiet", "--no-plots"])
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["failed"] == summary["requests"]["total"] > 0
    assert summary["counts_match"], summary["count_mismatches"]
    assert summary["latency_ms"]["ttft"]["count"] == 0
    assert "HTTP 400" in summary["errors"][0]["error"] and "not found" in summary["errors"][0]["error"]
    assert "HTTP 400" in (out / "locust_failures.csv").read_text()


@pytest.mark.integration
def test_distributed_master_and_workers(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with stub_server() as root:
        code = loadtest_main(["--host", root, "--scenario", "chat", "--users", "4", "--duration", "4",
                              "--shape", "step", "--step-users", "2", "--step-s", "2", "--max-tokens", "6",
                              "--workers", "2", "--model", "stub-model", "--out", str(out), "--quiet"])
    assert code == 0
    summary = _check_report(out)
    assert summary["locust_processes"] == "master + 2 workers"
    assert len(list((out / "records").glob("requests-*.jsonl"))) == 2
    assert summary["token_sizing"].startswith("approximate")  # the stub's model has no local tokenizer


@pytest.mark.integration
def test_comparison_mode_runs_each_target_and_overlays_them(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from loadtests.compare_targets import run_comparison
    from loadtests.run_loadtest import build_parser, run
    from loadtests.targets import Target

    stacks: dict[str, ExitStack] = {}

    def stub_target(name: str) -> Target:
        def start() -> str:
            stacks[name] = ExitStack()
            return stacks[name].enter_context(stub_server())

        return Target(name, start, lambda: stacks[name].close(), f"stub server {name}")

    def broken_start() -> str:
        raise RuntimeError("port taken")

    argv = ["--scenario", "chat", "--users", "2", "--duration", "3", "--max-tokens", "4", "--model", "stub-model",
            "--quiet"]
    args = build_parser().parse_args(argv)
    args.argv = argv
    targets = [stub_target("a"), stub_target("b"), Target("broken", broken_start, lambda: None, "never starts")]
    code = run_comparison(args, targets, tmp_path, run)
    assert code == 1  # one target could not start
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert comparison["summaries"]["broken"] is None and "port taken" in comparison["failures"]["broken"]
    for name in ("a", "b"):
        summary = comparison["summaries"][name]
        assert summary["requests"]["total"] > 0 and summary["counts_match"]
        assert (tmp_path / name / "report.md").is_file()
    table = (tmp_path / "comparison.md").read_text()
    assert "| a |" in table and "| b |" in table and "port taken" in table
    for plot in ("ttft_over_time.png", "itl_over_time.png", "throughput_over_time.png", "latency_histograms.png"):
        assert (tmp_path / plot).stat().st_size > 0
