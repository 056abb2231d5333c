"""Reading a batch input file (OpenAI batch format, JSONL or Parquet) and checking each line's envelope.

Called by `cluster.batch` once per run. A line whose envelope is wrong (not JSON, no `custom_id`, an
unsupported `method`/`url`, a `body` that is not an object, a repeated `custom_id`) becomes a
`MalformedLine` for the errors file; the job goes on with the rest. The request body itself is checked
later, exactly as the online endpoint checks it, so a bad field gets the same 400 response in both modes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_URLS = ("/v1/chat/completions", "/v1/completions")
MAX_CUSTOM_ID_CHARS = 512  # OpenAI's limit is smaller (64); we only guard against absurd ids
RAW_EXCERPT_CHARS = 300


@dataclass(slots=True, frozen=True)
class BatchLine:
    """One well-formed request: `line` is its 1-based line (JSONL) or row (Parquet) number."""

    line: int
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(slots=True, frozen=True)
class MalformedLine:
    line: int
    code: str
    message: str
    custom_id: str | None = None
    raw: str = ""

    def record(self) -> dict[str, Any]:
        """The errors-file line: where, what, and the start of the offending text."""
        return {"line": self.line, "custom_id": self.custom_id,
                "error": {"code": self.code, "message": self.message}, "raw": self.raw}


@dataclass(slots=True)
class BatchInput:
    lines: list[BatchLine] = field(default_factory=list)
    malformed: list[MalformedLine] = field(default_factory=list)
    sha256: str = ""

    @property
    def total_lines(self) -> int:
        return len(self.lines) + len(self.malformed)


class InputError(Exception):
    """The input as a whole cannot be read (missing file, unknown format, unreadable Parquet)."""


def input_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputError(f"{path}: unknown input format {suffix!r}; use .jsonl or .parquet")


def read_input(path: Path) -> BatchInput:
    """Parse every line of `path`; never raises for a bad line, only for an unreadable file."""
    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    data = path.read_bytes()
    fmt = input_format(path)
    parsed = BatchInput(sha256=hashlib.sha256(data).hexdigest())
    entries = _jsonl_entries(data) if fmt == "jsonl" else _parquet_entries(path)
    seen: dict[str, int] = {}
    for line, entry, raw in entries:
        result = check_envelope(line, entry, raw)
        if isinstance(result, BatchLine):
            if result.custom_id in seen:
                result = MalformedLine(line, "duplicate_custom_id",
                                       f"custom_id {result.custom_id!r} was already used on line "
                                       f"{seen[result.custom_id]}", result.custom_id, raw[:RAW_EXCERPT_CHARS])
            else:
                seen[result.custom_id] = line
        (parsed.lines if isinstance(result, BatchLine) else parsed.malformed).append(result)
    return parsed


def _jsonl_entries(data: bytes) -> list[tuple[int, object, str]]:
    entries: list[tuple[int, object, str]] = []
    for number, raw_bytes in enumerate(data.splitlines(), start=1):
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as error:  # reported, never silently replaced (it would change the prompt)
            raw = raw_bytes.decode("utf-8", errors="replace")
            entries.append((number, _NotUTF8(f"byte {error.start}: {error.reason}"), raw))
            continue
        if not raw.strip():
            continue  # blank lines (a trailing newline, spacing) are not requests
        try:
            entries.append((number, json.loads(raw), raw))
        except json.JSONDecodeError as error:
            entries.append((number, _NotJSON(str(error)), raw))
    return entries


class _NotUTF8:
    def __init__(self, message: str) -> None:
        self.message = message


class _NotJSON:
    def __init__(self, message: str) -> None:
        self.message = message


def _parquet_entries(path: Path) -> list[tuple[int, object, str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable Parquet file: {error}") from None
    entries: list[tuple[int, object, str]] = []
    for number, row in enumerate(table.to_pylist(), start=1):
        body = row.get("body")
        if isinstance(body, str):  # the recommended layout: the body as a JSON string column
            try:
                row = {**row, "body": json.loads(body)}
            except json.JSONDecodeError as error:
                entries.append((number, _NotJSON(f"body: {error}"), json.dumps(row, default=str)))
                continue
        elif isinstance(body, dict):
            row = {**row, "body": _drop_nulls(body)}
        entries.append((number, row, json.dumps(row, default=str)))
    return entries


def _drop_nulls(value: Any) -> Any:
    # A Parquet struct column has every field of every row, absent ones as null; an OpenAI body means
    # "not given" by leaving a field out, and some fields reject null.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def check_envelope(line: int, entry: object, raw: str) -> BatchLine | MalformedLine:
    """Check the OpenAI batch envelope of one decoded line (the body's fields are checked later)."""
    excerpt = raw[:RAW_EXCERPT_CHARS]
    if isinstance(entry, _NotUTF8):
        return MalformedLine(line, "invalid_utf8", f"line is not valid UTF-8 ({entry.message})", raw=excerpt)
    if isinstance(entry, _NotJSON):
        return MalformedLine(line, "invalid_json", f"line is not valid JSON: {entry.message}", raw=excerpt)
    if not isinstance(entry, dict):
        return MalformedLine(line, "invalid_line", f"line must be a JSON object, got {type(entry).__name__}",
                             raw=excerpt)
    custom_id = entry.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID_CHARS:
        return MalformedLine(line, "invalid_custom_id",
                             f"'custom_id' must be a non-empty string of at most {MAX_CUSTOM_ID_CHARS} "
                             f"characters, got {_short(custom_id)}", raw=excerpt)
    method = entry.get("method", "POST")
    if method != "POST":
        return MalformedLine(line, "invalid_method", f"'method' must be \"POST\", got {_short(method)}",
                             custom_id, excerpt)
    url = entry.get("url")
    if url not in SUPPORTED_URLS:
        return MalformedLine(line, "invalid_url", f"'url' must be one of {list(SUPPORTED_URLS)}, got {_short(url)}",
                             custom_id, excerpt)
    body = entry.get("body")
    if not isinstance(body, dict):
        return MalformedLine(line, "invalid_body", f"'body' must be a JSON object, got {type(body).__name__}",
                             custom_id, excerpt)
    return BatchLine(line, custom_id, str(url), body)


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
