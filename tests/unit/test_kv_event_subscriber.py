"""The subscriber against a real ZMQ publisher: the fake engine, which speaks vLLM's wire format."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import zmq

from configs.schema import EngineConfig
from engines.fake_engine import FakeLLMEngine
from engines.types import GenerationRequest, KVEventBatch, SamplingSpec
from router.kv_event_subscriber import KVEventSubscriber
from router.prefix_index import PrefixIndex

BS = 4
PROMPT = list(range(1, 17))


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_events_from_a_real_publisher_reach_the_index() -> None:
    port = _port()
    engine = FakeLLMEngine(EngineConfig(kind="fake", block_size=BS), lambda ids: "x", kv_events_port=port)
    index = PrefixIndex(BS)
    lock = threading.Lock()

    def on_batch(replica: str, batch: KVEventBatch) -> None:
        with lock:
            index.apply(replica, batch)

    subscriber = KVEventSubscriber(on_batch)
    subscriber.start()
    subscriber.set_endpoints({"r1": f"tcp://127.0.0.1:{port}"})

    async def serve_requests() -> None:
        await engine.start()
        await asyncio.sleep(0.5)  # a SUB socket misses what is published before it has joined
        for _ in range(2):
            _ = [c async for c in engine.generate(GenerationRequest("a", PROMPT, SamplingSpec(max_tokens=1)))]

    try:
        asyncio.run(serve_requests())
        assert _wait(lambda: index.block_count("r1") == 4)
        with lock:
            assert index.matched_blocks(index.prompt_keys(PROMPT), ["r1"]) == {"r1": 4}
        subscriber.set_endpoints({})  # replica gone: the subscription is dropped
        time.sleep(0.3)  # longer than one poll interval: the thread has reconciled
        batches_before = subscriber.batches

        async def more() -> None:
            _ = [c async for c in engine.generate(GenerationRequest("b", [7] * 8, SamplingSpec(max_tokens=1)))]

        asyncio.run(more())
        time.sleep(0.3)
        assert subscriber.batches == batches_before and index.block_count("r1") == 4
    finally:
        subscriber.stop()
        asyncio.run(engine.shutdown())
    assert subscriber.decode_errors == 0 and subscriber.batches >= 1


def test_malformed_messages_are_counted_and_dropped() -> None:
    port = _port()
    publisher = zmq.Context.instance().socket(zmq.PUB)
    publisher.bind(f"tcp://127.0.0.1:{port}")
    received: list[KVEventBatch] = []
    subscriber = KVEventSubscriber(lambda replica, batch: received.append(batch))
    subscriber.start()
    subscriber.set_endpoints({"r": f"tcp://127.0.0.1:{port}"})
    try:
        time.sleep(0.5)
        publisher.send_multipart([b"", b"short", b"\x92\x00\x90"])  # bad sequence frame
        publisher.send_multipart([b"", (1).to_bytes(8, "big"), b"\xc1"])  # not msgpack
        publisher.send_multipart([b"", (2).to_bytes(8, "big"), b"\x92\x00\x90"])  # [0, []]: valid, empty
        assert _wait(lambda: subscriber.decode_errors == 2 and len(received) == 1)
        assert received[0].seq == 2 and received[0].events == []
    finally:
        subscriber.stop()
        publisher.close(linger=0)
