"""Lines of the OpenAI batch output format, shared by the offline and online runners.

    {"id": "batch_req_...", "custom_id": "...", "response": {"status_code", "request_id", "body"}, "error": null}
    {"id": "batch_req_...", "custom_id": "...", "response": null, "error": {"code", "message"}}

`response` carries whatever the endpoint answered, a 4xx/5xx with an OpenAI error body included; `error`
is for a request that got no HTTP answer at all (the endpoint unreachable after every retry).
"""

from __future__ import annotations

import uuid
from typing import Any


def new_line_id() -> str:
    return "batch_req_" + uuid.uuid4().hex


def response_line(custom_id: str, status_code: int, request_id: str | None, body: Any) -> dict[str, Any]:
    return {"id": new_line_id(), "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": request_id, "body": body}, "error": None}


def error_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    return {"id": new_line_id(), "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}


def completion_tokens(line: dict[str, Any]) -> int:
    """Generated tokens of one output line (0 for errors), from the body's `usage`."""
    response = line.get("response") or {}
    body = response.get("body")
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0
    value = usage.get("completion_tokens", 0)
    return value if isinstance(value, int) else 0


def succeeded(line: dict[str, Any]) -> bool:
    response = line.get("response")
    return bool(response) and 200 <= int(response.get("status_code", 0)) < 300
