"""Content-derived chained hashes of full token blocks.

The hash of block k covers block k's tokens and the hash of block k-1, so equal hashes mean equal whole
prefixes. Used by the fake engine for its prefix cache and its KV events, and by routers to key prompts:
it depends only on token ids, never on an engine's internal hash seed, so every process computes the same
keys for the same tokens.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence

_ROOT = b"warmserve-root"
_MASK_63 = (1 << 63) - 1


def chained_block_hashes(token_ids: Sequence[int], block_size: int, parent: int | None = None) -> list[int]:
    """One 63-bit hash per *full* block of `token_ids`; a trailing partial block gets none.

    Who calls: the router for every prompt and for every `BlockStored` event (hot path: the whole token list
    is packed once and sliced per block, instead of packing each block), the fake engine, the simulator.
    `parent` continues a chain from an earlier block's hash (0 <= parent < 2**63).
    """
    full_blocks = len(token_ids) // block_size
    if full_blocks <= 0:
        return []
    packed = array("q", token_ids[: full_blocks * block_size]).tobytes()
    stride = block_size * 8
    blake2b = hashlib.blake2b
    from_bytes = int.from_bytes
    previous = _ROOT if parent is None else parent.to_bytes(8, "big")
    hashes: list[int] = []
    for start in range(0, full_blocks * stride, stride):
        value = from_bytes(blake2b(previous + packed[start : start + stride], digest_size=8).digest(),
                           "big") & _MASK_63  # fits msgpack/SQL signed ints
        hashes.append(value)
        previous = value.to_bytes(8, "big")
    return hashes
