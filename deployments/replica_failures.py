"""Which errors from an LLM replica call mean "this replica failed" (retry or resume elsewhere) and which
mean "this request failed" (report it), and the error a replica raises when its engine is gone.

Shared by the replica (raises) and the ingress (classifies); both sides import it, so Ray carries the
exception across with its type and the failed replica's id intact.
"""

from __future__ import annotations

from engines.protocol import EngineDeadError


class ReplicaEngineDeadError(EngineDeadError):
    """Raised by a replica whose engine died: names the replica so the ingress can exclude it from
    routing even when the failure came before the first token (which carries the replica's id)."""

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
                              StreamStalledError)) or isinstance(error, (RayActorError, grpc.aio.AioRpcError))


def failed_replica_id(error: BaseException) -> str | None:
    """The failed replica's Serve id when the error names it."""
    replica_id = getattr(root_cause(error), "replica_id", None)
    return replica_id if isinstance(replica_id, str) else None
