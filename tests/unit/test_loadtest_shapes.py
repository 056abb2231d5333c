"""Load shapes (loadtests.shapes): users over time and the three bounds (users, time, requests)."""

from __future__ import annotations

import pytest

from loadtests.shapes import MAX_USERS, ShapeError, ShapeSpec


def test_constant_holds_then_ends_at_the_duration() -> None:
    shape = ShapeSpec(kind="constant", users=5, duration_s=30)
    assert shape.tick(0, 0) == (5, 5.0)
    assert shape.tick(29.9, 0) == (5, 5.0)
    assert shape.tick(30, 0) is None


def test_step_adds_users_every_step_up_to_the_peak() -> None:
    shape = ShapeSpec(kind="step", users=10, step_users=4, step_s=10, duration_s=100, spawn_rate=2)
    assert [shape.users_at(t) for t in (0, 9.9, 10, 20, 30, 99)] == [4, 4, 8, 10, 10, 10]
    assert shape.tick(5, 0) == (4, 2.0)


def test_spike_rises_for_its_window_only() -> None:
    shape = ShapeSpec(kind="spike", users=20, base_users=2, spike_at_s=10, spike_s=5, duration_s=60)
    assert [shape.users_at(t) for t in (0, 9.9, 10, 14.9, 15, 59)] == [2, 2, 20, 20, 2, 2]
    assert ShapeSpec(kind="spike", users=20).users_at(0) == 5  # default base: a quarter of the peak


def test_soak_ramps_then_holds() -> None:
    shape = ShapeSpec(kind="soak", users=8, ramp_s=40, duration_s=3600)
    assert [shape.users_at(t) for t in (0, 10, 20, 39, 40, 3000)] == [1, 2, 4, 8, 8, 8]
    assert ShapeSpec(kind="soak", users=8, ramp_s=0).users_at(0) == 8


@pytest.mark.parametrize("kind", ["constant", "step", "spike", "soak"])
def test_every_shape_is_bounded_by_users_time_and_requests(kind: str) -> None:
    shape = ShapeSpec(kind=kind, users=6, duration_s=50, max_requests=100, step_users=1, step_s=1, spike_at_s=0,
                      ramp_s=5)
    for t in range(50):
        tick = shape.tick(float(t), 0)
        assert tick is not None and 1 <= tick[0] <= 6
    assert shape.tick(50.0, 0) is None
    assert shape.tick(1.0, 99) is not None
    assert shape.tick(1.0, 100) is None


@pytest.mark.parametrize(("values", "field"), [
    ({"kind": "wave"}, "shape"),
    ({"users": 0}, "users"),
    ({"users": MAX_USERS + 1}, "users"),
    ({"users": True}, "users"),
    ({"duration_s": 0}, "duration_s"),
    ({"duration_s": 1e9}, "duration_s"),
    ({"max_requests": 0}, "max_requests"),
    ({"step_s": 0}, "step_s"),
    ({"base_users": 9, "users": 4}, "base_users"),
    ({"spawn_rate": -1}, "spawn_rate"),
    ({"duration_s": float("nan")}, "duration_s"),
])
def test_bad_parameters_name_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ShapeError, match=field):
        ShapeSpec.from_mapping(values)


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ShapeError, match="usres"):
        ShapeSpec.from_mapping({"usres": 3})
