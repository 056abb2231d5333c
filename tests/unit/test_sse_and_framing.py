from __future__ import annotations

import json

from deployments.completion_stream import Usage
from deployments.openai_framing import CHAT, COMPLETION
from deployments.sse import SSE_DONE, sse_event


def test_sse_event_is_one_data_line() -> None:
    raw = sse_event({"text": "line1\nline2", "ü": 1})
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2
    assert json.loads(raw[6:]) == {"text": "line1\nline2", "ü": 1}
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_chat_chunks() -> None:
    first = CHAT.chunk("id", 1, "m", 0, None, None, include_usage=True, first=True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None and first["object"] == "chat.completion.chunk"
    last = CHAT.chunk("id", 1, "m", 1, "x", "stop", include_usage=False)
    assert last["choices"][0] == {"index": 1, "finish_reason": "stop", "logprobs": None, "delta": {"content": "x"}}
    assert "usage" not in last


def test_usage_and_full_bodies() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=3, cached_tokens=8)
    assert usage.as_dict() == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                               "prompt_tokens_details": {"cached_tokens": 8}}
    full = COMPLETION.full("id", 1, "m", ["a", "b"], ["stop", "length"], usage)
    assert full["object"] == "text_completion"
    assert [c["text"] for c in full["choices"]] == ["a", "b"]
    chat = CHAT.full("id", 1, "m", ["a"], ["stop"], usage)
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "a"}
    assert COMPLETION.usage_chunk("id", 1, "m", usage)["choices"] == []
