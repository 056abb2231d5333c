"""`warmserve loadtest` against real vLLM on CPU (SmolLM2, two replicas): a short bounded Locust run with every
user kind, prompts sized exactly with SmolLM2's tokenizer, and a complete report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from loadtests.run_loadtest import main as loadtest_main
from tests.conftest import DeployedApp

pytestmark = pytest.mark.e2e
SMOLLM2_TOKENIZER = Path.home() / ".cache" / "warmserve" / "models" / "smollm2-135m-instruct" / "tokenizer.json"


def test_loadtest_against_vllm(vllm_app: DeployedApp, tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    # Small, so 3 users get a few dozen requests through two single-core engines in 25 s.
    scenario.write_text(yaml.safe_dump({
        "name": "ci-vllm",
        "users": {"shared_prefix": 1, "multi_turn": 1, "long_context": 1, "completions": 1},
        "shape": {"kind": "constant", "users": 3, "duration_s": 25},
        "workload": {"model": vllm_app.model, "max_tokens": 8, "prefix_groups": 2, "prefix_tokens": 128,
                     "question_tokens": 16, "turns": 2, "turn_tokens": 24, "long_context_tokens": 400,
                     "completion_prompt_tokens": 64},
    }))
    out = tmp_path / "report"
    code = loadtest_main(["--host", vllm_app.base_url, "--scenario", str(scenario), "--tokenizer",
                          str(SMOLLM2_TOKENIZER), "--slo-ttft-ms", "10000", "--out", str(out), "--quiet",
                          "--stop-timeout", "20"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary["errors"]
    for name in ("report.md", "locust.html", "ttft_over_time.png", "itl_over_time.png", "throughput_over_time.png",
                 "latency_histograms.png"):
        assert (out / name).stat().st_size > 0, name
    assert summary["requests"]["failed"] == 0 and summary["requests"]["total"] >= 6
    assert summary["counts_match"], summary["count_mismatches"]
    with (out / "locust_stats.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] != "Aggregated"]
    assert sum(int(r["Request Count"]) for r in rows if r["Type"] == "POST") == summary["requests"]["total"]
    assert sum(int(r["Failure Count"]) for r in rows if r["Type"] == "POST") == 0
    assert summary["latency_ms"]["ttft"]["count"] > 0 and summary["latency_ms"]["ttft"]["p50"] > 0
    assert summary["latency_ms"]["itl"]["count"] > 0 and summary["latency_ms"]["itl"]["p50"] > 0
    assert summary["throughput"]["output_tokens"] == 8 * summary["requests"]["ok"]  # EOS ignored: exact lengths
    assert summary["token_sizing"].startswith("exact")
