"""Reading batch input files: the OpenAI envelope, malformed lines by line number, Parquet layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.batch_input import InputError, read_input

CHAT = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_well_formed_lines_keep_their_line_numbers_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    second = {**CHAT, "custom_id": "b", "url": "/v1/completions", "body": {"model": "m", "prompt": "x"}}
    parsed = read_input(_write(tmp_path, json.dumps(CHAT), "", json.dumps(second)))
    assert [(l.line, l.custom_id, l.url) for l in parsed.lines] == [
        (1, "a", "/v1/chat/completions"), (3, "b", "/v1/completions")]
    assert parsed.malformed == [] and parsed.total_lines == 2 and len(parsed.sha256) == 64


@pytest.mark.parametrize(("line", "code", "custom_id"), [
    ("{oops", "invalid_json", None),
    ("[1, 2]", "invalid_line", None),
    (json.dumps({**CHAT, "custom_id": ""}), "invalid_custom_id", None),
    (json.dumps({**CHAT, "custom_id": 7}), "invalid_custom_id", None),
    (json.dumps({k: v for k, v in CHAT.items() if k != "custom_id"}), "invalid_custom_id", None),
    (json.dumps({**CHAT, "method": "GET"}), "invalid_method", "a"),
    (json.dumps({**CHAT, "url": "/v1/embeddings"}), "invalid_url", "a"),
    (json.dumps({**CHAT, "body": "text"}), "invalid_body", "a"),
])
def test_malformed_line_is_reported_by_line_number_and_the_rest_goes_on(tmp_path: Path, line: str, code: str,
                                                                        custom_id: str | None) -> None:
    good = {**CHAT, "custom_id": "ok"}
    parsed = read_input(_write(tmp_path, json.dumps(good), line, json.dumps({**good, "custom_id": "ok2"})))
    assert [l.custom_id for l in parsed.lines] == ["ok", "ok2"]
    (bad,) = parsed.malformed
    record = bad.record()
    assert record["line"] == 2 and record["error"]["code"] == code and record["custom_id"] == custom_id
    assert record["raw"] == line[:300] and record["error"]["message"]


def test_invalid_utf8_is_reported_not_silently_replaced(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    bad = json.dumps({**CHAT, "custom_id": "bad", "body": {"model": "m", "prompt": "caf"}}).encode()
    bad = bad.replace(b'"caf"', b'"caf\xe9"')  # Latin-1, not UTF-8
    path.write_bytes(json.dumps(CHAT).encode() + b"\n" + bad + b"\n")
    parsed = read_input(path)
    assert [l.custom_id for l in parsed.lines] == ["a"]
    (malformed,) = parsed.malformed
    assert malformed.code == "invalid_utf8" and malformed.line == 2 and "UTF-8" in malformed.message


def test_repeated_custom_id_is_malformed_and_names_the_first_line(tmp_path: Path) -> None:
    parsed = read_input(_write(tmp_path, json.dumps(CHAT), json.dumps(CHAT)))
    assert len(parsed.lines) == 1
    assert parsed.malformed[0].code == "duplicate_custom_id" and "line 1" in parsed.malformed[0].message


def test_parquet_with_json_string_bodies(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"custom_id": ["a", "b"], "method": ["POST", "POST"],
                             "url": ["/v1/chat/completions", "/v1/completions"],
                             "body": [json.dumps(CHAT["body"]), "{broken"]}), path)
    parsed = read_input(path)
    assert parsed.lines[0].body == CHAT["body"] and parsed.lines[0].line == 1
    assert parsed.malformed[0].line == 2 and parsed.malformed[0].code == "invalid_json"


def test_parquet_struct_bodies_drop_the_nulls_of_absent_fields(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    bodies = [{"model": "m", "prompt": "x", "max_tokens": 4}, {"model": "m", "prompt": "y", "max_tokens": None}]
    pq.write_table(pa.table({"custom_id": ["a", "b"], "method": ["POST", "POST"],
                             "url": ["/v1/completions"] * 2, "body": bodies}), path)
    parsed = read_input(path)
    assert [l.body for l in parsed.lines] == [bodies[0], {"model": "m", "prompt": "y"}]


def test_unreadable_inputs_are_errors_for_the_whole_job(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such input file"):
        read_input(tmp_path / "missing.jsonl")
    (tmp_path / "in.csv").write_text("x")
    with pytest.raises(InputError, match="unknown input format"):
        read_input(tmp_path / "in.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        read_input(tmp_path / "bad.parquet")
