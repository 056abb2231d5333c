"""Load shapes: how many users run at each moment, and when the test ends. Pure; Locust-free.

Every shape is bounded three ways: users never exceed `users` (<= MAX_USERS), the test ends at `duration_s`
(<= MAX_DURATION_S), and it ends once `max_requests` requests (if set) have completed.

- constant: `users` for the whole run.
- step: starts at `step_users`, adds `step_users` every `step_s` until `users`, then holds.
- spike: `base_users` (default users // 4, at least 1), rising to `users` from `spike_at_s` for `spike_s`,
  then back to the base.
- soak: ramps linearly to `users` over `ramp_s`, then holds for long runs (up to MAX_DURATION_S).

`loadtests.locustfile` wraps `ShapeSpec.tick` in a Locust LoadTestShape; the CLI and YAML scenarios build
the spec (`ShapeSpec.from_mapping`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

SHAPES = ("constant", "step", "spike", "soak")
MAX_USERS = 10_000
MAX_DURATION_S = 24 * 3600.0
MAX_REQUESTS = 10_000_000


class ShapeError(ValueError):
    """A shape parameter out of range; the message names it."""


@dataclass(slots=True, frozen=True)
class ShapeSpec:
    kind: str = "constant"
    users: int = 4
    duration_s: float = 60.0
    spawn_rate: float = 0.0  # users started per second; 0 = all at once (as fast as Locust can)
    max_requests: int | None = None
    step_users: int = 1
    step_s: float = 10.0
    base_users: int | None = None
    spike_at_s: float = 10.0
    spike_s: float = 10.0
    ramp_s: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in SHAPES:
            raise ShapeError(f"shape must be one of {', '.join(SHAPES)}, got {self.kind!r}")
        _check_int("users", self.users, 1, MAX_USERS)
        _check_float("duration_s", self.duration_s, 0.0, MAX_DURATION_S, low_open=True)
        _check_float("spawn_rate", self.spawn_rate, 0.0, float(MAX_USERS))
        if self.max_requests is not None:
            _check_int("max_requests", self.max_requests, 1, MAX_REQUESTS)
        _check_int("step_users", self.step_users, 1, MAX_USERS)
        _check_float("step_s", self.step_s, 0.0, MAX_DURATION_S, low_open=True)
        if self.base_users is not None:
            _check_int("base_users", self.base_users, 1, self.users)
        _check_float("spike_at_s", self.spike_at_s, 0.0, MAX_DURATION_S)
        _check_float("spike_s", self.spike_s, 0.0, MAX_DURATION_S, low_open=True)
        _check_float("ramp_s", self.ramp_s, 0.0, MAX_DURATION_S)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ShapeSpec:
        """From a YAML/CLI mapping; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ShapeError(f"unknown shape parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)

    @property
    def effective_spawn_rate(self) -> float:
        return self.spawn_rate if self.spawn_rate > 0 else float(self.users)

    def users_at(self, elapsed_s: float) -> int:
        """Target user count at `elapsed_s` seconds into the run (before the end checks)."""
        if self.kind == "step":
            steps = int(elapsed_s // self.step_s) + 1
            return min(self.users, steps * self.step_users)
        if self.kind == "spike":
            base = self.base_users if self.base_users is not None else max(1, self.users // 4)
            in_spike = self.spike_at_s <= elapsed_s < self.spike_at_s + self.spike_s
            return self.users if in_spike else base
        if self.kind == "soak" and self.ramp_s > 0 and elapsed_s < self.ramp_s:
            return max(1, math.ceil(self.users * elapsed_s / self.ramp_s))
        return self.users

    def tick(self, elapsed_s: float, completed_requests: int) -> tuple[int, float] | None:
        """(users, spawn rate) to run now, or None when the test must end (time or request bound reached)."""
        if elapsed_s >= self.duration_s:
            return None
        if self.max_requests is not None and completed_requests >= self.max_requests:
            return None
        return self.users_at(elapsed_s), self.effective_spawn_rate

    def peak_users(self) -> int:
        return self.users


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ShapeError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_float(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ShapeError(f"{name} must be a number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ShapeError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")
