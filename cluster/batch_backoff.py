"""When to retry an online request, and how long to wait first.

Pure and deterministic given its clock and random source (tests inject both). The endpoint answers
429/503 with `Retry-After` when its queues are full or a replica is down (docs/reliability.md): the
server's hint wins, capped; without one, exponential backoff with full jitter, so many
batch workers do not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

# 429/503 are the endpoint's "come back later"; 502/504 are proxies' versions of the same.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass(slots=True, frozen=True)
class BackoffPolicy:
    """`max_attempts` >= 1 tries in all; waits grow from `base_s` by 2x per attempt up to `cap_s`."""

    max_attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def should_retry(self, attempt: int, status: int | None) -> bool:
        """`attempt` is 1-based (the try that just failed); `status` None means no HTTP answer at all."""
        if attempt >= self.max_attempts:
            return False
        return status is None or status in RETRYABLE_STATUS

    def delay_s(self, attempt: int, retry_after: str | None, now_epoch_s: float) -> float:
        hinted = parse_retry_after(retry_after, now_epoch_s)
        if hinted is not None:
            return min(hinted, self.cap_s)
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return ceiling * self.rng()


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)
