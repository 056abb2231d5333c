"""The interleaved benchmark's parts: pausing a process tree for real, and the paired statistics."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from loadtests.paired_stats import paired_summary
from loadtests.process_freeze import ProcessGroup


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_a_paused_tree_uses_no_cpu_until_resumed() -> None:
    # A parent that spins in a child, as raw vLLM's API server does with its engine core.
    spinner = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"
    parent = subprocess.Popen([sys.executable, "-c", spinner])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        group = ProcessGroup.tree("spinner", parent.pid)
        child = group.pids[1]
        group.pause()
        # Delivery is asynchronous: the child stops within a few milliseconds, not at once.
        deadline = time.monotonic() + 5
        while psutil.Process(child).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.01)
        assert psutil.Process(child).status() == psutil.STATUS_STOPPED
        before = _cpu_seconds(child)
        time.sleep(0.5)
        assert _cpu_seconds(child) - before < 0.02
        group.resume()
        time.sleep(0.5)
        assert _cpu_seconds(child) - before > 0.1
    finally:
        for process in psutil.Process(parent.pid).children(recursive=True):
            process.kill()
        parent.kill()
        parent.wait(timeout=10)


def test_pausing_a_process_that_already_exited_is_not_an_error() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    ProcessGroup("gone", (gone.pid,)).pause()


def _run(tok_s: float, ttft_ms: float) -> dict[str, float]:
    return {"output_tokens_per_s": tok_s, "ttft_p50_ms": ttft_ms}


def test_pairs_give_per_pair_ratios_and_their_median() -> None:
    raw = [_run(100, 150), _run(120, 160), _run(80, 200)]
    candidate = [_run(95, 155), _run(126, 150), _run(72, 230)]
    summary = paired_summary(raw, candidate)
    assert summary["tok_s_ratios"] == [0.95, 1.05, 0.9]
    assert summary["tok_s_ratio_median"] == pytest.approx(0.95)
    assert summary["tok_s_ratio_quartiles"] == pytest.approx([0.925, 1.0])
    assert summary["pairs_at_or_above_0_95"] == 2
    assert summary["added_ttft_p50_ms"] == [5.0, -10.0, 30.0]
    assert summary["added_ttft_p50_ms_median"] == 5.0


def test_a_single_pair_is_its_own_median_and_unequal_sides_are_refused() -> None:
    summary = paired_summary([_run(100, 100)], [_run(90, 110)])
    assert summary["tok_s_ratio_quartiles"] == [0.9, 0.9]
    with pytest.raises(ValueError, match="same number"):
        paired_summary([_run(100, 100)], [])
