"""Autoscaling an LLM deployment on LLM signals: queue depth, KV cache use and TTFT against targets.

Serve's default policy counts ongoing requests only, which misjudges LLM replicas: a replica with few but
long requests can run out of KV cache, and TTFT rises before queues look long. Here each replica reports
its engine's signals (`LLMReplica.record_autoscaling_stats`), Serve averages them over the look-back
window, and `LLMAutoscalingPolicy` (a Serve custom autoscaling policy, called on the controller every
control-loop tick) turns them into a replica count:

- up when any signal is over its target: to the count the request load needs, or one more replica for
  KV cache or TTFT pressure, once the need has lasted `upscale_delay_s`;
- down by one replica when the load would fit in one fewer at `downscale_headroom` of every target, once
  that has lasted `downscale_delay_s` (the gap between the two thresholds is what stops flapping);
- from zero to one at once when a request arrives (scale-to-zero with `min_replicas: 0`).

`decide` is pure (state in, state out), so the unit tests drive it with synthetic signals and a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from configs.reliability_schema import AutoscalingConfig

# Keys of the dict replicas report (LLMReplica.record_autoscaling_stats) and the policy reads.
KV_CACHE_USAGE = "kv_cache_usage"
TTFT_S = "ttft_s"


@dataclass(slots=True, frozen=True)
class ScalingSignals:
    current_replicas: int
    ongoing_requests: float  # running + queued, over the deployment (Serve's own count)
    kv_cache_usage: float  # mean over replicas, 0..1
    ttft_s: float | None  # mean recent TTFT over replicas; None when no request started lately
    now: float


def _need(cfg: AutoscalingConfig, s: ScalingSignals) -> int:
    """Replicas the signals ask for right now, before delays and hysteresis."""
    if s.current_replicas == 0:
        return 1 if s.ongoing_requests > 0 else 0
    need = math.ceil(s.ongoing_requests / cfg.target_ongoing_requests)
    if s.kv_cache_usage > cfg.target_kv_cache_usage:
        need = max(need, s.current_replicas + 1)
    if cfg.target_ttft_s is not None and s.ttft_s is not None and s.ttft_s > cfg.target_ttft_s:
        need = max(need, s.current_replicas + 1)
    return need


def _fits_in_one_fewer(cfg: AutoscalingConfig, s: ScalingSignals) -> bool:
    fewer = s.current_replicas - 1
    if fewer == 0:
        return s.ongoing_requests == 0
    headroom = cfg.downscale_headroom
    if s.ongoing_requests > fewer * cfg.target_ongoing_requests * headroom:
        return False
    # The same KV cache contents spread over one replica fewer.
    if s.kv_cache_usage * s.current_replicas / fewer > cfg.target_kv_cache_usage * headroom:
        return False
    return cfg.target_ttft_s is None or s.ttft_s is None or s.ttft_s <= cfg.target_ttft_s * headroom


def decide(cfg: AutoscalingConfig, s: ScalingSignals, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The replica count to run and the policy state for the next tick."""
    current = s.current_replicas
    need = _need(cfg, s)
    if need > current:
        direction, target, delay = 1, need, cfg.upscale_delay_s
    elif need < current and _fits_in_one_fewer(cfg, s):
        direction, target, delay = -1, current - 1, cfg.downscale_delay_s
    else:
        direction, target, delay = 0, current, 0.0
    if current == 0 and need > 0:
        delay = 0.0  # a request is waiting for the first replica: no reason to wait longer
    since = state.get("since", s.now) if state.get("direction") == direction else s.now
    target = max(cfg.min_replicas, min(cfg.max_replicas, target))
    if direction == 0 or s.now - since < delay:
        return max(cfg.min_replicas, min(cfg.max_replicas, current)), {"direction": direction, "since": since}
    # Acting restarts the clock: the next step must prove itself over a full delay again.
    return target, {"direction": direction, "since": s.now, "last_decision": target}


def _mean(per_replica: dict[Any, float] | None) -> float | None:
    values = [v for v in (per_replica or {}).values() if v is not None]
    return sum(values) / len(values) if values else None


class LLMAutoscalingPolicy:
    """Serve's custom autoscaling policy for LLM deployments; built by Serve on the controller with the
    model's `AutoscalingConfig` as keyword arguments, then called every control-loop tick."""

    def __init__(self, **config: Any) -> None:
        self._config = AutoscalingConfig(**config)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        ttft = _mean(metrics.get(TTFT_S))
        signals = ScalingSignals(
            # The count last decided, not the count running: replicas still starting must not make the
            # policy ask for the old count again (which would undo its own scale-up).
            current_replicas=ctx.target_num_replicas,
            ongoing_requests=float(ctx.total_num_requests or 0.0),
            kv_cache_usage=_mean(metrics.get(KV_CACHE_USAGE)) or 0.0,
            # Replicas report 0 when no request started in the window: no TTFT evidence, not a fast one.
            ttft_s=ttft if ttft else None,
            now=ctx.current_time if ctx.current_time is not None else _now(),
        )
        return decide(self._config, signals, dict(ctx.policy_state or {}))


def _now() -> float:
    import time

    return time.time()


def serve_autoscaling_config(cfg: AutoscalingConfig) -> dict[str, Any]:
    """The deployment's `autoscaling_config`: bounds for Serve, the decision to our policy (Serve's own
    delays off, since the policy applies them to LLM signals)."""
    return {
        "min_replicas": cfg.min_replicas,
        "max_replicas": cfg.max_replicas,
        "initial_replicas": max(cfg.min_replicas, 1),
        "look_back_period_s": cfg.look_back_period_s,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 0.0,
        "policy": {"policy_function": LLMAutoscalingPolicy, "policy_kwargs": cfg.model_dump(mode="json")},
    }
