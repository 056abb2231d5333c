"""The vision model store (deterministic weights, local weights files, ONNX export with a dynamic batch
axis) and ONNX Runtime against PyTorch eager on the tiny network. ResNet-18/50 agreement on the fixed image
set is in tests/integration/test_vision_numerics.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs.vision_schema import VisionModelConfig
from engines.vision.onnxruntime_backend import OnnxRuntimeVisionEngine
from engines.vision.store import artifact_dir_name, load_artifacts, prepare_vision_model
from engines.vision.torch_backend import TorchVisionEngine

TINY = VisionModelConfig(name="t", model="resnet-tiny")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_vision_model(TINY, tmp_path_factory.mktemp("vision-cache"))


def test_prepared_folder_has_weights_onnx_labels(tiny_dir: Path) -> None:
    artifacts = load_artifacts(tiny_dir)
    assert artifacts.arch == "resnet-tiny" and artifacts.num_classes == 1000
    assert artifacts.labels[:2] == ["class_0", "class_1"] and len(artifacts.labels) == 1000
    assert artifacts.onnx_path().is_file() and artifacts.weights_path.is_file()
    assert tiny_dir.name == "vision-resnet-tiny-c1000-seed0"


def test_prepare_is_idempotent_and_deterministic(tiny_dir: Path, tmp_path: Path) -> None:
    before = tiny_dir.joinpath("weights.safetensors").stat().st_mtime_ns
    assert prepare_vision_model(TINY, tiny_dir.parent) == tiny_dir
    assert tiny_dir.joinpath("weights.safetensors").stat().st_mtime_ns == before  # not rebuilt
    again = prepare_vision_model(TINY, tmp_path)  # a fresh cache: same seed, same weights
    assert again.joinpath("weights.safetensors").read_bytes() == tiny_dir.joinpath("weights.safetensors").read_bytes()


def test_onnx_has_a_dynamic_batch_axis(tiny_dir: Path) -> None:
    import onnx

    graph = onnx.load(str(load_artifacts(tiny_dir).onnx_path())).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].name == "input" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, 224, 224]
    engine = OnnxRuntimeVisionEngine(str(load_artifacts(tiny_dir).onnx_path()), max_batch_size=16, num_threads=1)
    for batch in (1, 5, 16):
        assert engine.infer(np.zeros((batch, 3, 224, 224), np.float32)).shape == (batch, 1000)


def test_onnxruntime_matches_pytorch_eager(tiny_dir: Path) -> None:
    artifacts = load_artifacts(tiny_dir)
    images = np.random.default_rng(0).standard_normal((6, 3, 224, 224)).astype(np.float32)
    ort_logits = OnnxRuntimeVisionEngine(str(artifacts.onnx_path()), 8, num_threads=1).infer(images)
    torch_logits = TorchVisionEngine(artifacts, 8).infer(images)
    assert np.abs(ort_logits - torch_logits).max() < 1e-4
    assert (ort_logits.argmax(1) == torch_logits.argmax(1)).all()


def test_channels_last_layout_gives_the_same_logits(tiny_dir: Path) -> None:
    """The layout CUDA replicas run in (channels-last) is a storage order only: same logits as NCHW."""
    artifacts = load_artifacts(tiny_dir)
    images = np.random.default_rng(3).standard_normal((4, 3, artifacts.image_size, artifacts.image_size))
    images = images.astype(np.float32)
    nchw = TorchVisionEngine(artifacts, 4, channels_last=False).infer(images)
    np.testing.assert_allclose(TorchVisionEngine(artifacts, 4, channels_last=True).infer(images), nchw,
                               rtol=1e-4, atol=1e-4)


def test_local_weights_file_and_labels_are_used(tmp_path: Path) -> None:
    import torch

    from engines.vision.resnet import build_resnet

    reference = build_resnet("resnet-tiny", num_classes=3, seed=42)
    weights = tmp_path / "mine" / "tiny.pt"
    weights.parent.mkdir()
    torch.save(reference.state_dict(), weights)
    (weights.parent / "labels.txt").write_text("cat\ndog\nbird\n")
    config = VisionModelConfig(name="mine", model="resnet-tiny", num_classes=3, top_k_default=3,
                               weights=str(weights))
    assert artifact_dir_name(config).startswith("vision-resnet-tiny-c3-w")
    artifacts = load_artifacts(prepare_vision_model(config, tmp_path / "cache"))
    assert artifacts.labels == ["cat", "dog", "bird"]
    images = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(TorchVisionEngine(artifacts, 2).infer(images), expected, atol=1e-5)


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path: Path) -> None:
    import torch

    from engines.vision.resnet import build_resnet

    weights = tmp_path / "r18.pt"
    torch.save(build_resnet("resnet-tiny", num_classes=10).state_dict(), weights)
    config = VisionModelConfig(name="bad", model="resnet-tiny", weights=str(weights))  # 1000 classes
    with pytest.raises(Exception, match="fc"):
        prepare_vision_model(config, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_vision_model(VisionModelConfig(name="x", model="resnet-tiny", weights=str(tmp_path / "no.pt")),
                             tmp_path / "cache")
