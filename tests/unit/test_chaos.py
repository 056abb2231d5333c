from __future__ import annotations

import pytest

from cluster.chaos import ChaosReport, cmd_chaos, compare, judge_burst
from cluster.chaos_burst import BurstOutcome
from cluster.chaos_load import RequestOutcome


def _outcome(index: int, text: str, status: int = 200, finish: str | None = "length", error: str | None = None,
             resumed: int = 0) -> RequestOutcome:
    return RequestOutcome(index, status, text, finish, "r1", error, resumed, 0, 1.0)


def test_compare_counts_lost_and_changed_requests() -> None:
    reference = [_outcome(i, f"text {i}") for i in range(4)]
    faulted = [
        _outcome(0, "text 0", resumed=1),  # moved, same text: fine
        _outcome(1, "text 1", status=503, finish=None, error="unavailable"),  # lost
        _outcome(2, "text 2", error='{"message": "in-band"}'),  # an in-band error event: lost
        _outcome(3, "other text"),  # completed but different: mismatched
    ]
    report = ChaosReport(4)
    compare(reference, faulted, report)
    assert (report.lost, report.mismatched, report.resumed) == ([1, 2], [3], 1)
    assert not report.passed and "lost 2, text differs 1" in report.summary()


def test_a_burst_is_judged_on_answers_and_prompt_refusals() -> None:
    burst = [
        BurstOutcome(10, 200, 0.4, None, True, None),
        BurstOutcome(11, 503, 0.05, "1", False, "busy"),
        BurstOutcome(12, 429, 0.09, "2", False, "too many"),
        BurstOutcome(13, 500, 3.0, None, False, "engine error"),  # neither answered nor refused
    ]
    report = ChaosReport(0)
    judge_burst(burst, report)
    assert sorted(report.burst_refused_s) == [0.05, 0.09] and len(report.burst_failed) == 1
    assert not report.passed
    assert "burst of 4: 1 answered, 2 refused; time to refusal p50 90 ms, p99 90 ms, 1 failed" in report.summary()


def test_unknown_fault_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cmd_chaos(["--faults", "engine_kill,meteor"])
    assert exit_info.value.code == 2


def test_no_fault_needs_a_burst() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cmd_chaos(["--faults", "none"])
    assert exit_info.value.code == 2


def test_engine_faults_pick_the_replica_whose_engine_is_busy() -> None:
    import random
    import subprocess
    import sys

    from cluster.chaos_faults import _busiest_replica

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # Whatever the seed, the spinning "engine" is chosen over the sleeping one.
        picks = {_busiest_replica({10: [idle.pid], 20: [busy.pid]}, random.Random(seed), sample_s=0.3)
                 for seed in range(2)}
        assert picks == {20}
    finally:
        busy.kill()
        idle.kill()
