"""The model store: turns a model reference from the config into a local checkpoint directory.

A reference is either a name the store knows how to build (`smollm2-135m-instruct`, `tiny-random-llama`)
or a path to a local Hugging Face-style directory. Built models land in the cache directory once; a build
runs under a file lock in a scratch directory and is renamed into place, so concurrent callers (several
replicas starting at once, CI re-runs) never see a half-written checkpoint.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

from engines.model_store.head_padding import pad_checkpoint
from engines.model_store.smollm2 import build_smollm2
from engines.model_store.tiny_llama import build_tiny_random_llama

Builder = Callable[[Path], None]
DEFAULT_MODEL = "smollm2-135m-instruct"


def _smollm2_padded_to(kv_heads_multiple: int) -> Builder:
    def build(target: Path) -> None:
        # Builders run in a scratch directory inside the cache, so the parent is the store's cache dir.
        base = ModelStore(target.parent).resolve(DEFAULT_MODEL)
        pad_checkpoint(base, target, multiple=kv_heads_multiple)

    return build


BUILDERS: dict[str, Builder] = {
    DEFAULT_MODEL: build_smollm2,
    # SmolLM2 with zero heads added (12 query / 4 KV heads) so tensor_parallel_size 2 or 4 can split it.
    f"{DEFAULT_MODEL}-tp-ready": _smollm2_padded_to(4),
    # 24 query / 8 KV heads for tensor_parallel_size 8 (twice the attention work; the gpu-multinode
    # profile's stand-in, so that profile can start offline on 2 x 8 GPUs).
    f"{DEFAULT_MODEL}-tp8-ready": _smollm2_padded_to(8),
    "tiny-random-llama": build_tiny_random_llama,
}
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "warmserve" / "models"
_COMPLETE_MARKER = ".warmserve-complete"
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.gguf")


class UnknownModelError(ValueError):
    """The reference is neither a known name nor a local model directory; the message lists the names."""


def _looks_like_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(any(path.glob(p)) for p in _WEIGHT_PATTERNS)


def _is_path_like(reference: str) -> bool:
    return reference.startswith(("/", "./", "../", "~")) or Path(reference).exists()


def check_reference(reference: str) -> None:
    """Cheap check at config load: raises `UnknownModelError` naming what the store knows."""
    if reference in BUILDERS:
        return
    if _is_path_like(reference):
        path = Path(reference).expanduser()
        if not path.is_dir():
            raise UnknownModelError(f"model path {reference!r} is not a directory")
        if not _looks_like_model_dir(path):
            raise UnknownModelError(
                f"model path {reference!r} is not a model directory: it needs config.json and weights "
                f"({', '.join(_WEIGHT_PATTERNS)})"
            )
        return
    raise UnknownModelError(
        f"unknown model {reference!r}: known names are {sorted(BUILDERS)}, or give a path to a local "
        "Hugging Face-style model directory"
    )


class ModelStore:
    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = (cache_dir or DEFAULT_CACHE_DIR).expanduser()

    def path_for(self, name: str) -> Path:
        return self.cache_dir / name

    def is_prepared(self, name: str) -> bool:
        return (self.path_for(name) / _COMPLETE_MARKER).is_file()

    def resolve(self, reference: str) -> Path:
        """Return the checkpoint directory for `reference`, building it first if needed (idempotent)."""
        check_reference(reference)
        if reference not in BUILDERS:
            return Path(reference).expanduser().resolve()
        target = self.path_for(reference)
        if self.is_prepared(reference):
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / f".{reference}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_prepared(reference):  # someone else built it while we waited
                return target
            scratch = self.cache_dir / f".building-{reference}"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            BUILDERS[reference](scratch)
            (scratch / _COMPLETE_MARKER).write_text("ok\n")
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
        return target
