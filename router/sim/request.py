"""One simulated request: arrival time, prompt and output lengths, its tokens and their block keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Token ids in simulated workloads lie in [0, VOCAB_SIZE): small enough to render one text character each.
VOCAB_SIZE = 32768


class TokenSource(Protocol):
    """Prompt tokens followed by the tokens the engine will "generate" (so output blocks can be cached
    and reused by a later turn that resends them)."""

    def tokens(self) -> Sequence[int]: ...


@dataclass(slots=True, frozen=True)
class ListTokens:
    """Tokens held in memory (synthetic workloads)."""

    values: Sequence[int]

    def tokens(self) -> Sequence[int]:
        return self.values


@dataclass(slots=True)
class SimRequest:
    """Who builds it: the workload generators and the trace loader (`workloads/`), then `prepare_keys`.

    `keys` are the chained block keys (`engines.block_hash.chained_block_hashes`) of every full block of
    prompt + output; the first `prompt_len // block_size` of them are the prompt's. `arrival_s` >= 0.
    """

    request_id: str
    arrival_s: float
    prompt_len: int
    output_len: int
    source: TokenSource
    keys: list[int]

    def prompt_keys(self, block_size: int) -> list[int]:
        return self.keys[: self.prompt_len // block_size]


def prompt_token_share(requests: Sequence[SimRequest], tokens: int) -> float:
    """`tokens` as a share of all prompt tokens of `requests` (a hit rate); 0 when there are none."""
    prompt_tokens = sum(r.prompt_len for r in requests)
    return tokens / prompt_tokens if prompt_tokens else 0.0
