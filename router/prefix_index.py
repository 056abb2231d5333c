"""Which replica holds which prompt blocks: an index built from the engines' own KV cache events.

Keys are the router's content hashes (`engines.block_hash.chained_block_hashes`), never the engine's hashes:
a `BlockStored` event carries the stored blocks' token ids and its parent's engine hash, so the index keeps,
per replica, the engine-hash -> key mapping needed to continue the chain. Events are applied in order per
replica; a gap in a publisher's sequence numbers or a restart (sequence going backwards) resets that
replica's entries rather than leave stale ones that would attract requests to a cold cache.

Holders of a key are a bitmask over replica slots (one small int per key instead of a set): at a million
indexed blocks that is a fraction of the memory, and matching a prompt is one `&` per block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from engines.block_hash import chained_block_hashes
from engines.kv_event_codec import BlockHash
from engines.types import KVAllBlocksCleared, KVBlockRemoved, KVBlockStored, KVEventBatch

ReplicaId = str

# Long prompts are probed sparsely: every block of the first DENSE_BLOCKS, then every SPARSE_STRIDE-th and
# the last. A chained key stands for its whole prefix, so a replica holding a probed key holds everything
# before it; only where a replica's match ends is the stretch since the previous probe walked block by
# block. Exact for prefix-closed caches (an engine evicts tails first), 8x fewer lookups on long prompts.
DENSE_BLOCKS = 128
SPARSE_STRIDE = 8


@lru_cache(maxsize=4096)
def probe_depths(count: int) -> tuple[int, ...]:
    """The block depths to look at for a prompt of `count` blocks (increasing; includes the last)."""
    if count <= DENSE_BLOCKS:
        return tuple(range(count))
    depths = list(range(DENSE_BLOCKS)) + list(range(DENSE_BLOCKS + SPARSE_STRIDE - 1, count, SPARSE_STRIDE))
    if depths[-1] != count - 1:
        depths.append(count - 1)
    return tuple(depths)


def probe_keys(keys: Sequence[int]) -> Sequence[int]:
    """`keys` at `probe_depths(len(keys))` (C-speed slicing; a short prompt's keys as they are)."""
    count = len(keys)
    if count <= DENSE_BLOCKS:
        return keys
    probed = list(keys[:DENSE_BLOCKS]) + list(keys[DENSE_BLOCKS + SPARSE_STRIDE - 1 :: SPARSE_STRIDE])
    if (count - DENSE_BLOCKS) % SPARSE_STRIDE:
        probed.append(keys[-1])
    return probed


@dataclass(slots=True)
class _ReplicaBlocks:
    bit: int  # 1 << slot: this replica's bit in the holder masks
    key_by_engine_hash: dict[BlockHash, int] = field(default_factory=dict)
    last_seq: int | None = None
    resets: int = 0


class PrefixIndex:
    """Block key -> replicas holding it. Not thread-safe: one owner (the router's event loop) applies
    events and answers matches."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._holders: dict[int, int] = {}  # key -> bitmask of replica slots
        self._replicas: dict[ReplicaId, _ReplicaBlocks] = {}
        self._replica_at_slot: list[ReplicaId | None] = []
        self._free_slots: list[int] = []

    def prompt_keys(self, token_ids: list[int]) -> list[int]:
        return chained_block_hashes(token_ids, self.block_size)

    def _state(self, replica: ReplicaId) -> _ReplicaBlocks:
        state = self._replicas.get(replica)
        if state is None:
            # Slots of removed replicas are reused (their bits were cleared on removal), so masks stay
            # as narrow as the live replica count.
            slot = self._free_slots.pop() if self._free_slots else len(self._replica_at_slot)
            if slot == len(self._replica_at_slot):
                self._replica_at_slot.append(replica)
            else:
                self._replica_at_slot[slot] = replica
            state = self._replicas[replica] = _ReplicaBlocks(bit=1 << slot)
        return state

    def apply(self, replica: ReplicaId, batch: KVEventBatch) -> None:
        """Who calls: the event subscriber's owner, in publisher order per replica (any seq >= 0)."""
        state = self._state(replica)
        if state.last_seq is not None and batch.seq != state.last_seq + 1:
            self.reset_replica(replica)  # lost messages or a restarted publisher: start clean
        state.last_seq = batch.seq
        for event in batch.events:
            if isinstance(event, KVBlockStored):
                self._stored(state, event)
            elif isinstance(event, KVBlockRemoved):
                pop = state.key_by_engine_hash.pop
                for engine_hash in event.block_hashes:
                    key = pop(engine_hash, None)
                    if key is not None:
                        self._drop_holder(key, state.bit)
            elif isinstance(event, KVAllBlocksCleared):
                self._clear_blocks(state)

    def _stored(self, state: _ReplicaBlocks, event: KVBlockStored) -> None:
        parent_key: int | None = None
        if event.parent_block_hash is not None:
            parent_key = state.key_by_engine_hash.get(event.parent_block_hash)
            if parent_key is None:
                return  # parent unknown (missed or evicted): these blocks cannot be keyed by content
        if event.block_size != self.block_size:
            return  # a different KV layout than we hash for; never match on it
        keys = chained_block_hashes(event.token_ids, self.block_size, parent=parent_key)
        holders = self._holders
        by_engine_hash = state.key_by_engine_hash
        bit = state.bit
        for engine_hash, key in zip(event.block_hashes, keys, strict=False):
            by_engine_hash[engine_hash] = key
            holders[key] = holders.get(key, 0) | bit

    def _drop_holder(self, key: int, bit: int) -> None:
        mask = self._holders.get(key)
        if mask is not None:
            mask &= ~bit
            if mask:
                self._holders[key] = mask
            else:
                del self._holders[key]

    def _clear_blocks(self, state: _ReplicaBlocks) -> None:
        for key in state.key_by_engine_hash.values():
            self._drop_holder(key, state.bit)
        state.key_by_engine_hash.clear()

    def reset_replica(self, replica: ReplicaId) -> None:
        """Forget everything about `replica`'s cache (sequence gap, restart) but keep tracking it."""
        state = self._replicas.get(replica)
        if state is not None:
            self._clear_blocks(state)
            state.last_seq = None
            state.resets += 1

    def remove_replica(self, replica: ReplicaId) -> None:
        """The replica is gone (dead or scaled down): drop its entries and its state."""
        self.reset_replica(replica)
        state = self._replicas.pop(replica, None)
        if state is not None:
            slot = state.bit.bit_length() - 1
            self._replica_at_slot[slot] = None
            self._free_slots.append(slot)

    def matched_blocks(self, prompt_keys: list[int], replicas: Iterable[ReplicaId]) -> dict[ReplicaId, int]:
        """Leading prompt blocks each replica holds, in one pass over the prompt (stops when none match).

        Cost: one dict lookup and one `&` per probed block (`probe_depths`), plus a short block-by-block
        walk for each replica whose match ends, whatever the number of replicas.
        """
        matched = dict.fromkeys(replicas, 0)
        mask = 0
        for replica in matched:
            state = self._replicas.get(replica)
            if state is not None:
                mask |= state.bit
        if not mask:
            return matched
        holders = self._holders
        previous = -1
        for depth, key in zip(probe_depths(len(prompt_keys)), probe_keys(prompt_keys)):
            still = mask & holders.get(key, 0)
            if still != mask:
                self._record(matched, mask ^ still, prompt_keys, previous + 1, depth)
                mask = still
                if not mask:
                    return matched
            previous = depth
        self._record(matched, mask, prompt_keys, len(prompt_keys), len(prompt_keys))
        return matched

    def _record(self, matched: dict[ReplicaId, int], mask: int, keys: list[int], low: int, high: int) -> None:
        """Replicas in `mask` hold keys[:low] but not keys[high]: find where each one's run ends."""
        replica_at = self._replica_at_slot
        holders = self._holders
        while mask:
            bit = mask & -mask
            depth = low
            while depth < high and holders.get(keys[depth], 0) & bit:
                depth += 1
            if depth:
                matched[replica_at[bit.bit_length() - 1]] = depth  # type: ignore[index]
            mask ^= bit

    def block_count(self, replica: ReplicaId) -> int:
        state = self._replicas.get(replica)
        return len(state.key_by_engine_hash) if state else 0

    def reset_count(self, replica: ReplicaId) -> int:
        state = self._replicas.get(replica)
        return state.resets if state else 0

    @property
    def size(self) -> int:
        return len(self._holders)
