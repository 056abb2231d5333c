"""The vision benchmark's measurement and summary (fake engine, injected clock)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engines.vision.bench import CellResult, measure, percentile, summarise


class _Engine:
    backend = "fake"
    max_batch_size = 64

    def __init__(self) -> None:
        self.calls = 0

    def infer(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros((len(images), 10), np.float32)


def test_measure_counts_images_over_summed_call_time() -> None:
    ticks = itertools.count(step=0.5)  # every call takes 0.5 s on this clock
    engine = _Engine()
    cell = measure(engine, np.zeros((4, 3, 8, 8), np.float32), min_iters=3, min_time_s=2.0, warmup=2,
                   clock=lambda: next(ticks))
    assert cell.iterations == 4 and engine.calls == 6  # 2 warm-up + until 2 s summed
    assert cell.images_per_s == pytest.approx(8.0) and cell.p50_ms == pytest.approx(500.0)


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0


def test_summary_takes_medians_and_same_run_ratios() -> None:
    runs = [
        [CellResult("ort", 8, 3, 30.0, 10, 12), CellResult("torch", 8, 3, 10.0, 30, 33)],
        [CellResult("ort", 8, 3, 20.0, 11, 13), CellResult("torch", 8, 3, 5.0, 31, 40)],   # noisy run: both slow
        [CellResult("ort", 8, 3, 33.0, 9, 10), CellResult("torch", 8, 3, 11.0, 29, 30)],
    ]
    ort, torch = summarise(runs, baseline="torch")
    assert (ort.backend, ort.images_per_s, ort.p50_ms, ort.runs) == ("ort", 30.0, 10, 3)
    assert ort.ratio_to_baseline == pytest.approx(3.0)  # median of 3.0, 4.0, 3.0
    assert torch.ratio_to_baseline == pytest.approx(1.0)
