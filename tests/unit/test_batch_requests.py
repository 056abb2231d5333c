"""Offline request preparation mirrors the ingress: same prompt ids, sampling, 4xx bodies and framing."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.batch_input import BatchLine
from cluster.batch_requests import EngineResult, PreparedRequest, frame, prepare
from configs.loader import parse_config
from configs.schema import LLMModelConfig
from engines.tokenizer import ChatTemplateError

MODEL = parse_config({"models": [{"name": "m", "model": "tiny-random-llama",
                                  "engine": {"max_model_len": 64, "block_size": 32},
                                  "limits": {"max_tokens_default": 10, "max_n": 2}}]}).models[0]


class FakeTokenizer:
    """One token per character: enough to see what the chat template and limits receive."""

    vocab_size = 1000

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 1000 for c in text]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if any(m["role"] == "developer" for m in messages):
            raise ChatTemplateError("chat template rejected the messages: no developer role")
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def _chat(**body: Any) -> BatchLine:
    return BatchLine(1, "c1", "/v1/chat/completions",
                     {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})


def _prepare(line: BatchLine, model: LLMModelConfig = MODEL) -> PreparedRequest | dict[str, Any]:
    return prepare(line, model, FakeTokenizer())  # type: ignore[arg-type]


def test_chat_request_gets_the_templated_prompt_and_ingress_sampling() -> None:
    prepared = _prepare(_chat(max_tokens=5, temperature=0, seed=7, n=2, stop="x"))
    assert isinstance(prepared, PreparedRequest)
    assert prepared.prompt_token_ids == FakeTokenizer().encode("<user>hi<assistant>")
    requests = prepared.generation_requests()
    assert [r.request_id for r in requests] == [f"{prepared.request_id}-0", f"{prepared.request_id}-1"]
    assert prepared.request_id.startswith("chatcmpl-")
    assert [(r.sampling.max_tokens, r.sampling.temperature, r.sampling.seed, r.sampling.stop) for r in requests] == [
        (5, 0.0, 7, ["x"]), (5, 0.0, 8, ["x"])]
    assert PreparedRequest.from_dict(prepared.to_dict()) == prepared


def test_max_tokens_default_and_context_room_follow_the_ingress() -> None:
    prepared = _prepare(_chat())
    assert isinstance(prepared, PreparedRequest) and prepared.sampling[0]["max_tokens"] == 10
    completion = _prepare(BatchLine(2, "p", "/v1/completions", {"model": "m", "prompt": "x" * 60}))
    assert isinstance(completion, dict)
    assert completion["response"]["status_code"] == 400
    assert completion["response"]["body"]["error"]["param"] == "max_tokens"  # 60 + OpenAI's default 16 > 64


@pytest.mark.parametrize(("line", "status", "param"), [
    (_chat(max_tokens=-1), 400, "max_tokens"),
    (_chat(model="other"), 404, "model"),
    (_chat(n=3), 400, "n"),
    (_chat(messages=[{"role": "developer", "content": "x"}]), 400, "messages"),
    (BatchLine(1, "c1", "/v1/completions", {"model": "m", "prompt": [5, 1000]}), 400, "prompt"),
    (BatchLine(1, "c1", "/v1/completions", {"model": "m", "prompt": "x" * 70}), 400, "prompt"),
])
def test_bad_requests_get_the_endpoints_error_as_their_output_line(line: BatchLine, status: int, param: str) -> None:
    out = _prepare(line)
    assert isinstance(out, dict) and out["custom_id"] == "c1" and out["error"] is None
    assert out["response"]["status_code"] == status
    assert out["response"]["body"]["error"]["param"] == param


def test_frame_builds_the_non_streaming_body_with_usage() -> None:
    prepared = _prepare(_chat(n=2))
    assert isinstance(prepared, PreparedRequest)
    result = EngineResult("c1", ["Paris.", "Lyon."], ["stop", "length"], 12, 5, 8)
    line = frame(prepared, result, created=100)
    assert line["custom_id"] == "c1" and line["id"].startswith("batch_req_")
    response = line["response"]
    assert response["status_code"] == 200 and response["request_id"] == prepared.request_id
    body = response["body"]
    assert body["object"] == "chat.completion" and body["created"] == 100
    assert [c["message"]["content"] for c in body["choices"]] == ["Paris.", "Lyon."]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                             "prompt_tokens_details": {"cached_tokens": 8}}


def test_an_engine_failure_is_a_500_line() -> None:
    prepared = _prepare(_chat())
    assert isinstance(prepared, PreparedRequest)
    line = frame(prepared, EngineResult("c1", [], [], 3, 0, 0, error="RuntimeError"))
    assert line["response"]["status_code"] == 500
    assert "RuntimeError" in line["response"]["body"]["error"]["message"]
