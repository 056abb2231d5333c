from __future__ import annotations

from engines.block_hash import chained_block_hashes
from engines.types import KVAllBlocksCleared, KVBlockRemoved, KVBlockStored, KVEventBatch
from router.prefix_index import PrefixIndex

BS = 4
PROMPT = list(range(1, 14))  # three full blocks + 1 token


def _stored(engine_hashes: list[int], tokens: list[int], parent: int | None = None) -> KVBlockStored:
    return KVBlockStored(block_hashes=engine_hashes, parent_block_hash=parent, token_ids=tokens, block_size=BS)


def _batch(seq: int, *events: object) -> KVEventBatch:
    return KVEventBatch(seq=seq, timestamp_s=0.0, events=list(events))


def test_keys_are_content_hashes_not_engine_hashes() -> None:
    index = PrefixIndex(BS)
    # Engine hashes are arbitrary (vLLM seeds them per process); keys come from the token ids.
    index.apply("a", _batch(0, _stored([901, 902], PROMPT[:8]), _stored([903], PROMPT[8:12], parent=902)))
    keys = index.prompt_keys(PROMPT)
    assert keys == chained_block_hashes(PROMPT, BS) and len(keys) == 3
    assert index.matched_blocks(keys, ["a", "b"]) == {"a": 3, "b": 0}
    assert index.block_count("a") == 3 and index.size == 3


def test_longest_prefix_per_replica() -> None:
    index = PrefixIndex(BS)
    index.apply("a", _batch(0, _stored([1], PROMPT[:4])))
    index.apply("b", _batch(0, _stored([7, 8], PROMPT[:8])))
    other = [99] * 4 + PROMPT[4:]  # same second block, different first: no match past block 0
    index.apply("c", _batch(0, _stored([5, 6], other[:8])))
    assert index.matched_blocks(index.prompt_keys(PROMPT), ["a", "b", "c"]) == {"a": 1, "b": 2, "c": 0}


def test_removed_and_cleared() -> None:
    index = PrefixIndex(BS)
    index.apply("a", _batch(0, _stored([1, 2], PROMPT[:8])))
    index.apply("a", _batch(1, KVBlockRemoved([2])))
    assert index.matched_blocks(index.prompt_keys(PROMPT), ["a"]) == {"a": 1}
    index.apply("a", _batch(2, KVAllBlocksCleared()))
    assert index.matched_blocks(index.prompt_keys(PROMPT), ["a"]) == {"a": 0}
    assert index.size == 0


def test_sequence_gap_resets_the_replica() -> None:
    index = PrefixIndex(BS)
    index.apply("a", _batch(0, _stored([1, 2], PROMPT[:8])))
    index.apply("b", _batch(0, _stored([1], PROMPT[:4])))
    index.apply("a", _batch(5, _stored([3], [50, 51, 52, 53])))  # messages 1..4 were lost
    assert index.reset_count("a") == 1 and index.reset_count("b") == 0
    assert index.matched_blocks(index.prompt_keys(PROMPT), ["a", "b"]) == {"a": 0, "b": 1}
    assert index.block_count("a") == 1  # the batch after the gap still applies


def test_restart_resets_and_unknown_parent_is_skipped() -> None:
    index = PrefixIndex(BS)
    index.apply("a", _batch(10, _stored([1], PROMPT[:4])))
    index.apply("a", _batch(0, _stored([2], PROMPT[4:8], parent=1)))  # restarted publisher: parent gone
    assert index.block_count("a") == 0 and index.reset_count("a") == 1


def test_remove_replica_drops_everything() -> None:
    index = PrefixIndex(BS)
    index.apply("a", _batch(0, _stored([1, 2], PROMPT[:8])))
    index.remove_replica("a")
    assert index.size == 0 and index.block_count("a") == 0


def test_fake_engine_events_key_identically(tmp_path: object) -> None:
    import asyncio

    from configs.schema import EngineConfig
    from engines.fake_engine import FakeLLMEngine
    from engines.types import GenerationRequest, SamplingSpec

    engine = FakeLLMEngine(EngineConfig(kind="fake", block_size=BS), detokenize=lambda ids: "x" * len(ids))
    published: list[KVEventBatch] = []
    engine._publish = lambda events: published.append(_batch(len(published), *events))  # capture, no ZMQ

    async def run(prompt: list[int]) -> None:
        _ = [c async for c in engine.generate(GenerationRequest("r", prompt, SamplingSpec(max_tokens=1)))]

    asyncio.run(run(PROMPT[:8]))
    asyncio.run(run(PROMPT))  # extends the cached prefix: a child event with a parent hash
    index = PrefixIndex(BS)
    for batch in published:
        index.apply("fake", batch)
    assert index.matched_blocks(index.prompt_keys(PROMPT), ["fake"]) == {"fake": 3}
