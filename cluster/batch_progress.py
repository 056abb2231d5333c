"""Progress lines for the job's log (`ray job logs --follow`) and the final summary.

`Progress` is told about each committed shard by the runner and prints one line per shard (its rows,
tokens and tokens/s) plus the overall position (rows done of total, tokens/s, ETA). A heartbeat thread
repeats the overall line while nothing commits (engines starting, a long shard), so a quiet log never
means a hung job. The clock is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
Printer = Callable[[str], None]


def _print(message: str) -> None:
    print(f"[batch] {message}", flush=True)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


@dataclass(slots=True)
class Progress:
    """`total_rows`: requests in the input (well-formed lines); `skipped_rows`: committed by earlier runs."""

    total_rows: int
    skipped_rows: int
    clock: Clock = time.monotonic
    printer: Printer = _print
    started_at: float = field(default=0.0, init=False)
    rows_done: int = field(default=0, init=False)  # this run
    tokens_done: int = field(default=0, init=False)
    failed_rows: int = field(default=0, init=False)
    shards_done: int = field(default=0, init=False)
    # Rates are measured from the first commit on: before it, engines were starting (a minute on CPU),
    # which says nothing about how fast the rest will go.
    _first_commit: tuple[float, int, int] | None = field(default=None, init=False)  # (time, rows, tokens)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    @property
    def remaining_rows(self) -> int:
        return self.total_rows - self.skipped_rows - self.rows_done

    def elapsed_s(self) -> float:
        return self.clock() - self.started_at

    def _window(self) -> tuple[float, int, int]:
        """(seconds, rows, tokens) of the measuring window: from the first commit, or from the start
        while fewer than two shards are in."""
        now = self.clock()
        if self._first_commit is None or self.shards_done < 2:
            return now - self.started_at, self.rows_done, self.tokens_done
        at, rows, tokens = self._first_commit
        return now - at, self.rows_done - rows, self.tokens_done - tokens

    def tokens_per_s(self) -> float:
        seconds, _, tokens = self._window()
        return tokens / seconds if seconds > 0 else 0.0

    def eta_s(self) -> float | None:
        """Remaining rows at the pace since the first commit; None before any shard is in."""
        seconds, rows, _ = self._window()
        if rows == 0 or seconds <= 0:
            return None
        return self.remaining_rows / (rows / seconds)

    def overall(self) -> str:
        done = self.skipped_rows + self.rows_done
        percent = 100.0 * done / self.total_rows if self.total_rows else 100.0
        return (f"overall {done}/{self.total_rows} rows ({percent:.0f}%), {self.tokens_done} tokens, "
                f"{self.tokens_per_s():.1f} tokens/s, elapsed {format_duration(self.elapsed_s())}, "
                f"ETA {format_duration(self.eta_s())}")

    def shard_committed(self, name: str, rows: int, tokens: int, failed: int, shard_elapsed_s: float) -> None:
        with self._lock:
            self.rows_done += rows
            self.tokens_done += tokens
            self.failed_rows += failed
            self.shards_done += 1
            if self._first_commit is None:
                self._first_commit = (self.clock(), self.rows_done, self.tokens_done)
            rate = tokens / shard_elapsed_s if shard_elapsed_s > 0 else 0.0
            self.printer(f"shard {name} committed: {rows} rows ({failed} failed), {tokens} tokens in "
                         f"{shard_elapsed_s:.1f} s ({rate:.1f} tokens/s) | {self.overall()}")

    def heartbeat(self, note: str = "") -> None:
        with self._lock:
            self.printer(f"{note + ' | ' if note else ''}{self.overall()}")

    def start_heartbeat(self, period_s: float, note: Callable[[], str] = lambda: "") -> threading.Event:
        """Print the overall line every `period_s` until the returned event is set."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(period_s):
                self.heartbeat(note())

        threading.Thread(target=beat, daemon=True, name="batch-heartbeat").start()
        return stop


def summary(*, mode: str, input_lines: int, malformed: int, requests: int, skipped: int, progress: Progress,
            failed_total: int, tokens_total: int, wall_s: float, output: str, errors_file: str,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The final summary, printed to the log and written to `summary.json` in the shards directory."""
    return {
        "mode": mode,
        "input_lines": input_lines,
        "malformed_lines": malformed,
        "requests": requests,
        "skipped_already_committed": skipped,
        "completed_this_run": progress.rows_done,
        "failed_requests": failed_total,
        "completion_tokens_this_run": progress.tokens_done,
        "completion_tokens_total": tokens_total,
        "wall_s": round(wall_s, 2),
        "tokens_per_s_this_run": round(progress.tokens_done / wall_s, 2) if wall_s > 0 else 0.0,
        "output": output,
        "errors_file": errors_file,
        **(extra or {}),
    }
