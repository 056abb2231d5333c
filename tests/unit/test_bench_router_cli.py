"""`warmserve bench router`, called in-process: the --json shape and the exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster import bench_router, cli

KEYS = {"hit_rate", "ttft_p50_ms", "ttft_p90_ms", "max_mean_load", "decision_us_p50"}


def _trace(tmp_path: Path) -> Path:
    lines = [{"timestamp": 40 * n, "input_length": 700 + 10 * (n % 5), "output_length": 4,
              "hash_ids": [n % 3, 100 + n]} for n in range(40)]
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_json_is_one_object_with_every_policy_and_the_oracle(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code = cli.main(["bench", "router", "--trace", str(_trace(tmp_path)), "--replicas", "3", "--profile", "gpu",
                     "--policies", "kv_aware,pow2,sglang,dynamo,llm_d,ray_prefix,round_robin", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)  # exactly one JSON document on stdout
    assert set(report) == {"policies", "oracle_hit_rate", "capacity_bound_hit_rate", "shared_lru_hit_rate"}
    assert 0 <= report["capacity_bound_hit_rate"] <= report["oracle_hit_rate"] <= 1
    assert 0 <= report["shared_lru_hit_rate"] <= report["oracle_hit_rate"]
    assert list(report["policies"]) == ["kv_aware", "pow2", "sglang", "dynamo", "llm_d", "ray_prefix", "round_robin"]
    for metrics in report["policies"].values():
        assert set(metrics) == KEYS and 0 <= metrics["hit_rate"] <= 1 and metrics["max_mean_load"] >= 1


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_router.main(["--trace", str(_trace(tmp_path)), "--replicas", "2", "--policies", "kv_aware,pow2"]) == 0
    out = capsys.readouterr().out
    assert "oracle hit rate" in out and "kv_aware" in out and "pow2 TTFT p50 / kv_aware" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--policies", "kv_aware,nope"], "unknown policy 'nope'"),
    (["--workload", "nope"], "invalid choice: 'nope'"),
    (["--replicas", "0"], "must be at least 1"),
    (["--profile", "tpu"], "invalid choice: 'tpu'"),
    (["--utilization", "0"], "must be in (0, 2]"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_flags_exit_2_naming_the_problem(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_router.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_malformed_trace_exits_2_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n{"oops": 1}\n')
    assert bench_router.main(["--trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: missing field(s)" in err and "Traceback" not in err
    assert bench_router.main(["--trace", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read the trace" in capsys.readouterr().err
