"""The load test's vision user, without Locust or a server: request bodies, the image size read from KServe
v2 metadata, choosing the vision model, and what Locust must count for vision requests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadtests.kserve_body import image_size_of, infer_body
from loadtests.records import RequestRecord
from loadtests.run_loadtest import _pick_vision_model
from loadtests.slo import SLO
from loadtests.summary import build_summary, expected_locust_counts


def test_infer_body_is_a_binary_tensor_request_of_the_declared_size() -> None:
    body, headers = infer_body(8, seed=3)
    header_length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:header_length])
    assert header["inputs"][0]["shape"] == [1, 3, 8, 8] and header["inputs"][0]["datatype"] == "FP32"
    pixels = np.frombuffer(body[header_length:], dtype=np.float32)
    assert pixels.size == 3 * 8 * 8 == header["inputs"][0]["parameters"]["binary_data_size"] // 4
    assert infer_body(8, seed=3) == (body, headers) and infer_body(8, seed=4)[0] != body  # seeded
    with pytest.raises(ValueError, match="image size"):
        infer_body(0)


def test_image_size_comes_from_the_models_metadata() -> None:
    assert image_size_of({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 64, 64]}]}) == 64
    for bad in ({}, {"inputs": [{"shape": [-1, 3, 64]}]}, {"inputs": [{"shape": [-1, 3, 32, 64]}]}):
        with pytest.raises(ValueError, match="no \\[N, 3, H, H\\] image input"):
            image_size_of(bad)


def test_the_vision_model_is_the_named_one_or_the_only_one() -> None:
    assert _pick_vision_model(None, ["resnet50"]) == "resnet50"
    assert _pick_vision_model("b", ["a", "b"]) == "b"
    with pytest.raises(ValueError, match="pass --vision-model .*served: a, b"):
        _pick_vision_model(None, ["a", "b"])
    with pytest.raises(ValueError, match="'c' is not served .*served: none"):
        _pick_vision_model("c", [])


def test_vision_requests_count_their_response_time_as_ttft_and_e2e_only() -> None:
    ok = RequestRecord(start_unix_s=1.0, name="vision", kind="vision", ok=True, status=200, e2e_ms=40.0,
                       ttft_ms=40.0)
    failed = RequestRecord(start_unix_s=1.5, name="vision", kind="vision", ok=False, status=503, e2e_ms=5.0,
                           error="HTTP 503: busy")
    assert expected_locust_counts([ok, failed]) == {("POST", "vision"): (2, 1), ("TTFT", "vision"): (1, 0),
                                                   ("E2E", "vision"): (1, 0)}
    summary = build_summary([ok, failed], [], SLO(ttft_ms=100.0), {})
    assert summary["goodput"]["requests_meeting_slo"] == 1  # 40 ms <= 100 ms; the failure misses
    assert summary["throughput"]["output_tokens"] == 0
