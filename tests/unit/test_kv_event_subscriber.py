"""The subscriber against a real ZMQ publisher: the fake engine, which speaks vLLM's wire format."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import zmq

from configs.schema import EngineConfig
from engines.fake_engine import FakeLLMEngine
from engines.kv_events_endpoint import KVEventsEndpoint
from engines.kv_events_relay import ClusterSecretError, KVEventsRelay, cluster_secret, secure_subscriber
from engines.types import GenerationRequest, KVEventBatch, SamplingSpec
from router.kv_event_subscriber import KVEventSource, KVEventSubscriber
from router.prefix_index import PrefixIndex
from router.replica_stats import ReplicaRoutingStats
from router.serve_adapter import kv_event_source

BS = 4
PROMPT = list(range(1, 17))


def _wait(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_events_from_a_real_publisher_reach_the_index() -> None:
    endpoint = KVEventsEndpoint()
    engine = FakeLLMEngine(EngineConfig(kind="fake", block_size=BS), lambda ids: "x",
                           kv_events=endpoint)
    index = PrefixIndex(BS)
    lock = threading.Lock()

    def on_batch(replica: str, batch: KVEventBatch) -> None:
        with lock:
            index.apply(replica, batch)

    subscriber = KVEventSubscriber(on_batch)
    subscriber.start()
    subscriber.set_endpoints({"r1": KVEventSource(endpoint.address)})

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
    endpoint = KVEventsEndpoint()
    publisher = zmq.Context.instance().socket(zmq.PUB)
    publisher.bind(endpoint.address)
    received: list[KVEventBatch] = []
    troubles: list[str] = []
    subscriber = KVEventSubscriber(lambda replica, batch: received.append(batch), on_trouble=troubles.append)
    subscriber.start()
    subscriber.set_endpoints({"r": KVEventSource(endpoint.address)})
    try:
        time.sleep(0.5)
        publisher.send_multipart([b"", b"short", b"\x92\x00\x90"])  # bad sequence frame
        publisher.send_multipart([b"", (1).to_bytes(8, "big"), b"\xc1"])  # not msgpack
        publisher.send_multipart([b"", (2).to_bytes(8, "big"), b"\x92\xc0\x90"])  # [None, []]: no timestamp
        publisher.send_multipart([b"", (3).to_bytes(8, "big"), b"\x92\x00\x90"])  # [0, []]: valid, empty
        assert _wait(lambda: subscriber.decode_errors == 3 and len(received) == 1)
        assert received[0].seq == 3 and received[0].events == []
        assert troubles == ["decode"] * 3 and subscriber.alive
    finally:
        subscriber.stop()
        publisher.close(linger=0)
        endpoint.close()


def test_the_thread_survives_a_failing_callback_and_an_unusable_endpoint() -> None:
    endpoint = KVEventsEndpoint()
    publisher = zmq.Context.instance().socket(zmq.PUB)
    publisher.bind(endpoint.address)
    seen: list[int] = []
    troubles: list[str] = []

    def on_batch(replica: str, batch: KVEventBatch) -> None:
        seen.append(batch.seq)
        if batch.seq == 1:
            raise RuntimeError("index bug")

    subscriber = KVEventSubscriber(on_batch, on_trouble=troubles.append)
    subscriber.start()
    subscriber.set_endpoints({"bad": KVEventSource("nonsense://x"), "r": KVEventSource(endpoint.address)})
    try:
        time.sleep(0.5)
        for seq in (1, 2):
            publisher.send_multipart([b"", seq.to_bytes(8, "big"), b"\x92\x00\x90"])
        assert _wait(lambda: seen == [1, 2]), seen
        assert troubles.count("apply") == 1 and troubles.count("connect") == 1 and subscriber.alive
    finally:
        subscriber.stop()
        publisher.close(linger=0)
        endpoint.close()


def test_a_replica_on_another_node_is_followed_only_through_its_encrypted_relay() -> None:
    """The relay (engine socket -> CURVE PUB) delivers to a subscriber holding the cluster's secret; one
    with another secret, or none, receives nothing and gives up that source."""
    endpoint = KVEventsEndpoint()
    publisher = zmq.Context.instance().socket(zmq.PUB)
    publisher.bind(endpoint.address)
    relay = KVEventsRelay(endpoint.address, "127.0.0.1", b"cluster-token")
    received: dict[str, list[int]] = {"ours": [], "other": []}
    ours = KVEventSubscriber(lambda r, b: received["ours"].append(b.seq), secret=lambda: b"cluster-token")
    other = KVEventSubscriber(lambda r, b: received["other"].append(b.seq), secret=lambda: b"another-token")
    plain = zmq.Context.instance().socket(zmq.SUB)
    plain.subscribe(b"")
    plain.connect(relay.address)
    try:
        for subscriber in (ours, other):
            subscriber.start()
            subscriber.set_endpoints({"remote": KVEventSource(relay.address, secure=True)})
        time.sleep(1.0)
        for seq in (1, 2):
            publisher.send_multipart([b"", seq.to_bytes(8, "big"), b"\x92\x00\x90"])
        assert _wait(lambda: received["ours"] == [1, 2]), received
        time.sleep(0.3)
        assert received["other"] == [] and not plain.poll(100)
        assert relay.address.startswith("tcp://127.0.0.1:")
    finally:
        ours.stop()
        other.stop()
        plain.close(linger=0)
        relay.close()
        publisher.close(linger=0)
        endpoint.close()


def test_without_a_cluster_secret_the_relay_is_refused_with_the_reason(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterSecretError, match="RAY_AUTH_MODE=token"):
        cluster_secret()


def test_the_router_reads_local_events_locally_and_remote_ones_only_through_a_relay() -> None:
    local = ReplicaRoutingStats(kv_events_endpoint="ipc:///x/events.sock", node_id="n1")
    remote = ReplicaRoutingStats(kv_events_endpoint="ipc:///y/events.sock", node_id="n2")
    relayed = ReplicaRoutingStats(kv_events_endpoint="ipc:///y/events.sock", node_id="n2",
                                  kv_events_remote_endpoint="tcp://10.0.0.2:5000",
                                  kv_events_remote_replay_endpoint="tcp://10.0.0.2:5001")
    assert kv_event_source(local, "n1") == KVEventSource("ipc:///x/events.sock")
    assert kv_event_source(remote, "n1") is None
    assert kv_event_source(relayed, "n1") == KVEventSource("tcp://10.0.0.2:5000", secure=True,
                                                           replay="tcp://10.0.0.2:5001")


@pytest.mark.parametrize("relayed", [False, True], ids=["same node", "another node, through the relay"])
def test_a_router_that_joins_late_or_loses_messages_learns_what_the_engine_still_caches(relayed: bool) -> None:
    """Blocks cached before the router subscribed (an ingress restart) come from the publisher's replay;
    without it the router never learns them, and every later block chained to them is unkeyable. A
    router on another node asks through the relay's encrypted replay socket, which answers nobody else."""
    endpoint = KVEventsEndpoint()
    relay = KVEventsRelay(endpoint.address, "127.0.0.1", b"cluster-token", endpoint.replay_address) if relayed else None
    engine = FakeLLMEngine(EngineConfig(kind="fake", block_size=BS), lambda ids: "x", kv_events=endpoint)
    index = PrefixIndex(BS)
    lock = threading.Lock()

    def on_batch(replica: str, batch: KVEventBatch) -> None:
        with lock:
            index.apply(replica, batch)

    def on_replay(replica: str) -> None:
        with lock:
            index.reset_replica(replica)

    async def generate(prompt: list[int]) -> None:
        _ = [c async for c in engine.generate(GenerationRequest("a", prompt, SamplingSpec(max_tokens=1)))]

    subscriber = KVEventSubscriber(on_batch, on_replay=on_replay, secret=lambda: b"cluster-token")
    source = (KVEventSource(relay.address, secure=True, replay=relay.replay_address) if relay is not None
              else KVEventSource(endpoint.address, replay=endpoint.replay_address))
    stranger = zmq.Context.instance().socket(zmq.DEALER)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(engine.start())
        loop.run_until_complete(generate(PROMPT))  # cached before any router listens
        subscriber.start()
        subscriber.set_endpoints({"r1": source})
        assert _wait(lambda: index.block_count("r1") == 4), index.block_count("r1")
        time.sleep(0.3)
        loop.run_until_complete(generate(PROMPT + list(range(500, 500 + BS))))  # one block more, chained
        assert _wait(lambda: index.block_count("r1") == 5)
        # Messages lost (the index reset, as a sequence gap does): the owner asks, the replay restores.
        with lock:
            index.reset_replica("r1")
        subscriber.request_resync("r1")
        assert _wait(lambda: index.block_count("r1") == 5)
        with lock:
            assert index.matched_blocks(index.prompt_keys(PROMPT), ["r1"]) == {"r1": 4}
        assert subscriber.replays == 2 and subscriber.decode_errors == 0
        if relay is not None:  # another cluster's key gets no answer
            secure_subscriber(stranger, b"another-token")
            stranger.connect(relay.replay_address)
            stranger.send_multipart([b"", (0).to_bytes(8, "big")])
            assert not stranger.poll(500)
    finally:
        stranger.close(linger=0)
        subscriber.stop()
        if relay is not None:
            relay.close()
        loop.run_until_complete(engine.shutdown())
        loop.close()
        endpoint.close()


def test_with_nothing_to_follow_the_thread_waits_instead_of_spinning() -> None:
    """Before any replica is known (an ingress starting beside replicas that are still loading), an empty
    zmq poll returns at once: the loop must sleep, not take a core from the replicas' start."""
    subscriber = KVEventSubscriber(lambda r, b: None)
    subscriber.start()
    try:
        time.sleep(0.2)
        cpu_before = time.process_time()
        time.sleep(1.0)
        used = time.process_time() - cpu_before
    finally:
        subscriber.stop()
    assert used < 0.3, f"an idle subscriber used {used:.2f} CPU s in 1 s"
