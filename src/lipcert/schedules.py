"""Hyper-parameter schedules as pure functions of the iteration counter.

Used for the CLL slack p (supplement eq. (17): p(t) = p_T + (p_0 - p_T) (1 - t/T)^gamma, Table B1:
1e-3 -> 1e-12, gamma = 50), the K-scale beta on Tiny-ImageNet (Table B4: 0.01 -> 1.0, gamma = 10),
the GloRo eps ramp (0 -> eps, power 5, reference_implementation.md sec. 1.5), the TRADES weight
(Table B4: linear 0.5 -> 20, reached at epoch 400 and kept) and the learning rate (Table B4: x0.1 at
epochs 400, 600 and 780). Because every value depends only on the counter, a checkpoint needs only
the counter to resume a schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping, Sequence

__all__ = ["polynomial", "linear", "piecewise_linear_lr", "step_decay_lr", "exponential_decay_lr", "ScheduleConfig", "ScheduleSpec", "SCHEDULE_KINDS",
           "TRIANGULAR_KNOTS"]

SCHEDULE_KINDS = ("constant", "linear", "polynomial")


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _progress(t: float, T: float) -> float:
    T = _finite("T (schedule length)", T)
    if T <= 0.0:
        raise ValueError(f"T (schedule length) must be > 0, got {T!r}")
    t = _finite("t (iteration counter)", t)
    return min(max(t, 0.0), T) / T


def polynomial(t: float, T: float, start: float, end: float, power: float) -> float:
    """Polynomial decay end + (start - end) * (1 - t/T)^power, t clamped to [0, T] (supplement eq. (17)).

    start at t <= 0, end at t >= T. power = gamma of eq. (17) (50 for p on two-moons, 10 for the
    Tiny-ImageNet K scale, 5 for the GloRo eps ramp with start 0); power must be > 0.
    """
    start = _finite("start", start)
    end = _finite("end", end)
    power = _finite("power", power)
    if power <= 0.0:
        raise ValueError(f"power must be > 0, got {power!r}")
    return end + (start - end) * (1.0 - _progress(t, T)) ** power


def linear(t: float, T: float, start: float, end: float) -> float:
    """Linear ramp start + (end - start) * t/T, t clamped to [0, T], constant at ``end`` afterwards.

    Table B4 (GloRo + TRADES on Tiny-ImageNet): the TRADES weight goes linearly 0.5 -> 20 and
    reaches 20 at epoch 400 (T = the step where ``end`` is reached).
    """
    start = _finite("start", start)
    end = _finite("end", end)
    return start + (end - start) * _progress(t, T)


def step_decay_lr(epoch: float, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """Step decay base_lr * gamma^(number of milestones m with m <= epoch) (Table B4).

    E.g. milestones (400, 600, 780), gamma 0.1: 1e-3 -> 1e-4 from epoch 400, 1e-5 from 600,
    1e-6 from 780 (the decay applies from the milestone epoch on, as torch's MultiStepLR).
    Milestones must be strictly increasing and >= 0; gamma must lie in (0, 1].
    """
    epoch = _finite("epoch", epoch)
    base_lr = _finite("base_lr", base_lr)
    if base_lr <= 0.0:
        raise ValueError(f"base_lr must be > 0, got {base_lr!r}")
    gamma = _finite("gamma", gamma)
    if not (0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
    marks = [_finite("milestone", m) for m in milestones]
    if any(m < 0 for m in marks) or any(b <= a for a, b in zip(marks, marks[1:])):
        raise ValueError(f"milestones must be >= 0 and strictly increasing, got {list(milestones)!r}")
    passed = sum(1 for m in marks if m <= epoch)
    return base_lr * gamma ** passed


TRIANGULAR_KNOTS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.4, 1.0), (0.8, 0.05), (1.0, 0.0))
"""The triangular learning-rate schedule of CPL and SLL (used by CLL table B4 blocks 5-8): linear warm-up from
0 to the base rate over the first 40 % of training, down to base/20 at 80 %, then to 0 at the end
(reference_implementation.md 1.11, CPL fork)."""


def piecewise_linear_lr(t: float, T: float, base_lr: float,
                        knots: Sequence[tuple[float, float]] = TRIANGULAR_KNOTS) -> float:
    """base_lr times the piecewise-linear interpolation of ``knots`` (fraction of training, factor) at t / T.

    Evaluated per iteration t of T.  Knots must start at fraction 0, end at 1 and increase strictly.
    """
    t, T, base_lr = _finite("t", t), _finite("T", T), _finite("base_lr", base_lr)
    if base_lr <= 0.0:
        raise ValueError(f"base_lr must be > 0, got {base_lr!r}")
    xs = [_finite("knot fraction", k[0]) for k in knots]
    ys = [_finite("knot factor", k[1]) for k in knots]
    if len(xs) < 2 or xs[0] != 0.0 or xs[-1] != 1.0 or any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"knots must start at 0, end at 1 and increase strictly, got {list(knots)!r}")
    if any(y < 0 for y in ys):
        raise ValueError(f"knot factors must be >= 0, got {ys!r}")
    u = _progress(t, T)
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if u <= x1:
            return base_lr * (y0 + (y1 - y0) * (u - x0) / (x1 - x0))
    return base_lr * ys[-1]


_SPEC_KEYS = ("kind", "start", "end", "power", "until")


@dataclass(frozen=True)
class ScheduleSpec:
    """A scheduled hyper-parameter: ``kind`` in ("constant", "linear", "polynomial").

    * constant: ``start`` throughout (``end`` must equal ``start``);
    * linear: ``linear(t, horizon, start, end)`` (``power`` must stay 1.0);
    * polynomial: ``polynomial(t, horizon, start, end, power)`` (supplement eq. (17)).

    The horizon is ``until`` when given (the step where ``end`` is reached, e.g. TRADES weight at
    epoch 400 of 800), else the total number of iterations T passed to ``value``.
    """

    kind: str
    start: float
    end: float
    power: float = 1.0
    until: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; expected one of {SCHEDULE_KINDS}")
        object.__setattr__(self, "start", _finite("start", self.start))
        object.__setattr__(self, "end", _finite("end", self.end))
        object.__setattr__(self, "power", _finite("power", self.power))
        if self.power <= 0.0:
            raise ValueError(f"power must be > 0, got {self.power!r}")
        if self.kind == "constant" and self.end != self.start:
            raise ValueError(f"a constant schedule needs end == start, got start={self.start!r}, end={self.end!r}")
        if self.kind != "polynomial" and self.power != 1.0:
            raise ValueError(f"power applies only to kind 'polynomial', got power={self.power!r} "
                             f"for kind {self.kind!r}")
        if self.until is not None:
            if isinstance(self.until, bool) or not isinstance(self.until, int) or self.until <= 0:
                raise ValueError(f"until must be a positive integer step or None, got {self.until!r}")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "ScheduleSpec":
        """Build from a config mapping with keys kind, start, end, power, until.

        Unknown keys raise ValueError naming them and the allowed keys; ``kind`` and ``start`` are
        required; ``end`` is required except for kind "constant", where it defaults to ``start``.
        """
        if not isinstance(spec, Mapping):
            raise ValueError(f"schedule spec must be a mapping, got {type(spec).__name__}")
        unknown = [key for key in spec if key not in _SPEC_KEYS]
        if unknown:
            raise ValueError(f"unknown schedule key(s) {unknown}; allowed keys are {list(_SPEC_KEYS)}")
        for key in ("kind", "start"):
            if key not in spec:
                raise ValueError(f"schedule spec is missing required key {key!r}; allowed keys are {list(_SPEC_KEYS)}")
        values = dict(spec)
        if "end" not in values:
            if values["kind"] != "constant":
                raise ValueError(f"schedule spec of kind {values['kind']!r} is missing required key 'end'")
            values["end"] = values["start"]
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The inverse of ``from_dict`` (plain types, for configs and logs)."""
        return {"kind": self.kind, "start": self.start, "end": self.end, "power": self.power, "until": self.until}

    def value(self, t: float, T: float) -> float:
        """Value at iteration t of T (T = total iterations; replaced by ``until`` when set)."""
        horizon = T if self.until is None else self.until
        if self.kind == "constant":
            _progress(t, horizon)  # validates t and the horizon
            return self.start
        if self.kind == "linear":
            return linear(t, horizon, self.start, self.end)
        return polynomial(t, horizon, self.start, self.end, self.power)


@dataclass(frozen=True)
class ScheduleConfig:
    """The params-file form of a :class:`ScheduleSpec` (validated by it): ``end`` may be left out of a constant.

    A loss config field typed ``ScheduleConfig`` is a scheduled value (CLL p, eps, beta; GloRo eps, TRADES
    weight); a plain number there is shorthand for a constant schedule (:meth:`from_value`).
    """

    kind: Literal["constant", "linear", "polynomial"]
    start: float
    end: float | None = None
    power: float = 1.0
    until: int | None = None

    def __post_init__(self) -> None:
        self.spec()  # validates

    def spec(self) -> ScheduleSpec:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return ScheduleSpec.from_dict(data)

    def value(self, t: float, T: float) -> float:
        """The scheduled value at iteration t of T (:meth:`ScheduleSpec.value`)."""
        return self.spec().value(t, T)

    def endpoints(self) -> tuple[float, float]:
        """(start, end) with a constant's end filled in: the two values a range check needs to see."""
        spec = self.spec()
        return spec.start, spec.end

    @staticmethod
    def from_value(value: Any) -> Any:
        """A plain number as the mapping of a constant schedule; anything else unchanged (validated later)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"kind": "constant", "start": float(value)}
        return value


def exponential_decay_lr(epoch: int, epochs: int, base_lr: float, end_lr: float, hold_epochs: int) -> float:
    """Seed 004 eq. (27): ``base_lr`` while epoch t = ``epoch`` + 1 <= m = ``hold_epochs``, then
    base_lr (end_lr / base_lr)^((t - m) / (T - m)), reaching ``end_lr`` at t = T = ``epochs``."""
    t = epoch + 1
    if t <= hold_epochs or epochs <= hold_epochs:
        return base_lr
    return base_lr * (end_lr / base_lr) ** ((t - hold_epochs) / (epochs - hold_epochs))
