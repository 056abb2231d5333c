"""The vision path through the real Serve app: unmodified `tritonclient[http]` (JSON and binary tensors,
classification extension), `/v1/vision/classify`, errors as 400s, and dynamic batching under a burst."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DeployedApp, deploy_profile
from tests.prometheus_scrape import scrape, value
from tests.vision_images import fixed_images, solid_png

MODEL = "resnet-tiny"


@pytest.fixture(scope="module")
def vision_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("test-vision", "vision", "/vision")
    serve.delete("vision")


def _triton(app: DeployedApp):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=app.root_url.removeprefix("http://"))


def _post(url: str, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _reference_logits(images: np.ndarray) -> np.ndarray:
    """PyTorch eager on the same prepared weights the replica serves."""
    from configs.loader import load_config
    from engines.vision.store import load_artifacts, prepare_vision_model
    from engines.vision.torch_backend import TorchVisionEngine

    config = load_config("test-vision").vision_models[0]
    engine = TorchVisionEngine(load_artifacts(prepare_vision_model(config)), max_batch_size=64)
    return engine.infer(images)


def test_tritonclient_metadata_and_readiness(vision_app: DeployedApp) -> None:
    client = _triton(vision_app)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    metadata = client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert client.get_model_config(MODEL)["max_batch_size"] == 8
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_matches_pytorch(vision_app: DeployedApp, binary: bool) -> None:
    import tritonclient.http as httpclient

    images = np.random.default_rng(3).standard_normal((3, 3, 224, 224)).astype(np.float32)
    tensor = httpclient.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=binary)]
    result = _triton(vision_app).infer(MODEL, [tensor], outputs=outputs, request_id="r1")
    logits = result.as_numpy("logits")
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    assert result.get_response()["id"] == "r1"
    np.testing.assert_allclose(logits, _reference_logits(images), atol=1e-4)


def test_tritonclient_classification_extension(vision_app: DeployedApp) -> None:
    import tritonclient.http as httpclient

    images = np.zeros((2, 3, 224, 224), np.float32)
    tensor = httpclient.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = _triton(vision_app).infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput("logits",
                                                                                                 class_count=3)])
    rows = result.as_numpy("logits")
    assert rows.shape == (2, 3)
    score, index, label = rows[0][0].decode().split(":")
    assert label == f"class_{index}" and 0 < float(score) <= 1
    expected = int(np.argmax(_reference_logits(images[:1])))
    assert int(index) == expected


def test_tritonclient_wrong_shape_and_dtype_are_400s(vision_app: DeployedApp) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = _triton(vision_app)
    wrong_shape = httpclient.InferInput("input", [1, 3, 100, 100], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 3, 100, 100), np.float32))
    with pytest.raises(InferenceServerException) as shape_error:
        client.infer(MODEL, [wrong_shape])
    assert shape_error.value.status() == "400"
    assert "shape [1, 3, 100, 100]" in shape_error.value.message() and "[-1, 3, 224, 224]" in shape_error.value.message()
    wrong_dtype = httpclient.InferInput("input", [1, 3, 224, 224], "FP16")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float16))
    with pytest.raises(InferenceServerException) as dtype_error:
        client.infer(MODEL, [wrong_dtype])
    assert dtype_error.value.status() == "400" and "FP16" in dtype_error.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", [wrong_dtype])
    assert unknown.value.status() == "404"


def test_classify_image_bytes(vision_app: DeployedApp) -> None:
    status, body = _post(f"{vision_app.root_url}/v1/vision/classify?top_k=3", solid_png((200, 30, 90)))
    assert status == 200, body
    (only,) = body["data"]
    assert len(only["top_k"]) == 3
    scores = [entry["score"] for entry in only["top_k"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    images = list(fixed_images().values())
    payload = json.dumps({"model": MODEL, "top_k": 1, "images": [base64.b64encode(b).decode() for b in images]})
    status, body = _post(f"{vision_app.root_url}/v1/vision/classify", payload.encode(), "application/json")
    assert status == 200, body
    assert [d["index"] for d in body["data"]] == list(range(len(images)))


def test_classify_bad_input_is_400_naming_the_problem(vision_app: DeployedApp) -> None:
    url = f"{vision_app.root_url}/v1/vision/classify"
    status, body = _post(url, b"definitely not an image")
    assert status == 400 and "not an image" in body["error"]["message"] and body["error"]["code"] == "invalid_image"
    status, body = _post(url, solid_png((1, 2, 3))[:60])  # truncated PNG
    assert status == 400 and body["error"]["code"] == "invalid_image"
    status, body = _post(url + "?top_k=0", solid_png((1, 2, 3)))
    assert status == 400 and body["error"]["param"] == "top_k"
    status, body = _post(url + "?model=nope", solid_png((1, 2, 3)))
    assert status == 404 and body["error"]["code"] == "model_not_found"
    good = base64.b64encode(solid_png((1, 2, 3))).decode()
    bad = base64.b64encode(b"GIF89a broken").decode()
    status, body = _post(url, json.dumps({"images": [good, bad]}).encode(), "application/json")
    assert status == 400 and body["error"]["message"].startswith("image 1:")


def test_models_list_has_both_kinds(vision_app: DeployedApp) -> None:
    with urllib.request.urlopen(f"{vision_app.base_url}/models", timeout=30) as response:
        ids = {m["id"]: m for m in json.loads(response.read())["data"]}
    assert ids[MODEL]["task"] == "image-classification" and "tiny-fake" in ids


def test_concurrent_burst_is_batched(vision_app: DeployedApp) -> None:
    from ray import serve

    from deployments.vision_app import vision_deployment_name

    handle = serve.get_deployment_handle(vision_deployment_name(MODEL), app_name="vision")
    # Serve's throughput-optimized mode runs a handle's router on its caller's event loop; this synchronous
    # test asks for Serve's own router loop instead (an init option; a fresh handle is not yet initialized).
    handle._init(_run_router_in_separate_loop=True)
    before = handle.stats.remote().result(timeout_s=30)
    scraped_before = scrape(vision_app)
    image = solid_png((10, 200, 40))
    url = f"{vision_app.root_url}/v1/vision/classify?top_k=1"
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: _post(url, image), range(32)))
    after = handle.stats.remote().result(timeout_s=30)
    assert all(status == 200 for status, _ in results)
    assert len({json.dumps(body["data"]) for _, body in results}) == 1  # same image, same answer
    new_sizes = {size: count - before["batch_sizes"].get(size, 0) for size, count in after["batch_sizes"].items()}
    assert after["images"] - before["images"] == 32
    assert max(size for size, count in new_sizes.items() if count > 0) > 1, new_sizes
    assert max(new_sizes) <= 8  # never beyond the configured max_batch_size
    # The ingress's /metrics saw the same batches: each reported once, with the replica's results.
    scraped = scrape(vision_app)
    labels = {"model": MODEL, "backend": after["backend"]}
    batches = value(scraped, "warmserve_vision_batch_size_count", **labels) - value(
        scraped_before, "warmserve_vision_batch_size_count", **labels)
    images = value(scraped, "warmserve_vision_batch_size_sum", **labels) - value(
        scraped_before, "warmserve_vision_batch_size_sum", **labels)
    assert (batches, images) == (after["batches"] - before["batches"], 32)
    assert value(scraped, "warmserve_requests_total", route="/v1/vision/classify", method="POST", status="200") >= 32


def test_locust_vision_users_against_the_served_model(vision_app: DeployedApp, tmp_path: Path) -> None:
    """`warmserve loadtest --scenario vision`: real Locust users sending binary-tensor infer requests."""
    from loadtests.run_loadtest import main as loadtest_main

    out = tmp_path / "report"
    code = loadtest_main(["--host", vision_app.root_url, "--scenario", "vision", "--users", "2", "--duration", "6",
                          "--out", str(out), "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary["errors"]
    assert summary["counts_match"], summary["count_mismatches"]
    assert summary["scenario"]["workload"]["vision_model"] == MODEL  # the only vision model served
    vision = summary["requests"]["by_kind"]["vision"]
    assert vision["total"] > 5 and vision["failed"] == 0 and set(summary["requests"]["by_kind"]) == {"vision"}
    latency = summary["latency_ms_by_kind"]["vision"]
    assert latency["e2e"]["count"] == vision["total"] and latency["e2e"]["p50"] > 0
    assert (out / "report.md").is_file() and (out / "latency_histograms.png").stat().st_size > 0
    # A vision model the server does not have: a usage error naming the ones it has, before any load.
    assert loadtest_main(["--host", vision_app.root_url, "--scenario", "vision", "--vision-model", "nope",
                          "--duration", "2", "--out", str(tmp_path / "bad"), "--quiet", "--no-plots"]) == 2
