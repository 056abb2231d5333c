"""Per-API-key limits in one ingress replica: requests per second, tokens per minute, requests in flight.

Token buckets refill continuously; a request over a bound is refused at once with 429 and a Retry-After
that says when the bucket will hold what it asked for. With several ingress replicas each enforces the
full limit on its own share of traffic (docs/operations.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deployments.admission import too_many_requests
from deployments.api_keys import ResolvedKey
from deployments.errors import APIError

Clock = Callable[[], float]


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    refill_per_s: float
    clock: Clock
    level: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.level = self.capacity
        self.updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.refill_per_s)
        self.updated = now

    def take(self, amount: float) -> float:
        """Take `amount` and return 0, or take nothing and return the seconds until it would fit."""
        self._refill()
        if amount <= self.level:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.refill_per_s

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


def _retry_after(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


@dataclass(slots=True)
class KeyLimiter:
    key: ResolvedKey
    clock: Clock = time.monotonic
    requests: TokenBucket | None = field(init=False)
    tokens: TokenBucket | None = field(init=False)
    in_flight: int = 0

    def __post_init__(self) -> None:
        rps = self.key.requests_per_s
        self.requests = None if rps is None else TokenBucket(
            float(self.key.burst or max(1, math.ceil(rps))), rps, self.clock)
        tpm = self.key.tokens_per_min
        self.tokens = None if tpm is None else TokenBucket(float(tpm), tpm / 60.0, self.clock)

    def start_request(self) -> None:
        """Count one HTTP request against the rate and the concurrency cap; `end_request` when it ends."""
        cap = self.key.max_concurrent
        if cap is not None and self.in_flight >= cap:
            raise too_many_requests(f"API key '{self.key.name}' has {self.in_flight} requests in flight, its "
                                    f"limit is {cap}", retry_after_s=1)
        if self.requests is not None:
            wait_s = self.requests.take(1)
            if wait_s:
                raise too_many_requests(f"API key '{self.key.name}' is over its rate of "
                                        f"{self.key.requests_per_s:g} requests/s", _retry_after(wait_s))
        self.in_flight += 1

    def end_request(self) -> None:
        self.in_flight -= 1

    def reserve_tokens(self, tokens: int) -> Callable[[int], None]:
        """Reserve `tokens` (prompt + the most it may generate) or raise 429; returns `settle(used)`,
        which gives back what the request did not use."""
        bucket = self.tokens
        if bucket is None:
            return lambda used: None
        if tokens > bucket.capacity:
            # It could never be admitted, however long the client waited: a bad request, not a 429 to retry.
            raise APIError(400, f"request needs up to {tokens} tokens (prompt + n x max_tokens), more than API key "
                                f"'{self.key.name}' may use in a minute (its budget, tokens_per_min, is "
                                f"{self.key.tokens_per_min}); lower max_tokens", type="invalid_request_error",
                           code="request_too_large", param="max_tokens")
        wait_s = bucket.take(tokens)
        if wait_s:
            raise too_many_requests(f"API key '{self.key.name}' is over its {self.key.tokens_per_min} tokens/min "
                                    f"(this request reserves {tokens})", _retry_after(wait_s))
        settled = False

        def settle(used: int) -> None:
            nonlocal settled
            if not settled:
                settled = True
                bucket.give_back(max(0, tokens - used))

        return settle
