"""Two-moons data with uniform-disc noise (paper 000, section 4.1 and supplement B, "Two-moons setup").

The clean moons come from scikit-learn's ``make_moons(noise=0)``: an upper half circle of radius 1
centred at (0, 0) (label 0) and a lower half circle of radius 1 centred at (1, 0.5) (label 1). The two
clean arcs are at distance exactly 0.5 from each other (the end point (1, 0) of the upper arc lies 0.5
below the centre (1, 0.5) of the lower circle, and symmetrically for (0, 0.5)), so the sampled clean
points are at least 0.5 apart. The paper replaces sklearn's Gaussian noise by noise drawn uniformly
inside a disc of radius 0.1 around every point; each class then stays inside a 0.1-tube around its arc
and the true margin between the classes is 0.5 - 2 * 0.1 = 0.3 = 2 * eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

TRAIN_SAMPLES = 2000
"""Training-set size of the paper's two-moons experiments (supplement B, "Two-moons setup")."""

EVAL_SAMPLES = 20000
"""Evaluation-set size used by the authors' code (``Moons2D(nsamples=20000)`` for validation)."""

NOISE_RADIUS = 0.1
"""Radius of the uniform noise disc around each clean point (paper section 4.1)."""

CLEAN_CLASS_DISTANCE = 0.5
"""Distance between the two clean sklearn moon arcs; the true margin is this minus twice the noise radius."""


def true_margin(noise_radius: float = NOISE_RADIUS) -> float:
    """Return the distance between the two classes' supports, 0.5 - 2 * noise_radius.

    With the paper's radius 0.1 this is the "true-margin of exactly 2 eps = 0.3" of section 4.1.
    """
    _check_noise_radius(noise_radius)
    return CLEAN_CLASS_DISTANCE - 2.0 * noise_radius


def _check_noise_radius(noise_radius: float) -> None:
    if isinstance(noise_radius, bool) or not isinstance(noise_radius, (int, float)):
        raise ValueError(f"noise_radius must be a float, got {noise_radius!r}")
    if not math.isfinite(noise_radius) or noise_radius < 0 or noise_radius >= CLEAN_CLASS_DISTANCE / 2:
        raise ValueError(
            f"noise_radius must be finite and in [0, {CLEAN_CLASS_DISTANCE / 2}) so that the classes stay "
            f"separated, got {noise_radius!r}"
        )


def make_two_moons(
    n_samples: int,
    seed: int,
    noise_radius: float = NOISE_RADIUS,
    *,
    return_clean: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate the paper's two-moons data set (section 4.1; supplement B, "Two-moons setup").

    Points come from ``sklearn.datasets.make_moons(n_samples, noise=0, shuffle=True)``; each point is
    then moved by a vector drawn uniformly (in area) from the disc of radius ``noise_radius``:
    radius ``noise_radius * sqrt(U)`` and angle ``2 pi V`` with U, V ~ Uniform[0, 1).
    All randomness comes from generators derived from ``seed`` (never the global numpy/torch RNG), so the
    same seed gives the same data and different seeds give different data. Use different seeds for the
    training set (paper: 2000 samples) and the evaluation set (authors: 20000 samples), or
    :func:`make_two_moons_splits`.

    Returns ``(x, y)`` with ``x`` a float32 tensor of shape (n, 2) and ``y`` an int64 tensor of shape (n,)
    holding labels 0 (upper moon) and 1 (lower moon); with ``return_clean=True`` also the float32 clean
    points ``x_clean`` (same order) that the noise was added to.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an int >= 2, got {n_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_noise_radius(noise_radius)

    shuffle_seq, noise_seq = np.random.SeedSequence(int(seed)).spawn(2)
    shuffle_state = np.random.RandomState(np.random.MT19937(shuffle_seq))
    from sklearn.datasets import make_moons  # imported here: the image paths (and the GPU check) need no sklearn

    x_clean, y = make_moons(n_samples=int(n_samples), noise=0.0, shuffle=True, random_state=shuffle_state)

    noise_rng = np.random.default_rng(noise_seq)
    radius = noise_radius * np.sqrt(noise_rng.random(int(n_samples)))
    angle = 2.0 * np.pi * noise_rng.random(int(n_samples))
    offset = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    x_noisy = x_clean + offset

    x = torch.from_numpy(x_noisy.astype(np.float32))
    labels = torch.from_numpy(y.astype(np.int64))
    if return_clean:
        return x, labels, torch.from_numpy(x_clean.astype(np.float32))
    return x, labels


@dataclass(frozen=True)
class TwoMoonsSplits:
    """Training and evaluation sets of the two-moons experiment (paper section 4.1, supplement B)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    train_seed: int
    test_seed: int


def make_two_moons_splits(
    seed: int,
    n_train: int = TRAIN_SAMPLES,
    n_test: int = EVAL_SAMPLES,
    noise_radius: float = NOISE_RADIUS,
) -> TwoMoonsSplits:
    """Build the two-moons training set (2000 samples, supplement B) and evaluation set (20000 samples).

    The two sets come from different generator seeds, ``2 * seed`` and ``2 * seed + 1``, so no two runs
    with different ``seed`` share a set and training and evaluation data are independent draws.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    train_seed, test_seed = 2 * int(seed), 2 * int(seed) + 1
    x_train, y_train = make_two_moons(n_train, train_seed, noise_radius)
    x_test, y_test = make_two_moons(n_test, test_seed, noise_radius)
    return TwoMoonsSplits(x_train, y_train, x_test, y_test, train_seed, test_seed)
