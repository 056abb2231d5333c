"""The subset of the OpenAI request schema warmserve serves, validated before any engine work.

Unknown fields are ignored (as OpenAI-compatible servers do, so newer clients keep working); known fields
are range-checked and a violation becomes a 400 that names the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deployments.errors import APIError, bad_request


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Lenient):
    include_usage: bool = False


class _SamplingFields(_Lenient):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM's extension, kept for drop-in compatibility (benchmarks rely on it for fixed output lengths).
    ignore_eos: bool = False

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @field_validator("stop")
    @classmethod
    def _stops_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else value or []
        if any(item == "" for item in items):
            raise ValueError("stop sequences must be non-empty strings")
        return value


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    # Newer clients send this instead of max_tokens; it wins when both are given, as in OpenAI's API.
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # Declared (with OpenAI's bounds) so that asking for them is refused, not silently ignored.
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def effective_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def logprobs_param(self) -> str | None:
        return "logprobs" if self.logprobs else "top_logprobs" if self.top_logprobs else None


class CompletionRequest(_SamplingFields):
    # One prompt per request: text, or token ids. Batched prompts are left to the batch job.
    prompt: str | list[int] = Field(min_length=1)
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(default=None, ge=0, le=5)

    def effective_max_tokens(self) -> int | None:
        return self.max_tokens

    def logprobs_param(self) -> str | None:
        return "logprobs" if self.logprobs is not None else None


RequestT = TypeVar("RequestT", bound=BaseModel)
# Pydantic puts the tried union member into an error's location (`stop.list[str]`); users think in fields.
_UNION_MEMBER_NAMES = ("str", "int", "float", "bool")


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _UNION_MEMBER_NAMES or "[" in str(item) or str(item).startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def validation_error(errors: Sequence[Any]) -> APIError:
    """The 400 for pydantic's (or FastAPI's) validation `errors()`, naming the first offending field."""
    if not errors:
        return bad_request("the request is invalid", code="invalid_value")
    first = errors[0]
    param = _field_path(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = f"'{param}' is a required property"
    else:
        message = f"Invalid value for '{param}': {message}"
    return bad_request(message, param=param or None, code="invalid_value")


def _first_unencodable(value: object, path: str) -> str | None:
    """Where a string holds a lone surrogate (JSON allows the escape "\\ud800"; UTF-8 cannot carry it)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next((found for sub, item in items if (found := _first_unencodable(item, sub)) is not None), None)


def decode_json(raw: bytes) -> object:
    """A request body decoded, or a 400: not JSON, not UTF-8, or nested deeper than the decoder recurses
    (`[[[[...` a few thousand deep raises RecursionError, which would otherwise be a 500)."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise bad_request("request body is not valid JSON: it is nested too deeply") from None


def parse_request(model: type[RequestT], body: object) -> RequestT:
    """Validate a decoded JSON body; raise a 400 `APIError` naming the first offending field."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    try:
        parsed = model.model_validate(body)
    except ValidationError as error:
        raise validation_error(error.errors()) from None
    # Only the fields kept (unknown ones are ignored): the tokenizer and the engines take UTF-8 text.
    where = _first_unencodable(parsed.model_dump(exclude_defaults=True), "")
    if where is not None:
        raise bad_request(f"Invalid value for '{where}': the string contains a lone UTF-16 surrogate "
                          "(an unpaired \\ud800-\\udfff escape), which is not valid Unicode text",
                          param=where, code="invalid_value")
    return parsed


def check_sampling_limits(request: ChatCompletionRequest | CompletionRequest, max_n: int, max_stops: int,
                          max_stop_chars: int) -> None:
    logprobs = request.logprobs_param()
    if logprobs is not None:
        raise bad_request(f"'{logprobs}' is not supported by this server: log probabilities are not returned",
                          param=logprobs, code="unsupported_parameter")
    if request.n > max_n:
        raise bad_request(f"Invalid value for 'n': {request.n} exceeds this server's limit of {max_n}",
                          param="n", code="invalid_value")
    stops = request.stop_list()
    if len(stops) > max_stops:
        raise bad_request(f"Invalid value for 'stop': at most {max_stops} stop sequences are allowed",
                          param="stop", code="invalid_value")
    if any(len(s) > max_stop_chars for s in stops):
        raise bad_request(f"Invalid value for 'stop': each stop sequence must be at most {max_stop_chars} "
                          "characters", param="stop", code="invalid_value")


__all__ = ["APIError", "ChatCompletionRequest", "CompletionRequest", "check_sampling_limits", "decode_json",
           "parse_request", "validation_error"]


def resolve_max_tokens(requested: int | None, prompt_tokens: int, max_model_len: int, default: int,
                       prompt_param: str) -> int:
    """Fit the completion into the context window, or explain with a 400 why it cannot."""
    if prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your {prompt_param} "
            f"resulted in {prompt_tokens} tokens.", param=prompt_param, code="context_length_exceeded")
    room = max_model_len - prompt_tokens
    if requested is None:
        return min(default, room)
    if requested > room:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the {prompt_param}, {requested} in the "
            "completion). Please reduce the length of the prompt or max_tokens.",
            param="max_tokens", code="context_length_exceeded")
    return requested
