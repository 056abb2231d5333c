"""Statistics of an interleaved benchmark: per pair (one baseline run and one candidate run, neighbours in
time, same prompts), the candidate's tokens/s ratio and added TTFT p50; then their medians and spread.

Why pairs: the host's speed drifts by +-10% over minutes, so a ratio of two medians taken minutes apart
measures the drift as much as the systems. The ratio within a pair cancels what the two neighbouring
runs share; the median over pairs then discards the pairs a burst of host load hit on one side only.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    """Lower and upper quartile (the median itself for fewer than 2 values)."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def paired_summary(baseline: Sequence[Mapping[str, object]],
                   candidate: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """Pair run i of `baseline` with run i of `candidate` (each a chat_bench RunSummary as a dict)."""
    if not baseline or len(baseline) != len(candidate):
        raise ValueError(f"need the same number (>= 1) of baseline and candidate runs, got "
                         f"{len(baseline)} and {len(candidate)}")
    ratios = [float(c["output_tokens_per_s"]) / float(b["output_tokens_per_s"])  # type: ignore[arg-type]
              for b, c in zip(baseline, candidate)]
    added_ttft = [float(c["ttft_p50_ms"]) - float(b["ttft_p50_ms"])  # type: ignore[arg-type]
                  for b, c in zip(baseline, candidate)]
    ratio_q1, ratio_q3 = _quartiles(ratios)
    ttft_q1, ttft_q3 = _quartiles(added_ttft)
    return {
        "pairs": len(ratios),
        "tok_s_ratios": [round(r, 4) for r in ratios],
        "tok_s_ratio_median": statistics.median(ratios),
        "tok_s_ratio_quartiles": [ratio_q1, ratio_q3],
        "pairs_at_or_above_0_95": sum(r >= 0.95 for r in ratios),
        "added_ttft_p50_ms": [round(t, 1) for t in added_ttft],
        "added_ttft_p50_ms_median": statistics.median(added_ttft),
        "added_ttft_p50_ms_quartiles": [ttft_q1, ttft_q3],
    }
