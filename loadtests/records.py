"""Per-request records of a load test: one JSON line per request that Locust counted.

Every Locust process (the local runner, or each worker in distributed mode) appends to its own file
`requests-<pid>.jsonl` in the run's record directory, written at the same moment the request's Locust event
fires, so the records and Locust's request counts agree. `loadtests.summary` reads them all back for exact
percentiles, goodput and the time series in the plots. Workers must share the master's file system (the
`warmserve loadtest` harness starts them on the same machine).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

RECORD_GLOB = "requests-*.jsonl"


@dataclass(slots=True)
class RequestRecord:
    """One request. `start_unix_s` is wall-clock (time.time()) so records of several processes line up;
    latencies are milliseconds (>= 0); `name` is Locust's row name of the request."""

    start_unix_s: float
    name: str
    kind: str  # the user kind: shared_prefix, multi_turn, long_context, completions, vision
    ok: bool
    status: int  # HTTP status; 0 when no response arrived
    e2e_ms: float
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itls_ms: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int | None = None  # None: not reported by the server
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> RequestRecord:
        return cls(**json.loads(line))


class RecordWriter:
    """Appends records of this process; line-buffered so a killed process loses at most one line."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"requests-{os.getpid()}.jsonl"
        self._file: IO[str] = self.path.open("a", buffering=1, encoding="utf-8")

    def write(self, record: RequestRecord) -> None:
        self._file.write(record.to_json() + "\n")

    def close(self) -> None:
        self._file.close()


def read_records(directory: Path) -> list[RequestRecord]:
    """All records under `directory`, sorted by start time. A truncated last line (a process killed mid-write)
    is skipped."""
    records: list[RequestRecord] = []
    for path in sorted(directory.glob(RECORD_GLOB)):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(RequestRecord.from_json(line))
            except (ValueError, TypeError):
                continue
    records.sort(key=lambda r: r.start_unix_s)
    return records
