"""Config for what happens when things break or fill up: failover, health, drain, admission, autoscaling.

Kept beside `configs.schema` (which embeds these in each LLM model entry) so the reliability knobs are
read in one place. Defaults suit a small CPU cluster: long enough that a slow but healthy engine is never
mistaken for a dead one, short enough that a client never waits on a dead replica for long.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from configs.base import StrictModel


class FailoverConfig(StrictModel):
    """How the ingress survives a replica failure (docs/reliability.md).

    Before the first token a failed request is retried on another replica; after it, the request is
    resumed there with the prompt plus the tokens already sent, so the client sees one stream.
    """

    enabled: bool = True
    # Engine attempts per request, the first included; bounds the work one request can cause.
    max_attempts: int = Field(default=4, ge=1, le=32)
    # No new attempt starts once this long has passed since the request's first failure.
    retry_window_s: float = Field(default=60.0, gt=0, le=3600)
    # Pause between attempts: lets routing state catch up (a killed replica's stats) without adding
    # noticeable latency.
    retry_backoff_s: float = Field(default=0.05, ge=0, le=60)
    # A stream that produced a token and then none for this long is treated as a wedged replica: it is
    # cancelled and resumed elsewhere. Larger than any decode step, including a long prefill of a batch
    # neighbour on a CPU engine.
    stall_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # The same for the first token, which can legitimately wait in a long queue.
    first_token_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    # How long routers keep a replica that failed a call out of rotation, unless it reports a healthy
    # engine sooner (its routing stats); Serve replaces a dead replica with a new one meanwhile.
    exclude_s: float = Field(default=30.0, gt=0, le=3600)


class HealthConfig(StrictModel):
    """Serve's health check on each LLM replica, which asks its engine (dead or wedged => unhealthy)."""

    period_s: float = Field(default=5.0, gt=0, le=600)
    # A check that does not answer within this is a failure (the replica's own loop is stuck: a dead
    # engine fails the check at once). Generous: on 2 CPU cores the replica competes with its engine,
    # which takes about a minute to load.
    timeout_s: float = Field(default=60.0, gt=0, le=600)
    # An engine with requests in flight that emitted nothing for this long is wedged.
    wedged_after_s: float = Field(default=60.0, gt=0, le=3600)


class DrainConfig(StrictModel):
    """Stopping a replica (scale-down, redeploy, `warmserve down`): no new requests, streams finish."""

    # Streams still running after this are cut; the ingress resumes them on another replica.
    grace_s: float = Field(default=30.0, ge=0, le=3600)


class AdmissionConfig(StrictModel):
    """Bounded queues: beyond them the API answers at once (429/503 with Retry-After), never hangs."""

    # Requests waiting in the ingress for a replica slot (per ingress replica; Serve's
    # max_queued_requests on the handle). Beyond it: 503. -1 = unbounded (Serve's default). A second line
    # behind `max_inflight`: at least as large, so the bound that binds is the one checked at once, on
    # arrival. (At 256 below 512 in flight, a burst's excess was refused here, seconds late, after
    # templating and a routing attempt each.)
    max_queued_requests: int = Field(default=512, ge=-1, le=1_000_000)
    # Engine requests in flight or queued through one ingress replica for this model. Beyond it: 503.
    max_inflight: int = Field(default=512, ge=1, le=1_000_000)
    # The same per client (API key, else the `user` field, else the client address). Beyond it: 429.
    max_inflight_per_client: int = Field(default=64, ge=1, le=1_000_000)
    retry_after_s: int = Field(default=1, ge=1, le=3600)


class AutoscalingConfig(StrictModel):
    """Replica count driven by LLM signals (deployments/llm_autoscaling.py): queue depth, KV cache use and
    TTFT against their targets. Without it a model runs `num_replicas` fixed replicas."""

    min_replicas: int = Field(default=1, ge=0, le=1024)  # 0 allows scale-to-zero
    max_replicas: int = Field(default=4, ge=1, le=1024)
    # Ongoing requests (running + queued) one replica should hold.
    target_ongoing_requests: float = Field(default=8.0, gt=0, le=10_000)
    # KV cache use above this (mean over replicas) asks for another replica.
    target_kv_cache_usage: float = Field(default=0.8, gt=0, le=1)
    # Recent TTFT (mean over replicas) above this asks for another replica; None ignores TTFT.
    target_ttft_s: float | None = Field(default=2.0, gt=0, le=3600)
    # A need must last this long before replicas are added / removed: no flapping on a burst.
    upscale_delay_s: float = Field(default=10.0, ge=0, le=3600)
    downscale_delay_s: float = Field(default=60.0, ge=0, le=86_400)
    # Scale down only when the load would fit in one replica fewer at this share of the targets
    # (hysteresis: the count a load scales up to is not the count it scales back down from).
    downscale_headroom: float = Field(default=0.7, gt=0, lt=1)
    # Window the replicas' signals are averaged over.
    look_back_period_s: float = Field(default=10.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"autoscaling.max_replicas ({self.max_replicas}) must be >= "
                             f"autoscaling.min_replicas ({self.min_replicas})")
        return self
