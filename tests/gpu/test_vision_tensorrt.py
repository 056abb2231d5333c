"""TensorRT vision engines on a real GPU (skipped without CUDA and `tensorrt`): FP32 and FP16 engines
from the ONNX exports agree with PyTorch eager, the engine cache serves a second start, and every batch
size of the profile runs.

Tolerances, against PyTorch eager FP32 on the same GPU, as a share of the largest |logit|: FP32 1e-2
(TensorRT may pick TF32 kernels for FP32 convolutions; measured CPU ORT-vs-torch is 4e-7 for comparison),
FP16 5e-2; top-1 identical on the fixed image set for both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
trt = pytest.importorskip("tensorrt")

TOLERANCE = {"fp32": 1e-2, "fp16": 5e-2}


def _prepared(precision: str, cache: Path):
    from configs.vision_schema import VisionModelConfig
    from engines.vision.store import load_artifacts, prepare_vision_model

    config = VisionModelConfig(name="r50", model="resnet50", num_gpus=1,
                               engine={"backend": "tensorrt", "precision": precision})
    return config, load_artifacts(prepare_vision_model(config, cache))


def _fixed_batch() -> np.ndarray:
    from engines.vision.preprocess import PreprocessSpec, preprocess
    from tests.vision_images import fixed_images

    return np.stack([preprocess(data, PreprocessSpec(), 1 << 24) for data in fixed_images().values()])


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_agrees_with_pytorch(precision: str, tmp_path: Path) -> None:
    from engines.vision.store import INPUT_NAME
    from engines.vision.tensorrt_backend import TensorRTVisionEngine
    from engines.vision.torch_backend import TorchVisionEngine

    _, artifacts = _prepared(precision, tmp_path)
    batch = _fixed_batch()
    engine = TensorRTVisionEngine(artifacts.onnx_path(precision), INPUT_NAME, 16, 224, precision,
                                  tmp_path / "trt", workspace_gb=4)
    reference = TorchVisionEngine(artifacts, 16, device="cuda").infer(batch)
    candidate = engine.infer(batch)
    scale = float(np.abs(reference).max())
    max_diff = float(np.abs(candidate - reference).max())
    print(f"TensorRT {precision}: max abs diff {max_diff:.3g} on logits up to {scale:.3g}")
    assert max_diff <= TOLERANCE[precision] * scale
    assert (candidate.argmax(1) == reference.argmax(1)).all()
    for size in (1, 3, 16):  # anywhere in the profile 1..max
        assert engine.infer(batch[:1].repeat(size, axis=0)).shape == (size, 1000)
    with pytest.raises(ValueError, match="outside the engine's profile"):
        engine.infer(np.zeros((17, 3, 224, 224), np.float32))


def test_second_start_loads_the_cached_engine(tmp_path: Path) -> None:
    from engines.vision.store import INPUT_NAME
    from engines.vision.tensorrt_backend import TensorRTVisionEngine

    _, artifacts = _prepared("fp16", tmp_path)
    args = (artifacts.onnx_path("fp16"), INPUT_NAME, 8, 224, "fp16", tmp_path / "trt", 4)
    first = TensorRTVisionEngine(*args)
    built_at = os.stat(first.engine_path).st_mtime_ns
    started = time.monotonic()
    second = TensorRTVisionEngine(*args)
    assert second.engine_path == first.engine_path
    assert os.stat(second.engine_path).st_mtime_ns == built_at  # loaded, not rebuilt
    assert second.load_s < first.load_s and time.monotonic() - started < first.load_s
    other = TensorRTVisionEngine(artifacts.onnx_path("fp16"), INPUT_NAME, 4, 224, "fp16", tmp_path / "trt", 4)
    assert other.engine_path != first.engine_path  # another profile, another engine
    assert len(list((tmp_path / "trt").glob("*.engine"))) == 2


def test_auto_backend_picks_tensorrt_on_a_gpu(tmp_path: Path) -> None:
    from engines.vision.select import make_vision_engine

    config, artifacts = _prepared("fp16", tmp_path)
    config = config.model_copy(update={"engine": config.engine.model_copy(update={
        "backend": "auto", "tensorrt_cache_dir": str(tmp_path / "trt")})})
    assert make_vision_engine(config, artifacts).backend == "tensorrt"
