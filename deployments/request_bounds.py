"""Configured per-request bounds on token counts, checked after tokenization and before any engine work
(the sampling bounds, `n` and stop sequences, are in `openai_protocol.check_sampling_limits`)."""

from __future__ import annotations

from configs.schema import RequestLimits
from deployments.errors import bad_request


def check_token_bounds(limits: RequestLimits, prompt_tokens: int, requested_max_tokens: int | None,
                       prompt_param: str) -> None:
    if limits.max_prompt_tokens is not None and prompt_tokens > limits.max_prompt_tokens:
        raise bad_request(f"your {prompt_param} resulted in {prompt_tokens} tokens; this endpoint accepts at most "
                          f"{limits.max_prompt_tokens} (limits.max_prompt_tokens)", param=prompt_param,
                          code="prompt_too_long")
    if (limits.max_tokens_limit is not None and requested_max_tokens is not None
            and requested_max_tokens > limits.max_tokens_limit):
        raise bad_request(f"max_tokens is {requested_max_tokens}; this endpoint allows at most "
                          f"{limits.max_tokens_limit} (limits.max_tokens_limit)", param="max_tokens",
                          code="max_tokens_too_large")
