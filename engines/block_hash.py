"""Content-derived chained hashes of full token blocks.

The hash of block k covers block k's tokens and the hash of block k-1, so equal hashes mean equal whole
prefixes. Used by the fake engine for its prefix cache and its KV events, and by routers to key prompts:
it depends only on token ids, never on an engine's internal hash seed.
"""

from __future__ import annotations

import hashlib
from array import array

_ROOT = b"warmserve-root"


def chained_block_hashes(token_ids: list[int], block_size: int, parent: int | None = None) -> list[int]:
    """One 63-bit hash per *full* block of `token_ids`; a trailing partial block gets none."""
    hashes: list[int] = []
    previous = _ROOT if parent is None else parent.to_bytes(8, "big")
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = array("q", token_ids[start : start + block_size]).tobytes()
        digest = hashlib.blake2b(previous + block, digest_size=8).digest()
        value = int.from_bytes(digest, "big") & ((1 << 63) - 1)  # fits msgpack/SQL signed ints
        hashes.append(value)
        previous = value.to_bytes(8, "big")
    return hashes
