"""Rollouts: step weights, the canary's verdict, the control loop (with fakes), counters from /metrics."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cluster.rollout import starting_weights, with_weights
from cluster.rollout_metrics import version_counters, window_between
from cluster.rollout_plan import VersionWindow, judge, step_weights
from cluster.rollout_run import run_rollout
from configs.rollout_schema import RolloutPolicy
from configs.schema import ClusterConfig

POLICY = RolloutPolicy(steps_percent=[10, 50, 100], step_s=10, min_requests=20, step_timeout_s=60,
                       max_error_rate_increase=0.02, max_ttft_ratio=2.0)


def test_step_weights_keep_the_old_versions_proportions() -> None:
    start = {"m@a": 3.0, "m@b": 1.0, "m@new": 0.0}
    assert step_weights(start, "m@new", 20) == {"m@a": 60.0, "m@b": 20.0, "m@new": 20.0}
    assert step_weights(start, "m@new", 100) == {"m@a": 0.0, "m@b": 0.0, "m@new": 100.0}
    with pytest.raises(ValueError, match="no version but m@new"):
        step_weights({"m@a": 0.0, "m@new": 0.0}, "m@new", 10)


@pytest.mark.parametrize(("steps", "message"), [([10, 50], "last step must be 100"), ([50, 10, 100], "increase"),
                                                ([0, 100], r"\(0, 100\]")])
def test_policy_rejects_bad_steps(steps: list[float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutPolicy(steps_percent=steps)


def _window(ok: float, errors: float = 0, ttft_s: float = 0.1) -> VersionWindow:
    return VersionWindow(ok, errors, ttft_s * (ok + errors), ok + errors)


def test_judge() -> None:
    good_old = _window(200, 1)
    assert judge(_window(25), good_old, POLICY).healthy is True
    assert judge(_window(5), good_old, POLICY).healthy is None  # too few to judge
    errors = judge(_window(3, 2), good_old, POLICY)  # 2 errors already exceed 2.5% of 20
    assert errors.healthy is False and "error rate 40.0%" in errors.reason
    slow = judge(_window(30, ttft_s=0.5), good_old, POLICY)
    assert slow.healthy is False and "over 2x" in slow.reason
    assert judge(_window(30, ttft_s=0.19), good_old, POLICY).healthy is True
    # At 100% the old versions see nothing: errors are judged against 0, TTFT is not compared.
    assert judge(_window(30, ttft_s=5.0), VersionWindow(), POLICY).healthy is True
    assert judge(_window(30, 1), VersionWindow(), POLICY).healthy is False


def test_the_canary_budget_counts_the_whole_rollouts_failures() -> None:
    lenient = POLICY.model_copy(update={"max_error_rate_increase": 0.5, "max_canary_errors": 3})
    old = _window(200)
    assert judge(_window(30, 3), old, lenient).healthy is True  # 9% is within the lenient rate
    over = judge(_window(30, 2), old, lenient, earlier_errors=2)  # 2 in earlier steps + 2 now
    assert over.healthy is False and "4 failed requests exceed the canary budget of 3" in over.reason
    assert judge(_window(1, 1), old, POLICY.model_copy(update={"max_canary_errors": 0})).healthy is False


class _FakeCluster:
    """Counters that grow each poll by what each version does at its current weight."""

    def __init__(self, error_rate: dict[str, float], ttft_s: dict[str, float], per_poll: int = 20) -> None:
        self.weights: dict[str, float] = {}
        self.applied: list[dict[str, float]] = []
        self.counters: dict[str, VersionWindow] = {}
        self.error_rate, self.ttft_s, self.per_poll = error_rate, ttft_s, per_poll
        self.now = 0.0
        self.problem: str | None = None

    def apply(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)
        self.applied.append(dict(weights))

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        total = sum(self.weights.values())
        for name, weight in self.weights.items():
            requests = self.per_poll * weight / total
            errors = requests * self.error_rate.get(name, 0.0)
            window = self.counters.setdefault(name, VersionWindow())
            window.ok += requests - errors
            window.errors += errors
            window.ttft_sum_s += requests * self.ttft_s.get(name, 0.1)
            window.ttft_count += requests

    def scrape(self) -> dict[str, VersionWindow]:
        return {name: VersionWindow(w.ok, w.errors, w.ttft_sum_s, w.ttft_count) for name, w in self.counters.items()}

    def run(self, policy: RolloutPolicy = POLICY):  # type: ignore[no-untyped-def]
        return run_rollout({"m@old": 1.0, "m@new": 0.0}, "m@new", policy, self.apply, self.scrape,
                           lambda: self.problem, log=lambda _: None, sleep=self.sleep, clock=lambda: self.now)


def test_a_good_canary_takes_all_traffic_step_by_step() -> None:
    cluster = _FakeCluster({}, {"m@new": 0.12})
    result = cluster.run()
    assert result.completed and result.weights == {"m@old": 0.0, "m@new": 100.0}
    assert [w["m@new"] for w in cluster.applied] == [10, 50, 100]
    assert len(result.steps) == 3


def test_a_failing_canary_is_rolled_back_at_the_first_step() -> None:
    cluster = _FakeCluster({"m@new": 1.0}, {})
    result = cluster.run()
    assert not result.completed and "error rate 100.0%" in result.reason
    assert cluster.applied[-1] == {"m@old": 1.0, "m@new": 0.0} and len(cluster.applied) == 2


def test_a_slow_canary_is_rolled_back() -> None:
    result = _FakeCluster({}, {"m@new": 1.0}).run()
    assert not result.completed and "mean TTFT" in result.reason


def test_an_unhealthy_canary_is_rolled_back() -> None:
    cluster = _FakeCluster({}, {})
    cluster.problem = "deployment llm-m-new is UNHEALTHY"
    result = cluster.run()
    assert not result.completed and "UNHEALTHY" in result.reason and cluster.applied[-1]["m@new"] == 0


def test_a_canary_without_traffic_is_rolled_back_after_the_step_timeout() -> None:
    cluster = _FakeCluster({}, {}, per_poll=1)  # 10% of 1 request per poll: never 20 in 60 s
    result = cluster.run()
    assert not result.completed and "needs 20 to judge" in result.reason


METRICS = """\
# TYPE warmserve_generations_total counter
warmserve_generations_total{model="m@old",outcome="ok"} 90.0
warmserve_generations_total{model="m@old",outcome="error"} 1.0
warmserve_generations_total{model="m@old",outcome="cancelled"} 4.0
warmserve_generations_total{model="m@new",outcome="ok"} 9.0
# TYPE warmserve_time_to_first_token_seconds histogram
warmserve_time_to_first_token_seconds_bucket{le="+Inf",model="m@new"} 9.0
warmserve_time_to_first_token_seconds_count{model="m@new"} 9.0
warmserve_time_to_first_token_seconds_sum{model="m@new"} 0.9
warmserve_requests_total{method="POST",route="/v1/chat/completions",status="200"} 100.0
# TYPE warmserve_vision_requests_total counter
warmserve_vision_requests_total{model="r@new",outcome="ok"} 4.0
warmserve_vision_requests_total{model="r@new",outcome="error"} 2.0
# TYPE warmserve_vision_request_latency_seconds histogram
warmserve_vision_request_latency_seconds_bucket{le="+Inf",model="r@new"} 4.0
warmserve_vision_request_latency_seconds_count{model="r@new"} 4.0
warmserve_vision_request_latency_seconds_sum{model="r@new"} 0.2
"""


def test_version_counters_from_a_scrape() -> None:
    counters = version_counters(METRICS)
    assert counters["m@old"].ok == 90 and counters["m@old"].errors == 1
    assert counters["m@new"].mean_ttft_s == pytest.approx(0.1)
    vision = counters["r@new"]  # a vision version: its request latency stands in for TTFT
    assert (vision.ok, vision.errors, vision.mean_ttft_s) == (4, 2, pytest.approx(0.05))
    later = {"m@new": VersionWindow(19, 1, 2.0, 20)}
    window = window_between(counters, later, ["m@new"])
    assert (window.ok, window.errors, window.ttft_count) == (10, 1, 11)


def _config() -> ClusterConfig:
    models = [{"name": n, "model": "tiny-random-llama", "traffic_weight": w} for n, w in (("m@a", 1), ("m@b", 3))]
    return ClusterConfig.model_validate({"models": [{"name": "other", "model": "tiny-random-llama"}, *models]})


def test_starting_weights_and_with_weights() -> None:
    config = _config()
    assert starting_weights(config, "m", "m@b") == {"m@a": 1.0, "m@b": 0.0}
    for model, target, message in (("x", "x@b", "no versions of 'x'"), ("m", "m@c", "no entry 'm@c'")):
        with pytest.raises(ValueError, match=message):
            starting_weights(config, model, target)
    changed = with_weights(config, {"m@a": 0.0, "m@b": 100.0})
    assert [m.traffic_weight for m in changed.models] == [1.0, 0.0, 100.0]


def test_vision_versions_roll_out_like_llm_ones() -> None:
    from cluster.rollout import is_vision_version, without_model

    config = ClusterConfig.model_validate({"models": [], "vision_models": [
        {"name": n, "model": "resnet-tiny", "traffic_weight": w} for n, w in (("r@a", 1), ("r@b", 0))]})
    assert starting_weights(config, "r", "r@b") == {"r@a": 1.0, "r@b": 0.0}
    assert is_vision_version(config, "r@b") and not is_vision_version(_config(), "m@b")
    changed = with_weights(config, {"r@a": 20.0, "r@b": 80.0})
    assert [m.traffic_weight for m in changed.vision_models] == [20.0, 80.0]
    assert [m.name for m in without_model(config, "r@b").vision_models] == ["r@a"]
    slow = judge(_window(30, ttft_s=0.5), _window(200), POLICY, latency="latency")
    assert slow.healthy is False and "mean latency 500 ms" in slow.reason


def test_a_version_that_never_becomes_ready_is_removed_and_gets_no_traffic() -> None:
    from cluster.rollout import without_model
    from cluster.rollout_run import bring_up

    calls: list[str] = []

    def never_ready() -> str:
        raise RuntimeError("deployment failed: replica constructor raised")

    reason = bring_up("m@b", lambda: calls.append("start"), never_ready, lambda: calls.append("remove"),
                      log=lambda _: None)
    assert calls == ["start", "remove"] and reason is not None and "constructor raised" in reason
    assert bring_up("m@b", lambda: None, lambda: "hello", lambda: calls.append("x"), log=lambda _: None) is None
    assert [m.name for m in without_model(_config(), "m@b").models] == ["other", "m@a"]


def test_cli_refuses_a_model_without_versions_before_touching_ray(capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.rollout import cmd_rollout

    with pytest.raises(SystemExit) as exited:
        cmd_rollout(["--config", "test-fake", "--model", "tiny-fake", "--to", "v2"])
    assert exited.value.code == 2
    assert "no versions of 'tiny-fake'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cmd_rollout(["--config", "test-versions", "--model", "chat", "--to", "v2", "--steps", "50,20"])
    assert "steps must increase" in capsys.readouterr().err
