from __future__ import annotations

import asyncio

import msgpack
import pytest
import zmq

from configs.schema import EngineConfig
from engines.block_hash import chained_block_hashes
from engines.fake_engine import FakeLLMEngine
from engines.kv_event_codec import KVEventDecodeError, decode_payload, decode_seq, encode_payload
from engines.kv_events_endpoint import KVEventsEndpoint
from engines.protocol import EngineDeadError, EngineEndedRequestError, LLMEngine, served_finish_reason
from engines.types import (
    GenerationRequest,
    KVAllBlocksCleared,
    KVBlockRemoved,
    KVBlockStored,
    KVEventBatch,
    SamplingSpec,
)

ENGINE = EngineConfig(kind="fake", block_size=4, max_model_len=256)


def _detok(ids: list[int]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids)


def _run(engine: FakeLLMEngine, prompt: list[int], **sampling: object) -> list:
    async def collect() -> list:
        spec = SamplingSpec(max_tokens=sampling.pop("max_tokens", 5), **sampling)
        return [c async for c in engine.generate(GenerationRequest("r", prompt, spec))]
    return asyncio.run(collect())


def test_is_an_llm_engine() -> None:
    assert isinstance(FakeLLMEngine(ENGINE, _detok), LLMEngine)


def test_greedy_is_a_function_of_the_context_and_finishes_with_length() -> None:
    engine = FakeLLMEngine(ENGINE, _detok)
    chunks = _run(engine, [0, 1, 2, 3], temperature=0, max_tokens=5)
    # The middle of the context each step: [0,1,2,3] -> 2, [0,1,2,3,2] -> 2, [0,1,2,3,2,2] -> 3, ...
    assert [c.token_ids[0] for c in chunks] == [2, 2, 3, 3, 2]
    assert "".join(c.text for c in chunks) == "ccddc"
    # Resuming with the first two outputs appended continues exactly (what failover relies on).
    resumed = _run(FakeLLMEngine(ENGINE, _detok), [0, 1, 2, 3, 2, 2], temperature=0, max_tokens=3)
    assert [c.token_ids[0] for c in resumed] == [3, 3, 2]
    assert [c.finish_reason for c in chunks] == [None, None, None, None, "length"]


def test_stream_interval_groups_tokens_after_the_first() -> None:
    grouped = EngineConfig(kind="fake", block_size=4, stream_interval=3)
    every_token = _run(FakeLLMEngine(ENGINE, _detok), [0, 1, 2, 3], temperature=0, max_tokens=8)
    chunks = _run(FakeLLMEngine(grouped, _detok), [0, 1, 2, 3], temperature=0, max_tokens=8)
    # First token alone, then groups of 3, the remainder with the finish: 1 + 3 + 3 + 1.
    assert [len(c.token_ids) for c in chunks] == [1, 3, 3, 1]
    assert [t for c in chunks for t in c.token_ids] == [t for c in every_token for t in c.token_ids]
    assert "".join(c.text for c in chunks) == "".join(c.text for c in every_token)
    assert [c.finish_reason for c in chunks] == [None, None, None, "length"]
    # A stop string inside a group: the tokens gathered so far go out with the stop.
    stopped = _run(FakeLLMEngine(grouped, _detok), [0, 1, 2, 3], temperature=0, max_tokens=8, stop=["cd"])
    assert "".join(c.text for c in stopped) == "c" and stopped[-1].finish_reason == "stop"


def test_seeded_sampling_repeats() -> None:
    a = _run(FakeLLMEngine(ENGINE, _detok), list(range(20)), temperature=1.0, seed=3)
    b = _run(FakeLLMEngine(ENGINE, _detok), list(range(20)), temperature=1.0, seed=3)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]


def test_stop_string_is_excluded() -> None:
    chunks = _run(FakeLLMEngine(ENGINE, _detok), [0, 1, 2, 3], temperature=0, max_tokens=8, stop=["cd"])
    assert "".join(c.text for c in chunks) == "c"  # "ccdd...": stops at the first "cd"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].stop_reason == "cd"


def test_prefix_cache_counts_full_blocks() -> None:
    engine = FakeLLMEngine(ENGINE, _detok)
    prompt = list(range(10))  # two full blocks of 4, plus 2
    assert _run(engine, prompt, temperature=0)[0].num_cached_prompt_tokens == 0
    assert _run(engine, prompt, temperature=0)[0].num_cached_prompt_tokens == 8
    assert _run(engine, prompt[:4] + [99] * 6, temperature=0)[0].num_cached_prompt_tokens == 4


def test_an_engine_side_abort_and_shutdown() -> None:
    """An abort from the engine's side ends the stream with `EngineEndedRequestError` (the ingress fails
    it over), never with an `abort` finish a client would take for an answer."""
    engine = FakeLLMEngine(EngineConfig(kind="fake", block_size=4, fake_token_latency_s=0.01), _detok)

    async def scenario() -> list:
        chunks = []
        async for chunk in engine.generate(GenerationRequest("r", [1, 2], SamplingSpec(max_tokens=1000))):
            chunks.append(chunk)
            if len(chunks) == 2:
                await engine.abort("r")
        return chunks

    with pytest.raises(EngineEndedRequestError, match="'abort'"):
        asyncio.run(scenario())
    asyncio.run(engine.shutdown())
    with pytest.raises(EngineDeadError):
        asyncio.run(engine.check_health())


def test_kv_events_over_zmq_in_vllm_wire_format() -> None:
    from engines.vllm_engine import VLLMEngine  # noqa: F401  (import must not need vLLM)

    endpoint = KVEventsEndpoint()
    engine = FakeLLMEngine(ENGINE, _detok, kv_events=endpoint, capacity_blocks=2)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint.address)

    async def scenario() -> None:
        await engine.start()
        await asyncio.sleep(0.3)  # PUB/SUB joins late: give the subscription time to land
        _ = [c async for c in engine.generate(GenerationRequest("a", list(range(12)), SamplingSpec(max_tokens=1)))]

    asyncio.run(scenario())
    assert sub.poll(2000)
    topic, seq, payload = sub.recv_multipart()
    batch = decode_payload(decode_seq(seq), payload)
    stored, removed = batch.events
    assert isinstance(stored, KVBlockStored) and stored.block_hashes == chained_block_hashes(list(range(12)), 4)
    assert stored.token_ids == list(range(12)) and stored.parent_block_hash is None
    assert isinstance(removed, KVBlockRemoved) and removed.block_hashes == stored.block_hashes[:1]
    sub.close(linger=0)
    asyncio.run(engine.shutdown())


def test_codec_round_trip_and_errors() -> None:
    batch = KVEventBatch(seq=7, timestamp_s=1.5, events=[
        KVBlockStored([1, 2], None, [1, 2, 3, 4], 2), KVBlockRemoved([1]), KVAllBlocksCleared()])
    assert decode_payload(7, encode_payload(batch)) == batch
    with pytest.raises(KVEventDecodeError):
        decode_payload(0, b"\xc1")
    with pytest.raises(KVEventDecodeError):
        decode_payload(0, msgpack.packb({"not": "a batch"}))
    with pytest.raises(KVEventDecodeError):
        decode_seq(b"123")
    future = msgpack.packb([0.0, [{"type": "SomethingNew"}, {"type": "AllBlocksCleared"}]])
    assert decode_payload(1, future).events == [KVAllBlocksCleared()]


def test_chained_hashes_depend_on_whole_prefix() -> None:
    a = chained_block_hashes([1, 2, 3, 4, 5, 6, 7], 2)
    assert len(a) == 3
    b = chained_block_hashes([9, 2, 3, 4], 2)
    assert a[1] != b[1]  # same block tokens, different prefix
    assert chained_block_hashes([1, 2, 3, 4], 2) == a[:2]



def test_finish_reasons_as_clients_see_them() -> None:
    assert [served_finish_reason(r) for r in (None, "stop", "length", "repetition")] == [None, "stop", "length", "stop"]
    for reason in ("abort", "error"):
        with pytest.raises(EngineEndedRequestError):
            served_finish_reason(reason)
