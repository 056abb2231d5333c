"""Micro-benchmark of the production router's hot paths: KV event ingestion and one routing decision.

- Ingestion: `PrefixIndex.apply` on `BlockStored` batches (32 blocks of 16 tokens each, chained to their
  parent, as vLLM publishes a 512-token prefill chunk) until `total_blocks` are indexed across `replicas`.
  Rate = blocks / wall time of the `apply` calls only (building the event objects is outside the timer).
- Decision: what the Serve adapter does per request with the index full: build the candidates with their
  loads (`ReplicaLoadTracker.load_blocks`), `KVAwarePolicy.choose`, `ReplicaLoadTracker.started`. Prompts of
  `prompt_blocks` blocks whose first 0..all blocks are a prefix some replica holds; their keys are computed
  outside the timer (tokenization and hashing are not part of the decision).
Targets: decision p50 <= 200 us at 64 replicas and 1M indexed blocks; ingestion >= 200k blocks/s.
"""

from __future__ import annotations

import hashlib
import random
import time
from array import array
from dataclasses import dataclass

from engines.block_hash import chained_block_hashes
from engines.types import KVBlockStored, KVEventBatch
from router.kv_policy import Candidate, KVAwarePolicy, RoutedBlocks
from router.load_tracker import ReplicaLoadTracker
from router.prefix_index import PrefixIndex
from router.sim.metrics import percentile

CHUNK_BLOCKS = 32


@dataclass(slots=True)
class MicroReport:
    replicas: int
    indexed_blocks: int
    prompt_blocks: int
    ingest_blocks_per_s: float
    decision_us_p50: float
    decision_us_p90: float

    def as_json(self) -> dict[str, float]:
        return {"replicas": self.replicas, "indexed_blocks": self.indexed_blocks,
                "prompt_blocks": self.prompt_blocks, "ingest_blocks_per_s": round(self.ingest_blocks_per_s),
                "decision_us_p50": round(self.decision_us_p50, 1),
                "decision_us_p90": round(self.decision_us_p90, 1)}


def _tokens(seed: bytes, count: int) -> array:
    raw = hashlib.shake_128(seed).digest(2 * count)
    return array("H", raw)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_micro(replicas: int = 64, total_blocks: int = 1_000_000, block_size: int = 16, prompt_blocks: int = 128,
              decisions: int = 2000, seed: int = 0) -> MicroReport:
    """Who calls: `warmserve bench router --micro`. replicas >= 1, total_blocks >= replicas x prompt_blocks."""
    rng = random.Random(seed)
    index = PrefixIndex(block_size)
    documents: list[tuple[str, array]] = []  # (replica, tokens) of every indexed prefix chain
    per_replica = total_blocks // replicas
    ingest_ns = 0
    ingested = 0
    for number in range(replicas):
        replica = f"r{number}"
        seq = 0
        stored = 0
        while stored < per_replica:
            length = min(prompt_blocks, per_replica - stored)
            tokens = _tokens(f"{seed}/{replica}/{stored}".encode(), length * block_size)
            documents.append((replica, tokens))
            parent: int | None = None
            batches = []
            for start in range(0, length, CHUNK_BLOCKS):
                count = min(CHUNK_BLOCKS, length - start)
                hashes = [rng.getrandbits(63) for _ in range(count)]  # engine hashes: opaque to the router
                chunk = tokens[start * block_size : (start + count) * block_size].tolist()
                batches.append(KVEventBatch(seq, 0.0, [KVBlockStored(hashes, parent, chunk, block_size)]))
                seq += 1
                parent = hashes[-1]
            began = time.perf_counter_ns()
            for batch in batches:
                index.apply(replica, batch)
            ingest_ns += time.perf_counter_ns() - began
            stored += length
            ingested += length
    clock = _Clock()
    routed = RoutedBlocks(ttl_s=5.0, capacity_blocks=per_replica, clock=clock)
    policy = KVAwarePolicy(index, routed, rng=random.Random(seed))
    tracker = ReplicaLoadTracker(block_size)
    ids = [f"r{n}" for n in range(replicas)]
    times: list[float] = []
    for number in range(decisions):
        replica, tokens = documents[rng.randrange(len(documents))]
        shared = rng.randint(0, len(tokens) // block_size) * block_size
        prompt = tokens[:shared] + _tokens(f"q{seed}/{number}".encode(), prompt_blocks * block_size - shared)
        keys = chained_block_hashes(prompt, block_size)
        clock.now = number * 0.01
        began = time.perf_counter_ns()
        load = tracker.load_blocks
        decision = policy.choose(keys, [Candidate(r, load(r)) for r in ids])
        tracker.started(str(number), decision.replica, decision.prompt_blocks - decision.matched_blocks, 128)
        times.append((time.perf_counter_ns() - began) / 1000.0)
        if number >= 256:
            tracker.finished(str(number - 256))  # keep a steady 256 requests in flight
    return MicroReport(replicas=replicas, indexed_blocks=index.size, prompt_blocks=prompt_blocks,
                       ingest_blocks_per_s=ingested / (ingest_ns / 1e9),
                       decision_us_p50=percentile(times, 50), decision_us_p90=percentile(times, 90))
