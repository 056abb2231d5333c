"""The TensorRT engine cache key and store (pure Python; the build itself is tested in tests/gpu)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engines.vision.trt_cache import EngineCache, EngineCacheKey, batch_profile


def _key(**changes: object) -> EngineCacheKey:
    key = EngineCacheKey("ab" * 32, "10.13.0", "9.0", "fp16", batch_profile("input", 32, 224))
    return dataclasses.replace(key, **changes)


def test_profile_spans_batch_one_to_max() -> None:
    profile = batch_profile("input", 16, 224)
    assert profile.shape(profile.min_batch) == (1, 3, 224, 224)
    assert profile.shape(profile.max_batch) == (16, 3, 224, 224) and profile.opt_batch == 16
    with pytest.raises(ValueError):
        batch_profile("input", 0, 224)


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "cd" * 32},
    {"tensorrt_version": "11.0.0"},
    {"compute_capability": "8.0"},
    {"precision": "fp32"},
    {"profile": batch_profile("input", 8, 224)},
    {"profile": batch_profile("input", 32, 256)},
])
def test_every_key_component_changes_the_engine_file(change: dict[str, object]) -> None:
    assert _key().digest() != _key(**change).digest()
    assert _key().file_name() != _key(**change).file_name()


def test_file_name_is_stable_and_readable() -> None:
    name = _key().file_name()
    assert name == _key().file_name()
    assert name.startswith("fp16-sm90-b32-trt10.13.0-") and name.endswith(".engine")


def test_store_then_load_round_trips(tmp_path) -> None:
    cache = EngineCache(tmp_path / "engines")
    assert cache.load(_key()) is None
    with cache.lock(_key()):
        path = cache.store(_key(), b"serialized-engine")
    assert path.read_bytes() == b"serialized-engine"
    assert cache.load(_key()) == b"serialized-engine"
    assert cache.load(_key(compute_capability="8.6")) is None  # another GPU never gets this engine
    assert not list((tmp_path / "engines").glob("*.tmp"))


def test_a_file_whose_sidecar_disagrees_is_not_served(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    cache.store(_key(), b"engine")
    sidecar = cache.path_for(_key()).with_suffix(".json")
    recorded = json.loads(sidecar.read_text())
    recorded["tensorrt_version"] = "9.9.9"
    sidecar.write_text(json.dumps(recorded))
    assert cache.load(_key()) is None
    sidecar.write_text("{not json")
    assert cache.load(_key()) is None
