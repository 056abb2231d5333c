"""Progress lines: per shard and overall (rows, tokens/s, ETA), from an injected clock."""

from __future__ import annotations

from cluster.batch_progress import Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_shard_lines_report_rate_and_eta_and_the_engine_start_does_not_skew_them() -> None:
    clock, lines = Clock(), []
    progress = Progress(total_rows=100, skipped_rows=20, clock=clock, printer=lines.append)
    assert progress.eta_s() is None
    clock.now += 60  # engines starting: no rows yet
    progress.shard_committed("shard-000003.jsonl", rows=10, tokens=200, failed=1, shard_elapsed_s=4.0)
    assert lines[-1] == ("shard shard-000003.jsonl committed: 10 rows (1 failed), 200 tokens in 4.0 s "
                         "(50.0 tokens/s) | overall 30/100 rows (30%), 200 tokens, 3.3 tokens/s, "
                         "elapsed 1m00s, ETA 7m00s")
    clock.now += 10
    progress.shard_committed("shard-000004.jsonl", rows=20, tokens=400, failed=0, shard_elapsed_s=10.0)
    # Measured from the first commit: 20 rows and 400 tokens in 10 s, 50 rows to go.
    assert progress.remaining_rows == 50
    assert progress.tokens_per_s() == 40.0 and progress.eta_s() == 25.0
    assert lines[-1].endswith("overall 50/100 rows (50%), 600 tokens, 40.0 tokens/s, elapsed 1m10s, ETA 25s")
    progress.heartbeat("running")
    assert lines[-1].startswith("running | overall 50/100 rows")
    assert progress.failed_rows == 1 and progress.shards_done == 2


def test_durations_read_like_people_write_them() -> None:
    assert [format_duration(s) for s in (None, 4.4, 75, 3725)] == ["?", "4s", "1m15s", "1h02m05s"]
