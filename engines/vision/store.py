"""The vision model store: network + weights -> a prepared folder in the model cache, once.

A folder holds the state dict (`weights.safetensors`), the FP32 ONNX export with a dynamic batch axis
(`model.onnx`), on request an FP16 export (`model.fp16.onnx`, for TensorRT's strongly typed FP16 build),
`labels.txt` and `meta.json`. Its name carries the architecture, the shape and either the seed (random
weights) or the weights file's sha256, so changing any of them prepares a new folder instead of reusing a
stale one. Builds run under a file lock in a scratch folder renamed into place, like the LLM store.
Nothing is downloaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from configs.vision_schema import VisionModelConfig
from engines.model_store.progress import StepProgress
from engines.vision.labels import generated_labels, read_labels

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_OPSET = 17
_COMPLETE_MARKER = ".warmserve-complete"
DEFAULT_VISION_CACHE_DIR = Path.home() / ".cache" / "warmserve" / "models"


@dataclass(slots=True, frozen=True)
class VisionArtifacts:
    """A prepared model folder, read back by replicas and backends (`load_artifacts`)."""

    directory: Path
    arch: str
    num_classes: int
    image_size: int
    labels: list[str]

    @property
    def weights_path(self) -> Path:
        return self.directory / "weights.safetensors"

    def onnx_path(self, precision: str = "fp32") -> Path:
        return self.directory / ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_dir_name(config: VisionModelConfig) -> str:
    if config.weights is not None and not Path(config.weights).expanduser().is_file():
        raise FileNotFoundError(f"vision model {config.name!r}: weights file {config.weights!r} does not exist")
    source = f"seed{config.seed}" if config.weights is None else "w" + file_sha256(Path(config.weights).expanduser())[:16]
    return f"vision-{config.model}-c{config.num_classes}-{source}"


def _load_state_dict(path: Path) -> dict[str, object]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    # weights_only: a checkpoint is data, never code to run.
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _export_onnx(model: object, target: Path, image_size: int, half: bool) -> None:
    import torch

    dtype = torch.float16 if half else torch.float32
    dummy = torch.zeros(2, 3, image_size, image_size, dtype=dtype)
    module = model.to(dtype) if half else model  # type: ignore[attr-defined]
    # dynamo=False: the TorchScript exporter needs no onnxscript and exports these networks in seconds.
    torch.onnx.export(module, (dummy,), str(target), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                      opset_version=ONNX_OPSET, dynamo=False)


def _build(config: VisionModelConfig, target: Path, precisions: set[str]) -> None:
    import torch
    from safetensors.torch import save_file

    from engines.vision.resnet import build_resnet

    progress = StepProgress(f"{config.model} ({config.name})", total_steps=3 + len(precisions - {"fp32"}))
    progress.step(f"initialising {config.model} (seed {config.seed})")
    model = build_resnet(config.model, config.num_classes, seed=config.seed)
    labels = generated_labels(config.num_classes)
    if config.weights is not None:
        weights = Path(config.weights).expanduser()
        progress.step(f"loading weights from {weights}")
        missing, unexpected = model.load_state_dict(_load_state_dict(weights), strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights} does not fit {config.model} with {config.num_classes} classes: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        if (weights.parent / "labels.txt").is_file():
            labels = read_labels(weights.parent / "labels.txt", config.num_classes)
    else:
        progress.step("random weights (no weights file given)")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target / "weights.safetensors"))
    (target / "labels.txt").write_text("\n".join(labels) + "\n")
    (target / "meta.json").write_text(json.dumps({
        "arch": config.model, "num_classes": config.num_classes, "image_size": config.image_size,
        "input": INPUT_NAME, "output": OUTPUT_NAME, "opset": ONNX_OPSET,
        "weights": config.weights, "seed": config.seed}, indent=2))
    progress.step("exporting ONNX (fp32, dynamic batch axis)")
    with torch.no_grad():
        _export_onnx(model, target / "model.onnx", config.image_size, half=False)
        for precision in sorted(precisions - {"fp32"}):
            progress.step(f"exporting ONNX ({precision})")
            # After the fp32 export, so converting the model in place to half costs nothing.
            _export_onnx(model, target / f"model.{precision}.onnx", config.image_size, half=True)
    progress.done()


@contextmanager
def _locked(cache_dir: Path, name: str) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare_vision_model(config: VisionModelConfig, cache_dir: Path | None = None) -> Path:
    """The prepared folder for `config`, built first if needed (idempotent, safe across processes).

    Called by the app builder before deploying, so replicas only read. ResNet-50 takes about 10 s here."""
    cache = (cache_dir or DEFAULT_VISION_CACHE_DIR).expanduser()
    name = artifact_dir_name(config)
    target = cache / name
    precisions = {"fp32", config.engine.precision}
    if _is_complete(target, precisions):
        return target
    with _locked(cache, name):
        if _is_complete(target, precisions):
            return target
        scratch = cache / f".building-{name}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        # A folder prepared earlier without this precision is rebuilt whole: a few seconds, one code path.
        _build(config, scratch, precisions | _existing_precisions(target))
        (scratch / _COMPLETE_MARKER).write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    return target


def _existing_precisions(target: Path) -> set[str]:
    return {"fp16"} if (target / "model.fp16.onnx").is_file() else set()


def _is_complete(target: Path, precisions: set[str]) -> bool:
    if not (target / _COMPLETE_MARKER).is_file():
        return False
    return all((target / ("model.onnx" if p == "fp32" else f"model.{p}.onnx")).is_file() for p in precisions)


def load_artifacts(directory: Path) -> VisionArtifacts:
    """Read a prepared folder (called in each replica and by the benchmark)."""
    meta = json.loads((directory / "meta.json").read_text())
    labels = read_labels(directory / "labels.txt", int(meta["num_classes"]))
    return VisionArtifacts(directory, str(meta["arch"]), int(meta["num_classes"]), int(meta["image_size"]), labels)
