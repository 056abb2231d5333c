"""Which replica holds which prompt blocks: an index built from the engines' own KV cache events.

Keys are the router's content hashes (`engines.block_hash.chained_block_hashes`), never the engine's hashes:
a `BlockStored` event carries the stored blocks' token ids and its parent's engine hash, so the index keeps,
per replica, the engine-hash -> key mapping needed to continue the chain. Events are applied in order per
replica; a gap in a publisher's sequence numbers or a restart (sequence going backwards) resets that
replica's entries rather than leave stale ones that would attract requests to a cold cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engines.block_hash import chained_block_hashes
from engines.kv_event_codec import BlockHash
from engines.types import KVAllBlocksCleared, KVBlockRemoved, KVBlockStored, KVEventBatch

ReplicaId = str


@dataclass(slots=True)
class _ReplicaBlocks:
    key_by_engine_hash: dict[BlockHash, int] = field(default_factory=dict)
    last_seq: int | None = None
    resets: int = 0


class PrefixIndex:
    """Block key -> replicas holding it. Not thread-safe: one owner (the router's event loop) applies
    events and answers matches."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._holders: dict[int, set[ReplicaId]] = {}
        self._replicas: dict[ReplicaId, _ReplicaBlocks] = {}

    def prompt_keys(self, token_ids: list[int]) -> list[int]:
        return chained_block_hashes(token_ids, self.block_size)

    def apply(self, replica: ReplicaId, batch: KVEventBatch) -> None:
        state = self._replicas.setdefault(replica, _ReplicaBlocks())
        if state.last_seq is not None and batch.seq != state.last_seq + 1:
            self.reset_replica(replica)  # lost messages or a restarted publisher: start clean
            state = self._replicas[replica]
        state.last_seq = batch.seq
        for event in batch.events:
            if isinstance(event, KVBlockStored):
                self._stored(replica, state, event)
            elif isinstance(event, KVBlockRemoved):
                for engine_hash in event.block_hashes:
                    key = state.key_by_engine_hash.pop(engine_hash, None)
                    if key is not None:
                        self._drop_holder(key, replica)
            elif isinstance(event, KVAllBlocksCleared):
                self._clear_blocks(replica, state)

    def _stored(self, replica: ReplicaId, state: _ReplicaBlocks, event: KVBlockStored) -> None:
        parent_key: int | None = None
        if event.parent_block_hash is not None:
            parent_key = state.key_by_engine_hash.get(event.parent_block_hash)
            if parent_key is None:
                return  # parent unknown (missed or evicted): these blocks cannot be keyed by content
        if event.block_size != self.block_size:
            return  # a different KV layout than we hash for; never match on it
        keys = chained_block_hashes(event.token_ids, self.block_size, parent=parent_key)
        for engine_hash, key in zip(event.block_hashes, keys, strict=False):
            state.key_by_engine_hash[engine_hash] = key
            self._holders.setdefault(key, set()).add(replica)

    def _drop_holder(self, key: int, replica: ReplicaId) -> None:
        holders = self._holders.get(key)
        if holders is not None:
            holders.discard(replica)
            if not holders:
                del self._holders[key]

    def _clear_blocks(self, replica: ReplicaId, state: _ReplicaBlocks) -> None:
        for key in state.key_by_engine_hash.values():
            self._drop_holder(key, replica)
        state.key_by_engine_hash.clear()

    def reset_replica(self, replica: ReplicaId) -> None:
        """Forget everything about `replica`'s cache (sequence gap, restart) but keep tracking it."""
        state = self._replicas.get(replica)
        if state is not None:
            self._clear_blocks(replica, state)
            state.last_seq = None
            state.resets += 1

    def remove_replica(self, replica: ReplicaId) -> None:
        """The replica is gone (dead or scaled down): drop its entries and its state."""
        self.reset_replica(replica)
        self._replicas.pop(replica, None)

    def matched_blocks(self, prompt_keys: list[int], replicas: Iterable[ReplicaId]) -> dict[ReplicaId, int]:
        """Leading prompt blocks each replica holds, in one pass over the prompt (stops when none match)."""
        matched = dict.fromkeys(replicas, 0)
        still_matching = set(matched)
        for depth, key in enumerate(prompt_keys):
            still_matching &= self._holders.get(key, set())
            if not still_matching:
                break
            for replica in still_matching:
                matched[replica] = depth + 1
        return matched

    def block_count(self, replica: ReplicaId) -> int:
        state = self._replicas.get(replica)
        return len(state.key_by_engine_hash) if state else 0

    def reset_count(self, replica: ReplicaId) -> int:
        state = self._replicas.get(replica)
        return state.resets if state else 0

    @property
    def size(self) -> int:
        return len(self._holders)
