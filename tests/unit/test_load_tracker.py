from __future__ import annotations

import pytest

from engines.types import KVBlockRemoved, KVBlockStored, KVEventBatch
from router.load_tracker import ReplicaLoadTracker
from router.replica_stats import ReplicaRoutingStats

BS = 16


def _tracker(request_blocks: float = 2.0, balance_blocks: float = 0.0) -> ReplicaLoadTracker:
    # Most tests switch the recent-share term off to check the in-flight accounting alone.
    return ReplicaLoadTracker(BS, request_blocks=request_blocks, balance_blocks=balance_blocks)


def _stored(blocks: int) -> KVEventBatch:
    return KVEventBatch(0, 0.0, [KVBlockStored(list(range(blocks)), None, [1] * (blocks * BS), BS)])


def test_load_counts_pending_prefill_and_requests_until_finished() -> None:
    tracker = _tracker()
    tracker.started("r1", "a", uncached_prompt_blocks=10, max_tokens=32)
    tracker.started("r2", "a", uncached_prompt_blocks=0, max_tokens=8)
    assert tracker.load_blocks("a") == pytest.approx(10 + 2 * 2)  # decode length does not count
    assert tracker.inflight_requests("a") == 2
    tracker.finished("r1")
    assert tracker.load_blocks("a") == pytest.approx(2)
    tracker.finished("r1")  # a second completion of the same id changes nothing
    tracker.finished("r2")
    assert tracker.load_blocks("a") == 0 and tracker.inflight_requests("a") == 0
    assert tracker.load_blocks("never-seen") == 0


def test_stored_blocks_drain_pending_prefill_but_requests_still_count() -> None:
    tracker = _tracker()
    tracker.started("r1", "a", uncached_prompt_blocks=10, max_tokens=32)
    tracker.observe_kv_events("a", _stored(4))
    assert tracker.pending_prefill_blocks("a") == 6
    tracker.observe_kv_events("a", KVEventBatch(1, 0.0, [KVBlockRemoved([1, 2])]))  # removals do not count
    tracker.observe_kv_events("a", _stored(32))  # decode blocks too: never below zero
    assert tracker.load_blocks("a") == pytest.approx(2)
    tracker.observe_kv_events("b", _stored(4))  # a replica we never sent to: nothing to drain
    assert tracker.load_blocks("b") == 0


def test_finishing_caps_pending_prefill_at_the_requests_still_in_flight() -> None:
    tracker = _tracker(request_blocks=0)
    tracker.started("r1", "a", 10, 16)
    tracker.started("r2", "a", 6, 16)
    tracker.observe_kv_events("a", _stored(3))  # 13 pending, but whose blocks were they?
    tracker.finished("r1")
    assert tracker.load_blocks("a") == 6  # at most r2's own blocks remain (no events: until it finishes)


def test_a_restarted_request_id_is_counted_once() -> None:
    tracker = _tracker()
    tracker.started("r1", "a", 4, 16)
    tracker.started("r1", "b", 4, 16)  # retried on another replica
    assert tracker.load_blocks("a") == 0
    assert tracker.load_blocks("b") == pytest.approx(4 + 2)


def test_engine_reports_add_other_routers_work_but_not_our_own_finished_requests() -> None:
    tracker = _tracker()
    tracker.observe_engine("a", 0, 0)
    tracker.started("r1", "a", 3, 16)
    tracker.started("r2", "a", 3, 16)
    tracker.finished("r1")
    tracker.finished("r2")
    # The engine's count was taken while our two requests ran: a stale report is not phantom load.
    tracker.observe_engine("a", 2, 0)
    assert tracker.load_blocks("a") == 0
    # Three requests the engine holds beyond ours (another ingress's) count as requests in flight.
    tracker.started("r3", "a", 3, 16)
    tracker.observe_engine("a", 3, 1)
    assert tracker.load_blocks("a") == pytest.approx(3 + 2 + 3 * 2)
    tracker.finished("r3")
    assert tracker.load_blocks("a") == pytest.approx(3 * 2)


def test_recent_share_steers_away_from_the_replica_that_took_more_and_fades() -> None:
    tracker = ReplicaLoadTracker(BS, request_blocks=0, balance_blocks=1.0, balance_memory=10.0)
    for number in range(4):
        tracker.started(f"a{number}", "a", 0, 16)
        tracker.finished(f"a{number}")
    tracker.started("b0", "b", 0, 16)
    tracker.finished("b0")
    assert tracker.load_blocks("a") > tracker.load_blocks("b") > 0
    before = tracker.load_blocks("a")
    for number in range(60):  # a long run of requests elsewhere: a's share decays towards zero
        tracker.started(f"c{number}", "c", 0, 16)
        tracker.finished(f"c{number}")
    assert tracker.load_blocks("a") < before / 100


def test_forget_replica_drops_its_requests() -> None:
    tracker = _tracker()
    tracker.started("r1", "a", 3, 16)
    tracker.forget_replica("a")
    assert tracker.load_blocks("a") == 0
    tracker.finished("r1")  # completion after the replica died: nothing to undo, no error


def test_routing_stats_round_trip_and_tolerate_missing_or_bad_fields() -> None:
    stats = ReplicaRoutingStats(num_running=2, num_waiting=1, kv_cache_usage=0.5,
                                kv_events_endpoint="tcp://10.0.0.1:5557", block_size=32)
    assert ReplicaRoutingStats.from_dict(stats.to_dict()) == stats
    assert ReplicaRoutingStats.from_dict(None) == ReplicaRoutingStats()
    assert ReplicaRoutingStats.from_dict({"kv_events_endpoint": 7, "block_size": "x"}) == ReplicaRoutingStats()
    assert ReplicaRoutingStats(kv_cache_usage=1.0, num_waiting=3).is_full
    assert not ReplicaRoutingStats(kv_cache_usage=1.0, num_waiting=0).is_full
