"""Prompt text of an exact token length, drawn deterministically from a shipped public-domain book.

The text is `loadtests/data/opticks.txt` (Newton's Opticks, ~210 KB of English prose). Lengths are counted
with the served model's own tokenizer (its `tokenizer.json`, read from the local model directory with the
`tokenizers` library: no download), so a passage of N tokens is N tokens for the engine too. Without a
tokenizer the counts are approximate (one word = one token) and the summary says so.

Called by `loadtests.workloads`; one TextSource per Locust process (building it tokenizes the book once,
well under a second).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Protocol

BOOK_PATH = Path(__file__).resolve().parent / "data" / "opticks.txt"
MODELS_DIR = Path.home() / ".cache" / "warmserve" / "models"
# Tries per edge to converge on an exact count: re-tokenizing a cut span can merge or split at its edges.
_FIT_ATTEMPTS = 8


class TokenCounter(Protocol):
    exact: bool

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every token of `text`, in order."""

    def count(self, text: str) -> int: ...


class HFTokenCounter:
    """Counts with a Hugging Face `tokenizer.json` (no special tokens: the chat template adds its own)."""

    exact = True

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class WordCounter:
    """Fallback when no tokenizer is at hand: one whitespace-separated word counts as one token."""

    exact = False

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)]

    def count(self, text: str) -> int:
        return len(text.split())


def resolve_tokenizer(spec: str | None, model: str) -> Path | None:
    """`spec`: a model directory, a tokenizer.json, or a model-store name under ~/.cache/warmserve/models;
    None tries the served model's name there. Returns the tokenizer.json, or None when none is found
    (a `spec` that names nothing is an error: ValueError naming it)."""
    if spec is None:
        candidate = MODELS_DIR / model / "tokenizer.json"
        return candidate if candidate.is_file() else None
    path = Path(spec).expanduser()
    for candidate in (path, path / "tokenizer.json", MODELS_DIR / spec / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"--tokenizer {spec!r}: no tokenizer.json there nor in {MODELS_DIR / spec}")


def make_counter(tokenizer_file: Path | None) -> TokenCounter:
    return HFTokenCounter(tokenizer_file) if tokenizer_file is not None else WordCounter()


class TextSource:
    """Deterministic passages of exact token length from one text (the shipped book by default)."""

    def __init__(self, counter: TokenCounter, text: str | None = None) -> None:
        raw = text if text is not None else BOOK_PATH.read_text(encoding="utf-8")
        # Skip the provenance header (first paragraph) of the shipped book.
        self.text = raw.split("\n\n", 1)[1] if text is None else raw
        self.counter = counter
        self._spans = counter.spans(self.text)
        if len(self._spans) < 16:
            raise ValueError("the text source is too short to draw prompts from")

    @property
    def total_tokens(self) -> int:
        return len(self._spans)

    def passage(self, rng: random.Random, tokens: int) -> str:
        """A passage of exactly `tokens` tokens (>= 1) when the counter is exact, starting at a random token
        of the book; longer than the book -> the book repeated. Same `rng` state -> same passage."""
        if tokens < 1:
            raise ValueError(f"a passage needs at least 1 token, got {tokens}")
        if tokens > self.total_tokens - 8:
            repeats = tokens // self.total_tokens + 2
            return TextSource(self.counter, "\n".join([self.text] * repeats)).passage(rng, tokens)
        start = rng.randrange(0, self.total_tokens - tokens - 4)
        return self._fit(start, tokens)

    def _fit(self, start: int, tokens: int) -> str:
        # Cutting at token boundaries and stripping the edges usually re-tokenizes to the same count; where
        # the edges merge or split differently, step the end (then the start) until the count is exact.
        best = ""
        for shift in range(_FIT_ATTEMPTS):
            begin = self._spans[min(start + shift, len(self._spans) - 1)][0]
            end_token = start + shift + tokens - 1
            for _ in range(_FIT_ATTEMPTS):
                end_token = max(start + shift, min(end_token, len(self._spans) - 1))
                candidate = self.text[begin:self._spans[end_token][1]].strip()
                counted = self.counter.count(candidate)
                if counted == tokens:
                    return candidate
                if not best or abs(counted - tokens) < abs(self.counter.count(best) - tokens):
                    best = candidate
                step = tokens - counted
                end_token += step
        return best
