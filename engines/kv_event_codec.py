"""vLLM's KV cache event wire format, read and written without vLLM (msgpack only, never pickle).

A publisher message is the multipart `[topic, seq (8-byte big-endian), payload]`; the payload is the
msgpack array `[ts, [event, ...], data_parallel_rank?]` and each event a map tagged by `type`
(`BlockStored`, `BlockRemoved`, `AllBlocksCleared`). Block hashes may be ints or bytes; they are opaque
to us here. The fake engine encodes with this module; routers decode every engine's stream with it.
"""

from __future__ import annotations

from typing import Any

import msgpack

from engines.types import KVAllBlocksCleared, KVBlockRemoved, KVBlockStored, KVEvent, KVEventBatch

BlockHash = int | bytes


# vLLM's replay protocol (its publisher's ROUTER socket): a request is `[b"", start seq]`; each answer is
# `[b"", topic, seq, payload]` for every buffered batch from that seq on, then `[b"", b"", END_SEQ, b""]`.
REPLAY_END_SEQ = (-1).to_bytes(8, "big", signed=True)


class KVEventDecodeError(ValueError):
    """A message that is not a well-formed KV event batch; the subscriber drops it and resyncs."""


def encode_seq(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def decode_seq(frame: bytes) -> int:
    if len(frame) != 8:
        raise KVEventDecodeError(f"sequence frame must be 8 bytes, got {len(frame)}")
    return int.from_bytes(frame, "big")


def _event_to_wire(event: KVEvent) -> dict[str, Any]:
    if isinstance(event, KVBlockStored):
        return {"type": "BlockStored", "block_hashes": event.block_hashes,
                "parent_block_hash": event.parent_block_hash, "token_ids": event.token_ids,
                "block_size": event.block_size, "lora_id": None, "medium": "CPU", "lora_name": None}
    if isinstance(event, KVBlockRemoved):
        return {"type": "BlockRemoved", "block_hashes": event.block_hashes, "medium": "CPU"}
    return {"type": "AllBlocksCleared"}


def encode_payload(batch: KVEventBatch) -> bytes:
    return msgpack.packb([batch.timestamp_s, [_event_to_wire(e) for e in batch.events]], use_bin_type=True)


def _event_from_wire(raw: Any) -> KVEvent | None:
    if not isinstance(raw, dict):
        raise KVEventDecodeError(f"event must be a map, got {type(raw).__name__}")
    kind = raw.get("type")
    try:
        if kind == "BlockStored":
            return KVBlockStored(block_hashes=list(raw["block_hashes"]),
                                 parent_block_hash=raw.get("parent_block_hash"),
                                 token_ids=[int(t) for t in raw["token_ids"]],
                                 block_size=int(raw["block_size"]))
        if kind == "BlockRemoved":
            return KVBlockRemoved(block_hashes=list(raw["block_hashes"]))
    except (KeyError, TypeError, ValueError) as error:
        raise KVEventDecodeError(f"malformed {kind} event: {error}") from None
    if kind == "AllBlocksCleared":
        return KVAllBlocksCleared()
    return None  # an event kind newer than this decoder: skip it rather than drop the batch


def decode_payload(seq: int, payload: bytes) -> KVEventBatch:
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as error:
        raise KVEventDecodeError(f"payload is not msgpack: {error}") from None
    if not isinstance(raw, list) or len(raw) < 2 or not isinstance(raw[1], list):
        raise KVEventDecodeError("payload must be [ts, [events...], ...]")
    if not isinstance(raw[0], (int, float)) or isinstance(raw[0], bool):
        raise KVEventDecodeError(f"timestamp must be a number, got {type(raw[0]).__name__}")
    events = [e for e in (_event_from_wire(item) for item in raw[1]) if e is not None]
    return KVEventBatch(seq=seq, timestamp_s=float(raw[0]), events=events)
