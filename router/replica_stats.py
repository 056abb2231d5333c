"""What an LLM replica tells the routers about itself, through Ray Serve's routing stats.

Serve carries routing stats as a plain dict (replica -> controller -> every router), so this is the one
place that knows its keys: the replica writes it with `to_dict`, routers read it with `from_dict`, which
tolerates a missing or partial dict (a replica that has not reported yet) instead of failing a request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class ReplicaRoutingStats:
    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0  # 0..1
    kv_events_endpoint: str | None = None  # ipc:// socket of the engine's KV event publisher
    node_id: str | None = None  # the Ray node of the replica (and of that socket)
    # ipc:// replay socket of the same publisher (vLLM's replay protocol), beside it on that node
    kv_events_replay_endpoint: str | None = None
    # tcp:// relay of those events for routers on other nodes (CURVE, engines/kv_events_relay.py), if any
    kv_events_remote_endpoint: str | None = None
    # tcp:// replay socket of that relay (CURVE, the same replay protocol), if any
    kv_events_remote_replay_endpoint: str | None = None
    block_size: int | None = None
    # False once the replica's engine reported itself dead: routers stop sending it work before Serve's
    # health check replaces it. `reported_at` (wall clock) lets a router tell a report made after a
    # failure from one delivered late.
    engine_healthy: bool = True
    reported_at: float | None = None
    # Share of prompt tokens the engine found in its prefix cache over its lifetime; None when unknown.
    prefix_cache_hit_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> ReplicaRoutingStats:
        if not raw:
            return cls()
        endpoint = raw.get("kv_events_endpoint")
        node_id = raw.get("node_id")
        remote = raw.get("kv_events_remote_endpoint")
        replay = raw.get("kv_events_replay_endpoint")
        remote_replay = raw.get("kv_events_remote_replay_endpoint")
        block_size = raw.get("block_size")
        reported_at = raw.get("reported_at")
        hit_rate = raw.get("prefix_cache_hit_rate")
        return cls(
            num_running=int(raw.get("num_running", 0) or 0),
            num_waiting=int(raw.get("num_waiting", 0) or 0),
            kv_cache_usage=float(raw.get("kv_cache_usage", 0.0) or 0.0),
            kv_events_endpoint=endpoint if isinstance(endpoint, str) else None,
            node_id=node_id if isinstance(node_id, str) else None,
            kv_events_remote_endpoint=remote if isinstance(remote, str) else None,
            kv_events_replay_endpoint=replay if isinstance(replay, str) else None,
            kv_events_remote_replay_endpoint=remote_replay if isinstance(remote_replay, str) else None,
            block_size=int(block_size) if isinstance(block_size, int) else None,
            engine_healthy=raw.get("engine_healthy", True) is not False,
            reported_at=float(reported_at) if isinstance(reported_at, (int, float)) else None,
            prefix_cache_hit_rate=float(hit_rate) if isinstance(hit_rate, (int, float)) else None,
        )

    @property
    def is_full(self) -> bool:
        """The engine has no KV cache left: new work would only queue behind preemptions."""
        return self.kv_cache_usage >= 0.99 and self.num_waiting > 0
