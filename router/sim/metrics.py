"""Per-policy figures from one simulated run.

- hit_rate: prompt tokens served from the prefix cache / all prompt tokens.
- ttft_p50_ms, ttft_p90_ms: time from arrival to the first token, percentiles over all requests.
- max_mean_load: requests routed to the busiest replica / mean requests per replica (1.0 = perfectly even).
- decision_us_p50: median wall time of one routing decision (`route`, excluding tokenization / text
  rendering), measured with `time.perf_counter_ns` on the host running the simulation: for baselines, of this package's
  Python re-implementations, not of the originals.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.sim.simulator import SimRun


@dataclass(slots=True)
class PolicyMetrics:
    hit_rate: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    max_mean_load: float
    decision_us_p50: float

    def as_json(self) -> dict[str, float]:
        return {"hit_rate": round(self.hit_rate, 4), "ttft_p50_ms": round(self.ttft_p50_ms, 2),
                "ttft_p90_ms": round(self.ttft_p90_ms, 2), "max_mean_load": round(self.max_mean_load, 3),
                "decision_us_p50": round(self.decision_us_p50, 1)}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 <= q <= 100, values non-empty."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class SimulationError(RuntimeError):
    """The run broke an invariant (a request lost or finished twice): a simulator bug, never user input."""


def summarize(run: SimRun, replicas: int) -> PolicyMetrics:
    unfinished = sum(1 for o in run.outcomes if o.finishes != 1)
    if unfinished or len(run.outcomes) != len(run.requests):
        raise SimulationError(f"{unfinished} of {len(run.requests)} requests did not finish exactly once")
    prompt_tokens = sum(r.prompt_len for r in run.requests)
    cached = sum(o.cached_tokens for o in run.outcomes)
    ttfts = [o.ttft_s * 1000.0 for o in run.outcomes]
    per_replica = [0] * replicas
    for outcome in run.outcomes:
        per_replica[outcome.replica] += 1
    mean = len(run.outcomes) / replicas
    return PolicyMetrics(
        hit_rate=cached / prompt_tokens if prompt_tokens else 0.0,
        ttft_p50_ms=percentile(ttfts, 50), ttft_p90_ms=percentile(ttfts, 90),
        max_mean_load=max(per_replica) / mean if mean else 0.0,
        decision_us_p50=percentile([ns / 1000.0 for ns in run.decision_ns], 50),
    )
