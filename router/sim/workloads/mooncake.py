"""Traces in the Mooncake format: one JSON object per line, expanded to deterministic token ids.

A line is `{"timestamp": ms, "input_length": n, "output_length": m, "hash_ids": [...]}`; `hash_ids` name the
prompt's 512-token blocks, equal ids meaning equal content (and, the ids being remapped prefix hashes,
equal prefixes). Block `h` expands to 512 token ids derived from `h` alone (SHAKE-128 of `h`), the last
block cut to the prompt's length, so equal hash-id prefixes give equal token prefixes and different ids
different tokens (15-bit ids). Output tokens are unique per request. Token ids are materialised only while a request
is in flight (a multi-thousand-line trace holds tens of millions of prompt tokens).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engines.block_hash import chained_block_hashes
from router.sim.request import SimRequest

TRACE_BLOCK_TOKENS = 512
_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")


class TraceError(ValueError):
    """A malformed trace line; the message names the file, the line number and the problem."""


@dataclass(slots=True, frozen=True)
class TraceLine:
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_line(text: str, where: str) -> TraceLine:
    """Parse one line; `where` ("file:line") prefixes every error."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise TraceError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [name for name in _FIELDS if name not in obj]
    if missing:
        raise TraceError(f"{where}: missing field(s) {', '.join(missing)}")
    timestamp = obj["timestamp"]
    if not (_is_int(timestamp) or isinstance(timestamp, float)) or not math.isfinite(timestamp) or timestamp < 0:
        raise TraceError(f"{where}: timestamp must be a number of milliseconds >= 0, got {timestamp!r}")
    for name in ("input_length", "output_length"):
        if not _is_int(obj[name]) or obj[name] < 1:
            raise TraceError(f"{where}: {name} must be an integer >= 1, got {obj[name]!r}")
    hash_ids = obj["hash_ids"]
    if not isinstance(hash_ids, list) or not all(_is_int(h) and h >= 0 for h in hash_ids):
        raise TraceError(f"{where}: hash_ids must be a list of integers >= 0")
    needed = -(-obj["input_length"] // TRACE_BLOCK_TOKENS)
    if len(hash_ids) != needed:
        raise TraceError(f"{where}: hash_ids has {len(hash_ids)} ids but input_length {obj['input_length']} "
                         f"needs {needed} blocks of {TRACE_BLOCK_TOKENS} tokens")
    return TraceLine(float(timestamp), obj["input_length"], obj["output_length"], tuple(hash_ids))


def read_trace(path: Path) -> list[TraceLine]:
    """Every line of a trace file (blank lines skipped); timestamps must not decrease.

    Raises TraceError (bad content) or OSError (unreadable file).
    """
    lines: list[TraceLine] = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            line = parse_line(text, f"{path}:{number}")
            if lines and line.timestamp_ms < lines[-1].timestamp_ms:
                raise TraceError(f"{path}:{number}: timestamp {line.timestamp_ms:g} ms is earlier than the "
                                 f"previous line's {lines[-1].timestamp_ms:g} ms")
            lines.append(line)
    if not lines:
        raise TraceError(f"{path}: no requests in the trace")
    return lines


# Clears the top bit of each little-endian uint16's high byte: 16 random bits -> an id below 2**15
# (= VOCAB_SIZE), at C speed.
_HIGH_BYTE = bytes(b & 0x7F for b in range(256))


def _token_array(seed_bytes: bytes, count: int) -> array:
    raw = bytearray(hashlib.shake_128(seed_bytes).digest(2 * count))
    raw[1::2] = raw[1::2].translate(_HIGH_BYTE)
    tokens = array("H")
    tokens.frombytes(raw)
    if sys.byteorder == "big":
        tokens.byteswap()  # the same ids on every host
    return tokens


@lru_cache(maxsize=32768)
def _block_tokens(hash_id: int, salt: bytes) -> array:
    return _token_array(salt + hash_id.to_bytes(8, "big"), TRACE_BLOCK_TOKENS)


@dataclass(slots=True, frozen=True)
class HashIdTokens:
    """Tokens of one trace request, built on demand from its hash ids."""

    hash_ids: tuple[int, ...]
    input_length: int
    output_length: int
    request_number: int
    salt: bytes

    def tokens(self) -> Sequence[int]:
        out = array("H")
        for hash_id in self.hash_ids:
            out += _block_tokens(hash_id, self.salt)
        del out[self.input_length :]
        out += _output_tokens(self.request_number, self.output_length, self.salt)
        return out


def _output_tokens(number: int, count: int, salt: bytes) -> array:
    return _token_array(salt + b"out" + number.to_bytes(8, "big"), count)


def trace_requests(lines: list[TraceLine], block_size: int, seed: int = 0, name: str = "trace") -> list[SimRequest]:
    """Requests at the trace's own times (seconds from its first line). Keys are computed per 512-token
    block and memoised by (parent key, hash id, length), so shared prefixes are hashed once."""
    salt = seed.to_bytes(8, "big", signed=True)
    memo: dict[tuple[int | None, int, int], list[int]] = {}
    origin = lines[0].timestamp_ms
    requests: list[SimRequest] = []
    if TRACE_BLOCK_TOKENS % block_size:
        raise ValueError(f"block size {block_size} must divide the trace's {TRACE_BLOCK_TOKENS}-token blocks")
    for number, line in enumerate(lines):
        keys: list[int] = []
        parent: int | None = None
        for position, hash_id in enumerate(line.hash_ids):
            length = min(TRACE_BLOCK_TOKENS, line.input_length - position * TRACE_BLOCK_TOKENS)
            memo_key = (parent, hash_id, length)
            chunk = memo.get(memo_key)
            if chunk is None:
                chunk = chained_block_hashes(_block_tokens(hash_id, salt)[:length], block_size, parent=parent)
                memo[memo_key] = chunk
            keys.extend(chunk)
            if length < TRACE_BLOCK_TOKENS:
                break
            parent = chunk[-1] if chunk else parent
        source = HashIdTokens(line.hash_ids, line.input_length, line.output_length, number, salt)
        # Blocks that straddle the prompt's end or lie in the output are unique to this request.
        full_prompt = line.input_length // block_size
        start = full_prompt * block_size
        tail = array("H")
        if start < line.input_length:
            block = start // TRACE_BLOCK_TOKENS
            offset = block * TRACE_BLOCK_TOKENS
            tail += _block_tokens(line.hash_ids[block], salt)[start - offset : line.input_length - offset]
        tail += _output_tokens(number, line.output_length, salt)
        tail_parent = keys[full_prompt - 1] if full_prompt else None
        keys = keys[:full_prompt] + chained_block_hashes(tail, block_size, parent=tail_parent)
        requests.append(SimRequest(request_id=f"{name}-{number}", arrival_s=(line.timestamp_ms - origin) / 1000.0,
                                   prompt_len=line.input_length, output_len=line.output_length,
                                   source=source, keys=keys))
    return requests
