"""Data sets used by lipcert; this package knows nothing about models."""

from lipcert.data.two_moons import (
    EVAL_SAMPLES,
    NOISE_RADIUS,
    TRAIN_SAMPLES,
    TwoMoonsSplits,
    make_two_moons,
    make_two_moons_splits,
    true_margin,
)

__all__ = [
    "EVAL_SAMPLES",
    "NOISE_RADIUS",
    "TRAIN_SAMPLES",
    "TwoMoonsSplits",
    "make_two_moons",
    "make_two_moons_splits",
    "true_margin",
]
