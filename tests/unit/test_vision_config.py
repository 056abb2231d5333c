"""Vision config: schema checks, the shared model namespace, backend choice, architecture list."""

from __future__ import annotations

import typing

import pytest

from configs.loader import ConfigError, load_config, parse_config
from configs.vision_schema import VisionArchitecture, VisionModelConfig
from engines.vision.resnet import ARCHITECTURES
from engines.vision.select import resolve_backend

VISION = {"name": "v", "model": "resnet-tiny"}


def _issues(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return [str(issue) for issue in caught.value.issues]


def test_vision_only_config_is_allowed_but_an_empty_one_is_not() -> None:
    config = parse_config({"vision_models": [VISION]})
    assert config.models == [] and config.vision_models[0].engine.backend == "auto"
    assert any("no models" in issue for issue in _issues({}))


def test_names_are_unique_across_llm_and_vision_models() -> None:
    issues = _issues({"models": [{"name": "v", "model": "tiny-random-llama"}], "vision_models": [VISION]})
    assert any("duplicate model names ['v']" in issue for issue in issues)


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"engine": {"backend": "tensorrt"}}, "needs num_gpus > 0"),
    ({"engine": {"precision": "fp16"}}, "fp16' needs num_gpus > 0"),
    ({"resize_size": 100}, "resize_size (100) must be >= image_size (224)"),
    ({"top_k_default": 20, "num_classes": 10}, "top_k_default (20) exceeds num_classes (10)"),
    ({"max_ongoing_requests": 4}, "max_ongoing_requests (4) must be >= batching.max_batch_size (8)"),
    ({"model": "vgg16"}, "vision_models.0.model"),
    ({"batching": {"max_batch_size": 0}}, "vision_models.0.batching.max_batch_size"),
    ({"engine": {"backend": "openvino"}}, "vision_models.0.engine.backend"),
])
def test_impossible_vision_configs_fail_naming_the_field(overrides: dict[str, object], needle: str) -> None:
    issues = _issues({"vision_models": [{**VISION, **overrides}]})
    assert any(needle in issue for issue in issues), issues


def test_gpu_tensorrt_fp16_config_validates() -> None:
    model = VisionModelConfig.model_validate({**VISION, "num_gpus": 0.5, "engine": {"backend": "tensorrt",
                                                                                    "precision": "fp16"}})
    assert model.engine.precision == "fp16"


def test_shipped_vision_profiles_validate() -> None:
    assert load_config("test-vision").vision_models[0].model == "resnet-tiny"
    assert load_config("local-vision").vision_models[0].model == "resnet50"


def test_schema_architectures_are_the_defined_networks() -> None:
    assert set(typing.get_args(VisionArchitecture)) == set(ARCHITECTURES)


@pytest.mark.parametrize(("requested", "gpu", "trt", "ort_cuda", "expected"), [
    ("auto", True, True, False, "tensorrt"),
    ("auto", True, True, True, "tensorrt"),
    ("auto", True, False, True, "onnxruntime"),  # onnxruntime-gpu: its CUDA provider
    ("auto", True, False, False, "torch"),  # a CPU-only ONNX Runtime would leave the GPU idle
    ("auto", False, True, False, "onnxruntime"),
    ("auto", False, False, False, "onnxruntime"),
    ("torch", True, True, False, "torch"),
    ("onnxruntime", True, True, False, "onnxruntime"),
    ("onnxruntime", True, False, False, "onnxruntime"),  # explicit: honoured, even on the CPU provider
    ("tensorrt", True, True, False, "tensorrt"),
])
def test_backend_resolution(requested: str, gpu: bool, trt: bool, ort_cuda: bool, expected: str) -> None:
    assert resolve_backend(requested, gpu, trt, ort_cuda) == expected


def test_explicit_tensorrt_without_gpu_or_package_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="a CUDA GPU and the tensorrt package"):
        resolve_backend("tensorrt", False, False)
    with pytest.raises(ValueError, match="needs the tensorrt package"):
        resolve_backend("tensorrt", True, False)
