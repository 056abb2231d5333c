"""Per-interval series of a load test for the plots: TTFT and ITL percentiles, throughput, completions.

Pure over RequestRecord lists. Each sample lands in the interval in which it happened: a TTFT at the first
token's arrival, an ITL at its token's arrival, output tokens spread over their request's text events, a
request at its completion. Called by `loadtests.plots` and `loadtests.summary`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from loadtests.records import RequestRecord
from loadtests.slo import percentile

# At most about this many intervals over a run, each a whole number of seconds, and wide enough to hold about
# MIN_REQUESTS_PER_INTERVAL requests on average: percentiles of one or two samples are noise, not a trend.
TARGET_INTERVALS = 60
MIN_REQUESTS_PER_INTERVAL = 5


@dataclass(slots=True)
class Series:
    """Interval i covers [t0_unix_s + i * interval_s, ... + interval_s). Percentiles are None where an interval
    has no sample."""

    t0_unix_s: float
    interval_s: float
    times_s: list[float] = field(default_factory=list)  # each interval's middle, seconds from t0
    ttft_ms: dict[str, list[float | None]] = field(default_factory=dict)  # "p50"/"p90"/"p99" -> per interval
    itl_ms: dict[str, list[float | None]] = field(default_factory=dict)
    output_tokens_per_s: list[float] = field(default_factory=list)
    completed_per_s: list[float] = field(default_factory=list)
    failed_per_s: list[float] = field(default_factory=list)


def run_span(records: list[RequestRecord]) -> tuple[float, float]:
    """(first start, last end) in unix seconds; (0, 0) without records."""
    if not records:
        return 0.0, 0.0
    return (min(r.start_unix_s for r in records),
            max(r.start_unix_s + r.e2e_ms / 1000.0 for r in records))


def choose_interval_s(span_s: float, requests: int) -> float:
    by_count = span_s / TARGET_INTERVALS
    by_density = span_s * MIN_REQUESTS_PER_INTERVAL / max(1, requests)
    return float(max(1, math.ceil(min(max(by_count, by_density), span_s / 4))))


def build_series(records: list[RequestRecord], interval_s: float | None = None) -> Series:
    t0, t1 = run_span(records)
    span = max(t1 - t0, 1e-9)
    interval = interval_s or choose_interval_s(span, len(records))
    # A trailing sliver shorter than half an interval joins the interval before it: a rate over a few
    # milliseconds is noise.
    count = max(1, math.ceil(span / interval) if span % interval >= interval / 2 else math.floor(span / interval))
    ttfts: list[list[float]] = [[] for _ in range(count)]
    itls: list[list[float]] = [[] for _ in range(count)]
    tokens = [0.0] * count
    completed = [0.0] * count
    failed = [0.0] * count

    def slot(at_unix_s: float) -> int:
        return min(count - 1, max(0, int((at_unix_s - t0) // interval)))

    for record in records:
        end = record.start_unix_s + record.e2e_ms / 1000.0
        (completed if record.ok else failed)[slot(end)] += 1
        if not record.ok or record.ttft_ms is None:
            continue
        first = record.start_unix_s + record.ttft_ms / 1000.0
        ttfts[slot(first)].append(record.ttft_ms)
        arrivals = [first]
        for gap in record.itls_ms:
            arrivals.append(arrivals[-1] + gap / 1000.0)
            itls[slot(arrivals[-1])].append(gap)
        per_event = record.output_tokens / len(arrivals)
        for arrival in arrivals:
            tokens[slot(arrival)] += per_event

    # The last interval is usually cut short by the end of the run: rates over its real width.
    widths = [interval] * count
    widths[-1] = max(span - (count - 1) * interval, 1e-3)
    series = Series(t0_unix_s=t0, interval_s=interval,
                    times_s=[i * interval + widths[i] / 2 for i in range(count)],
                    output_tokens_per_s=[t / w for t, w in zip(tokens, widths, strict=True)],
                    completed_per_s=[c / w for c, w in zip(completed, widths, strict=True)],
                    failed_per_s=[f / w for f, w in zip(failed, widths, strict=True)])
    for name, pct in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
        series.ttft_ms[name] = [percentile(values, pct) for values in ttfts]
        series.itl_ms[name] = [percentile(values, pct) for values in itls]
    return series
