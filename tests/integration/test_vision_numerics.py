"""ONNX Runtime against PyTorch eager on ResNet-18 and ResNet-50 over the fixed image set: the same
preprocessed batch through both backends. Tolerance: max |logit difference| <= 1e-3 x the largest |logit|
(measured: about 4e-7 x for ResNet-18 and 3e-7 x for ResNet-50, float32 reassociation only), top-1 and
top-5 identical. Random weights make most images share a top-1 class, so the logit bound is the strong
check and the top-k comparison guards the ranking."""

from __future__ import annotations

import numpy as np
import pytest

from configs.vision_schema import VisionModelConfig
from engines.vision.onnxruntime_backend import OnnxRuntimeVisionEngine
from engines.vision.preprocess import PreprocessSpec, preprocess
from engines.vision.store import load_artifacts, prepare_vision_model
from engines.vision.torch_backend import TorchVisionEngine
from tests.vision_images import fixed_images

RELATIVE_TOLERANCE = 1e-3


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_onnxruntime_agrees_with_pytorch_on_fixed_images(arch: str) -> None:
    artifacts = load_artifacts(prepare_vision_model(VisionModelConfig(name=arch, model=arch)))
    batch = np.stack([preprocess(data, PreprocessSpec(), 1 << 24) for data in fixed_images().values()])
    reference = TorchVisionEngine(artifacts, len(batch)).infer(batch)
    candidate = OnnxRuntimeVisionEngine(str(artifacts.onnx_path()), len(batch)).infer(batch)
    scale = float(np.abs(reference).max())
    max_diff = float(np.abs(candidate - reference).max())
    print(f"{arch}: max abs diff {max_diff:.3g} on logits up to {scale:.3g} ({max_diff / scale:.2g} relative)")
    assert max_diff <= RELATIVE_TOLERANCE * scale
    assert (candidate.argmax(1) == reference.argmax(1)).all()
    top5 = lambda logits: np.argsort(-logits, axis=1, kind="stable")[:, :5]  # noqa: E731
    assert (top5(candidate) == top5(reference)).all()
