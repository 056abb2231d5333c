"""Logits -> top-k (label, score) per image; scores are softmax probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True, frozen=True)
class Classification:
    index: int
    label: str
    score: float


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)  # overflow-free for any logit range
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, labels: list[str], k: int) -> list[list[Classification]]:
    """For logits [N, C]: N lists of min(k, C) classes, best first; ties broken by the lower index."""
    probabilities = softmax(logits.astype(np.float64))
    k = min(k, logits.shape[-1])
    results = []
    for row in probabilities:
        order = np.lexsort((np.arange(row.size), -row))[:k]
        results.append([Classification(int(i), labels[int(i)], float(row[i])) for i in order])
    return results
