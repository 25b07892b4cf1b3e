"""Certified robust accuracy (supplement C, eq. (18)) and the L2 attack that checks it empirically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lipcert.attacks import l2_pgd, margin_violation
from lipcert.bounds import pairwise_row_distances
from lipcert.certification import (
    DEFAULT_EPS_LIST,
    certified_margins,
    certify,
    certify_model,
)


def _random_problem(n=300, c=7, seed=0, zero_pair=True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2.0
    a = torch.rand(c, c, generator=g, dtype=torch.float64) * 3.0 + 0.1
    k = (a + a.T) / 2
    k.fill_diagonal_(0.0)
    if zero_pair:
        k[1, 2] = k[2, 1] = 0.0  # exercises the K_ji == 0 rule
    labels = torch.randint(0, c, (n,), generator=g)
    keep_pred = torch.rand(n, generator=g) < 0.7
    labels = torch.where(keep_pred, logits.argmax(1), labels)
    return logits, labels, k


def _brute_force(logits, labels, k, eps_list):
    """Per-sample, per-class python loops over python floats (float64)."""
    f = logits.tolist()
    kk = k.tolist()
    n, c = len(f), len(f[0])
    certified = [0] * len(eps_list)
    radii = []
    correct = 0
    for s in range(n):
        j = max(range(c), key=lambda i: (f[s][i], -i))  # first index of the maximum
        radius = math.inf
        for i in range(c):
            if i == j:
                continue
            m = f[s][j] - f[s][i]
            if kk[j][i] > 0:
                radius = min(radius, m / kk[j][i])
            elif m <= 0:
                radius = 0.0
        ok = j == int(labels[s])
        correct += ok
        radii.append(radius if ok else 0.0)
        for e_idx, eps in enumerate(eps_list):
            if ok and all(f[s][j] - f[s][i] > eps * kk[j][i] for i in range(c) if i != j):
                certified[e_idx] += 1
    return correct / n, [x / n for x in certified], np.array(radii)


def test_cra_matches_brute_force_loops():
    logits, labels, k = _random_problem()
    radii_all = certified_margins(logits, k)
    eps_list = [0.0, *np.quantile(radii_all.numpy(), [0.2, 0.5, 0.8]).tolist(), 36 / 255]
    result = certify(logits, labels, k, eps_list)
    clean, cra, radii = _brute_force(logits, labels, k, eps_list)
    assert result.clean_accuracy == clean
    assert list(result.certified_accuracy) == cra
    assert 0 < cra[2] < cra[1] < clean  # the chosen budgets give non-trivial CRA
    np.testing.assert_allclose(result.radii, radii, rtol=1e-12, atol=0)
    assert result.radii.dtype == np.float64
    assert result.global_lipschitz == float(k.max())


def test_zero_constant_pair_rule():
    k = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [2.0, 1.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[3.0, 1.0, 0.0], [3.0, 3.0, 0.0], [0.0, 0.0, 5.0]])
    radii = certified_margins(logits, k)
    # sample 0: pair (0,1) has K=0 and f0 > f1 -> inf, pair (0,2) radius 3/2
    # sample 1: tie with K=0 -> 0; sample 2: min(5/2, 5/1) = 2.5
    assert radii.tolist() == [1.5, 0.0, 2.5]
    assert certified_margins(torch.tensor([[1.0, 0.0]]), torch.zeros(2, 2)).tolist() == [math.inf]


def test_margin_exactly_eps_times_k_is_not_certified():
    k = torch.tensor([[0.0, 4.0, 8.0], [4.0, 0.0, 8.0], [8.0, 8.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[1.0, 0.0, -1.0]])  # margins 1 and 2 against K 4 and 8: radius exactly 0.25
    labels = torch.tensor([0])
    below = math.nextafter(0.25, 0.0)
    result = certify(logits, labels, k, [0.25, below, 0.3])
    assert result.certified_accuracy == (0.0, 1.0, 0.0)
    assert result.radii.tolist() == [0.25]
    # the same sample with the wrong label is never certified and has radius 0
    wrong = certify(logits, torch.tensor([1]), k, [below])
    assert wrong.certified_accuracy == (0.0,) and wrong.radii.tolist() == [0.0] and wrong.clean_accuracy == 0.0


def test_eps_list_order_does_not_matter():
    logits, labels, k = _random_problem(seed=3)
    eps = [0.3, 0.01, 36 / 255, 0.2]
    forward = certify(logits, labels, k, eps)
    backward = certify(logits, labels, k, eps[::-1])
    assert dict(zip(forward.eps_list, forward.certified_accuracy)) == dict(
        zip(backward.eps_list, backward.certified_accuracy)
    )
    single = {e: certify(logits, labels, k, [e]).certified_accuracy[0] for e in eps}
    assert single == dict(zip(forward.eps_list, forward.certified_accuracy))
    assert forward.cra(0.2) == single[0.2]
    with pytest.raises(ValueError, match="eps=0.5"):
        forward.cra(0.5)


def test_default_eps_list_and_radius_distribution():
    logits, labels, k = _random_problem(n=500, seed=5)
    result = certify(logits, labels, k)
    assert result.eps_list == DEFAULT_EPS_LIST == (36 / 255, 72 / 255, 108 / 255)
    cra = result.certified_accuracy
    assert result.clean_accuracy >= cra[0] >= cra[1] >= cra[2]
    assert result.radius_histogram_counts.sum() == 500
    np.testing.assert_allclose(result.radius_quantiles, np.quantile(result.radii, result.radius_quantile_levels))
    # CRA at eps equals the fraction of correctly classified samples whose radius exceeds eps
    for e, c in zip(result.eps_list, cra):
        assert c == pytest.approx(np.mean(result.correct & (result.radii > e)), abs=1e-12)
    summary = result.summary()
    assert summary["n_samples"] == 500 and len(summary["certified_accuracy"]) == 3


def test_bad_shapes_raise():
    logits, labels, k = _random_problem(n=10, c=4)
    with pytest.raises(ValueError, match=r"k_pairwise must have shape \(4, 4\)"):
        certify(logits, labels, torch.zeros(5, 5))
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        certify(logits, labels[:9], k)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        certified_margins(logits[0], k)
    with pytest.raises(ValueError, match="non-negative budgets"):
        certify(logits, labels, k, [0.1, -0.2])
    with pytest.raises(ValueError, match="eps_list is empty"):
        certify(logits, labels, k, [])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        certify(logits, torch.full((10,), 4), k)
    with pytest.raises(ValueError, match="non-negative"):
        certify(logits, labels, -k)


class _LinearWithConstants(nn.Module):
    """Stand-in for a LipschitzClassifier: f(x) = Wx + b, whose K_ij = ||W_i - W_j|| exactly."""

    def __init__(self, d, c, converged=True):
        super().__init__()
        self.head = nn.Linear(d, c)
        self.converged = converged
        self.forward_calls = 0

    def forward(self, x):
        self.forward_calls += 1
        return self.head(x)

    def pairwise_lipschitz(self):
        if not self.converged:
            raise RuntimeError("pairwise_lipschitz() needs model.converge() first")
        return pairwise_row_distances(self.head.weight.detach().to(torch.float64))

    def global_lipschitz(self):
        return float(self.pairwise_lipschitz().max())


def test_certify_model_batches_and_matches_certify():
    torch.manual_seed(0)
    model = _LinearWithConstants(3, 5)
    x = torch.randn(103, 3)
    y = model.head(x).argmax(1)
    y[::4] = (y[::4] + 1) % 5
    model.train()
    batched = certify_model(model, x, y, [0.05, 0.2], batch_size=10)
    assert model.forward_calls == 11 and model.training  # 11 batches, mode restored
    with torch.no_grad():
        direct = certify(model.head(x), y, model.pairwise_lipschitz(), [0.05, 0.2])
    assert batched.certified_accuracy == direct.certified_accuracy
    # float32 logits of a batch of 10 and of 103 may round differently (BLAS picks kernels by shape)
    np.testing.assert_allclose(batched.radii, direct.radii, rtol=1e-6, atol=1e-7)
    assert batched.global_lipschitz == model.global_lipschitz()
    # for a linear model the radius is the exact distance to the nearest pairwise decision boundary
    assert 0 < batched.certified_accuracy[0] < batched.clean_accuracy == 1 - 26 / 103


def test_certify_model_requires_converged_bound():
    model = _LinearWithConstants(3, 5, converged=False)
    with pytest.raises(RuntimeError, match="converge"):
        certify_model(model, torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    from lipcert.models import build_model

    with pytest.raises(RuntimeError, match="converge"):
        certify_model(build_model("two_moons"), torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        certify_model(_LinearWithConstants(3, 5), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), batch_size=0)


def test_l2_pgd_on_linear_model_finds_the_exact_boundary():
    """For f(x) = Wx + b the minimal flipping L2 distance is the certified radius (K_ij exact)."""
    torch.manual_seed(1)
    model = _LinearWithConstants(4, 3)
    for p in model.parameters():
        p.grad = None
    x = torch.randn(200, 4)
    with torch.no_grad():
        y = model.head(x).argmax(1)
        radius = certified_margins(model.head(x), model.pairwise_lipschitz()).float()
    _, inside = l2_pgd(model, x, y, radius * 0.999, steps=50)
    x_adv, outside = l2_pgd(model, x, y, radius * 1.01, steps=50)
    assert not inside.any()
    assert outside.all()
    # float32 rounding of x_adv - x is relative to |x|, hence the absolute slack
    assert (torch.linalg.vector_norm(x_adv - x, dim=1) <= radius * 1.01 + 1e-5).all()
    with torch.no_grad():
        assert (margin_violation(model.head(x_adv), y) > 0).all()
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_l2_pgd_respects_the_box_and_validates_input():
    model = _LinearWithConstants(4, 3)
    x = torch.rand(50, 4)
    y = torch.zeros(50, dtype=torch.long)
    x_adv, _ = l2_pgd(model, x, y, 0.5, steps=20, restarts=2, domain=(0.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (torch.linalg.vector_norm(x_adv - x, dim=1) <= 0.5 * (1 + 1e-6)).all()
    with pytest.raises(ValueError, match="inside the domain"):
        l2_pgd(model, x + 2, y, 0.5, domain=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"eps must be a scalar or have shape \(50,\)"):
        l2_pgd(model, x, y, torch.ones(3))


def _train_two_moons_model():
    """Two-moons MLP trained briefly with cross-entropy on K-normalised logits f / (K tau) and Adam.

    Plain cross-entropy on raw logits leaves K(f) in the thousands and certifies nothing; dividing the
    logits by the (differentiable, 5-step) bound makes the loss reward the margin per unit K, i.e. the
    certified radius, as in the paper's normalised losses.
    """
    from lipcert.data.two_moons import make_two_moons
    from lipcert.models import build_model

    x, y = make_two_moons(500, seed=0)
    model = build_model("two_moons", seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        k_global = model.body_lipschitz(n_iter=5) * pairwise_row_distances(model.head.weight).max()
        loss = nn.functional.cross_entropy(model(x) / (k_global * 0.1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.converge()
    return model


def _grid_flip_distance(model, x, labels, lo=(-2.0, -1.5), hi=(3.0, 2.0), n=300):
    """Distance from each x to the nearest point of a dense grid that the model does not assign to its label.

    Such a grid point is itself an adversarial example, so this is an upper bound on the true minimal
    L2 flipping distance (and exceeds it by at most the grid's half-diagonal, ~0.012 here).
    """
    gx = torch.linspace(lo[0], hi[0], n)
    gy = torch.linspace(lo[1], hi[1], n)
    grid = torch.cartesian_prod(gx, gy)
    with torch.no_grad():
        grid_pred = model(grid).argmax(1)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], 50):
        xs, ls = x[start:start + 50], labels[start:start + 50]
        d = torch.cdist(xs, grid)
        d = torch.where(grid_pred[None, :] != ls[:, None], d, torch.full_like(d, float("inf")))
        out[start:start + 50] = d.amin(dim=1)
    return out


def test_certificates_survive_the_attack_on_a_trained_two_moons_model():
    from lipcert.data.two_moons import make_two_moons

    model = _train_two_moons_model()
    for p in model.parameters():
        p.grad = None
    g = torch.Generator().manual_seed(1)
    x_test, y_test = make_two_moons(200, seed=1)
    x_box = torch.rand(300, 2, generator=g) * torch.tensor([3.6, 2.2]) + torch.tensor([-1.3, -0.8])
    with torch.no_grad():
        y_box = model(x_box).argmax(1)  # off-data points: certify their predicted label
    x = torch.cat([x_test, x_box])
    y = torch.cat([y_test, y_box])
    eps = 0.15

    result = certify_model(model, x, y, [eps], batch_size=128)
    radius = torch.as_tensor(result.radii)  # float64
    certified = torch.as_tensor(result.correct) & (radius > eps)
    assert result.certified_accuracy[0] == int(certified.sum()) / len(x)
    assert certified.sum() >= 20

    # independent soundness check: no grid point of another class lies within a certified radius
    flip_distance = _grid_flip_distance(model, x, y)
    correct = torch.as_tensor(result.correct)
    assert (radius[correct] <= flip_distance[correct]).all()

    # the attack cannot flip any certified point within eps
    _, flipped = l2_pgd(model, x[certified], y[certified], eps, steps=100, restarts=2, generator=g)
    assert not flipped.any()

    # ... but it is strong: at the grid's flipping distance (an adversarial example is known to exist
    # there) it flips nearly every non-certified, correctly classified point
    candidates = correct & ~certified
    assert candidates.sum() >= 20
    budget = flip_distance[candidates] + 1e-3
    _, flipped = l2_pgd(model, x[candidates], y[candidates], budget, steps=100, restarts=2, generator=g)
    assert flipped.float().mean() >= 0.9
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
