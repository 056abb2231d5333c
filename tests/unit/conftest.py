"""Unit-test isolation: `cluster.cli.main` sets RAY_AUTH_MODE for the Ray it talks to (ray_control.py);
a unit test calling it must not leave token mode on for a Ray that a later test in this process starts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _keep_ray_auth_mode() -> Iterator[None]:
    before = os.environ.get("RAY_AUTH_MODE")
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before
