"""On-disk cache of built TensorRT engines (pure Python: no TensorRT import, unit-tested on CPU).

An engine is only valid for the exact ONNX graph, TensorRT version, GPU architecture, precision and
optimisation profile it was built for; loading one built on another GPU fails or, worse, runs slowly.
The key holds all of them, the file name carries its digest, and a JSON sidecar repeats the fields so
`load` refuses a file whose recorded key differs (a renamed or corrupted cache never serves).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(slots=True, frozen=True)
class ProfileShapes:
    """One optimisation profile over the input: batch min..max, tuned for `opt_batch`."""

    input_name: str
    min_batch: int
    opt_batch: int
    max_batch: int
    channels: int
    height: int
    width: int

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.channels, self.height, self.width)


def batch_profile(input_name: str, max_batch: int, image_size: int) -> ProfileShapes:
    """Batch 1..max, tuned at max: dynamic batching fills batches under load, which is when speed counts."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return ProfileShapes(input_name, 1, max_batch, max_batch, 3, image_size, image_size)


@dataclass(slots=True, frozen=True)
class EngineCacheKey:
    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str  # "9.0" for an H100/H200
    precision: str
    profile: ProfileShapes

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def file_name(self) -> str:
        cc = self.compute_capability.replace(".", "")
        return f"{self.precision}-sm{cc}-b{self.profile.max_batch}-trt{self.tensorrt_version}-{self.digest()[:24]}.engine"


class EngineCache:
    """Called by the TensorRT backend: `lock` around build-or-load so replicas sharing a GPU node build
    an engine once; `load` returns None on any miss or mismatch; `store` writes atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, key: EngineCacheKey) -> Path:
        return self.directory / key.file_name()

    def _sidecar(self, key: EngineCacheKey) -> Path:
        return self.path_for(key).with_suffix(".json")

    @contextmanager
    def lock(self, key: EngineCacheKey) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path_for(key).with_suffix(".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def load(self, key: EngineCacheKey) -> bytes | None:
        engine, sidecar = self.path_for(key), self._sidecar(key)
        if not engine.is_file() or not sidecar.is_file():
            return None
        try:
            recorded = json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            return None
        if recorded != asdict(key):
            return None
        return engine.read_bytes()

    def store(self, key: EngineCacheKey, serialized: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        engine = self.path_for(key)
        for path, data in ((engine, serialized), (self._sidecar(key), json.dumps(asdict(key), indent=2).encode())):
            scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            scratch.write_bytes(data)
            os.replace(scratch, path)  # atomic: a reader sees the old file or the whole new one
        return engine
