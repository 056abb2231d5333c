"""One rollout's control loop: shift traffic to the new version step by step, judge each step, roll back on
a bad canary. Its effects are injected (apply weights, scrape counters, check health), so the unit tests
drive it with fakes and `warmserve rollout` (cluster/rollout.py) with the running cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cluster.rollout_metrics import window_between
from cluster.rollout_plan import VersionWindow, judge, step_weights
from configs.rollout_schema import RolloutPolicy

ApplyWeights = Callable[[dict[str, float]], None]
Scrape = Callable[[], dict[str, VersionWindow]]
TargetProblem = Callable[[], str | None]  # why the new version is unhealthy now, or None
POLL_S = 1.0  # how often a step checks the canary: bounds how many of its errors clients see before a rollback


@dataclass(slots=True)
class RolloutResult:
    completed: bool
    weights: dict[str, float]  # the weights in force at the end (the start's, after a rollback)
    reason: str
    steps: list[str] = field(default_factory=list)  # one line per judged step


def bring_up(target: str, apply_start: Callable[[], None], wait_ready: Callable[[], str],
             remove_target: Callable[[], None], log: Callable[[str], None] = print) -> str | None:
    """Deploy the new version at weight 0 and wait until it answers; None when it does. A version that never
    becomes ready (its replicas fail to start or fail their health checks) is removed again, so the
    app returns to what it served before, and the reason is returned. It got no traffic meanwhile."""
    apply_start()
    try:
        answer = wait_ready()
    except (RuntimeError, TimeoutError) as error:
        log(f"{target} did not become ready ({error}); removing it")
        remove_target()
        return f"{target} did not become ready: {error}"
    log(f"{target} answers ({answer!r})")
    return None


def run_rollout(start: dict[str, float], target: str, policy: RolloutPolicy, apply: ApplyWeights,
                scrape: Scrape, target_problem: TargetProblem, log: Callable[[str], None] = print,
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic, latency: str = "TTFT") -> RolloutResult:
    """`start` holds every version's weight before the rollout, the target's 0 (it is deployed and ready).
    `latency` names what the windows' latency is in the verdicts (an LLM's TTFT, a vision model's latency)."""
    baseline_versions = [name for name, weight in start.items() if name != target and weight > 0]
    steps: list[str] = []
    earlier_errors = 0.0  # the canary's failures in the steps passed (the canary budget is the rollout's)
    for percent in policy.steps_percent:
        weights = step_weights(start, target, percent)
        apply(weights)
        log(f"step {percent:g}%: " + ", ".join(f"{name} {weight:g}" for name, weight in weights.items()))
        before, step_started = scrape(), clock()
        while True:
            sleep(POLL_S)
            problem = target_problem()
            if problem is not None:
                return _roll_back(start, apply, log, steps, f"{target} unhealthy at {percent:g}%: {problem}")
            now = scrape()
            canary = window_between(before, now, [target])
            verdict = judge(canary, window_between(before, now, baseline_versions), policy, earlier_errors, latency)
            elapsed = clock() - step_started
            if verdict.healthy is False:
                return _roll_back(start, apply, log, steps, f"{target} at {percent:g}%: {verdict.reason}")
            if verdict.healthy and elapsed >= policy.step_s:
                earlier_errors += canary.errors
                steps.append(f"{percent:g}%: {verdict.reason}")
                log(f"step {percent:g}% passed: {verdict.reason}")
                break
            if elapsed >= policy.step_timeout_s:
                return _roll_back(start, apply, log, steps, f"{target} at {percent:g}%: only {verdict.reason} "
                                  f"after {elapsed:.0f} s (needs {policy.min_requests} to judge)")
    return RolloutResult(True, weights, f"{target} takes all traffic", steps)


def _roll_back(start: dict[str, float], apply: ApplyWeights, log: Callable[[str], None], steps: list[str],
               reason: str) -> RolloutResult:
    log(f"rolling back: {reason}")
    apply(start)
    return RolloutResult(False, dict(start), reason, steps)
