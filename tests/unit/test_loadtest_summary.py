"""Summary building (loadtests.summary), the Locust cross-check, and the plots' time series."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.locust_csv import LocustRow, read_stats
from loadtests.records import RecordWriter, RequestRecord, read_records
from loadtests.slo import SLO
from loadtests.summary import build_summary, count_mismatches, expected_locust_counts
from loadtests.timeseries import build_series


def _ok(start: float, ttft: float, itls: list[float], kind: str = "shared_prefix") -> RequestRecord:
    e2e = ttft + sum(itls)
    tokens = len(itls) + 1
    return RequestRecord(start_unix_s=start, name=kind, kind=kind, ok=True, status=200, e2e_ms=e2e, ttft_ms=ttft,
                         tpot_ms=(e2e - ttft) / (tokens - 1) if tokens > 1 else None, itls_ms=itls,
                         output_tokens=tokens, prompt_tokens=100, cached_tokens=50)


def _failed(start: float, kind: str = "multi_turn") -> RequestRecord:
    return RequestRecord(start_unix_s=start, name=kind, kind=kind, ok=False, status=503, e2e_ms=5.0,
                         error='HTTP 503: {"error": {"message": "overloaded"}}')


RECORDS = [_ok(1000.0, 100.0, [10.0, 20.0]), _ok(1000.5, 300.0, [30.0]), _ok(1001.0, 50.0, []), _failed(1001.2)]


def _rows_for(records: list[RequestRecord]) -> list[LocustRow]:
    return [LocustRow(type=t, name=n, count=c, failures=f, median_ms=0.0, p90_ms=0.0)
            for (t, n), (c, f) in expected_locust_counts(records).items()]


def test_summary_counts_latencies_goodput_and_errors() -> None:
    summary = build_summary(RECORDS, _rows_for(RECORDS), SLO(ttft_ms=200, tpot_ms=25), {"target": "x"})
    assert summary["target"] == "x"
    assert summary["requests"]["total"] == 4 and summary["requests"]["failed"] == 1
    assert summary["requests"]["by_kind"]["multi_turn"] == {"total": 1, "failed": 1}
    assert summary["locust"]["requests"] == 4 and summary["locust"]["failures"] == 1
    assert summary["counts_match"] and summary["count_mismatches"] == []
    lat = summary["latency_ms"]
    assert lat["ttft"]["count"] == 3 and lat["ttft"]["p50"] == 100.0
    assert lat["itl"]["count"] == 3 and lat["itl"]["max"] == 30.0
    assert lat["tpot"]["count"] == 2  # the one-token request has none
    # Request 1: TTFT 100, TPOT 15 -> met; 2: TTFT 300 -> missed; 3: TTFT 50, no TPOT -> met; 4: failed.
    assert summary["goodput"]["requests_meeting_slo"] == 2 and summary["goodput"]["share"] == 0.5
    assert summary["throughput"]["output_tokens"] == 3 + 2 + 1
    assert summary["throughput"]["prefix_cache_hit_rate"] == pytest.approx(0.5)
    assert summary["duration_s"] == pytest.approx(1.2 + 0.005)
    assert summary["errors"][0]["count"] == 1 and "HTTP 503" in summary["errors"][0]["error"]


def test_expected_locust_rows_and_mismatch_report() -> None:
    expected = expected_locust_counts(RECORDS)
    assert expected[("POST", "shared_prefix")] == (3, 0)
    assert expected[("POST", "multi_turn")] == (1, 1)
    assert expected[("ITL", "shared_prefix")] == (3, 0)
    assert expected[("TPOT", "shared_prefix")] == (2, 0)
    assert ("TTFT", "multi_turn") not in expected
    rows = _rows_for(RECORDS)
    rows[0] = LocustRow(rows[0].type, rows[0].name, rows[0].count + 1, 0, 0.0, 0.0)
    problems = count_mismatches(RECORDS, rows)
    assert len(problems) == 1 and "Locust says" in problems[0]


def test_records_round_trip_and_locust_csv_parsing(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "records")
    for record in RECORDS:
        writer.write(record)
    writer.close()
    with (tmp_path / "records" / "requests-1.jsonl").open("w") as handle:
        handle.write('{"start_unix_s": 1, "trunc')  # a process killed mid-line
    assert read_records(tmp_path / "records") == sorted(RECORDS, key=lambda r: r.start_unix_s)
    csv_path = tmp_path / "locust_stats.csv"
    csv_path.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
        "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
        "99.99%,100%\n"
        "POST,chat,10,1,120,130,100,200,16,1.0,0.1,120,130,140,150,160,170,180,190,200,200,200\n"
        ",Aggregated,10,1,120,130,100,200,16,1.0,0.1,120,130,140,150,160,170,180,190,200,200,200\n")
    rows = read_stats(csv_path)
    assert rows == [LocustRow("POST", "chat", 10, 1, 120.0, 160.0)]
    assert read_stats(tmp_path / "missing.csv") == []


def test_series_places_samples_when_they_happened() -> None:
    records = [*RECORDS, _ok(1001.5, 100.0, [])]  # the run spans 1.6 s: a full interval and a 0.6 s one
    series = build_series(records, interval_s=1.0)
    assert series.interval_s == 1.0 and len(series.times_s) == 2
    # TTFTs at 1000.1 and 1000.8 -> interval 0; at 1001.05 and 1001.6 -> interval 1
    assert series.ttft_ms["p50"] == [pytest.approx(200.0), pytest.approx(75.0)]
    # Every output token counted once, wherever it landed; the short last interval's rate over its real width.
    assert series.output_tokens_per_s[0] * 1.0 + series.output_tokens_per_s[1] * 0.6 == pytest.approx(7.0)
    assert series.failed_per_s[1] > 0 and series.failed_per_s[0] == 0
    # A trailing sliver (here 0.205 s of a 1 s interval) joins the interval before it.
    assert len(build_series(RECORDS, interval_s=1.0).times_s) == 1
    assert len(build_series([]).times_s) == 1  # no records: one empty interval, no crash


def test_intervals_hold_several_requests_but_keep_a_trend() -> None:
    from loadtests.timeseries import choose_interval_s

    assert choose_interval_s(8.0, 1000) == 1.0  # dense: one-second intervals
    assert choose_interval_s(3600.0, 100_000) == 60.0  # long: at most ~60 intervals
    assert choose_interval_s(67.0, 46) == 8.0  # sparse: ~5 requests per interval
    assert choose_interval_s(60.0, 2) == 15.0  # never fewer than ~4 intervals


def test_comparison_table_and_target_names() -> None:
    from loadtests.compare_targets import comparison_table
    from loadtests.targets import parse_targets

    summary = build_summary(RECORDS, _rows_for(RECORDS), SLO(), {})
    lines = comparison_table({"kv_aware": summary, "raw_vllm": None}, {"raw_vllm": "RuntimeError: port taken"})
    assert lines[2].startswith("| kv_aware | 4 | 1 |") and "100 ms" in lines[2]  # TTFT p50
    assert "| raw_vllm | RuntimeError: port taken |" in lines[3]
    assert parse_targets("kv_aware, pow2,raw_vllm") == ["kv_aware", "pow2", "raw_vllm"]
    assert parse_targets("ray_serve_llm,kv_aware") == ["ray_serve_llm", "kv_aware"]
    for bad, message in (("", "at least one"), ("kv_aware,kv", "unknown target 'kv'"), ("pow2,pow2", "twice")):
        with pytest.raises(ValueError, match=message):
            parse_targets(bad)


def test_each_target_name_builds_its_own_system(tmp_path) -> None:
    from loadtests.targets import TARGETS, build_targets

    targets = build_targets(list(TARGETS), tmp_path)  # building starts nothing
    assert [t.name for t in targets] == list(TARGETS)
    by_name = {t.name: t.description for t in targets}
    peer = by_name["ray_serve_llm"]
    assert "PrefixCacheAffinityRouter" in peer and "2 LLMServer replicas" in peer
    assert by_name["raw_vllm"].startswith("raw `vllm serve`")
    assert "router.policy pow2" in by_name["pow2"]
    for target in targets:
        target.stop()  # never started: stopping must be a no-op


def test_hit_rate_is_none_when_the_server_reports_no_cached_tokens() -> None:
    record = _ok(1000.0, 10.0, [1.0])
    record.cached_tokens = None
    summary = build_summary([record], _rows_for([record]), SLO(), {})
    assert summary["throughput"]["prefix_cache_hit_rate"] is None
    assert summary["throughput"]["prompt_tokens"] == 100
