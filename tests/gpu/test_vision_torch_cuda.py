"""The PyTorch vision backend on a real GPU (skipped without CUDA): FP32 and FP16 on the GPU agree with
ONNX Runtime on the CPU for the same exported ResNet-50, on the fixed image set.

This is the GPU path that runs where TensorRT is not installed (`engine.backend: torch`, or `auto` on
a GPU without TensorRT or onnxruntime-gpu), and the baseline of the TensorRT benchmark. Tolerances, as a
share of the largest |logit|: FP32 1e-2 (cuDNN may use TF32 for FP32 convolutions), FP16 5e-2; top-1
identical for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TOLERANCE = {"fp32": 1e-2, "fp16": 5e-2}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_agrees_with_onnxruntime_cpu(precision: str, tmp_path: Path) -> None:
    from configs.vision_schema import VisionModelConfig
    from engines.vision.onnxruntime_backend import OnnxRuntimeVisionEngine
    from engines.vision.preprocess import PreprocessSpec, preprocess
    from engines.vision.store import load_artifacts, prepare_vision_model
    from engines.vision.torch_backend import TorchVisionEngine
    from tests.vision_images import fixed_images

    config = VisionModelConfig(name="r50", model="resnet50", num_gpus=1,
                               engine={"backend": "torch", "precision": precision})
    artifacts = load_artifacts(prepare_vision_model(config, tmp_path))
    batch = np.stack([preprocess(data, PreprocessSpec(), 1 << 24) for data in fixed_images().values()])
    reference = OnnxRuntimeVisionEngine(str(artifacts.onnx_path("fp32")), len(batch)).infer(batch)
    candidate = TorchVisionEngine(artifacts, len(batch), device="cuda", precision=precision).infer(batch)
    scale = float(np.abs(reference).max())
    max_diff = float(np.abs(candidate - reference).max())
    print(f"torch {precision} on {torch.cuda.get_device_name(0)} vs ONNX Runtime CPU fp32: "
          f"max abs diff {max_diff:.3g} on logits up to {scale:.3g}")
    assert candidate.shape == reference.shape == (len(batch), artifacts.num_classes)
    assert max_diff <= TOLERANCE[precision] * scale
    assert (candidate.argmax(1) == reference.argmax(1)).all()


def test_auto_backend_uses_the_gpu_without_tensorrt(tmp_path: Path) -> None:
    """`auto` on a GPU replica never falls back to a CPU-only ONNX Runtime while the GPU sits idle."""
    from configs.vision_schema import VisionModelConfig
    from engines.vision.select import make_vision_engine, onnxruntime_has_cuda
    from engines.vision.store import load_artifacts, prepare_vision_model
    from engines.vision.tensorrt_backend import tensorrt_available

    config = VisionModelConfig(name="r18", model="resnet18", num_gpus=1, engine={"backend": "auto"})
    engine = make_vision_engine(config, load_artifacts(prepare_vision_model(config, tmp_path)))
    expected = "tensorrt" if tensorrt_available() else "onnxruntime" if onnxruntime_has_cuda() else "torch"
    assert engine.backend == expected
    if expected == "torch":
        assert engine.infer(np.zeros((2, 3, 224, 224), np.float32)).shape == (2, 1000)
