"""The arithmetic of a rollout: each step's weights and the verdict on a step's canary (pure; unit-tested)."""

from __future__ import annotations

from dataclasses import dataclass

from configs.rollout_schema import RolloutPolicy


def step_weights(start: dict[str, float], target: str, percent: float) -> dict[str, float]:
    """Weights giving `target` `percent`% of the traffic and the other versions the rest, in their
    starting proportions. `start` holds every version's weight before the rollout (the target's 0)."""
    others = {name: weight for name, weight in start.items() if name != target}
    total = sum(others.values())
    if total <= 0:
        raise ValueError(f"no version but {target} has traffic to shift from: {start}")
    weights = {name: (100.0 - percent) * weight / total for name, weight in others.items()}
    weights[target] = percent
    return {name: weights[name] for name in start}  # in config order


@dataclass(slots=True)
class VersionWindow:
    """What one served version did between two scrapes of the ingress's metrics."""

    ok: float = 0.0
    errors: float = 0.0
    ttft_sum_s: float = 0.0
    ttft_count: float = 0.0

    @property
    def finished(self) -> float:
        return self.ok + self.errors

    @property
    def error_rate(self) -> float:
        return self.errors / self.finished if self.finished else 0.0

    @property
    def mean_ttft_s(self) -> float | None:
        return self.ttft_sum_s / self.ttft_count if self.ttft_count else None

    def minus(self, earlier: VersionWindow) -> VersionWindow:
        return VersionWindow(self.ok - earlier.ok, self.errors - earlier.errors,
                             self.ttft_sum_s - earlier.ttft_sum_s, self.ttft_count - earlier.ttft_count)

    def plus(self, other: VersionWindow) -> VersionWindow:
        return VersionWindow(self.ok + other.ok, self.errors + other.errors,
                             self.ttft_sum_s + other.ttft_sum_s, self.ttft_count + other.ttft_count)


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool | None  # None: not enough of the canary's requests yet to judge
    reason: str


def judge(canary: VersionWindow, baseline: VersionWindow, policy: RolloutPolicy,
          earlier_errors: float = 0.0, latency: str = "TTFT") -> Verdict:
    """Whether the canary is as good as the old version over one step's window.

    Errors are judged as soon as they exceed the allowed rate even before `min_requests` (a version failing
    every request need not be given a full step), and against the canary budget (`max_canary_errors`, for
    the whole rollout: `earlier_errors` are the canary's failures in the steps before this one). The
    baseline may be empty at the 100% step: the error rate is then judged against 0 and the TTFT is not
    compared.
    """
    spent = earlier_errors + canary.errors
    if spent > policy.max_canary_errors:
        return Verdict(False, f"{spent:.0f} failed requests exceed the canary budget of {policy.max_canary_errors}")
    allowed = baseline.error_rate + policy.max_error_rate_increase
    if canary.finished and canary.errors > allowed * max(canary.finished, policy.min_requests):
        return Verdict(False, f"error rate {canary.error_rate:.1%} over {canary.finished:.0f} requests exceeds the "
                              f"old version's {baseline.error_rate:.1%} + {policy.max_error_rate_increase:.1%}")
    if canary.finished < policy.min_requests:
        return Verdict(None, f"{canary.finished:.0f} of {policy.min_requests} requests so far")
    new_ttft, old_ttft = canary.mean_ttft_s, baseline.mean_ttft_s
    if new_ttft is not None and old_ttft is not None and new_ttft > policy.max_ttft_ratio * old_ttft:
        return Verdict(False, f"mean {latency} {new_ttft * 1000:.0f} ms is over {policy.max_ttft_ratio:g}x the old "
                              f"version's {old_ttft * 1000:.0f} ms")
    ttft = "-" if new_ttft is None else f"{new_ttft * 1000:.0f} ms"
    return Verdict(True, f"{canary.finished:.0f} requests, error rate {canary.error_rate:.1%}, mean {latency} {ttft}")
