"""Mooncake-format traces: parsing, errors naming the line, deterministic expansion to token ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.block_hash import chained_block_hashes
from router.sim.workloads.mooncake import TraceError, read_trace, trace_requests
from router.sim.workloads.registry import SHIPPED_TRACE

GOOD = [
    {"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [7, 8]},
    {"timestamp": 12.5, "input_length": 1300, "output_length": 1, "hash_ids": [7, 8, 9]},
    {"timestamp": 20, "input_length": 600, "output_length": 3, "hash_ids": [4, 5]},
]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_equal_hash_id_prefixes_give_equal_token_prefixes(tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps(line) for line in GOOD] + [""])  # a trailing blank line is fine
    lines = read_trace(path)
    assert [line.timestamp_ms for line in lines] == [0.0, 12.5, 20.0]
    requests = trace_requests(lines, block_size=16, seed=3)
    a, b, c = (r.source.tokens() for r in requests)
    assert len(a) == 1000 + 5 and len(b) == 1300 + 1
    assert list(a[:1000]) == list(b[:1000])  # hash ids 7, 8 shared: 1000 tokens (the second block partly)
    assert list(a[:512]) != list(c[:512])
    assert requests[1].arrival_s == pytest.approx(0.0125)
    for req in requests:
        assert req.keys == chained_block_hashes(req.source.tokens(), 16)
    assert requests[0].keys[:62] == requests[1].keys[:62]  # 1000 // 16 = 62 full blocks in common
    again = trace_requests(read_trace(path), block_size=16, seed=3)
    assert [r.keys for r in again] == [r.keys for r in requests]  # deterministic


@pytest.mark.parametrize(("line", "problem"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"timestamp": 1, "input_length": 10, "output_length": 1}', "missing field(s) hash_ids"),
    ('{"timestamp": -1, "input_length": 10, "output_length": 1, "hash_ids": [1]}', "timestamp must be"),
    ('{"timestamp": 1, "input_length": 0, "output_length": 1, "hash_ids": []}', "input_length must be"),
    ('{"timestamp": 1, "input_length": 10, "output_length": true, "hash_ids": [1]}', "output_length must be"),
    ('{"timestamp": 1, "input_length": 10, "output_length": 1, "hash_ids": ["a"]}', "hash_ids must be"),
    ('{"timestamp": 1, "input_length": 600, "output_length": 1, "hash_ids": [1]}', "needs 2 blocks"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}', "earlier than the previous"),
])
def test_malformed_lines_raise_naming_the_line_and_the_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path, [json.dumps(GOOD[0] | {"timestamp": 5}), line])
    with pytest.raises(TraceError) as error:
        read_trace(path)
    assert f"{path}:2:" in str(error.value) and problem in str(error.value)


def test_an_empty_trace_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no requests"):
        read_trace(_write(tmp_path, [""]))


def test_the_shipped_trace_slice_parses() -> None:
    lines = read_trace(SHIPPED_TRACE)
    assert len(lines) == 2000 and lines[0].timestamp_ms == 0
