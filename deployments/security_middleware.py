"""The ingress's front door, as ASGI middleware: body size bound, API key check, per-key request limits.

It runs before any route reads the body. It is plain ASGI, not Starlette's BaseHTTPMiddleware, so
streamed responses pass through untouched and a key's in-flight count lasts until its stream ends.
The ingress configures it at start (`process_security().configure`): one ingress deployment per process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from configs.security_schema import SecurityConfig
from deployments.api_keys import KeyVerifier, ResolvedKey, bearer_token
from deployments.errors import APIError, protocol_response
from deployments.key_limits import KeyLimiter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIXES = ("/v1", "/v2")
METRICS_PATH = "/metrics"
# Until the ingress configures it, the process uses the config's own defaults (their one home).
DEFAULTS = SecurityConfig()


def _unauthorized(message: str) -> APIError:
    return APIError(401, message, type="invalid_request_error", code="invalid_api_key")


def payload_too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"request body is {size} bytes or more; the limit is {limit} (security.max_body_bytes)",
                    type="invalid_request_error", code="payload_too_large")


def bodies_in_flight_full(held: int, limit: int) -> APIError:
    return APIError(503, f"the server holds {held} bytes of request bodies, its limit "
                         f"(security.max_body_bytes_in_flight) is {limit}; retry shortly",
                    type="service_unavailable", code="service_unavailable", retry_after_s=1)


class SecurityState:
    def __init__(self) -> None:
        self.configure([], DEFAULTS.max_body_bytes, metrics_require_key=False)
        self.body_bytes_in_flight = 0

    def configure(self, keys: list[ResolvedKey], max_body_bytes: int, metrics_require_key: bool,
                  max_body_bytes_in_flight: int = DEFAULTS.max_body_bytes_in_flight) -> None:
        self.verifier = KeyVerifier(keys)
        self.limiters = {key.name: KeyLimiter(key) for key in keys}
        self.max_body_bytes = max_body_bytes
        self.max_body_bytes_in_flight = max_body_bytes_in_flight
        self.metrics_require_key = metrics_require_key

    def hold_body_bytes(self, size: int) -> None:
        """Count `size` more bytes of request bodies in this process, or refuse (503) past the bound."""
        if size and self.body_bytes_in_flight + size > self.max_body_bytes_in_flight:
            raise bodies_in_flight_full(self.body_bytes_in_flight, self.max_body_bytes_in_flight)
        self.body_bytes_in_flight += size

    def needs_key(self, path: str) -> bool:
        if not self.verifier.enabled:
            return False
        if path == METRICS_PATH:
            return self.metrics_require_key
        return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)

    def authenticate(self, authorization: str | None) -> KeyLimiter:
        token = bearer_token(authorization)
        if token is None:
            raise _unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
        key = self.verifier.match(token)
        if key is None:  # never echo the presented key, not even in part
            raise _unauthorized("Incorrect API key provided.")
        return self.limiters[key.name]


_PROCESS_SECURITY = SecurityState()


def process_security() -> SecurityState:
    """The process's security state: the ingress configures it, the middleware reads it.

    Looked up through the module at call time, never captured: Serve freezes the FastAPI app (and with it
    this middleware) by cloudpickle, and a captured global would arrive as a private, unconfigured copy.
    """
    import deployments.security_middleware as security_module

    return security_module._PROCESS_SECURITY


def api_key_name(scope: Scope) -> str | None:
    """The name of the key that authenticated this request (set by the middleware), else None."""
    return scope.get("state", {}).get("api_key")


def key_limiter(name: str | None) -> KeyLimiter | None:
    return None if name is None else process_security().limiters.get(name)


class SecurityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = process_security()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = route_path(scope)
        held = 0
        try:
            declared = _declared_length(headers.get("content-length"))
            if declared > state.max_body_bytes:
                raise payload_too_large(declared, state.max_body_bytes)
            limiter = None
            if state.needs_key(path):
                limiter = state.authenticate(headers.get("authorization"))
            # The declared body is counted before a byte of it is read; a chunked one as it arrives.
            state.hold_body_bytes(declared)
            held = declared
            if limiter is not None:
                limiter.start_request()
        except APIError as error:  # in the body of the API asked (KServe's under /v2)
            state.body_bytes_in_flight -= held
            await protocol_response(error, path)(scope, receive, send)
            return
        body = _BoundedBody(receive, state, declared)
        try:
            if limiter is None:
                await self.app(scope, body.receive, send)
                return
            scope.setdefault("state", {})["api_key"] = limiter.key.name
            try:
                await self.app(scope, body.receive, send)
            finally:
                limiter.end_request()
        finally:
            state.body_bytes_in_flight -= body.held


def route_path(scope: Scope) -> str:
    """The path inside the app: Serve mounts it under the application's route prefix (`root_path`)."""
    path, root = scope.get("path", ""), scope.get("root_path", "").rstrip("/")
    return path[len(root):] if root and path.startswith(root) else path


def _declared_length(value: str | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        raise APIError(400, "invalid Content-Length header", code="invalid_header") from None


class _BoundedBody:
    """A request's body as it arrives, within `max_body_bytes` and the process's bytes in flight. A chunked
    body carries no length, so it is counted as it comes (a declared one was counted up front). The 413 or
    503 raised here surfaces inside the route that reads the body, where the app's APIError handler
    answers it. `held` is what this request counts against the process until it ends."""

    def __init__(self, receive: Receive, state: SecurityState, declared: int) -> None:
        self._receive = receive
        self._state = state
        self.held = declared
        self._seen = 0

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._state.max_body_bytes:
                raise payload_too_large(self._seen, self._state.max_body_bytes)
            if self._seen > self.held:  # beyond what was declared (chunked): count the rest now
                self._state.hold_body_bytes(self._seen - self.held)
                self.held = self._seen
        return message
