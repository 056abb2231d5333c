"""One replica's KV cache in blocks, as vLLM's block pool behaves, publishing vLLM-style KV events.

Every slot is free, held by a running request (hashed or not yet), or cached and unreferenced. Full
blocks are keyed by chained content hash; a request admitted with a cached prefix references those
blocks instead of recomputing them. Unreferenced cached blocks are evicted least recently freed first,
and a finishing request frees its blocks tail first (as vLLM does) so prefixes outlive their suffixes.
A request reserves slots for its whole prompt + output at admission (no preemption is modelled).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from engines.types import KVBlockRemoved, KVBlockStored, KVEvent

_MASK_63 = (1 << 63) - 1


@dataclass(slots=True)
class CachedSeq:
    """A request's hold on the cache (owned by the engine's sequence)."""

    keys: list[int]  # block keys of prompt + output full blocks
    tokens: Sequence[int]  # prompt + output tokens
    held: list[int] = field(default_factory=list)  # keys this request references, in block order
    stored_blocks: int = 0  # leading blocks of `keys` this request holds (cached or stored by it)
    reserved: int = 0  # slots reserved and not yet turned into hashed blocks


class SimKVCache:
    """Who calls: `SimEngine` only. Capacity >= 1 block; not thread-safe."""

    def __init__(self, capacity_blocks: int, block_size: int, engine_salt: int) -> None:
        self.capacity_blocks = capacity_blocks
        self.block_size = block_size
        # Engines hash blocks with their own seed; the router must key by content, so the published
        # hashes differ from the content keys on purpose.
        self._salt = engine_salt & _MASK_63
        self._refs: dict[int, int] = {}  # key -> references by running requests (0: evictable)
        self._evictable: OrderedDict[int, None] = OrderedDict()  # refs == 0, least recently freed first
        self._reserved = 0
        self.events: list[KVEvent] = []  # published (and cleared) by the engine after each step

    def engine_hash(self, key: int) -> int:
        return key ^ self._salt

    @property
    def used_blocks(self) -> int:
        """Slots not free: held, reserved or cached. Never above capacity."""
        return len(self._refs) + self._reserved

    @property
    def active_blocks(self) -> int:
        """Slots held by running requests (what vLLM reports as KV cache usage)."""
        return len(self._refs) - len(self._evictable) + self._reserved

    def cached_keys(self) -> set[int]:
        return set(self._refs)

    def admit(self, seq: CachedSeq, prompt_len: int, total_blocks: int) -> int | None:
        """Reserve the request's blocks, reusing its cached prompt prefix; evict what must go.

        Returns the cached prompt tokens, or None when the blocks cannot be found now (the request waits).
        At least one prompt token is always computed, as in vLLM.
        """
        refs = self._refs
        hit = 0
        evictable_hits = 0
        for key in seq.keys[: (prompt_len - 1) // self.block_size]:
            count = refs.get(key)
            if count is None:
                break
            hit += 1
            if count == 0:
                evictable_hits += 1
        need = total_blocks - hit
        free = self.capacity_blocks - len(refs) - self._reserved
        if need > free + len(self._evictable) - evictable_hits:
            return None
        evictable = self._evictable
        for key in seq.keys[:hit]:
            count = refs[key]
            if count == 0:
                del evictable[key]
            refs[key] = count + 1
        removed: list[int] = []
        while free < need:
            key, _ = evictable.popitem(last=False)
            del refs[key]
            removed.append(key ^ self._salt)
            free += 1
        if removed:
            self.events.append(KVBlockRemoved(block_hashes=removed))
        self._reserved += need
        seq.reserved = need
        seq.held = seq.keys[:hit]
        seq.stored_blocks = hit
        return hit * self.block_size

    def store_up_to(self, seq: CachedSeq, blocks: int) -> None:
        """The request has computed its first `blocks` full blocks: hash the new ones into the cache."""
        refs = self._refs
        run_start = -1
        run_hashes: list[int] = []
        for index in range(seq.stored_blocks, blocks):
            key = seq.keys[index]
            count = refs.get(key)
            if count is None:
                refs[key] = 1
                self._reserved -= 1
                seq.reserved -= 1
                if run_start < 0:
                    run_start = index
                run_hashes.append(key ^ self._salt)
            else:
                # Computed concurrently by another request (or evicted parent, kept child): share it; this
                # request's own slot stays reserved until it finishes, as vLLM keeps a duplicate block.
                if count == 0:
                    del self._evictable[key]
                refs[key] = count + 1
                if run_hashes:
                    self._publish_run(seq, run_start, run_hashes)
                    run_start, run_hashes = -1, []
            seq.held.append(key)
        if run_hashes:
            self._publish_run(seq, run_start, run_hashes)
        seq.stored_blocks = max(seq.stored_blocks, blocks)

    def _publish_run(self, seq: CachedSeq, start: int, hashes: list[int]) -> None:
        size = self.block_size
        parent = seq.keys[start - 1] ^ self._salt if start > 0 else None
        tokens = seq.tokens[start * size : (start + len(hashes)) * size]
        self.events.append(KVBlockStored(block_hashes=hashes, parent_block_hash=parent,
                                         token_ids=list(tokens), block_size=size))

    def release(self, seq: CachedSeq) -> None:
        """The request finished: its blocks become evictable, tail first."""
        refs = self._refs
        evictable = self._evictable
        for key in reversed(seq.held):
            count = refs[key] - 1
            refs[key] = count
            if count == 0:
                evictable[key] = None
        self._reserved -= seq.reserved
        seq.reserved = 0
        seq.held = []
