"""Offline mode's request path: an OpenAI body -> engine requests, and engine results -> a response body.

It follows the ingress (deployments/ingress.py) step by step, with the ingress's own functions
(`parse_request`, `check_sampling_limits`, `resolve_max_tokens`, the tokenizer, the framing), so a request
gets the same prompt token ids, the same sampling and therefore the same greedy answer, and a bad
request the same 4xx body, as through the online endpoint.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from cluster.batch_format import response_line
from cluster.batch_input import BatchLine
from configs.schema import LLMModelConfig
from deployments.completion_stream import Usage
from deployments.errors import APIError, internal_error, model_not_found
from deployments.openai_framing import CHAT, COMPLETION
from deployments.prompt_encoding import chat_prompt_ids, completion_prompt_ids
from deployments.request_bounds import check_token_bounds
from deployments.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    check_sampling_limits,
    parse_request,
    resolve_max_tokens,
)
from engines.tokenizer import PromptTokenizer
from engines.types import GenerationRequest, SamplingSpec


@dataclass(slots=True)
class PreparedRequest:
    """A validated request ready for an engine; crosses to the engine actors as a plain dict."""

    custom_id: str
    request_id: str
    is_chat: bool
    model: str
    prompt_token_ids: list[int]
    sampling: list[dict[str, Any]]  # one SamplingSpec (as a dict) per choice, n in all

    def generation_requests(self) -> list[GenerationRequest]:
        return [GenerationRequest(f"{self.request_id}-{i}", self.prompt_token_ids, SamplingSpec(**spec))
                for i, spec in enumerate(self.sampling)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> PreparedRequest:
        return PreparedRequest(**data)


@dataclass(slots=True)
class EngineResult:
    """What an engine actor returns for one `PreparedRequest` (all its choices)."""

    custom_id: str
    texts: list[str]
    finish_reasons: list[str | None]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    error: str | None = None  # set when the engine failed the request


def prepare(line: BatchLine, model: LLMModelConfig, tokenizer: PromptTokenizer) -> PreparedRequest | dict[str, Any]:
    """The engine requests for one input line, or its finished output line when the ingress would have
    answered with an error (4xx) before any engine work."""
    try:
        return _prepare(line, model, tokenizer)
    except APIError as error:
        return response_line(line.custom_id, error.status_code, None, error.body())


def _prepare(line: BatchLine, model: LLMModelConfig, tokenizer: PromptTokenizer) -> PreparedRequest:
    is_chat = line.url == "/v1/chat/completions"
    body: ChatCompletionRequest | CompletionRequest
    if is_chat:
        body = parse_request(ChatCompletionRequest, line.body)
        _check_model(body.model, model)
        prompt = chat_prompt_ids(tokenizer, body)
        prompt_param = "messages"
    else:
        body = parse_request(CompletionRequest, line.body)
        _check_model(body.model, model)
        prompt = completion_prompt_ids(tokenizer, body)
        prompt_param = "prompt"
    limits = model.limits
    check_sampling_limits(body, limits.max_n, limits.max_stop_sequences, limits.max_stop_length_chars)
    check_token_bounds(limits, len(prompt), body.effective_max_tokens(), prompt_param)
    max_tokens = resolve_max_tokens(body.effective_max_tokens(), len(prompt), model.engine.max_model_len,
                                    limits.max_tokens_default, prompt_param)
    framing = CHAT if is_chat else COMPLETION
    sampling = [asdict(SamplingSpec(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                                    seed=None if body.seed is None else body.seed + i, stop=body.stop_list(),
                                    ignore_eos=body.ignore_eos))
                for i in range(body.n)]
    return PreparedRequest(line.custom_id, framing.id_prefix + uuid.uuid4().hex, is_chat, body.model, prompt,
                           sampling)


def _check_model(name: str, model: LLMModelConfig) -> None:
    # An offline job runs one model's engines; any other name is unknown here, as on an endpoint
    # that serves only that model.
    if name != model.name:
        raise model_not_found(name, [model.name])


def frame(prepared: PreparedRequest, result: EngineResult, created: int | None = None) -> dict[str, Any]:
    """The output line for one finished request: the body the endpoint would have sent, with `usage`."""
    if result.error is not None:
        return response_line(prepared.custom_id, 500, prepared.request_id,
                             internal_error(f"engine error: {result.error}").body())
    framing = CHAT if prepared.is_chat else COMPLETION
    usage = Usage(result.prompt_tokens, result.completion_tokens, result.cached_tokens)
    body = framing.full(prepared.request_id, created or int(time.time()), prepared.model, result.texts,
                        result.finish_reasons, usage)
    return response_line(prepared.custom_id, 200, prepared.request_id, body)
