"""Ray Serve LLM's `PrefixCacheAffinityRouter` on warmserve's requests: the peer baseline for benchmarks.

Selected by `router.policy: ray_prefix_affinity`, never by default. Ray's router matches a character
prefix tree on the prompt *text* it finds in the request's `prompt` or `messages`; warmserve's replicas
receive token ids, so the prompt is rendered one character per token. Equal token prefixes become equal
character prefixes, which is what the tree needs, and the router's own logic stays untouched.
Imported only when selected: `ray.serve.llm` takes seconds to import and is not on the serving path.
"""

from __future__ import annotations

from typing import Any

from ray.serve.llm.request_router import PrefixCacheAffinityRouter

from engines.types import GenerationRequest

# Characters from U+0100 upwards stay clear of control characters; token ids above the BMP's surrogate
# block wrap, which no vocabulary of the packaged models reaches.
_FIRST_CHAR = 0x100
_CHAR_SPAN = 0xD800 - _FIRST_CHAR


def render_tokens(token_ids: list[int]) -> str:
    return "".join(chr(_FIRST_CHAR + t % _CHAR_SPAN) for t in token_ids)


class TokenPrefixCacheAffinityRouter(PrefixCacheAffinityRouter):
    def _extract_text_from_request(self, pending_request: Any) -> str:
        for arg in pending_request.args:
            if isinstance(arg, GenerationRequest):
                return render_tokens(arg.prompt_token_ids)
        return super()._extract_text_from_request(pending_request)
