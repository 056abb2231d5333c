"""The vision routes' request checks (model input, outputs, top_k, the JSON upload body), without Serve."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from configs.vision_schema import VisionModelConfig
from deployments.errors import APIError
from deployments.vision_kserve import InferInput, InferRequest, KServeError, RequestedOutput
from deployments.vision_routes import _classify_json, _model_input, _requested_outputs, _top_k_value

MODEL = VisionModelConfig(name="r", model="resnet-tiny", num_classes=10, top_k_default=3)


def _request(name: str = "input", datatype: str = "FP32", shape: tuple[int, ...] = (2, 3, 224, 224),
             fill: float = 0.0) -> InferRequest:
    array = np.full(shape, fill, np.float32 if datatype == "FP32" else np.float16)
    return InferRequest("1", [InferInput(name, datatype, list(shape), array)])


def test_a_good_input_passes_as_float32() -> None:
    images = _model_input(_request(), MODEL)
    assert images.shape == (2, 3, 224, 224) and images.dtype == np.float32


@pytest.mark.parametrize(("request_", "needle"), [
    (_request(name="pixels"), "exactly one input 'input'"),
    (_request(datatype="FP16"), "datatype FP16, but model 'r' expects FP32"),
    (_request(shape=(2, 224, 224, 3)), "shape [2, 224, 224, 3], but model 'r' expects [-1, 3, 224, 224]"),
    (_request(shape=(0, 3, 224, 224)), "batch of at least 1"),
    (_request(shape=(3, 224, 224)), "expects [-1, 3, 224, 224]"),
    (_request(fill=float("nan")), "NaN"),
])
def test_bad_inputs_name_the_problem(request_: InferRequest, needle: str) -> None:
    with pytest.raises(KServeError) as caught:
        _model_input(request_, MODEL)
    assert needle in str(caught.value)


def test_too_many_images_in_one_request() -> None:
    request = InferRequest(None, [InferInput("input", "FP32", [1025, 3, 224, 224], np.zeros((1, 1), np.float32))])
    with pytest.raises(KServeError, match="at most 1024"):
        _model_input(request, MODEL)


def test_outputs_default_to_logits_and_unknown_ones_are_refused() -> None:
    assert [o.name for o in _requested_outputs(_request(), MODEL)] == ["logits"]
    bad = _request()
    bad.outputs = [RequestedOutput("probabilities")]
    with pytest.raises(KServeError, match="unknown output 'probabilities'"):
        _requested_outputs(bad, MODEL)
    too_many = _request()
    too_many.outputs = [RequestedOutput("logits", class_count=11)]
    with pytest.raises(KServeError, match="classification 11 exceeds the model's 10 classes"):
        _requested_outputs(too_many, MODEL)


@pytest.mark.parametrize(("value", "expected"), [(None, 3), ("5", 5), (10, 10)])
def test_top_k_values(value: object, expected: int) -> None:
    assert _top_k_value(value, MODEL) == expected


@pytest.mark.parametrize("value", ["0", "11", "x", True, 2.5, -1])
def test_bad_top_k_is_a_400_on_top_k(value: object) -> None:
    with pytest.raises(APIError) as caught:
        _top_k_value(value, MODEL)
    assert caught.value.status_code == 400 and caught.value.param == "top_k"


def test_json_upload_body() -> None:
    body = json.dumps({"model": "r", "images": [base64.b64encode(b"abc").decode()], "top_k": 2}).encode()
    assert _classify_json(body) == ("r", [b"abc"], 2)


@pytest.mark.parametrize(("body", "param"), [
    (b"[1, 2]", None),
    (json.dumps({"images": []}).encode(), "images"),
    (json.dumps({"images": ["***"]}).encode(), "images[0]"),
    (json.dumps({"images": ["YWJj"], "extra": 1}).encode(), "extra"),
    (json.dumps({"images": ["YWJj"], "model": 3}).encode(), "model"),
])
def test_bad_json_upload_bodies_are_400s(body: bytes, param: str | None) -> None:
    with pytest.raises(APIError) as caught:
        _classify_json(body)
    assert caught.value.status_code == 400 and caught.value.param == param
