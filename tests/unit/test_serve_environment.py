"""The Ray Serve environment `warmserve up` and the test cluster derive from the config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cluster.serve_environment import serve_environment
from configs.schema import HttpConfig, RayConfig


def test_default_is_haproxy_data_plane_with_throughput_mode() -> None:
    env = serve_environment(RayConfig(), HttpConfig())
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in env  # HAProxy mode turns direct ingress on itself


def test_classic_proxy_keeps_direct_ingress_off() -> None:
    env = serve_environment(RayConfig(serve_throughput_optimized=True), HttpConfig(data_plane="proxy"))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"


def test_throughput_mode_can_be_switched_off() -> None:
    env = serve_environment(RayConfig(serve_throughput_optimized=False, serve_control_loop_interval_s=0.1),
                            HttpConfig())
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"
    assert env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.1"


@pytest.mark.parametrize("raw", [{"data_plane": "nginx"}])
def test_unknown_data_plane_is_rejected_with_its_field(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="data_plane"):
        HttpConfig.model_validate(raw)


def test_control_loop_interval_is_bounded() -> None:
    with pytest.raises(ValidationError, match="serve_control_loop_interval_s"):
        RayConfig(serve_control_loop_interval_s=0)


def test_worker_niceness_reaches_the_raylet_only_when_set() -> None:
    assert "RAY_worker_niceness" not in serve_environment(RayConfig(), HttpConfig())
    assert serve_environment(RayConfig(worker_niceness=0), HttpConfig())["RAY_worker_niceness"] == "0"
