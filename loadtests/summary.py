"""The summary of one load test (summary.json): counts, latency percentiles, throughput, goodput, errors,
and a cross-check of the per-request records against Locust's own counts.

Pure given its inputs (records, Locust's CSV rows, the scenario's SLO), so tests can build one from
hand-made records. Called by `loadtests.run_loadtest` after Locust exits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from loadtests.locust_csv import LocustRow
from loadtests.records import RequestRecord
from loadtests.slo import SLO, Distribution, goodput
from loadtests.timeseries import run_span
from loadtests.workloads import VISION_KIND

REQUEST_ROW_TYPE = "POST"
TOP_ERRORS = 10


def _latencies(records: list[RequestRecord]) -> dict[str, dict[str, Any]]:
    good = [r for r in records if r.ok]
    return {
        "ttft": asdict(Distribution.of([r.ttft_ms for r in good if r.ttft_ms is not None])),
        "itl": asdict(Distribution.of([gap for r in good for gap in r.itls_ms])),
        "tpot": asdict(Distribution.of([r.tpot_ms for r in good if r.tpot_ms is not None])),
        "e2e": asdict(Distribution.of([r.e2e_ms for r in good])),
    }


def expected_locust_counts(records: list[RequestRecord]) -> dict[tuple[str, str], tuple[int, int]]:
    """(type, name) -> (count, failures) that Locust's stats must show for these records."""
    counts: dict[tuple[str, str], list[int]] = {}

    def add(key: tuple[str, str], n: int, failures: int = 0) -> None:
        entry = counts.setdefault(key, [0, 0])
        entry[0] += n
        entry[1] += failures

    for r in records:
        add((REQUEST_ROW_TYPE, r.name), 1, 0 if r.ok else 1)
        if not r.ok:
            continue
        if r.kind == VISION_KIND:  # one response, no tokens: its response time as TTFT and E2E
            add(("TTFT", r.name), 1)
            add(("E2E", r.name), 1)
            continue
        for metric in ("TTFT", "E2E", "TOKENS/S"):
            add((metric, r.name), 1)
        add(("ITL", r.name), len(r.itls_ms))
        if r.tpot_ms is not None:
            add(("TPOT", r.name), 1)
    return {key: (value[0], value[1]) for key, value in counts.items() if value[0] > 0}


def count_mismatches(records: list[RequestRecord], locust_rows: list[LocustRow]) -> list[str]:
    """Human-readable differences between the records and Locust's rows; [] when they agree exactly."""
    expected = expected_locust_counts(records)
    actual = {(row.type, row.name): (row.count, row.failures) for row in locust_rows}
    problems = []
    for key in sorted(set(expected) | set(actual)):
        want, got = expected.get(key, (0, 0)), actual.get(key, (0, 0))
        if want != got:
            problems.append(f"{key[0]} {key[1]}: records say {want[0]} ({want[1]} failed), "
                            f"Locust says {got[0]} ({got[1]} failed)")
    return problems


def build_summary(records: list[RequestRecord], locust_rows: list[LocustRow], slo: SLO,
                  context: dict[str, Any]) -> dict[str, Any]:
    """`context`: what the runner knows about the run (scenario, target, token sizing, ...), copied in."""
    t0, t1 = run_span(records)
    duration_s = max(t1 - t0, 0.0)
    good = [r for r in records if r.ok]
    output_tokens = sum(r.output_tokens for r in good)
    prompt_tokens = sum(r.prompt_tokens for r in good)
    # Hit rate only over requests whose server reported cached tokens: a server that does not say is no 0%.
    reported = [r for r in good if r.cached_tokens is not None]
    cached_tokens = sum(r.cached_tokens or 0 for r in reported)
    reported_prompt_tokens = sum(r.prompt_tokens for r in reported)
    kinds = sorted({r.kind for r in records})
    met = goodput(slo, [(r.ok, r.ttft_ms, r.tpot_ms) for r in records])
    errors = Counter(r.error or f"HTTP {r.status}" for r in records if not r.ok)
    mismatches = count_mismatches(records, locust_rows)
    return {
        **context,
        "duration_s": duration_s,
        "requests": {
            "total": len(records), "ok": len(good), "failed": len(records) - len(good),
            "by_kind": {k: {"total": sum(r.kind == k for r in records),
                            "failed": sum(r.kind == k and not r.ok for r in records)} for k in kinds},
        },
        "locust": {
            "requests": sum(row.count for row in locust_rows if row.type == REQUEST_ROW_TYPE),
            "failures": sum(row.failures for row in locust_rows if row.type == REQUEST_ROW_TYPE),
            "rows": {f"{row.type} {row.name}": row.count for row in locust_rows},
        },
        "counts_match": not mismatches,
        "count_mismatches": mismatches,
        "latency_ms": _latencies(records),
        "latency_ms_by_kind": {k: _latencies([r for r in records if r.kind == k]) for k in kinds},
        "throughput": {
            "requests_per_s": len(good) / duration_s if duration_s else 0.0,
            "output_tokens": output_tokens,
            "output_tokens_per_s": output_tokens / duration_s if duration_s else 0.0,
            "prompt_tokens": prompt_tokens,
            "cached_prompt_tokens": cached_tokens,
            "prefix_cache_hit_rate": cached_tokens / reported_prompt_tokens if reported_prompt_tokens else None,
        },
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms},
        "goodput": {
            "requests_meeting_slo": met.met, "requests": met.requests, "share": met.share,
            "per_s": met.met / duration_s if duration_s else 0.0,
            "note": "share of all requests sent (failures count as misses) within every set SLO"
                    + ("" if slo.is_set else "; no SLO given, so every successful request counts"),
        },
        "errors": [{"error": error, "count": count} for error, count in errors.most_common(TOP_ERRORS)],
    }
