"""Versions and traffic splitting: the split's arithmetic, the resolver's answers, the config's rules."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from configs.model_versions import split_version
from configs.schema import ClusterConfig
from deployments.errors import APIError
from deployments.model_resolver import ModelResolver
from router.traffic_split import TrafficSplit, session_fraction, splits_of


def test_split_version() -> None:
    assert split_version("smollm2@v2") == ("smollm2", "v2")
    assert split_version("smollm2") == ("smollm2", None)


def test_weighted_draws_follow_the_weights() -> None:
    split = TrafficSplit("m", (("m@v1", 90.0), ("m@v2", 10.0)))
    rng = random.Random(7)
    draws = [split.choose(None, rng) for _ in range(20_000)]
    share = draws.count("m@v2") / len(draws)
    assert abs(share - 0.10) < 0.01  # 20k draws: 5 standard deviations is 0.0106
    assert split.shares() == {"m@v1": 0.9, "m@v2": 0.1}


def test_sessions_are_sticky_and_spread_by_weight() -> None:
    split = TrafficSplit("m", (("m@v1", 50.0), ("m@v2", 50.0)))
    rng = random.Random(0)
    for session in ("alice", "bob", "carol"):
        assert len({split.choose(session, rng) for _ in range(50)}) == 1
    chosen = [split.choose(f"user-{i}", rng) for i in range(4000)]
    assert abs(chosen.count("m@v2") / 4000 - 0.5) < 0.04


def test_shifting_weight_moves_only_the_shifted_slice() -> None:
    before = TrafficSplit("m", (("m@v1", 90.0), ("m@v2", 10.0)))
    after = TrafficSplit("m", (("m@v1", 50.0), ("m@v2", 50.0)))
    rng = random.Random(0)
    sessions = [f"s{i}" for i in range(2000)]
    for session in sessions:
        old, new = before.choose(session, rng), after.choose(session, rng)
        # A session already on the canary stays there; one that moved had its point in the shifted slice.
        if old == "m@v2":
            assert new == "m@v2"
        elif new == "m@v2":
            assert 0.5 <= session_fraction("m", session) < 0.9


def test_zero_weight_version_gets_no_draws() -> None:
    split = TrafficSplit("m", (("m@v1", 1.0), ("m@v2", 0.0)))
    rng = random.Random(1)
    assert {split.choose(None, rng) for _ in range(2000)} == {"m@v1"}
    assert {split.choose(f"u{i}", rng) for i in range(2000)} == {"m@v1"}


def test_split_rejects_no_traffic_and_negative_weights() -> None:
    with pytest.raises(ValueError, match="every version has traffic weight 0"):
        TrafficSplit("m", (("m@v1", 0.0),))
    with pytest.raises(ValueError, match=">= 0"):
        TrafficSplit("m", (("m@v1", -1.0), ("m@v2", 2.0)))


def test_splits_of_groups_versions_only() -> None:
    splits = splits_of([("a", 1.0), ("m@v1", 3.0), ("m@v2", 1.0)])
    assert list(splits) == ["m"] and splits["m"].versions == ["m@v1", "m@v2"]


def _resolver() -> ModelResolver[str]:
    resolver = ModelResolver({"a": "A", "m@v1": "V1", "m@v2": "V2"}, random.Random(3))
    resolver.set_weights({"m@v1": 90, "m@v2": 10})
    return resolver


def test_resolver_plain_pinned_and_split() -> None:
    resolver = _resolver()
    assert resolver.resolve("a") == ("a", "A")
    assert resolver.resolve("m@v2") == ("m@v2", "V2")
    assert resolver.resolve("m", pinned_version="v2") == ("m@v2", "V2")
    assert resolver.resolve("m@v2", pinned_version="v2") == ("m@v2", "V2")
    assert resolver.resolve("m")[0] in {"m@v1", "m@v2"}
    assert len({resolver.resolve("m", session="conv-1")[0] for _ in range(30)}) == 1
    assert resolver.names() == ["a", "m", "m@v1", "m@v2"]


def test_resolver_errors_name_the_known_models() -> None:
    resolver = _resolver()
    for name, pin in (("nope", None), ("m@v9", None), ("m", "v9"), ("a", "v1")):
        with pytest.raises(APIError) as caught:
            resolver.resolve(name, pinned_version=pin)
        assert caught.value.status_code == 404 and caught.value.param == "model"
        assert "a, m, m@v1, m@v2" in caught.value.message
    with pytest.raises(APIError) as caught:
        resolver.resolve("m@v1", pinned_version="v2")
    assert caught.value.status_code == 400 and "already names version 'v1'" in caught.value.message


def test_resolver_rejects_weights_for_unknown_models_and_keeps_the_old_ones() -> None:
    resolver = _resolver()
    with pytest.raises(ValueError, match=r"does not serve: \['m@v3'\]"):
        resolver.set_weights({"m@v3": 1})
    assert resolver.splits()["m"].shares() == {"m@v1": 0.9, "m@v2": 0.1}
    resolver.set_weights({"m@v1": 0, "m@v2": 1})  # a completed rollout
    assert {resolver.resolve("m")[0] for _ in range(50)} == {"m@v2"}


def _config(*models: dict[str, object]) -> ClusterConfig:
    return ClusterConfig.model_validate({"models": [{"model": "tiny-random-llama", **m} for m in models]})


def test_config_accepts_versions_with_weights() -> None:
    config = _config({"name": "a"}, {"name": "m@v1", "traffic_weight": 90}, {"name": "m@v2", "traffic_weight": 10})
    assert [m.traffic_weight for m in config.models] == [1.0, 90.0, 10.0]


@pytest.mark.parametrize(("models", "message"), [
    ([{"name": "m"}, {"name": "m@v1"}], "name both a model and the versions of one"),
    ([{"name": "m@v1", "traffic_weight": 0}, {"name": "m@v2", "traffic_weight": 0}], "has traffic_weight 0"),
    ([{"name": "a", "traffic_weight": 5}], "traffic_weight applies only to versions"),
    ([{"name": "m@v1@x"}], "String should match pattern"),
    ([{"name": "m@"}], "String should match pattern"),
    ([{"name": "m@v1", "traffic_weight": -1}], "greater than or equal to 0"),
])
def test_config_rejects_bad_versions(models: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(*models)


def test_status_traffic_lines() -> None:
    from cluster.traffic_status import traffic_lines_of

    body = {"data": [{"id": "a"}, {"id": "chat", "versions": {"chat@v1": 0.9, "chat@v2": 0.1}}]}
    assert traffic_lines_of(body) == ["traffic chat: chat@v1 90%, chat@v2 10%"]
    assert traffic_lines_of({"data": [{"id": "a"}]}) == []


def _with_vision(llms: list[dict[str, object]], visions: list[dict[str, object]]) -> ClusterConfig:
    return ClusterConfig.model_validate({
        "models": [{"model": "tiny-random-llama", **m} for m in llms],
        "vision_models": [{"model": "resnet-tiny", "num_classes": 10, **v} for v in visions]})


def test_vision_versions_follow_the_same_rules() -> None:
    config = _with_vision([], [{"name": "r@a", "traffic_weight": 3}, {"name": "r@b"}])
    assert [v.traffic_weight for v in config.vision_models] == [3.0, 1.0]
    for llms, visions, message in (
        ([{"name": "r@a"}], [{"name": "r@b"}], "both LLMs and vision models"),
        ([{"name": "r"}], [{"name": "r@b"}], "name both a model and the versions of one"),
        ([], [{"name": "r", "traffic_weight": 2}], "traffic_weight applies only to versions"),
        ([], [{"name": "a/b"}], "String should match pattern"),
    ):
        with pytest.raises(ValidationError, match=message):
            _with_vision(llms, visions)


def test_vision_deployments_do_not_carry_the_weight() -> None:
    from deployments.app_builder import traffic_user_config
    from deployments.vision_app import vision_as_deployed

    config = _with_vision([{"name": "m"}], [{"name": "r@a", "traffic_weight": 3}, {"name": "r@b"}])
    assert traffic_user_config(config) == {"traffic_weights": {"r@a": 3.0, "r@b": 1.0}}
    assert vision_as_deployed(config.vision_models[0]).traffic_weight == 1.0
