"""Tests for the two-moons generator (paper 000, section 4.1 and supplement B "Two-moons setup")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lipcert.data import (
    EVAL_SAMPLES,
    NOISE_RADIUS,
    TRAIN_SAMPLES,
    make_two_moons,
    make_two_moons_splits,
    true_margin,
)


def _min_distance_between_classes(x: torch.Tensor, y: torch.Tensor) -> float:
    """Brute-force smallest Euclidean distance between a class-0 and a class-1 point (float64)."""
    x64 = x.double()
    return torch.cdist(x64[y == 0], x64[y == 1]).min().item()


def test_paper_defaults() -> None:
    assert TRAIN_SAMPLES == 2000
    assert EVAL_SAMPLES == 20000
    assert NOISE_RADIUS == 0.1
    assert true_margin() == pytest.approx(0.3, abs=1e-12)
    assert true_margin(0.05) == pytest.approx(0.4, abs=1e-12)


def test_shapes_dtypes_and_balanced_labels() -> None:
    x, y = make_two_moons(2000, seed=0)
    assert x.shape == (2000, 2) and x.dtype == torch.float32
    assert y.shape == (2000,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [1000, 1000]
    # Odd sizes: sklearn puts n // 2 points on the upper moon (label 0) and the rest on the lower one.
    _, y_odd = make_two_moons(7, seed=0)
    assert torch.bincount(y_odd).tolist() == [3, 4]


def test_same_seed_same_data_and_different_seeds_differ() -> None:
    x_a, y_a = make_two_moons(500, seed=3)
    x_b, y_b = make_two_moons(500, seed=3)
    assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    x_c, y_c = make_two_moons(500, seed=4)
    assert not torch.equal(x_a, x_c)
    assert not torch.equal(y_a, y_c)  # the shuffle depends on the seed, too


def test_global_rng_is_neither_used_nor_changed() -> None:
    np.random.seed(123)
    torch.manual_seed(123)
    numpy_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    x_first, _ = make_two_moons(300, seed=5)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.random.seed(999)
    torch.manual_seed(999)
    x_second, _ = make_two_moons(300, seed=5)
    assert torch.equal(x_first, x_second)


def test_clean_points_lie_on_the_sklearn_arcs() -> None:
    _, y, clean = make_two_moons(2000, seed=1, return_clean=True)
    clean = clean.double()
    upper, lower = clean[y == 0], clean[y == 1]
    # label 0: upper half of the unit circle around (0, 0)
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper), dtype=torch.float64), atol=1e-6)
    assert (upper[:, 1] >= -1e-6).all()
    # label 1: lower half of the unit circle around (1, 0.5)
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.allclose((lower - centre).norm(dim=1), torch.ones(len(lower), dtype=torch.float64), atol=1e-6)
    assert (lower[:, 1] <= 0.5 + 1e-6).all()


def test_noise_stays_inside_the_disc_and_is_uniform_in_area() -> None:
    x, _, clean = make_two_moons(20000, seed=2, return_clean=True)
    offset = x.double() - clean.double()
    radius = offset.norm(dim=1)
    assert radius.max().item() <= NOISE_RADIUS + 1e-6
    assert radius.max().item() > 0.99 * NOISE_RADIUS  # the whole disc is used
    # Uniform in area: P(r < R / sqrt(2)) = 1/2 and P(r < R / 2) = 1/4. (Uniform in radius would give
    # 0.707 and 0.5.) Binomial standard error at n=20000 is ~0.0035.
    assert (radius < NOISE_RADIUS / math.sqrt(2)).double().mean().item() == pytest.approx(0.5, abs=0.02)
    assert (radius < NOISE_RADIUS / 2).double().mean().item() == pytest.approx(0.25, abs=0.02)
    angle = torch.atan2(offset[:, 1], offset[:, 0])
    quadrant_counts = torch.histc(angle, bins=4, min=-math.pi, max=math.pi)
    assert (quadrant_counts / len(angle) - 0.25).abs().max().item() < 0.02


def test_noise_radius_parameter_is_respected() -> None:
    x, _, clean = make_two_moons(2000, seed=2, noise_radius=0.03, return_clean=True)
    radius = (x.double() - clean.double()).norm(dim=1)
    assert 0.029 < radius.max().item() <= 0.03 + 1e-6
    x0, _, clean0 = make_two_moons(100, seed=2, noise_radius=0.0, return_clean=True)
    assert torch.equal(x0, clean0)


def test_true_margin_between_classes_is_at_least_0_3() -> None:
    x, y, clean = make_two_moons(4000, seed=0, return_clean=True)
    clean_gap = _min_distance_between_classes(clean, y)
    noisy_gap = _min_distance_between_classes(x, y)
    # The sklearn arcs are exactly 0.5 apart (end point (1, 0) vs the lower circle centred at (1, 0.5));
    # sampled points are at least that far apart, and close to it at n=4000.
    assert 0.5 - 1e-6 <= clean_gap < 0.5005
    # Each point moves at most 0.1, so classes stay >= 0.5 - 2 * 0.1 = 0.3 apart (paper: 2 eps = 0.3).
    assert noisy_gap >= true_margin() - 1e-5
    assert noisy_gap < 0.45  # ... and with 4000 points it gets reasonably close to the 0.3 bound


def test_margin_holds_for_several_seeds() -> None:
    for seed in (11, 12, 13):
        x, y = make_two_moons(3000, seed=seed)
        assert _min_distance_between_classes(x, y) >= 0.3 - 1e-5


def test_splits_use_distinct_seeds_and_paper_sizes() -> None:
    splits = make_two_moons_splits(seed=4)
    assert (splits.train_seed, splits.test_seed) == (8, 9)
    assert splits.x_train.shape == (2000, 2) and splits.x_test.shape == (20000, 2)
    train_again, _ = make_two_moons(2000, seed=8)
    assert torch.equal(splits.x_train, train_again)
    assert not torch.equal(splits.x_train, splits.x_test[:2000])
    other = make_two_moons_splits(seed=5, n_train=100, n_test=50)
    assert {other.train_seed, other.test_seed}.isdisjoint({splits.train_seed, splits.test_seed})
    assert other.x_train.shape == (100, 2) and other.x_test.shape == (50, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_samples=1, seed=0), "n_samples"),
        (dict(n_samples=10.0, seed=0), "n_samples"),
        (dict(n_samples=10, seed=-1), "seed"),
        (dict(n_samples=10, seed=True), "seed"),
        (dict(n_samples=10, seed=0, noise_radius=-0.1), "noise_radius"),
        (dict(n_samples=10, seed=0, noise_radius=0.25), "noise_radius"),
        (dict(n_samples=10, seed=0, noise_radius=float("nan")), "noise_radius"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_two_moons(**kwargs)
