"""Data that crosses the engine boundary (ingress -> replica -> engine and back).

Plain slotted dataclasses: cheap to pickle between Ray actors, no framework types leak through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(slots=True)
class SamplingSpec:
    """Sampling options, already validated by the ingress (ranges are not re-checked here)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # Stop on the tokenizer's end-of-sequence token(s); the ingress passes the model's ids.
    ignore_eos: bool = False


@dataclass(slots=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingSpec
    # W3C trace context of the ingress span this request belongs to (deployments/tracing.py), so the
    # router's and the replica's spans join the request's trace; None when not traced.
    trace_context: dict[str, str] | None = None
    # When the ingress handed the request to Serve (Unix ns): the replica's queue span starts here.
    dispatched_at_ns: int = 0


@dataclass(slots=True)
class OutputChunk:
    """New tokens since the previous chunk of the same request (a delta, never cumulative).

    `finish_reason` is set on the last chunk only. `num_prompt_tokens` and `num_cached_prompt_tokens` are
    reported on the first chunk (and copied to later ones) so the ingress can fill `usage`.
    """

    request_id: str
    token_ids: list[int]
    text: str
    finish_reason: FinishReason | None = None
    num_prompt_tokens: int = 0
    num_cached_prompt_tokens: int | None = None
    # Set when the engine stopped on a stop string: the string is not part of `text`.
    stop_reason: str | int | None = None
    # The Serve replica that produced the chunk (set on the first chunk by the replica, not the engine):
    # lets the ingress report it in a response header, so routing can be observed from outside.
    replica_id: str | None = None


@dataclass(slots=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_cache_usage: float  # 0..1
    prefix_cache_hit_rate: float | None  # 0..1 over the engine's lifetime, None when unknown
    kv_events_endpoint: str | None


@dataclass(slots=True)
class KVBlockStored:
    block_hashes: list[int]
    parent_block_hash: int | None
    token_ids: list[int]
    block_size: int


@dataclass(slots=True)
class KVBlockRemoved:
    block_hashes: list[int]


@dataclass(slots=True)
class KVAllBlocksCleared:
    pass


KVEvent = KVBlockStored | KVBlockRemoved | KVAllBlocksCleared


@dataclass(slots=True)
class KVEventBatch:
    """One publisher message: events in engine order, with the publisher's sequence number."""

    seq: int
    timestamp_s: float
    events: list[KVEvent]
