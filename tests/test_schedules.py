"""Schedules (supplement eq. (17), Table B1, Table B4): values vs hand computation, clamping, validation."""

import dataclasses

import pytest

from lipcert.schedules import ScheduleSpec, linear, polynomial, step_decay_lr


def test_polynomial_p_annealing_two_moons():
    # Table B1 / eq. (17): p from 1e-3 to 1e-12 with gamma = 50.
    T = 1000
    assert polynomial(0, T, 1e-3, 1e-12, 50) == pytest.approx(1e-3, rel=1e-15)
    assert polynomial(T / 2, T, 1e-3, 1e-12, 50) == pytest.approx(1e-12 + (1e-3 - 1e-12) * 0.5 ** 50, rel=1e-12)
    assert polynomial(T, T, 1e-3, 1e-12, 50) == 1e-12


def test_polynomial_gloro_eps_ramp_and_k_scale():
    eps, T = 0.15, 801 * 390
    # GloRo: eps_t = eps * (1 - (1 - t/T)^5)
    assert polynomial(0, T, 0.0, eps, 5) == 0.0
    assert polynomial(T / 2, T, 0.0, eps, 5) == pytest.approx(eps * (1 - 0.5 ** 5), rel=1e-12)
    assert polynomial(T / 10, T, 0.0, eps, 5) == pytest.approx(eps * (1 - 0.9 ** 5), rel=1e-12)  # ~0.41 eps
    assert polynomial(T, T, 0.0, eps, 5) == pytest.approx(eps, rel=1e-15)
    # Table B4 K schedule: beta 0.01 -> 1.0, gamma = 10: ~0.65 at 10 % of training
    assert polynomial(T / 10, T, 0.01, 1.0, 10) == pytest.approx(1.0 - 0.99 * 0.9 ** 10, rel=1e-12)
    assert 0.64 < polynomial(T / 10, T, 0.01, 1.0, 10) < 0.66


def test_polynomial_clamps_t():
    assert polynomial(-5, 100, 2.0, 1.0, 3) == 2.0
    assert polynomial(250, 100, 2.0, 1.0, 3) == 1.0


def test_linear_trades_weight():
    # Table B4: 0.5 -> 20, reached at epoch 400 and kept.
    assert linear(0, 400, 0.5, 20.0) == 0.5
    assert linear(200, 400, 0.5, 20.0) == pytest.approx(10.25, rel=1e-15)
    assert linear(400, 400, 0.5, 20.0) == 20.0
    assert linear(800, 400, 0.5, 20.0) == 20.0
    assert linear(-3, 400, 0.5, 20.0) == 0.5


def test_step_decay_lr_table_b4():
    milestones = (400, 600, 780)
    expected = {0: 1e-3, 399: 1e-3, 400: 1e-4, 599: 1e-4, 600: 1e-5, 779: 1e-5, 780: 1e-6, 800: 1e-6}
    for epoch, lr in expected.items():
        assert step_decay_lr(epoch, 1e-3, milestones) == pytest.approx(lr, rel=1e-12)
    assert step_decay_lr(500, 2.5e-4, milestones, gamma=0.5) == pytest.approx(1.25e-4, rel=1e-12)
    assert step_decay_lr(10, 1e-3, ()) == 1e-3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(epoch=1, base_lr=1e-3, milestones=(600, 400)), "strictly increasing"),
        (dict(epoch=1, base_lr=1e-3, milestones=(400, 400)), "strictly increasing"),
        (dict(epoch=1, base_lr=1e-3, milestones=(-1, 400)), "milestones"),
        (dict(epoch=1, base_lr=0.0, milestones=(400,)), "base_lr"),
        (dict(epoch=1, base_lr=1e-3, milestones=(400,), gamma=1.5), "gamma"),
        (dict(epoch=float("nan"), base_lr=1e-3, milestones=(400,)), "epoch"),
    ],
)
def test_step_decay_lr_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        step_decay_lr(**kwargs)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: polynomial(1, 0, 1.0, 0.0, 2), "T"),
        (lambda: polynomial(1, 10, 1.0, 0.0, 0.0), "power"),
        (lambda: polynomial(float("inf"), 10, 1.0, 0.0, 1), "t"),
        (lambda: linear(1, -10, 1.0, 0.0), "T"),
        (lambda: linear(1, 10, "a", 0.0), "start"),
    ],
)
def test_function_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_schedule_spec_values():
    p_spec = ScheduleSpec.from_dict({"kind": "polynomial", "start": 1e-3, "end": 1e-12, "power": 50})
    assert p_spec.value(500, 1000) == pytest.approx(polynomial(500, 1000, 1e-3, 1e-12, 50), rel=1e-15)
    trades = ScheduleSpec.from_dict({"kind": "linear", "start": 0.5, "end": 20.0, "until": 400})
    assert trades.value(200, 800) == pytest.approx(10.25, rel=1e-15)
    assert trades.value(400, 800) == 20.0 and trades.value(700, 800) == 20.0
    ramp = ScheduleSpec("polynomial", 0.0, 0.15, power=5.0)
    assert ramp.value(0, 100) == 0.0 and ramp.value(100, 100) == pytest.approx(0.15, rel=1e-15)
    constant = ScheduleSpec.from_dict({"kind": "constant", "start": 0.3})
    assert constant.end == 0.3 and constant.value(0, 10) == 0.3 and constant.value(10, 10) == 0.3


def test_schedule_spec_round_trip_and_frozen():
    spec = ScheduleSpec("linear", 0.5, 20.0, until=400)
    assert ScheduleSpec.from_dict(spec.as_dict()) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.start = 1.0  # type: ignore[misc]


def test_schedule_spec_unknown_key_names_it_and_lists_allowed():
    with pytest.raises(ValueError) as info:
        ScheduleSpec.from_dict({"kind": "linear", "start": 0.0, "end": 1.0, "gamma": 2})
    message = str(info.value)
    assert "'gamma'" in message
    for key in ("kind", "start", "end", "power", "until"):
        assert key in message


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"start": 0.0, "end": 1.0}, "missing required key 'kind'"),
        ({"kind": "linear", "end": 1.0}, "missing required key 'start'"),
        ({"kind": "linear", "start": 0.0}, "missing required key 'end'"),
        ({"kind": "cosine", "start": 0.0, "end": 1.0}, "unknown schedule kind 'cosine'"),
        ({"kind": "linear", "start": 0.0, "end": 1.0, "power": 2.0}, "power applies only"),
        ({"kind": "polynomial", "start": 0.0, "end": 1.0, "power": -1.0}, "power must be > 0"),
        ({"kind": "constant", "start": 0.0, "end": 1.0}, "end == start"),
        ({"kind": "linear", "start": 0.0, "end": 1.0, "until": 0}, "until"),
        ({"kind": "linear", "start": 0.0, "end": 1.0, "until": 2.5}, "until"),
        ({"kind": "linear", "start": float("nan"), "end": 1.0}, "start"),
    ],
)
def test_schedule_spec_validation(spec, match):
    with pytest.raises(ValueError, match=match):
        ScheduleSpec.from_dict(spec)


def test_schedule_spec_rejects_bad_horizon():
    with pytest.raises(ValueError, match="T"):
        ScheduleSpec("constant", 1.0, 1.0).value(0, 0)
    with pytest.raises(ValueError, match="mapping"):
        ScheduleSpec.from_dict([("kind", "linear")])  # type: ignore[arg-type]


def test_triangular_lr_hits_its_knots_and_interpolates_linearly():
    from lipcert.schedules import TRIANGULAR_KNOTS, piecewise_linear_lr

    T, lr = 1000, 2e-3
    # CPL/SLL triangle: 0 -> lr at 40 %, lr/20 at 80 %, 0 at the end
    for frac, factor in TRIANGULAR_KNOTS:
        assert piecewise_linear_lr(frac * T, T, lr) == pytest.approx(lr * factor)
    assert piecewise_linear_lr(200, T, lr) == pytest.approx(lr / 2)
    assert piecewise_linear_lr(600, T, lr) == pytest.approx(lr * (1 + 0.05) / 2)
    assert piecewise_linear_lr(5000, T, lr) == 0.0  # clamped past the end
    with pytest.raises(ValueError, match="knots must start at 0"):
        piecewise_linear_lr(1, 10, lr, knots=((0.1, 0.0), (1.0, 1.0)))
    with pytest.raises(ValueError, match="base_lr must be > 0"):
        piecewise_linear_lr(1, 10, 0.0)
