"""A deterministic text rendering of token ids, for baselines that route on prompt text.

One character per token (distinct ids -> distinct characters, all in the Basic Multilingual Plane and
clear of surrogates), so a common token prefix is exactly a common text prefix and match *rates*, which
is what the text routers threshold on, are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from router.sim.request import VOCAB_SIZE

_BASE = 0x4E00  # 0x4E00 + 32768 < 0xD800: no surrogates
_CHARS = [chr(_BASE + i) for i in range(VOCAB_SIZE)]


def render(tokens: Sequence[int]) -> str:
    """Who calls: text-based baselines' `prepare` (outside the timed decision). Ids in [0, VOCAB_SIZE)."""
    return "".join(map(_CHARS.__getitem__, tokens))
