from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config_check import load_checked_config
from configs.loader import PROFILES_DIR, ConfigError, load_config, parse_config

MINIMAL = {"models": [{"name": "m", "model": "tiny-random-llama"}]}


def _model(**overrides: object) -> dict:
    return {"models": [{"name": "m", "model": "tiny-random-llama", **overrides}]}


def _issues(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize("profile", sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
def test_every_shipped_profile_validates(profile: str) -> None:
    assert load_checked_config(profile).models


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.http.host == "127.0.0.1" and config.ray.dashboard_host == "127.0.0.1"
    assert config.models[0].engine.enable_prefix_caching


def test_unknown_field_is_named() -> None:
    assert _issues({**MINIMAL, "colour": 1}) == ["colour: unknown field"]
    assert _issues(_model(engine={"tensor_parallel": 2})) == ["models.0.engine.tensor_parallel: unknown field"]


@pytest.mark.parametrize(("engine", "field"), [
    ({"max_model_len": 0}, "max_model_len"),
    ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ({"kv_cache_space_gb": -1}, "kv_cache_space_gb"),
    ({"dtype": "int3"}, "dtype"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"stream_interval": 0}, "stream_interval"),
])
def test_out_of_range_numbers_name_their_field(engine: dict, field: str) -> None:
    issues = _issues(_model(engine=engine))
    assert len(issues) == 1 and issues[0].startswith(f"models.0.engine.{field}:")


def test_all_errors_are_reported_together() -> None:
    issues = _issues({"http": {"port": 1}, "models": [{"name": "m", "model": "x", "num_replicas": 0}]})
    assert {i.split(":")[0] for i in issues} == {"http.port", "models.0.num_replicas"}


def test_tp_times_pp_must_fit_the_gpus() -> None:
    issues = _issues(_model(engine={"tensor_parallel_size": 4, "pipeline_parallel_size": 2},
                            placement={"device": "gpu", "gpus_per_node": 2, "nodes": 2}))
    assert "tensor_parallel_size=4 exceeds placement.gpus_per_node=2" in issues[0]
    issues = _issues(_model(engine={"tensor_parallel_size": 2, "pipeline_parallel_size": 3},
                            placement={"device": "gpu", "gpus_per_node": 2, "nodes": 2}))
    assert "2 x 3 = 6 GPUs" in issues[0] and "= 4" in issues[0]


def test_gpu_placement_needs_gpus() -> None:
    assert "gpus_per_node >= 1" in _issues(_model(placement={"device": "gpu"}))[0]


def test_pipeline_parallel_rejected_on_cpu() -> None:
    assert "not supported by vLLM on CPU" in _issues(_model(engine={"pipeline_parallel_size": 2}))[0]


def test_cpu_block_size_multiple_of_32() -> None:
    assert "multiple of 32" in _issues(_model(engine={"block_size": 16}))[0]
    parse_config(_model(engine={"kind": "fake", "block_size": 16}))  # the fake engine has no such limit


def test_quantization_needs_a_real_engine_and_fp8_a_gpu() -> None:
    assert "needs placement.device='gpu'" in _issues(_model(engine={"quantization": "fp8"}))[0]
    assert "needs engine.kind='vllm'" in _issues(_model(engine={"kind": "fake", "quantization": "awq"}))[0]
    assert "engine.quantization" in _issues(_model(engine={"quantization": "int3"}))[0]
    assert "computes in 16 bits" in _issues(_model(engine={"quantization": "int8_per_channel_weight_only"}))[0]
    parse_config(_model(engine={"quantization": "int8_per_channel_weight_only", "dtype": "bfloat16"}))
    gpu = parse_config(_model(engine={"quantization": "fp8"}, placement={"device": "gpu", "gpus_per_node": 1}))
    assert gpu.models[0].engine.quantization == "fp8"


def test_fake_engine_has_no_parallelism() -> None:
    assert "kind='fake'" in _issues(_model(engine={"kind": "fake", "tensor_parallel_size": 2}))[0]


def test_duplicate_model_names() -> None:
    data = {"models": [{"name": "a", "model": "x"}, {"name": "a", "model": "y"}]}
    assert "duplicate model names ['a']" in _issues(data)[0]


def test_top_level_must_be_mapping() -> None:
    assert "mapping" in _issues([1, 2])[0]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="not a shipped profile"):
        load_config(str(tmp_path / "missing.yaml"))


def test_unknown_model_lists_known_names(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  - name: m\n    model: llama-9000\n")
    with pytest.raises(ConfigError) as caught:
        load_checked_config(str(path))
    message = str(caught.value)
    assert "models.0.model" in message and "smollm2-135m-instruct" in message and "tiny-random-llama" in message


def test_path_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"models:\n  - name: m\n    model: {tmp_path}\n")
    with pytest.raises(ConfigError, match="not a model directory"):
        load_checked_config(str(path))


def test_router_defaults_and_errors_name_the_field() -> None:
    assert parse_config(MINIMAL).models[0].router.policy == "kv_aware"
    policy_issue = _issues(_model(router={"policy": "fastest"}))
    assert len(policy_issue) == 1 and policy_issue[0].startswith("models.0.router.policy:")
    assert "kv_aware" in policy_issue[0]
    assert _issues(_model(router={"stats_period_s": 0}))[0].startswith("models.0.router.stats_period_s:")
    assert _issues(_model(router={"uncached_block_weight": -1}))[0].startswith(
        "models.0.router.uncached_block_weight:")


def test_a_public_dashboard_needs_an_explicit_opt_in() -> None:
    issues = _issues({**MINIMAL, "ray": {"dashboard_host": "0.0.0.0"}})
    assert len(issues) == 1 and "remote code execution" in issues[0] and "allow_public_bind" in issues[0]
    assert parse_config({**MINIMAL, "ray": {"dashboard_host": "0.0.0.0", "allow_public_bind": True}})
    assert parse_config({**MINIMAL, "ray": {"dashboard_host": "localhost"}})


def test_api_keys_and_body_bound_are_checked_at_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keyed = {**MINIMAL, "security": {"api_keys": [{"name": "a", "key": "short"}]}}
    assert "at least 16 characters" in " ".join(_issues(keyed))
    vision = {"vision_models": [{"name": "v", "model": "resnet18", "max_image_bytes": 1_000_000}],
              "security": {"max_body_bytes": 1_000_000}}
    assert "cannot hold a base64 image" in " ".join(_issues(vision))
    # A key in an unset variable fails where the config is checked, naming the key, not at the first request.
    monkeypatch.delenv("WS_NO_SUCH_KEY", raising=False)
    path = tmp_path / "keyed.yaml"
    path.write_text("models: [{name: m, model: tiny-random-llama}]\n"
                    "security: {api_keys: [{name: team, key_env: WS_NO_SUCH_KEY}]}\n")
    with pytest.raises(ConfigError) as caught:
        load_checked_config(str(path))
    assert "security.api_keys.0" in str(caught.value) and "WS_NO_SUCH_KEY is unset" in str(caught.value)
