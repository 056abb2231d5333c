"""The subset of the OpenAI request schema warmserve serves, validated before any engine work.

Unknown fields are ignored (as OpenAI-compatible servers do, so newer clients keep working); known fields
are range-checked and a violation becomes a 400 that names the field.
"""

from __future__ import annotations

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

    def effective_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_SamplingFields):
    # One prompt per request: text, or token ids. Batched prompts are left to the batch job.
    prompt: str | list[int] = Field(min_length=1)
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions

    def effective_max_tokens(self) -> int | None:
        return self.max_tokens


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


def parse_request(model: type[RequestT], body: object) -> RequestT:
    """Validate a decoded JSON body; raise a 400 `APIError` naming the first offending field."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = _field_path(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = f"'{param}' is a required property"
        else:
            message = f"Invalid value for '{param}': {message}"
        raise bad_request(message, param=param, code="invalid_value") from None


def check_sampling_limits(request: _SamplingFields, max_n: int, max_stops: int, max_stop_chars: int) -> None:
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


__all__ = ["APIError", "ChatCompletionRequest", "CompletionRequest", "check_sampling_limits", "parse_request"]


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
