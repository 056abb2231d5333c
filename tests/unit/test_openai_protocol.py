from __future__ import annotations

import pytest

from deployments.errors import APIError
from deployments.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    check_sampling_limits,
    parse_request,
    resolve_max_tokens,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _error(model: type, body: object) -> APIError:
    with pytest.raises(APIError) as caught:
        parse_request(model, body)
    return caught.value


@pytest.mark.parametrize(("patch", "param"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 0}, "n"),
    ({"stop": ["ok", ""]}, "stop"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": ""}, "model"),
])
def test_field_errors_name_the_field(patch: dict, param: str) -> None:
    error = _error(ChatCompletionRequest, {**CHAT, **patch})
    assert error.status_code == 400 and error.param == param
    assert error.body()["error"]["param"] == param


def test_missing_field_message() -> None:
    error = _error(ChatCompletionRequest, {"model": "m"})
    assert error.param == "messages" and "required" in error.message


def test_non_object_body() -> None:
    assert _error(ChatCompletionRequest, [1]).message == "request body must be a JSON object"


def test_unknown_fields_are_ignored_and_content_parts_join() -> None:
    body = {**CHAT, "frequency_penalty": 0.5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    request = parse_request(ChatCompletionRequest, body)
    assert request.messages[0].text() == "ab"


def test_max_completion_tokens_wins() -> None:
    request = parse_request(ChatCompletionRequest, {**CHAT, "max_tokens": 5, "max_completion_tokens": 9})
    assert request.effective_max_tokens() == 9


def test_completion_defaults_and_stop_list() -> None:
    request = parse_request(CompletionRequest, {"model": "m", "prompt": "x", "stop": "END"})
    assert request.effective_max_tokens() == 16 and request.stop_list() == ["END"]


def test_sampling_limits() -> None:
    request = parse_request(ChatCompletionRequest, {**CHAT, "n": 5, "stop": ["a", "b", "c"]})
    with pytest.raises(APIError, match="limit of 4") as caught:
        check_sampling_limits(request, max_n=4, max_stops=8, max_stop_chars=10)
    assert caught.value.param == "n"
    with pytest.raises(APIError, match="at most 2 stop"):
        check_sampling_limits(request, max_n=8, max_stops=2, max_stop_chars=10)


@pytest.mark.parametrize(("model", "body", "param"), [
    (ChatCompletionRequest, {**CHAT, "logprobs": True}, "logprobs"),
    (ChatCompletionRequest, {**CHAT, "top_logprobs": 3}, "top_logprobs"),
    (CompletionRequest, {"model": "m", "prompt": "x", "logprobs": 0}, "logprobs"),
])
def test_log_probabilities_are_refused_not_silently_ignored(model: type, body: dict, param: str) -> None:
    with pytest.raises(APIError, match="not supported") as caught:
        check_sampling_limits(parse_request(model, body), max_n=4, max_stops=8, max_stop_chars=10)
    assert (caught.value.status_code, caught.value.param) == (400, param)
    check_sampling_limits(parse_request(model, {**body, "logprobs": None, "top_logprobs": None}), 4, 8, 10)
    with pytest.raises(APIError):  # OpenAI's own bounds still apply
        parse_request(model, {**body, "top_logprobs": 21, "logprobs": 6})


def test_resolve_max_tokens() -> None:
    assert resolve_max_tokens(None, 100, 512, 256, "messages") == 256
    assert resolve_max_tokens(None, 400, 512, 256, "messages") == 112
    assert resolve_max_tokens(10, 400, 512, 256, "messages") == 10
    with pytest.raises(APIError, match="maximum context length is 512") as caught:
        resolve_max_tokens(None, 512, 512, 256, "messages")
    assert caught.value.param == "messages"
    with pytest.raises(APIError) as caught:
        resolve_max_tokens(200, 400, 512, 256, "prompt")
    assert caught.value.param == "max_tokens" and "600 tokens" in caught.value.message


# ---- request bodies no generated schema-based case reaches (fuzzing) ----


@pytest.mark.parametrize(("model", "body", "param"), [
    (ChatCompletionRequest, {**CHAT, "messages": [{"role": "user", "content": "hi \ud800"}]}, "messages[0].content"),
    (ChatCompletionRequest, {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
     "messages[0].content[0].text"),
    (ChatCompletionRequest, {**CHAT, "stop": ["ok", "\ud800"]}, "stop[1]"),
    (CompletionRequest, {"model": "\udc00", "prompt": "hi"}, "model"),
])
def test_lone_surrogates_are_400s_naming_the_field(model: type, body: dict, param: str) -> None:
    # JSON may escape one ("\ud800"); the tokenizer raises TypeError on it, which was a 500.
    error = _error(model, body)
    assert error.status_code == 400 and error.param == param and error.code == "invalid_value"
    assert "surrogate" in error.message or "unicode" in error.message  # pydantic's own check on constrained str


def test_surrogates_in_ignored_fields_are_ignored() -> None:
    assert parse_request(ChatCompletionRequest, {**CHAT, "unknown": "\ud800"}).model == "m"


def test_error_bodies_with_echoed_surrogates_can_be_sent() -> None:
    from deployments.errors import model_not_found

    response = model_not_found("bad\ud800name", ["m"]).response()  # renders the body as UTF-8 JSON
    assert b"bad\\\\ud800name" in response.body


def test_validation_error_from_fastapi_style_errors() -> None:
    from deployments.openai_protocol import validation_error

    error = validation_error([{"loc": ("item",), "msg": "Input should be a valid integer", "type": "int_parsing"}])
    assert error.status_code == 400 and error.param == "item"
    assert error.message == "Invalid value for 'item': Input should be a valid integer"
    assert validation_error([]).status_code == 400


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 100_000, b"\xff", b"{"])
def test_decode_json_refuses_what_it_cannot_decode_with_a_400(raw: bytes) -> None:
    from deployments.openai_protocol import decode_json

    with pytest.raises(APIError) as caught:
        decode_json(raw)
    assert caught.value.status_code == 400 and "not valid JSON" in caught.value.message
    assert decode_json(b'{"model": "m"}') == {"model": "m"}
