"""Which version of a model answers a request for its bare name: split by weight, sticky per session.

A versioned model is configured as several entries named `<model>@<version>` (e.g. `smollm2@v1`,
`smollm2@v2`), each its own deployment with its own replicas and router state. A request naming the bare
`<model>` gets one version, chosen by the versions' `traffic_weight`; one naming `<model>@<version>` is
pinned to it. A request that carries a session key (a header or the OpenAI `user` field) is hashed, not
drawn, so every turn of a conversation lands on the same version and keeps reusing its prefix cache, on
whichever ingress replica it arrives.

The versions keep their config order on the unit interval (the old first), so shifting weight from one
version to the next moves only the sessions in the shifted slice; the others stay where their cache is.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from configs.model_versions import split_version


def session_fraction(model: str, session: str) -> float:
    """A point in [0, 1) fixed by the model and session alone (the same on every process and restart)."""
    digest = hashlib.sha256(f"{model}\0{session}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class TrafficSplit:
    """One versioned model: its versions' served names (`<model>@<version>`), in order, with weights."""

    model: str
    weights: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError(f"model {self.model!r}: a traffic split needs at least one version")
        if any(weight < 0 for _, weight in self.weights):
            raise ValueError(f"model {self.model!r}: traffic weights must be >= 0, got {dict(self.weights)}")
        if sum(weight for _, weight in self.weights) <= 0:
            raise ValueError(f"model {self.model!r}: every version has traffic weight 0, so no version would "
                             "get the bare name's requests; give at least one a weight > 0")

    @property
    def versions(self) -> list[str]:
        return [served for served, _ in self.weights]

    def shares(self) -> dict[str, float]:
        """Each version's fraction of the bare name's traffic."""
        total = sum(weight for _, weight in self.weights)
        return {served: weight / total for served, weight in self.weights}

    def choose(self, session: str | None, rng: random.Random) -> str:
        """The version a request for the bare name goes to: by its session's hash, else at random."""
        point = session_fraction(self.model, session) if session else rng.random()
        total = sum(weight for _, weight in self.weights)
        cumulative = 0.0
        for served, weight in self.weights:
            cumulative += weight / total
            if point < cumulative and weight > 0:
                return served
        # Rounding can leave the last sliver past the final boundary: it belongs to the last weighted version.
        return next(served for served, weight in reversed(self.weights) if weight > 0)


    def without(self, served: str) -> TrafficSplit | None:
        """The split among the other versions that have traffic (where a request `served` failed may go
        instead), or None when there is none."""
        rest = tuple((name, weight) for name, weight in self.weights if name != served and weight > 0)
        return TrafficSplit(self.model, rest) if rest else None


def splits_of(weights: Iterable[tuple[str, float]]) -> dict[str, TrafficSplit]:
    """The traffic splits of the versioned names among (served name, weight) pairs, by bare model name."""
    grouped: dict[str, list[tuple[str, float]]] = {}
    for served, weight in weights:
        base, version = split_version(served)
        if version is not None:
            grouped.setdefault(base, []).append((served, weight))
    return {base: TrafficSplit(base, tuple(pairs)) for base, pairs in grouped.items()}
