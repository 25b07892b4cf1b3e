"""Local-Lip bounds (seed 004): the toy example of appendix A.1, soundness of IBP/BCP by sampling, local <= global
(Theorem 1), local >= sampled gradient norms, the worst-logit dual against brute force, and the vector store."""

import math

import pytest
import torch
from torch import nn

from lipcert.activations import ClippedMaxMin, MinMax, ReLUTheta
from lipcert.classifier import LipschitzClassifier
from lipcert.local_lipschitz import (PerSampleVectors, converged_local_norms, local_lipschitz_product, masked_norms,
                                     penultimate_radius, propagate_bounds, worst_logit_offsets)
from lipcert.local_lipschitz.local_bound import masked_operator
from lipcert.models import build_from_spec, ArchitectureSpec
from lipcert.power_iteration import SpectralConv2d, SpectralLinear


def _toy():
    """Seed 004 appendix A.1: x -> W1 -> ReLUθ -> W2 -> ReLUθ -> W3, W1 = W2 = diag(3, 2, 1), W3 = [1 1 1], θ = 1."""
    l1, l2 = SpectralLinear(3, 3, bias=False), SpectralLinear(3, 3, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.diag(torch.tensor([3.0, 2.0, 1.0])))
        l2.weight.copy_(torch.diag(torch.tensor([3.0, 2.0, 1.0])))
    head = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        head.weight.fill_(1.0)
    body = nn.Sequential(l1, ReLUTheta((3,), 1.0), l2, ReLUTheta((3,), 1.0))
    return LipschitzClassifier(body, head, (3,))


def test_toy_example_of_appendix_a1():
    model = _toy().double()
    x = torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64)
    b = propagate_bounds(model.body, x, 0.1, ball=False)
    act1, act2 = b.activations
    torch.testing.assert_close(act1.lower[0], torch.tensor([2.7, -2.2, -0.1], dtype=torch.float64))
    torch.testing.assert_close(act1.upper[0], torch.tensor([3.3, -1.8, 0.1], dtype=torch.float64))
    # after ReLUθ: [1, 0, [0, 0.1]]; after W2: [3, 0, [0, 0.1]]
    torch.testing.assert_close(act2.lower[0], torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(act2.upper[0], torch.tensor([3.0, 0.0, 0.1], dtype=torch.float64))
    # I_V = diag(0, 0, 1) on both layers (unit 1 constant at θ, unit 2 constant at 0)
    assert b.layers[0].output_mask[0].tolist() == [False, False, True]
    assert b.layers[1].input_mask[0].tolist() == [False, False, True]
    assert b.head_input_mask[0].tolist() == [False, False, True]
    model.converge()
    k_global = float(model.converged_body_lipschitz()) * float(torch.linalg.matrix_norm(model.head.weight.detach(), ord=2))
    assert k_global == pytest.approx(9 * math.sqrt(3), rel=1e-12)          # eq. (13)
    sigmas = converged_local_norms(b, [l.converged_sigma_value() for l in model.spectral_layers()])
    assert float(local_lipschitz_product(b, sigmas, model.head.weight)) == pytest.approx(1.0, rel=1e-9)  # eq. (14)
    train_sigmas, _ = masked_norms(b, 5)
    assert float(local_lipschitz_product(b, train_sigmas, model.head.weight)) == pytest.approx(1.0, rel=1e-6)


def _random_net(activation: str, seed: int, conv: bool = True):
    layers = "c(4,3,1,1) c(6,4,2,1) d(8) d(3)" if conv else "d(8) d(6) d(3)"
    spec = ArchitectureSpec.from_dict("net", {"input_shape": [2, 6, 6] if conv else [5], "layers": layers,
                                              "activation": activation, "activation_init": 0.3})
    model = build_from_spec(spec, seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (SpectralConv2d, SpectralLinear, nn.Linear)):
                m.weight.mul_(0.6)
                if m.bias is not None:
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))
            if isinstance(m, ClippedMaxMin):
                m.cap.copy_(0.05 + 0.3 * torch.rand(m.cap.shape, generator=g, dtype=torch.float64))
                m.floor.copy_(-0.05 - 0.3 * torch.rand(m.floor.shape, generator=g, dtype=torch.float64))
    return model


def _ball_points(x, eps, count, g):
    d = torch.randn((count, *x.shape[1:]), generator=g, dtype=x.dtype)
    d = d / torch.linalg.vector_norm(d.flatten(1), dim=1).view(-1, *([1] * (x.dim() - 1)))
    radius = eps * torch.rand((count,), generator=g, dtype=x.dtype) ** 0.2
    return x + d * radius.view(-1, *([1] * (x.dim() - 1)))


def _activation_values(body, x):
    """The input of every activation and the body output for points x."""
    values = []
    for m in body:
        if not isinstance(m, (SpectralConv2d, SpectralLinear, nn.Flatten)):
            values.append(x)
        x = m(x)
    return values, x


@pytest.mark.parametrize("activation", ["relu", "relu_theta", "minmax", "clipped_maxmin"])
@pytest.mark.parametrize("conv", [True, False])
def test_ibp_contains_bcp_contains_sampled_values(activation, conv):
    model = _random_net(activation, 3, conv)
    model.converge()
    sig = [l.converged_sigma() for l in model.spectral_layers()]
    g = torch.Generator().manual_seed(0)
    x = torch.rand((3, *model.input_shape), generator=g, dtype=torch.float64)
    eps = 0.2
    ibp = propagate_bounds(model.body, x, eps, ball=False)
    bcp = propagate_bounds(model.body, x, eps, sigmas=sig)
    for s in range(3):
        points = _ball_points(x[s:s + 1], eps, 3000, g)
        acts, out = _activation_values(model.body, points)
        for a_ibp, a_bcp, v in zip(ibp.activations, bcp.activations, acts):
            assert (a_ibp.lower[s] <= a_bcp.lower[s] + 1e-12).all() and (a_bcp.upper[s] <= a_ibp.upper[s] + 1e-12).all()
            assert (v >= a_bcp.lower[s] - 1e-12).all() and (v <= a_bcp.upper[s] + 1e-12).all()
        out = out.flatten(1)
        assert (out >= bcp.lower[s] - 1e-12).all() and (out <= bcp.upper[s] + 1e-12).all()
        # the penultimate ball of the local radius holds the sampled features too
        sigmas = converged_local_norms(bcp, [l.converged_sigma_value() for l in model.spectral_layers()])
        radius = penultimate_radius(bcp, sigmas)[s]
        assert (torch.linalg.vector_norm(out - bcp.features[s], dim=1) <= radius + 1e-12).all()


@pytest.mark.parametrize("activation", ["relu", "relu_theta", "clipped_maxmin", "minmax"])
def test_local_bound_between_sampled_gradients_and_global_bound(activation):
    model = _random_net(activation, 5)
    model.converge()
    globals_ = [l.converged_sigma_value() for l in model.spectral_layers()]
    g = torch.Generator().manual_seed(1)
    x = torch.rand((4, *model.input_shape), generator=g, dtype=torch.float64)
    eps = 0.15
    b = propagate_bounds(model.body, x, eps, sigmas=[torch.tensor(s) for s in globals_])
    sigmas = converged_local_norms(b, globals_)
    local = local_lipschitz_product(b, sigmas, model.head.weight)
    k_global = math.prod(globals_) * float(torch.linalg.matrix_norm(model.head.weight.detach(), ord=2))
    assert (local <= k_global * (1 + 1e-9)).all()                                 # Theorem 1
    for s, lg in zip(sigmas, globals_):
        assert (s <= lg * (1 + 1e-12)).all()
    w = model.head.weight.detach()
    for i in range(4):
        points = _ball_points(x[i:i + 1], eps, 400, g).requires_grad_(True)
        # gradient ascent on each logit difference moves the points through other linear regions
        for step in range(30):
            out = model(points)
            best = 0.0
            for a in range(3):
                for c in range(a + 1, 3):
                    diff = out[:, a] - out[:, c]
                    grad, = torch.autograd.grad(diff.sum(), points, retain_graph=True)
                    gnorm = torch.linalg.vector_norm(grad.flatten(1), dim=1)
                    pair_bound = float(penultimate_radius(b, sigmas)[i] / eps) * float(torch.linalg.vector_norm(w[a] - w[c]))
                    assert float(gnorm.max()) <= pair_bound * (1 + 1e-9)
                    best = max(best, float(gnorm.max()))
            assert best <= float(local[i]) * math.sqrt(2) * (1 + 1e-9)
            grad, = torch.autograd.grad(out[:, 0].sum() - out[:, 1].sum(), points)
            with torch.no_grad():
                step_dir = grad / torch.linalg.vector_norm(grad.flatten(1), dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
                moved = points + 0.02 * step_dir - x[i:i + 1]
                norm = torch.linalg.vector_norm(moved.flatten(1), dim=1).view(-1, 1, 1, 1)
                points = (x[i:i + 1] + moved * (eps / norm).clamp(max=1.0)).requires_grad_(True)


def test_masked_operator_adjoint_is_exact():
    model = _random_net("relu_theta", 7)
    x = torch.rand((2, *model.input_shape), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    b = propagate_bounds(model.body, x, 0.3, ball=False)
    g = torch.Generator().manual_seed(3)
    for info in b.layers:
        forward, adjoint = masked_operator(info, torch.float64)
        u = torch.randn((2, *info.layer.input_shape), generator=g, dtype=torch.float64)
        v = torch.randn(forward(u).shape, generator=g, dtype=torch.float64)
        assert float((forward(u) * v).sum()) == pytest.approx(float((u * adjoint(v)).sum()), rel=1e-12)


def test_converged_local_norms_match_dense_svd():
    model = _random_net("relu", 11)
    model.converge()
    x = torch.rand((3, *model.input_shape), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    b = propagate_bounds(model.body, x, 0.3, ball=False)
    sigmas = converged_local_norms(b, [1e9] * len(b.layers))
    for info, sigma in zip(b.layers, sigmas):
        forward, _ = masked_operator(info, torch.float64)
        n_in = math.prod(info.layer.input_shape)
        for s in range(3):
            fwd_s, _ = masked_operator(info, torch.float64, torch.tensor([s]))
            eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *info.layer.input_shape)
            cols = torch.cat([fwd_s(eye[k:k + 1]).flatten(1) for k in range(n_in)])
            dense = torch.linalg.matrix_norm(cols.T, ord=2)
            assert float(sigma[s]) == pytest.approx(float(dense), rel=1e-8)


def _brute_force_max(c, a, b, r, grid=4000):
    """max c.d over ||d|| <= r, a <= d <= b by the KKT path d(t) = clip(t c, a, b), bisected on ||d(t)|| = r."""
    def d_of(t):
        return torch.minimum(torch.maximum(t * c, a), b)
    lo, hi = 0.0, 1e12
    if float(torch.linalg.vector_norm(d_of(hi))) <= r:
        return float((c * d_of(hi)).sum())
    for _ in range(grid):
        mid = 0.5 * (lo + hi) if hi < 1e11 else math.sqrt(max(lo, 1e-12) * hi)
        if float(torch.linalg.vector_norm(d_of(mid))) <= r:
            lo = mid
        else:
            hi = mid
    return float((c * d_of(lo)).sum())


def test_worst_logit_offsets_are_upper_bounds_and_converge_to_the_maximum():
    g = torch.Generator().manual_seed(5)
    n, classes, dim = 6, 4, 12
    features = torch.randn((n, dim), generator=g, dtype=torch.float64)
    lower = features - torch.rand((n, dim), generator=g, dtype=torch.float64) * 0.5
    upper = features + torch.rand((n, dim), generator=g, dtype=torch.float64) * 0.5
    radius = torch.rand((n,), generator=g, dtype=torch.float64) * 1.5
    w = torch.randn((classes, dim), generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    converged = worst_logit_offsets(features, lower, upper, radius, w, labels, iterations=dim + 1)
    for iterations in (0, 1, 3):
        rough = worst_logit_offsets(features, lower, upper, radius, w, labels, iterations=iterations)
        assert (rough >= converged - 1e-12).all()
    ball_only = worst_logit_offsets(features, lower, upper, radius, w, labels, box=False)
    assert (converged <= ball_only + 1e-12).all()
    for s in range(n):
        for i in range(classes):
            c = w[i] - w[labels[s]]
            exact = _brute_force_max(c, lower[s] - features[s], upper[s] - features[s], float(radius[s]), 200)
            assert float(converged[s, i]) == pytest.approx(exact, rel=1e-7, abs=1e-9)


def test_vector_store_round_trip_and_buffers(tmp_path):
    store = PerSampleVectors(tmp_path / "v", [(2, 3), (4,)], 5)
    assert store.bytes_per_sample() == 2 * (6 + 4) * 2
    idx = torch.tensor([4, 1])
    first, complete = store.read(idx, "cpu")
    assert not complete and all(float(v.abs().sum()) == 0 for v in first)       # never written: zeros
    vals = [torch.ones((2, 2, 3)) * 0.5, torch.arange(8.0).view(2, 4)]
    store.write(idx, vals)
    assert all(float(v.abs().sum()) == 0 for v in store.read(idx, "cpu")[0])  # this epoch reads the old buffer
    store.end_epoch()
    got, complete = store.read(idx, "cpu")
    assert complete and not store.read(torch.tensor([0, 1]), "cpu")[1]
    torch.testing.assert_close(got[0], vals[0])
    torch.testing.assert_close(got[1], vals[1])
    reopened = PerSampleVectors(tmp_path / "v", [(2, 3), (4,)], 5)   # a resumed run maps the same files
    reopened.load_state_dict(store.state_dict())
    torch.testing.assert_close(reopened.read(idx, "cpu")[0][1], vals[1])
    with pytest.raises(ValueError, match="stored vectors are for shapes"):
        PerSampleVectors(tmp_path / "v", [(4,)], 5).load_state_dict(store.state_dict())
