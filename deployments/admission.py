"""Admission control in the ingress: bounded work per model and per client, refused at once.

A request over a bound is answered immediately (503 when the model's capacity is spent, 429 when one
client holds more than its share) with `Retry-After`, instead of queueing until something times out.
Counts are engine requests (an `n = 4` request takes 4) held through one ingress replica; with several
ingress replicas each enforces its own share.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from configs.reliability_schema import AdmissionConfig
from deployments.errors import APIError, service_unavailable


def too_many_requests(message: str, retry_after_s: int) -> APIError:
    return APIError(429, message, type="rate_limit_exceeded", code="rate_limit_exceeded",
                    retry_after_s=retry_after_s)


def client_identity(authorization: str | None, user: str | None, api_key: str | None = None) -> str | None:
    """Whom a request counts against: the name of the configured API key it authenticated with, else its
    Authorization header (hashed, never kept in clear), else the OpenAI `user` field; None for anonymous
    requests, which only the model-wide bound limits. (Behind Serve's HAProxy every connection comes from
    the proxy, so the peer address would lump all anonymous clients together.)
    """
    if api_key:
        return "apikey:" + api_key
    if authorization:
        return "key:" + hashlib.sha256(authorization.encode()).hexdigest()[:16]
    if user:
        return "user:" + user
    return None


@dataclass(slots=True)
class AdmissionTicket:
    """Held while a request's engine work runs; `release` is idempotent (called by whichever of the
    response's end or its garbage collection comes first)."""

    gate: AdmissionGate
    client: str | None
    slots: int
    released: bool = False
    # Also run once on release: settles what else the request reserved (its API key's tokens).
    on_release: Callable[[], None] | None = None

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._release(self.client, self.slots)
            if self.on_release is not None:
                self.on_release()

    def release_with(self, owner: object) -> None:
        """Also release when `owner` (a streaming body that may never be iterated) is collected."""
        weakref.finalize(owner, self.release)


@dataclass(slots=True)
class AdmissionGate:
    config: AdmissionConfig
    model: str
    in_flight: int = 0
    per_client: dict[str, int] = field(default_factory=dict)

    def admit(self, client: str | None, slots: int) -> AdmissionTicket:
        cfg = self.config
        if self.in_flight + slots > cfg.max_inflight:
            raise service_unavailable(
                f"model '{self.model}' is at capacity ({self.in_flight} of {cfg.max_inflight} requests in "
                "flight); retry later", retry_after_s=cfg.retry_after_s)
        if client is not None:
            held = self.per_client.get(client, 0)
            if held + slots > cfg.max_inflight_per_client:
                raise too_many_requests(
                    f"too many concurrent requests for this client ({held} in flight, limit "
                    f"{cfg.max_inflight_per_client})", retry_after_s=cfg.retry_after_s)
            self.per_client[client] = held + slots
        self.in_flight += slots
        return AdmissionTicket(self, client, slots)

    def _release(self, client: str | None, slots: int) -> None:
        self.in_flight -= slots
        if client is not None:
            left = self.per_client.get(client, 0) - slots
            if left > 0:
                self.per_client[client] = left
            else:
                self.per_client.pop(client, None)
