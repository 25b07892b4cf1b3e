"""Empirical Lipschitz lower bound and tightness (supplement C, eqs. (19)-(20))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lipcert.activations import MinMax
from lipcert.bounds import pairwise_row_distances
from lipcert.tightness import DEFAULT_N_PAIRS, pair_quotients, sample_pairs, tightness_attack


class ExactBoundMLP(nn.Module):
    """head o body with an exactly computed upper bound K(f) = prod_l ||W_l||_2 * max_ij ||H_i - H_j||_2.

    ``||W_l||_2`` is the exact spectral norm (largest singular value); with no body layers f is linear
    and K(f) = max_ij ||H_i - H_j|| is its exact Lipschitz constant.
    """

    def __init__(self, widths, classes, activation, seed=0, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(seed)
        layers = []
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(d_in, d_out), activation()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], classes)
        self.to(dtype)

    def forward(self, x):
        return self.head(self.body(x))

    def global_lipschitz(self):
        norms = [torch.linalg.matrix_norm(m.weight.detach(), ord=2) for m in self.body if isinstance(m, nn.Linear)]
        k_body = float(torch.stack(norms).prod()) if norms else 1.0
        return k_body * float(pairwise_row_distances(self.head.weight.detach()).max())


def _brute_force_quotients(model, x1, x2):
    out = []
    with torch.no_grad():
        for a, b in zip(x1, x2):
            f1, f2 = model(a[None])[0].tolist(), model(b[None])[0].tolist()
            j = max(range(len(f1)), key=lambda i: (f1[i], -i))
            dist = float(torch.linalg.vector_norm(a - b))
            numerator = max(abs((f1[j] - f1[i]) - (f2[j] - f2[i])) for i in range(len(f1)))
            out.append(numerator / dist if dist > 0 else 0.0)
    return np.array(out)


def test_pair_quotients_match_loops_and_zero_distance_contributes_zero():
    model = ExactBoundMLP([3, 8, 6], 4, nn.ReLU)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(20, 3, generator=g, dtype=torch.float64)
    x2 = torch.randn(20, 3, generator=g, dtype=torch.float64)
    x2[5] = x1[5]
    with torch.no_grad():
        q = pair_quotients(model(x1), model(x2), x1, x2)
    expected = _brute_force_quotients(model, x1, x2)
    np.testing.assert_allclose(q.numpy(), expected, rtol=1e-12)
    assert q[5] == 0
    # the gradient at a zero-distance pair is finite (0), not NaN
    a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    pair_quotients(model(a), model(b), a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize(
    "widths, activation",
    [([5], None), ([5, 16, 12], nn.ReLU), ([5, 16, 16, 8], MinMax), ([5, 10], nn.Tanh)],
)
def test_lower_bound_never_exceeds_the_upper_bound(widths, activation):
    model = ExactBoundMLP(widths, 4, activation or nn.Identity, seed=len(widths))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(120, widths[0], generator=g, dtype=torch.float64)
    x1, x2 = sample_pairs(x, 60, generator=g)
    result = tightness_attack(model, x1, x2, steps=150, lr=1e-2, domain=(0.0, 1.0))
    assert 0 < result.lower_bound <= result.global_lipschitz * (1 + 1e-12)
    assert result.global_lipschitz == model.global_lipschitz()
    assert result.tightness == result.lower_bound / result.global_lipschitz
    # the attack improved on the starting pairs
    assert result.running_max[-1] > result.running_max[0]


def test_linear_model_reaches_its_exact_lipschitz_constant():
    model = ExactBoundMLP([6], 5, nn.Identity, seed=3)
    k_exact = float(pairwise_row_distances(model.head.weight.detach()).max())
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(200, 6, generator=g, dtype=torch.float64)
    x2 = torch.randn(200, 6, generator=g, dtype=torch.float64)
    result = tightness_attack(model, x1, x2, steps=300, lr=1e-2, domain=None)
    assert result.global_lipschitz == pytest.approx(k_exact, rel=1e-12)
    assert abs(result.lower_bound / k_exact - 1) <= 1e-4
    assert result.lower_bound <= k_exact * (1 + 1e-12)


def test_parameters_get_no_gradient_and_flags_are_restored():
    model = ExactBoundMLP([4, 8], 3, MinMax)
    model.head.weight.requires_grad_(False)  # a frozen parameter must stay frozen
    model.train()
    x = torch.rand(40, 4, dtype=torch.float64)
    tightness_attack(model, x[:20], x[20:], steps=10, lr=1e-2)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]
    assert model.training


def test_flags_are_restored_after_an_exception():
    class Failing(ExactBoundMLP):
        calls = 0

        def forward(self, x):
            Failing.calls += 1
            if Failing.calls > 3:
                raise RuntimeError("forward failed on purpose")
            assert all(not p.requires_grad for p in self.parameters())
            return super().forward(x)

    model = Failing([4, 8], 3, nn.ReLU)
    x = torch.rand(40, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="on purpose"):
        tightness_attack(model, x[:20], x[20:], steps=10)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_running_max_is_monotone_and_ends_at_the_lower_bound():
    model = ExactBoundMLP([3, 12, 12], 4, nn.ReLU, seed=7)
    x = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    result = tightness_attack(model, x[:32], x[32:], steps=50, lr=1e-2)
    assert result.running_max.shape == (51,)
    assert np.all(np.diff(result.running_max) >= 0)
    assert result.running_max[-1] == result.lower_bound == result.pair_quotients.max()
    # step 0 is the quotient of the unperturbed pairs
    with torch.no_grad():
        start = pair_quotients(model(x[:32]), model(x[32:]), x[:32], x[32:]).max().item()
    assert result.running_max[0] == pytest.approx(start, rel=1e-12)
    assert result.n_pairs == 32 and result.steps == 50
    assert result.pair_steps_per_second == pytest.approx(32 * 50 / result.elapsed_s)


def test_chunked_pairs_give_the_same_result():
    model = ExactBoundMLP([3, 12, 12], 4, MinMax, seed=4)
    x = torch.rand(100, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    whole = tightness_attack(model, x[:50], x[50:], steps=40, lr=1e-2)
    chunked = tightness_attack(model, x[:50], x[50:], steps=40, lr=1e-2, batch_size=7)
    np.testing.assert_allclose(chunked.pair_quotients, whole.pair_quotients, rtol=1e-9)
    np.testing.assert_allclose(chunked.running_max, whole.running_max, rtol=1e-9)


def test_identical_pairs_are_separated_and_inputs_stay_in_the_domain():
    model = ExactBoundMLP([4], 3, nn.Identity, seed=2)
    x = torch.rand(10, 4, dtype=torch.float64)
    x[0] = 1.0  # a pair sitting on the corner of the box
    result = tightness_attack(model, x, x.clone(), steps=200, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert (result.pair_quotients > 0).all()
    assert result.lower_bound <= result.global_lipschitz * (1 + 1e-12)


def test_sample_pairs_draws_distinct_samples():
    x = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 3)
    x1, x2 = sample_pairs(x, 20, generator=torch.Generator().manual_seed(0))
    ids = torch.cat([x1[:, 0], x2[:, 0]]).long()
    assert x1.shape == x2.shape == (20, 3)
    assert len(set(ids.tolist())) == 40
    again = sample_pairs(x, 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x1) and torch.equal(again[1], x2)
    assert DEFAULT_N_PAIRS == 4000
    with pytest.raises(ValueError, match="need at least 2 \\* n_pairs = 60"):
        sample_pairs(x, 30)


def test_bad_arguments_raise():
    model = ExactBoundMLP([3], 2, nn.Identity)
    x = torch.rand(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="same shape"):
        tightness_attack(model, x, x[:5])
    with pytest.raises(ValueError, match="inside the domain"):
        tightness_attack(model, x, x + 1.0)
    with pytest.raises(ValueError, match="lo < hi"):
        tightness_attack(model, x, x, domain=(1.0, 0.0))
    with pytest.raises(ValueError, match="batch_size"):
        tightness_attack(model, x, x, batch_size=0)


class _FlattenLinear(nn.Module):
    """f(x) = W flatten(x) + b on image-shaped inputs; K(f) = max_ij ||W_i - W_j|| exactly."""

    def __init__(self, shape, classes):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(int(np.prod(shape)), classes).double()

    def forward(self, x):
        return self.head(x.flatten(1))

    def global_lipschitz(self):
        return float(pairwise_row_distances(self.head.weight.detach()).max())


def test_image_shaped_inputs_in_the_unit_box():
    model = _FlattenLinear((3, 4, 4), 5)
    x = torch.rand(16, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = tightness_attack(model, x[:8], x[8:], steps=100, lr=1e-2, domain=(0.0, 1.0))
    assert 0 < result.lower_bound <= result.global_lipschitz * (1 + 1e-12)
    assert result.running_max[-1] > result.running_max[0]


def test_on_a_converged_lipschitz_classifier():
    from lipcert.models import build_model

    model = build_model("two_moons", seed=0)
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="converge"):
        tightness_attack(model, x[:20], x[20:], steps=5, domain=None)
    model.converge()
    result = tightness_attack(model, x[:20], x[20:], steps=100, lr=1e-2, domain=None)
    # float32 forward pass against the float64 bound: allow float32 rounding
    assert 0 < result.lower_bound <= result.global_lipschitz * (1 + 1e-5)
    assert result.global_lipschitz == model.global_lipschitz()
    assert all(p.grad is None for p in model.parameters())
