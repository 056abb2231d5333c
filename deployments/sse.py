"""Server-sent events framing as the OpenAI streaming API uses it."""

from __future__ import annotations

import json
from typing import Any

SSE_DONE = b"data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream"


def sse_event(payload: dict[str, Any]) -> bytes:
    # Compact separators: fewer bytes per token on the hot path; json.dumps never emits raw newlines,
    # so one `data:` line per event is always valid framing.
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
