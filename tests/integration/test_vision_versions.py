"""Versions of a vision model through real Serve and `tritonclient`: `resnet-tiny@a` (weight 3) and
`resnet-tiny@b` (weight 1, other weights) behind the bare name, pins by KServe version, the repository
index."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import SERVE_PORT, DeployedApp, deploy_config
from tests.vision_images import solid_png

pytestmark = pytest.mark.integration
APP, ROUTE, MODEL = "vision-versions", "/vision-versions", "resnet-tiny"


@pytest.fixture(scope="module")
def versions_app(serve_instance: None) -> Iterator[DeployedApp]:
    from ray import serve

    from cluster.config_check import load_checked_config
    from configs.schema import ClusterConfig

    raw = load_checked_config("test-vision").model_dump()
    base = raw["vision_models"][0]
    raw["vision_models"] = [{**base, "name": f"{MODEL}@a", "traffic_weight": 3.0},
                            {**base, "name": f"{MODEL}@b", "traffic_weight": 1.0, "seed": 1}]
    config = ClusterConfig.model_validate({**raw, "http": {"host": "127.0.0.1", "port": SERVE_PORT}})
    yield deploy_config(config, APP, ROUTE)
    serve.delete(APP)


def _triton(app: DeployedApp):  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=app.root_url.removeprefix("http://"))


def _infer(app: DeployedApp, images: np.ndarray, version: str = ""):  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    return _triton(app).infer(MODEL, [tensor], model_version=version)


def test_repository_index_and_metadata_list_the_versions(versions_app: DeployedApp) -> None:
    index = httpx.post(f"{versions_app.root_url}/v2/repository/index", timeout=30).json()
    assert index == [{"name": MODEL, "version": "a", "state": "READY"}, {"name": MODEL, "version": "b", "state": "READY"}]
    assert _triton(versions_app).get_model_metadata(MODEL)["versions"] == ["a", "b"]
    assert _triton(versions_app).get_model_metadata(MODEL, model_version="b")["versions"] == ["b"]
    cards = {c["id"]: c for c in httpx.get(f"{versions_app.base_url}/models", timeout=30).json()["data"]}
    assert {f"{MODEL}@a", f"{MODEL}@b"} <= set(cards) and cards[MODEL]["versions"] == {f"{MODEL}@a": 0.75,
                                                                                       f"{MODEL}@b": 0.25}


def test_pinned_versions_answer_with_their_own_weights(versions_app: DeployedApp) -> None:
    images = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    a, b = _infer(versions_app, images, "a"), _infer(versions_app, images, "b")
    assert a.get_response()["model_version"] == "a" and b.get_response()["model_version"] == "b"
    assert a.get_response()["model_name"] == MODEL
    assert not np.allclose(a.as_numpy("logits"), b.as_numpy("logits"))  # seed 1: other weights
    np.testing.assert_allclose(_infer(versions_app, images, "a").as_numpy("logits"), a.as_numpy("logits"), atol=1e-5)


def test_bare_name_splits_by_weight(versions_app: DeployedApp) -> None:
    png = solid_png((200, 30, 30), (64, 48))
    url = f"{versions_app.root_url}/v1/vision/classify?model={MODEL}&top_k=1"
    counts = Counter(httpx.post(url, content=png, timeout=60).headers["x-warmserve-version"] for _ in range(120))
    # Binomial(120, 0.25): mean 30, standard deviation 4.7; 4 of them either side.
    assert set(counts) == {"a", "b"} and 11 <= counts["b"] <= 49, counts
    pinned = httpx.post(url, content=png, headers={"x-warmserve-version": "b"}, timeout=60)
    assert pinned.headers["x-warmserve-version"] == "b"


def test_unknown_version_is_404_listing_the_versions(versions_app: DeployedApp) -> None:
    reply = httpx.post(f"{versions_app.root_url}/v2/models/{MODEL}/versions/zz/infer", json={"inputs": []}, timeout=30)
    assert reply.status_code == 404 and "available versions: a, b" in reply.json()["error"]
