"""Reading what Locust wrote with `--csv PREFIX`: per-row counts and the users-over-time history.

Called by `loadtests.summary` (to cross-check the per-request records against Locust's own counts) and by the
runner's progress line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True, frozen=True)
class LocustRow:
    type: str  # "POST" for requests; TTFT, ITL, TPOT, E2E, TOKENS/S for the metrics
    name: str
    count: int
    failures: int
    median_ms: float
    p90_ms: float


def read_stats(path: Path) -> list[LocustRow]:
    """Rows of `<prefix>_stats.csv` without the Aggregated row; [] if the file does not exist yet."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated" or not row.get("Type"):
                continue
            rows.append(LocustRow(type=row["Type"], name=row["Name"], count=int(row["Request Count"]),
                                  failures=int(row["Failure Count"]),
                                  median_ms=_number(row.get("Median Response Time")),
                                  p90_ms=_number(row.get("90%"))))
    return rows


def read_user_history(path: Path) -> list[tuple[float, int]]:
    """(unix time, user count) per second from `<prefix>_stats_history.csv` (its Aggregated rows)."""
    if not path.is_file():
        return []
    points = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") != "Aggregated":
                continue
            try:
                points.append((float(row["Timestamp"]), int(row["User Count"])))
            except (KeyError, ValueError):
                continue
    return points


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "N/A") else 0.0
    except ValueError:
        return 0.0
