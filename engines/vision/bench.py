"""Engine-level throughput and latency of vision backends (called by `warmserve bench vision`).

One cell = one backend at one batch size: warm-up calls, then timed calls of `infer` on a fixed batch
until both `min_iters` and `min_time_s` are reached. Latency is per batch call; images/s is images over
the summed call time. Runs alternate the backends so a noisy neighbour hits both alike; the report takes
medians over runs and ratios within each run (same-run baseline).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engines.vision.protocol import VisionEngine


@dataclass(slots=True, frozen=True)
class CellResult:
    backend: str
    batch_size: int
    iterations: int
    images_per_s: float
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def measure(engine: VisionEngine, batch: np.ndarray, min_iters: int, min_time_s: float, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter, label: str | None = None) -> CellResult:
    """One cell; `label` names it in the results (default: the engine's backend; two variants of one
    backend need their own)."""
    for _ in range(warmup):
        engine.infer(batch)
    latencies: list[float] = []
    while len(latencies) < min_iters or sum(latencies) < min_time_s:
        started = clock()
        engine.infer(batch)
        latencies.append(clock() - started)
    total = sum(latencies)
    return CellResult(label or engine.backend, len(batch), len(latencies), len(batch) * len(latencies) / total,
                      percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000)


@dataclass(slots=True, frozen=True)
class CellSummary:
    backend: str
    batch_size: int
    runs: int
    images_per_s: float  # median over runs
    p50_ms: float
    p99_ms: float
    ratio_to_baseline: float | None  # median over runs of (this / baseline) images/s, same run


def summarise(runs: list[list[CellResult]], baseline: str) -> list[CellSummary]:
    """Medians over runs for each (backend, batch size); ratios against `baseline` within each run."""
    keys = sorted({(c.backend, c.batch_size) for run in runs for c in run}, key=lambda k: (k[1], k[0]))
    summaries = []
    for backend, batch in keys:
        cells = [c for run in runs for c in run if (c.backend, c.batch_size) == (backend, batch)]
        ratios = []
        for run in runs:
            mine = [c for c in run if (c.backend, c.batch_size) == (backend, batch)]
            base = [c for c in run if (c.backend, c.batch_size) == (baseline, batch)]
            if mine and base:
                ratios.append(mine[0].images_per_s / base[0].images_per_s)
        summaries.append(CellSummary(backend, batch, len(cells),
                                     statistics.median(c.images_per_s for c in cells),
                                     statistics.median(c.p50_ms for c in cells),
                                     statistics.median(c.p99_ms for c in cells),
                                     statistics.median(ratios) if ratios else None))
    return summaries
