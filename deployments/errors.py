"""OpenAI-style errors: every failure the API returns has the body
`{"error": {"message", "type", "param", "code"}}` and a 4xx/5xx status that says whose fault it is."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import JSONResponse


@dataclass(slots=True)
class APIError(Exception):
    status_code: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    retry_after_s: int | None = None

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": _utf8_safe(self.message), "type": self.type, "param": _utf8_safe(self.param),
                          "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else None
        return JSONResponse(self.body(), status_code=self.status_code, headers=headers)


def protocol_response(error: APIError, route_path: str) -> JSONResponse:
    """`error` in the body of the API that `route_path` (the path below the app's route prefix) belongs to:
    the KServe v2 protocol's `{"error": "<message>"}` under `/v2`, OpenAI's everywhere else."""
    if route_path == "/v2" or route_path.startswith("/v2/"):
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
        return JSONResponse({"error": _utf8_safe(error.message)}, status_code=error.status_code, headers=headers)
    return error.response()


def _utf8_safe(text: str | None) -> str | None:
    """Text echoed from a request may hold lone surrogates (JSON's "\\ud800"), which UTF-8 cannot encode:
    written as escapes, so the error body itself can always be sent."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(name: str, known: list[str]) -> APIError:
    return APIError(404, f"The model '{name}' does not exist. Available models: {', '.join(known)}",
                    type="invalid_request_error", param="model", code="model_not_found")


def service_unavailable(message: str, retry_after_s: int = 1) -> APIError:
    return APIError(503, message, type="service_unavailable", code="service_unavailable",
                    retry_after_s=retry_after_s)


def internal_error(message: str) -> APIError:
    return APIError(500, message, type="internal_error", code="internal_error")
