"""The contract every vision backend meets; the vision replica holds one and calls it from one thread."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VisionEngine(Protocol):
    """A loaded classifier. `infer` takes float32 NCHW images (already normalised, 1 <= N <= max_batch_size)
    and returns float32 logits [N, num_classes]; a backend with FP16 inputs casts inside. Not thread-safe:
    the replica runs one batch at a time (one execution context per replica)."""

    backend: str
    max_batch_size: int

    def infer(self, images: np.ndarray) -> np.ndarray: ...
