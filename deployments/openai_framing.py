"""OpenAI response objects for chat and text completions, streaming and not.

One `Framing` per route kind keeps the two endpoints' differences (object names, `delta` vs `text`) in one
place, so the request-handling code is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployments.completion_stream import Usage


@dataclass(slots=True, frozen=True)
class Framing:
    id_prefix: str
    object_full: str
    object_chunk: str
    is_chat: bool

    def chunk(self, request_id: str, created: int, model: str, index: int, text: str | None,
              finish_reason: str | None, include_usage: bool, first: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "finish_reason": finish_reason, "logprobs": None}
        if self.is_chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        body = {"id": request_id, "object": self.object_chunk, "created": created, "model": model,
                "choices": [choice]}
        if include_usage:
            body["usage"] = None  # OpenAI sends null usage on every chunk but the last when asked
        return body

    def usage_chunk(self, request_id: str, created: int, model: str, usage: Usage) -> dict[str, Any]:
        return {"id": request_id, "object": self.object_chunk, "created": created, "model": model,
                "choices": [], "usage": usage.as_dict()}

    def full(self, request_id: str, created: int, model: str, texts: list[str],
             finish_reasons: list[str | None], usage: Usage) -> dict[str, Any]:
        choices = []
        for index, (text, finish) in enumerate(zip(texts, finish_reasons, strict=True)):
            choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
            if self.is_chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choices.append(choice)
        return {"id": request_id, "object": self.object_full, "created": created, "model": model,
                "choices": choices, "usage": usage.as_dict()}


CHAT = Framing("chatcmpl-", "chat.completion", "chat.completion.chunk", is_chat=True)
COMPLETION = Framing("cmpl-", "text_completion", "text_completion", is_chat=False)
