"""The vision replica deployment: one Ray Serve replica owning one `VisionEngine`, fed by Serve's dynamic
batching. Every image (from a Triton tensor or a decoded upload) is one item of `@serve.batch`, so a batch
fills with images from any mix of requests, up to `batching.max_batch_size` or until
`batching.batch_wait_timeout_s` passes. Batches run one at a time on one engine thread (one execution
context per replica); decoding runs on other threads meanwhile.

Batch sizes are observable three ways: each reply carries the sizes of the batches its images completed
(the first item of a batch reports it, so every batch is reported once), which the ingress records as
`warmserve_vision_batch_size` on `/metrics`; the `stats()` method (a histogram the tests read through a
DeploymentHandle); and a debug log line per batch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from configs.vision_schema import VisionModelConfig
from deployments.replica_failures import raise_injected_error
from engines.vision.postprocess import Classification, top_k
from engines.vision.preprocess import ImageInputError, PreprocessSpec, preprocess
from engines.vision.protocol import VisionEngine
from engines.vision.select import make_vision_engine
from engines.vision.store import load_artifacts, prepare_vision_model

logger = logging.getLogger("warmserve.vision")


@dataclass(slots=True)
class ClassifyReply:
    """What `classify` returns: per-image top-k, or the first bad image's index and why (the ingress
    turns it into a 400; an exception would cross Ray as an opaque task error)."""

    results: list[list[Classification]] = field(default_factory=list)
    error: str | None = None
    error_index: int | None = None
    replica_id: str = ""
    batch_sizes: list[int] = field(default_factory=list)  # of the batches these images completed
    backend: str = ""


@dataclass(slots=True)
class TensorReply:
    """What `infer_tensor` returns: logits [N, classes] and the sizes of the batches these images completed."""

    logits: np.ndarray
    batch_sizes: list[int]
    backend: str


@dataclass(slots=True)
class BatchStats:
    """Images per executed batch: {batch size: count}, plus totals. Owned by one replica's event loop."""

    sizes: dict[int, int] = field(default_factory=dict)
    images: int = 0
    batches: int = 0
    busy_s: float = 0.0

    def record(self, size: int, elapsed_s: float) -> None:
        self.sizes[size] = self.sizes.get(size, 0) + 1
        self.images += size
        self.batches += 1
        self.busy_s += elapsed_s


def _own_replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # constructed outside Serve
        return "local"


class VisionReplica:
    """Wrapped by `serve.deployment` in the app builder (options from the typed config there)."""

    async def __init__(self, config: VisionModelConfig, artifacts_dir: str) -> None:
        self._config = config
        self._fault_rng = random.Random(config.name)  # engine.injected_error_rate's draws
        directory = Path(artifacts_dir)
        if not (directory / "meta.json").is_file():
            # On another node than the driver that prepared it: prepare here (deterministic, same bytes).
            directory = await asyncio.to_thread(prepare_vision_model, config, directory.parent)
        self._artifacts = load_artifacts(directory)
        self._spec = PreprocessSpec(image_size=config.image_size, resize_size=config.resize_size,
                                    max_pixels=config.max_image_pixels)
        self._replica_id = _own_replica_id()
        # The engine is built and always called on this one thread: CUDA contexts and TensorRT execution
        # contexts are bound to the thread that uses them.
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vision-engine")
        loop = asyncio.get_running_loop()
        self._engine: VisionEngine = await loop.run_in_executor(
            self._engine_thread, make_vision_engine, config, self._artifacts)
        self._run_batch.set_max_batch_size(config.batching.max_batch_size)
        self._run_batch.set_batch_wait_timeout_s(config.batching.batch_wait_timeout_s)
        self._batch_stats = BatchStats()
        logger.info("vision replica %s for %s ready (backend=%s, max batch %d)", self._replica_id, config.name,
                    self._engine.backend, config.batching.max_batch_size)

    # Placeholders: __init__ sets the configured values before the first call (Serve's documented way).
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01, max_concurrent_batches=1)
    async def _run_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        batch = np.stack(images)
        started = time.monotonic()
        logits = await asyncio.get_running_loop().run_in_executor(self._engine_thread, self._engine.infer, batch)
        elapsed = time.monotonic() - started
        self._batch_stats.record(len(images), elapsed)
        logger.debug("vision %s: batch of %d in %.1f ms", self._config.name, len(images), elapsed * 1000)
        # (row, batch size on the batch's first item, else 0): each batch is reported by one reply.
        return [(row, len(images) if i == 0 else 0) for i, row in enumerate(logits)]

    async def _infer(self, images: np.ndarray) -> tuple[np.ndarray, list[int]]:
        raise_injected_error(self._config.engine.injected_error_rate, self._fault_rng, self._config.name)
        items = await asyncio.gather(*(self._run_batch(image) for image in images))
        return np.stack([row for row, _ in items]), [size for _, size in items if size]

    async def infer_tensor(self, images: np.ndarray) -> TensorReply:
        """Logits [N, classes] for float32 [N, 3, H, W] the ingress already checked (shape and dtype)."""
        logits, batch_sizes = await self._infer(images)
        return TensorReply(logits, batch_sizes, self._engine.backend)

    async def classify(self, images: list[bytes], k: int) -> ClassifyReply:
        """Top-k per encoded image (JPEG, PNG, ...). Decoding happens off the event loop."""
        decoded = await asyncio.gather(
            *(asyncio.to_thread(preprocess, data, self._spec, self._config.max_image_bytes) for data in images),
            return_exceptions=True)
        for index, item in enumerate(decoded):
            if isinstance(item, ImageInputError):
                return ClassifyReply(error=str(item), error_index=index, replica_id=self._replica_id)
            if isinstance(item, BaseException):
                raise item
        logits, batch_sizes = await self._infer(np.stack(decoded))  # type: ignore[arg-type]
        return ClassifyReply(top_k(logits, self._artifacts.labels, k), replica_id=self._replica_id,
                             batch_sizes=batch_sizes, backend=self._engine.backend)

    async def stats(self) -> dict[str, Any]:
        s = self._batch_stats
        return {"replica_id": self._replica_id, "backend": self._engine.backend, "batch_sizes": dict(s.sizes),
                "images": s.images, "batches": s.batches, "busy_s": s.busy_s,
                "max_batch_size": self._config.batching.max_batch_size}
