"""Service-level objectives and goodput, and the percentile arithmetic the report uses.

Goodput here is the share of all requests sent (failures included, as misses) whose TTFT and TPOT are both
within the SLO; a limit left unset is not checked. A request with fewer than two output tokens has no TPOT and
is judged on TTFT alone. Called by `loadtests.summary` and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PERCENTILES = (50.0, 90.0, 95.0, 99.0)


@dataclass(slots=True, frozen=True)
class SLO:
    """Latency objectives in milliseconds; each is > 0 when set, None when not checked."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"SLO {name} must be a positive number of milliseconds, got {value!r}")

    @property
    def is_set(self) -> bool:
        return self.ttft_ms is not None or self.tpot_ms is not None

    def met(self, ok: bool, ttft_ms: float | None, tpot_ms: float | None) -> bool:
        """Whether one request meets every set objective. Failed requests and ones without a TTFT never do."""
        if not ok or ttft_ms is None:
            return False
        if self.ttft_ms is not None and ttft_ms > self.ttft_ms:
            return False
        return not (self.tpot_ms is not None and tpot_ms is not None and tpot_ms > self.tpot_ms)


@dataclass(slots=True, frozen=True)
class Goodput:
    requests: int
    met: int

    @property
    def share(self) -> float:
        return self.met / self.requests if self.requests else 0.0


def goodput(slo: SLO, samples: Sequence[tuple[bool, float | None, float | None]]) -> Goodput:
    """`samples`: (ok, ttft_ms, tpot_ms) per request sent."""
    return Goodput(requests=len(samples), met=sum(slo.met(*sample) for sample in samples))


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method) of `values`, `pct` in [0, 100]; None if empty."""
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {pct}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Distribution:
    """Count, mean and percentiles of one metric, in the unit of its samples (ms in the report)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        p50, p90, p95, p99 = (percentile(values, p) for p in PERCENTILES)
        return cls(count=len(values), mean=sum(values) / len(values) if values else None, p50=p50, p90=p90,
                   p95=p95, p99=p99, max=max(values) if values else None)
