from __future__ import annotations

import gc

import pytest

from configs.reliability_schema import AdmissionConfig
from deployments.admission import AdmissionGate, client_identity
from deployments.errors import APIError
from router.replica_exclusions import ReplicaExclusions


def test_model_bound_answers_503_and_client_bound_429_with_retry_after() -> None:
    gate = AdmissionGate(AdmissionConfig(max_inflight=4, max_inflight_per_client=2, retry_after_s=3), "m")
    a1 = gate.admit("key:a", 2)
    with pytest.raises(APIError) as client_over:
        gate.admit("key:a", 1)
    assert client_over.value.status_code == 429 and client_over.value.retry_after_s == 3
    gate.admit(None, 2)  # anonymous: only the model-wide bound
    with pytest.raises(APIError) as full:
        gate.admit("key:b", 1)
    assert full.value.status_code == 503 and full.value.response().headers["retry-after"] == "3"
    a1.release()
    a1.release()  # idempotent: a second release must not free someone else's slot
    assert gate.in_flight == 2 and gate.per_client == {}
    gate.admit("key:b", 1)


def test_ticket_is_released_when_its_unstarted_stream_is_collected() -> None:
    gate = AdmissionGate(AdmissionConfig(max_inflight=1), "m")

    async def body():  # a streaming body the server never iterates (client gone before it started)
        yield b""

    stream = body()
    gate.admit(None, 1).release_with(stream)
    assert gate.in_flight == 1
    del stream
    gc.collect()
    assert gate.in_flight == 0


def test_client_identity_hashes_keys_and_never_uses_addresses() -> None:
    key = client_identity("Bearer sk-secret", None)
    assert key is not None and key.startswith("key:") and "secret" not in key
    assert client_identity(None, "alice") == "user:alice"
    assert client_identity(None, None) is None


def test_exclusion_lifts_on_a_healthy_report_made_after_it_or_when_it_expires() -> None:
    now = [100.0]
    wall = [1000.0]
    registry = ReplicaExclusions(clock=lambda: now[0], wall_clock=lambda: wall[0])
    registry.exclude("app#llm", "r1", for_s=30)
    assert registry.is_excluded("app#llm", "r1") and not registry.is_excluded("app#llm", "r2")
    registry.observe_stats("app#llm", "r1", reported_at=999.0, engine_healthy=True)  # made before: late news
    assert registry.is_excluded("app#llm", "r1")
    registry.observe_stats("app#llm", "r1", reported_at=1001.0, engine_healthy=False)
    assert registry.is_excluded("app#llm", "r1")
    registry.observe_stats("app#llm", "r1", reported_at=1001.0, engine_healthy=True)
    assert not registry.is_excluded("app#llm", "r1")
    registry.exclude("app#llm", "r1", for_s=30)
    now[0] += 31
    assert not registry.is_excluded("app#llm", "r1") and registry.excluded("app#llm") == []


def test_a_request_is_left_behind_only_while_its_replica_is_excluded() -> None:
    now = [100.0]
    registry = ReplicaExclusions(clock=lambda: now[0], wall_clock=lambda: 1000.0)
    registry.placed("app#llm", "req-1", "r1")
    registry.placed("app#llm", "req-2", "r2")
    assert registry.left_behind("app#llm", "req-1") is None
    registry.exclude("app#llm", "r1", for_s=30)
    assert registry.left_behind("app#llm", "req-1") == "r1"
    assert registry.left_behind("app#llm", "req-2") is None  # on a healthy replica
    assert registry.left_behind("other#llm", "req-1") is None  # another deployment's request ids
    registry.completed("app#llm", "req-1")
    assert registry.left_behind("app#llm", "req-1") is None
    now[0] += 1
    registry.placed("app#llm", "req-3", "r1")  # sent to r1 while excluded (every replica was): it stays
    assert registry.left_behind("app#llm", "req-3") is None
    now[0] += 1
    registry.exclude("app#llm", "r1", for_s=30)  # r1 failed again: now it is left behind
    assert registry.left_behind("app#llm", "req-3") == "r1"
    now[0] += 31  # the exclusion ran out
    assert registry.left_behind("app#llm", "req-3") is None
