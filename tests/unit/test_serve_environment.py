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


def test_haproxy_admin_ports_are_bound_to_the_configured_host(tmp_path) -> None:
    """The wrapper Serve starts HAProxy through rewrites the two admin binds of Serve's config (as Serve's
    template writes them) and leaves the client-facing one; then runs the real binary with the same args."""
    import subprocess

    from cluster.serve_environment import ADMIN_BIND_SCRIPT, haproxy_admin_bind_environment

    env = haproxy_admin_bind_environment("127.0.0.1")
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(ADMIN_BIND_SCRIPT)
    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend prometheus\n    bind :9101\n    mode http\nfrontend http_frontend\n"
                      "    bind 0.0.0.0:8000\nlisten stats\n  bind *:8404\n  stats enable\n")
    real = tmp_path / "haproxy"
    real.write_text('#!/bin/sh\necho "args: $*"\n')
    real.chmod(0o755)
    result = subprocess.run([str(ADMIN_BIND_SCRIPT), "-db", "-f", str(config), "-sf", "123"], check=True,
                            capture_output=True, text=True,
                            env={**env, "WARMSERVE_HAPROXY_BINARY": str(real), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == f"args: -db -f {config} -sf 123"
    assert config.read_text() == ("frontend prometheus\n    bind 127.0.0.1:9101\n    mode http\n"
                                  "frontend http_frontend\n    bind 0.0.0.0:8000\nlisten stats\n"
                                  "  bind 127.0.0.1:8404\n  stats enable\n")


def test_the_real_haproxy_is_found_under_an_environment_already_pointing_at_the_wrapper(monkeypatch) -> None:
    """A process started under this environment (the tests' `warmserve up`) must not make the wrapper
    run itself in a loop."""
    from cluster.serve_environment import ADMIN_BIND_SCRIPT, haproxy_admin_bind_environment

    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(ADMIN_BIND_SCRIPT))
    binary = haproxy_admin_bind_environment("127.0.0.1")["WARMSERVE_HAPROXY_BINARY"]
    assert binary != str(ADMIN_BIND_SCRIPT) and binary.endswith("haproxy")
