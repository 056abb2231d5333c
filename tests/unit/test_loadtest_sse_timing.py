"""SSE timing extraction (loadtests.sse_timing): TTFT, ITL, TPOT, E2E and token counts from timed lines."""

from __future__ import annotations

import json

import pytest

from loadtests.sse_timing import extract_timing, parse_sse_data, split_sse_lines


def _chat(text: str | None, role: bool = False) -> str:
    delta: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
    if text is not None:
        delta["content"] = text
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]})


def _usage(prompt: int, completion: int, cached: int = 0) -> str:
    return "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                                           "prompt_tokens_details": {"cached_tokens": cached}}})


def test_chat_stream_gives_ttft_itls_tpot_and_usage_tokens() -> None:
    lines = [(10.05, _chat(None, role=True)),  # role-only first chunk: not a token
             (10.20, _chat("Hello")), (10.25, ""), (10.30, _chat(" world")), (10.45, _chat("!")),
             (10.46, _usage(prompt=12, completion=3, cached=8)), (10.47, "data: [DONE]")]
    timing = extract_timing(10.0, lines, 10.5)
    assert timing.ok and timing.error == ""
    assert timing.ttft_s == pytest.approx(0.20)
    assert timing.itls_s == pytest.approx([0.10, 0.15])
    assert timing.e2e_s == pytest.approx(0.5)
    assert timing.output_tokens == 3 and timing.prompt_tokens == 12 and timing.cached_tokens == 8
    assert timing.tpot_s == pytest.approx((0.5 - 0.2) / 2)
    assert timing.text == "Hello world!"
    assert timing.output_tokens_per_s == pytest.approx(6.0)


def test_completions_framing_and_token_count_without_usage() -> None:
    lines = [(1.1, 'data: {"choices":[{"index":0,"text":"a"}]}'), (1.2, 'data: {"choices":[{"index":0,"text":""}]}'),
             (1.3, 'data: {"choices":[{"index":0,"text":"b"}]}'), (1.3, "data: [DONE]")]
    timing = extract_timing(1.0, lines, 1.3)
    assert timing.ok
    assert timing.output_tokens == 2  # text-carrying events when the server sends no usage
    assert timing.ttft_s == pytest.approx(0.1)
    assert timing.itls_s == pytest.approx([0.2])


def test_single_token_has_no_tpot() -> None:
    timing = extract_timing(0.0, [(0.3, _chat("x")), (0.3, "data: [DONE]")], 0.3)
    assert timing.ok and timing.tpot_s is None and timing.itls_s == []


@pytest.mark.parametrize(("lines", "reason"), [
    ([(0.1, _chat("x"))], "without data: [DONE]"),
    ([(0.1, "data: [DONE]")], "no generated text"),
    ([(0.1, _chat("x")), (0.2, 'data: {"error": {"message": "replica died", "code": 503}}')], "replica died"),
    ([(0.1, "data: {not json")], "malformed SSE data"),
])
def test_failed_streams_say_why(lines: list[tuple[float, str]], reason: str) -> None:
    timing = extract_timing(0.0, lines, 0.5)
    assert not timing.ok
    assert reason in timing.error


def test_non_data_lines_are_ignored_and_lines_split_across_reads() -> None:
    assert parse_sse_data(": keep-alive") is None
    assert parse_sse_data("event: message") is None
    assert parse_sse_data("data: [DONE]") == "[DONE]"
    with pytest.raises(ValueError):
        parse_sse_data("data: [1, 2]")
    complete, rest = split_sse_lines('data: {"a": 1}\r\n\r\ndata: {"b"')
    assert complete == ['data: {"a": 1}', ""]
    assert rest == 'data: {"b"'


def test_times_before_the_start_clamp_to_zero() -> None:
    timing = extract_timing(5.0, [(4.9, _chat("x")), (5.0, "data: [DONE]")], 4.0)
    assert timing.ttft_s == 0.0 and timing.e2e_s == 0.0


def test_cached_tokens_unreported_is_none_not_zero() -> None:
    usage = 'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}'
    timing = extract_timing(0.0, [(0.1, _chat("x")), (0.1, usage), (0.1, "data: [DONE]")], 0.1)
    assert timing.ok and timing.prompt_tokens == 5 and timing.cached_tokens is None
