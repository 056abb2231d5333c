"""Stable deployment versions: equal exactly when a deployment's code and init arguments are."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import serve

from configs.schema import LLMModelConfig
from deployments.deployment_version import deployment_version, versioned_bind


def _model(**changes: object) -> LLMModelConfig:
    return LLMModelConfig.model_validate({"name": "m", "model": "tiny-random-llama", **changes})


def test_same_arguments_same_version_and_any_change_a_new_one() -> None:
    base = deployment_version([_model(), "/models/m", {"b": 1, "a": [1, 2]}])
    assert deployment_version([b"\x01digest"]) != deployment_version([b"\x02digest"])
    assert base == deployment_version([_model(), Path("/models/m"), {"a": [1, 2], "b": 1}])
    assert base != deployment_version([_model(engine={"max_num_seqs": 8}), "/models/m", {"b": 1, "a": [1, 2]}])
    assert base != deployment_version([_model(), "/models/other", {"b": 1, "a": [1, 2]}])


def test_a_bound_deployment_counts_by_name_and_unknown_types_are_refused() -> None:
    @serve.deployment(name="child")
    class Child:
        pass

    first = deployment_version([Child.bind(), 1])
    assert first == deployment_version([Child.bind(), 1])
    assert first != deployment_version([Child.options(name="other-child").bind(), 1])
    with pytest.raises(TypeError, match="object"):
        deployment_version([object()])


def test_versioned_bind_sets_the_version() -> None:
    @serve.deployment
    class Echo:
        def __init__(self, value: int) -> None:
            self.value = value

    assert versioned_bind(Echo, 3)._bound_deployment.version == deployment_version([3])
