from __future__ import annotations

import pytest

from router.load_tracker import DEFAULT_REQUEST_BLOCKS, ReplicaLoadTracker
from router.replica_stats import ReplicaRoutingStats

BS = 16


def test_load_counts_uncached_prompt_and_decode_blocks_until_finished() -> None:
    tracker = ReplicaLoadTracker(BS)
    tracker.started("r1", "a", uncached_prompt_blocks=10, max_tokens=32)
    tracker.started("r2", "a", uncached_prompt_blocks=0, max_tokens=8)
    assert tracker.load_blocks("a") == pytest.approx(10 + 2 + 0.5)
    assert tracker.inflight_requests("a") == 2
    tracker.finished("r1")
    assert tracker.load_blocks("a") == pytest.approx(0.5)
    tracker.finished("r1")  # a second completion of the same id changes nothing
    tracker.finished("r2")
    assert tracker.load_blocks("a") == 0 and tracker.inflight_requests("a") == 0
    assert tracker.load_blocks("never-seen") == 0


def test_a_restarted_request_id_is_counted_once() -> None:
    tracker = ReplicaLoadTracker(BS)
    tracker.started("r1", "a", 4, 16)
    tracker.started("r1", "b", 4, 16)  # retried on another replica
    assert tracker.load_blocks("a") == 0
    assert tracker.load_blocks("b") == pytest.approx(5)


def test_engine_reports_add_other_routers_work_but_not_our_own_finished_requests() -> None:
    tracker = ReplicaLoadTracker(BS)
    tracker.observe_engine("a", 0, 0)
    tracker.started("r1", "a", 3, 16)
    tracker.started("r2", "a", 3, 16)
    tracker.finished("r1")
    tracker.finished("r2")
    # The engine's count was taken while our two requests ran: a stale report is not phantom load.
    tracker.observe_engine("a", 2, 0)
    assert tracker.load_blocks("a") == 0
    # Three requests the engine holds beyond ours (another ingress's) count at our mean request size.
    tracker.started("r3", "a", 3, 16)
    tracker.observe_engine("a", 3, 1)
    assert tracker.load_blocks("a") == pytest.approx(4 + 3 * 4)
    tracker.finished("r3")
    assert tracker.load_blocks("a") == pytest.approx(3 * DEFAULT_REQUEST_BLOCKS)


def test_forget_replica_drops_its_requests() -> None:
    tracker = ReplicaLoadTracker(BS)
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
