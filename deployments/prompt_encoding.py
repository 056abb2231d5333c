"""Turning a validated OpenAI request into the prompt's token ids, with the API's 400s for prompts that
cannot be encoded. Shared by the ingress and the offline batch job, so both send the engine the same ids."""

from __future__ import annotations

import threading

from deployments.errors import bad_request
from deployments.openai_protocol import ChatCompletionRequest, CompletionRequest
from engines.tokenizer import ChatTemplateError, PromptTokenizer
from engines.trace_context import tracer


def chat_prompt_ids(tokenizer: PromptTokenizer, body: ChatCompletionRequest) -> list[int]:
    """The chat template applied to the messages, then tokenized (each step a span of the request's trace)."""
    with tracer().start_as_current_span("ingress.template", record_exception=False,
                                        set_status_on_exception=False) as span:
        span.set_attribute("thread.name", threading.current_thread().name)
        try:
            text = tokenizer.render_chat([{"role": m.role, "content": m.text()} for m in body.messages])
        except ChatTemplateError as error:
            raise bad_request(str(error), param="messages") from None
    with tracer().start_as_current_span("ingress.tokenize") as span:
        ids = tokenizer.encode(text)
        span.set_attributes({"gen_ai.usage.input_tokens": len(ids), "thread.name": threading.current_thread().name})
    return ids


def completion_prompt_ids(tokenizer: PromptTokenizer, body: CompletionRequest) -> list[int]:
    """A text prompt tokenized, or a token-id prompt checked against the vocabulary."""
    if isinstance(body.prompt, str):
        with tracer().start_as_current_span("ingress.tokenize") as span:
            prompt = tokenizer.encode(body.prompt)
            span.set_attribute("thread.name", threading.current_thread().name)
    else:
        vocab = tokenizer.vocab_size
        bad = next((t for t in body.prompt if not 0 <= t < vocab), None)
        if bad is not None:
            raise bad_request(f"Invalid value for 'prompt': token id {bad} is outside the vocabulary "
                              f"[0, {vocab})", param="prompt", code="invalid_value")
        prompt = list(body.prompt)
    if not prompt:
        raise bad_request("Invalid value for 'prompt': it encodes to zero tokens", param="prompt")
    return prompt
