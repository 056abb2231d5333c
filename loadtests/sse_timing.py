"""Per-request latency figures from an OpenAI streaming (SSE) response: TTFT, ITL, TPOT, E2E, tokens.

Pure functions over (arrival time, line) pairs, so the Locust users, the tests and any other client share one
definition of each metric. Definitions follow vLLM's own serving benchmark:

- TTFT: request start -> the first event that carries generated text (`delta.content` for chat, `text` for
  completions; role-only or empty chunks do not count).
- ITL: the gaps between successive text-carrying events. A server that packs several tokens into one event
  shows one (longer) gap for them; the ingress and vLLM send one event per detokenized step.
- TPOT: (E2E - TTFT) / (output tokens - 1); undefined (None) with fewer than two output tokens.
- Cached prompt tokens: `usage.prompt_tokens_details.cached_tokens`, None where the server does not report
  it (raw vLLM without --enable-prompt-tokens-details).
- Output tokens: `usage.completion_tokens` when the server reports usage (`stream_options.include_usage`),
  otherwise the number of text-carrying events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DONE_MARKER = "[DONE]"


@dataclass(slots=True)
class StreamTiming:
    """What one streamed response measured. Times in seconds from the request's start (>= 0)."""

    ok: bool
    ttft_s: float | None = None
    itls_s: list[float] = field(default_factory=list)
    e2e_s: float = 0.0
    output_tokens: int = 0
    text_events: int = 0
    prompt_tokens: int = 0
    cached_tokens: int | None = None  # None: the server reported no prompt_tokens_details
    text: str = ""
    error: str = ""

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return max(0.0, self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.e2e_s if self.e2e_s > 0 else 0.0


def parse_sse_data(line: str) -> dict[str, Any] | str | None:
    """One SSE line -> its JSON payload, the string "[DONE]", or None for anything that is not a data line
    (comments, `event:`/`id:` fields, blank separators). Raises ValueError on a data line that is not JSON."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == DONE_MARKER:
        return DONE_MARKER
    payload = json.loads(data)  # json.JSONDecodeError is a ValueError
    if not isinstance(payload, dict):
        raise ValueError(f"SSE data is not a JSON object: {data[:200]}")
    return payload


def event_text(payload: dict[str, Any]) -> str:
    """Generated text carried by one chunk (all choices), chat or completions framing."""
    parts: list[str] = []
    for choice in payload.get("choices") or []:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            parts.append(delta.get("content") or "")
        else:
            parts.append(choice.get("text") or "")
    return "".join(parts)


def extract_timing(start_s: float, lines: Iterable[tuple[float, str]], end_s: float) -> StreamTiming:
    """Measure one stream. `lines` are (arrival time, SSE line) in arrival order, with times on the same clock
    as `start_s` and `end_s` (the moment the stream closed). A stream without [DONE], with an error payload,
    with malformed data or with no generated text is a failure (`ok=False`, `error` says why)."""
    timing = StreamTiming(ok=False, e2e_s=max(0.0, end_s - start_s))
    last_text_s: float | None = None
    saw_done = False
    usage: dict[str, Any] = {}
    texts: list[str] = []
    for arrived_s, line in lines:
        try:
            payload = parse_sse_data(line)
        except ValueError as error:
            timing.error = f"malformed SSE data: {error}"
            return timing
        if payload is None:
            continue
        if payload == DONE_MARKER:
            saw_done = True
            continue
        assert isinstance(payload, dict)
        if "error" in payload:
            timing.error = f"error event in stream: {json.dumps(payload['error'])[:500]}"
            return timing
        usage = payload.get("usage") or usage
        text = event_text(payload)
        if not text:
            continue
        texts.append(text)
        timing.text_events += 1
        if timing.ttft_s is None:
            timing.ttft_s = max(0.0, arrived_s - start_s)
        else:
            assert last_text_s is not None
            timing.itls_s.append(max(0.0, arrived_s - last_text_s))
        last_text_s = arrived_s
    timing.text = "".join(texts)
    timing.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        timing.cached_tokens = int(details.get("cached_tokens") or 0)
    timing.output_tokens = int(usage.get("completion_tokens") or timing.text_events)
    if not saw_done:
        timing.error = "stream ended without data: [DONE]"
    elif timing.ttft_s is None:
        timing.error = "stream carried no generated text"
    else:
        timing.ok = True
    return timing


def split_sse_lines(buffer: str) -> tuple[list[str], str]:
    """Split received text into complete lines and the unfinished rest (kept for the next read).
    Accepts \\n and \\r\\n line ends."""
    *complete, rest = buffer.split("\n")
    return [line.rstrip("\r") for line in complete], rest
