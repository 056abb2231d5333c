"""Which errors from an LLM replica call mean "this replica failed" (retry or resume elsewhere) and which
mean "this request failed" (report it), the error a replica raises when its engine is gone, and the API
error (503 or 500) a failed generation becomes.

Shared by the replica (raises) and the ingress (classifies); both sides import it, so Ray carries the
exception across with its type and the failed replica's id intact.
"""

from __future__ import annotations

import logging
import random

from deployments.errors import APIError, internal_error, service_unavailable
from engines.protocol import EngineDeadError, EngineEndedRequestError

logger = logging.getLogger("warmserve.ingress")


class ReplicaEngineDeadError(EngineDeadError):
    """Raised by a replica whose engine died: names the replica so the ingress can exclude it from
    routing even when the failure came before the first token (which carries the replica's id)."""

    def __init__(self, message: str, replica_id: str) -> None:
        super().__init__(message)
        self.replica_id = replica_id

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (str(self), self.replica_id))


class ReplicaEndedRequestError(EngineEndedRequestError):
    """Raised by a replica whose engine ended one request on its own (engines.protocol): the request
    moves to another replica; the replica itself stays in service."""

    def __init__(self, message: str, replica_id: str) -> None:
        super().__init__(message)
        self.replica_id = replica_id

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (str(self), self.replica_id))


class StreamStalledError(RuntimeError):
    """No token from the replica within the stall timeout: treated as a wedged replica."""

    def __init__(self, message: str, replica_id: str | None) -> None:
        super().__init__(message)
        self.replica_id = replica_id


def root_cause(error: BaseException) -> BaseException:
    """The replica's own exception inside Ray's wrapper (RayTaskError keeps it as `.cause`)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def is_replica_failure(error: BaseException) -> bool:
    """True when the replica (or the path to it), not the request, failed: safe to try another replica."""
    import grpc
    from ray.exceptions import RayActorError

    cause = root_cause(error)
    # Serve maps a replica that is gone to RayActorError (ActorDiedError, ActorUnavailableError); with
    # handle calls over gRPC (throughput-optimized mode) a broken channel surfaces as an AioRpcError.
    return isinstance(cause, (RayActorError, ConnectionError, grpc.aio.AioRpcError, EngineDeadError,
                              EngineEndedRequestError, StreamStalledError)) or isinstance(error, (RayActorError, grpc.aio.AioRpcError))


def failed_replica_id(error: BaseException) -> str | None:
    """The failed replica's Serve id when the error names it."""
    replica_id = getattr(root_cause(error), "replica_id", None)
    return replica_id if isinstance(replica_id, str) else None


def engine_failure_error(error: BaseException, retry_after_s: int) -> APIError:
    """The API error for a generation that failed in or on the way to an engine: 503 with Retry-After when
    the model is at capacity or its replicas are unavailable (after any failover), else a 500."""
    from ray.serve.exceptions import BackPressureError

    if isinstance(error, BackPressureError):  # the handle's queue bound (admission.max_queued_requests)
        return service_unavailable("model is at capacity: too many requests waiting for a replica; retry "
                                   "later", retry_after_s=retry_after_s)
    if is_replica_failure(error):  # failover was not enabled, or every attempt it allows failed
        logger.warning("replica failure: %s", error)
        return service_unavailable(f"model replica unavailable: {type(error).__name__}",
                                   retry_after_s=retry_after_s)
    logger.exception("engine error", exc_info=error)
    return internal_error(f"engine error: {type(error).__name__}")


class InjectedRequestError(RuntimeError):
    """A request failed on purpose by `engine.injected_error_rate` (fault drills, bad-version rollouts)."""


def raise_injected_error(error_rate: float, rng: random.Random, replica_id: str) -> None:
    """Fail this request with probability `error_rate` (the replica's `engine.injected_error_rate`)."""
    if error_rate and rng.random() < error_rate:
        raise InjectedRequestError(f"replica {replica_id}: injected request error "
                                   f"(engine.injected_error_rate {error_rate:g})")
