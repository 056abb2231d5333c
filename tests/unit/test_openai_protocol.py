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
