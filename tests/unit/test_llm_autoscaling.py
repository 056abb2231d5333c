"""The LLM autoscaling decision, driven tick by tick with synthetic signals and a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

from configs.reliability_schema import AutoscalingConfig
from deployments.llm_autoscaling import KV_CACHE_USAGE, TTFT_S, LLMAutoscalingPolicy, ScalingSignals, decide

CFG = AutoscalingConfig(min_replicas=1, max_replicas=4, target_ongoing_requests=8, target_kv_cache_usage=0.8,
                        target_ttft_s=2.0, upscale_delay_s=10, downscale_delay_s=30, downscale_headroom=0.7)


def _simulate(load: list[tuple[float, float, float, float | None]], cfg: AutoscalingConfig = CFG,
              start: int = 1) -> list[int]:
    """Replica count after each 1 s tick for (ongoing, kv, ttft) held for the given seconds."""
    replicas, state, now, counts = start, {}, 0.0, []
    for seconds, ongoing, kv, ttft in load:
        for _ in range(int(seconds)):
            now += 1
            replicas, state = decide(cfg, ScalingSignals(replicas, ongoing, kv, ttft, now), state)
            counts.append(replicas)
    return counts


def test_queue_depth_scales_up_after_the_delay_to_what_the_load_needs() -> None:
    counts = _simulate([(20, 30, 0.3, 1.0)])
    assert counts[9] == 1  # first seen at tick 1: at tick 10 it has lasted 9 s, not yet
    assert counts[10] == 4  # ceil(30 / 8) once it has lasted 10 s


def test_a_short_burst_does_not_scale() -> None:
    assert set(_simulate([(5, 40, 0.9, 5.0), (30, 2, 0.1, 0.5)])) == {1}


def test_kv_cache_pressure_and_ttft_each_add_a_replica() -> None:
    assert _simulate([(11, 4, 0.95, 0.5)])[-1] == 2  # few requests, but the KV cache is full
    assert _simulate([(11, 4, 0.3, 3.5)])[-1] == 2  # TTFT over target


def test_steady_load_does_not_flap_and_low_load_scales_down_one_at_a_time() -> None:
    # 20 ongoing needs 3 replicas; at 3, 20 <= 2 x 8 x 0.7 = 11.2 is false, so it stays at 3.
    counts = _simulate([(200, 20, 0.4, 1.0)])
    assert counts[-1] == 3 and counts[100:] == [3] * 100
    down = _simulate([(200, 2, 0.1, 0.5)], start=3)
    assert down[29] == 3 and down[30] == 2  # after the 30 s down delay, by one
    assert down[59] == 2 and down[60] == 1 and down[-1] == 1  # a full delay again; never below min


def test_scale_from_zero_is_immediate_and_to_zero_waits() -> None:
    cfg = CFG.model_copy(update={"min_replicas": 0})
    assert _simulate([(1, 1, 0.0, None)], cfg=cfg, start=0) == [1]
    idle = _simulate([(40, 0, 0.0, None)], cfg=cfg, start=1)
    assert idle[29] == 1 and idle[30] == 0


def test_policy_reads_serve_context() -> None:
    policy = LLMAutoscalingPolicy(**CFG.model_dump())
    ctx = SimpleNamespace(target_num_replicas=2, current_num_replicas=1, total_num_requests=40.0,
                          aggregated_metrics={KV_CACHE_USAGE: {"a": 0.2, "b": 0.4}, TTFT_S: {"a": 0.0, "b": 0.0}},
                          policy_state={}, current_time=100.0)
    replicas, state = policy(ctx)
    assert replicas == 2 and state["direction"] == 1  # wants 5 (capped at 4) once the delay passes
    ctx.policy_state, ctx.current_time = state, 111.0
    assert policy(ctx)[0] == 4
