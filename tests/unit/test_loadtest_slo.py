"""SLO and goodput arithmetic, and the percentile definition the load-test report uses (loadtests.slo)."""

from __future__ import annotations

import math

import pytest

from loadtests.slo import SLO, Distribution, goodput, percentile


def test_goodput_counts_failures_as_misses_and_checks_both_limits() -> None:
    slo = SLO(ttft_ms=500, tpot_ms=50)
    samples = [
        (True, 400.0, 40.0),   # meets both
        (True, 500.0, 50.0),   # on the limits: meets
        (True, 501.0, 10.0),   # TTFT too slow
        (True, 100.0, 60.0),   # TPOT too slow
        (True, 100.0, None),   # one output token: judged on TTFT alone
        (False, None, None),   # failed
        (True, None, None),    # no first token: cannot meet
    ]
    result = goodput(slo, samples)
    assert (result.met, result.requests) == (3, 7)
    assert result.share == pytest.approx(3 / 7)


def test_unset_limits_are_not_checked() -> None:
    assert goodput(SLO(ttft_ms=100), [(True, 90.0, 1e9)]).met == 1
    assert goodput(SLO(tpot_ms=10), [(True, 1e9, 5.0)]).met == 1
    assert goodput(SLO(), [(True, 1e9, 1e9), (False, None, None)]).share == 0.5
    assert not SLO().is_set and SLO(ttft_ms=1).is_set
    assert goodput(SLO(), []).share == 0.0


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan])
def test_slo_limits_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match="ttft_ms"):
        SLO(ttft_ms=value)


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 90) == pytest.approx(37.0)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_distribution() -> None:
    d = Distribution.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (d.count, d.mean, d.p50, d.max) == (5, 3.0, 3.0, 5.0)
    empty = Distribution.of([])
    assert empty.count == 0 and empty.p99 is None and empty.mean is None
