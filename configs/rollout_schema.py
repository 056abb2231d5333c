"""The policy of one rollout (`warmserve rollout`): traffic steps and the canary's bounds against the old version."""

from __future__ import annotations

from pydantic import Field, model_validator

from configs.base import StrictModel


class RolloutPolicy(StrictModel):
    # The new version's share of the bare name's traffic at each step, in percent; the last is 100.
    steps_percent: list[float] = Field(default=[10.0, 50.0, 100.0], min_length=1, max_length=100)
    # How long each step runs before it is judged (the last one included: 100% is judged too).
    step_s: float = Field(default=30.0, gt=0, le=86_400)
    # Requests the new version must have finished in a step before the step is judged; a step that
    # gets fewer within `step_timeout_s` rolls back (a canary nobody exercised proves nothing).
    min_requests: int = Field(default=20, ge=1, le=1_000_000)
    step_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    # Roll back when the new version's error rate exceeds the old one's by more than this (a fraction).
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    # The canary budget: failed requests of the new version the whole rollout tolerates, whatever their
    # rate; one more rolls it back at once. Clients do not see a failure that happened before the answer
    # began on a bare-name request: the ingress answers it from the old version (version_fallback.py).
    max_canary_errors: int = Field(default=10, ge=0, le=1_000_000)
    # Roll back when the new version's mean TTFT exceeds the old one's by more than this factor.
    max_ttft_ratio: float = Field(default=2.0, ge=1, le=1000)
    # How long the new version may take to start (its replicas RUNNING and answering).
    ready_timeout_s: float = Field(default=900.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _steps_rise_to_100(self) -> RolloutPolicy:
        steps = self.steps_percent
        if any(not 0 < step <= 100 for step in steps):
            raise ValueError(f"steps_percent {steps}: every step must be in (0, 100]")
        if any(later <= earlier for earlier, later in zip(steps, steps[1:])):
            raise ValueError(f"steps_percent {steps}: steps must increase")
        if steps[-1] != 100:
            raise ValueError(f"steps_percent {steps}: the last step must be 100 (the new version takes all traffic)")
        return self
