"""Convex Potential Layers (Meunier et al., ICML 2022), the CPL architecture and CPL's margin loss.

Every bound is checked against an independent computation: dense Jacobians by autograd in float64, dense
operators and their SVDs, a dense re-implementation of the layer, torch's multi_margin_loss.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lipcert.attacks import l2_pgd
from lipcert.certification import certified_margins
from lipcert.losses.margin_hinge import CPL_MARGIN, margin_hinge_loss
from lipcert.one_lipschitz.convex_potential import (
    CPL_EPSILON,
    ConvexPotentialConv2d,
    ConvexPotentialLinear,
    potential_step_bound,
)
from lipcert.one_lipschitz_nets import cpl_net

TINY = {"depth": 2, "num_channels": 4, "conv_size": 3, "pool": 2, "depth_linear": 2, "n_features": 12}


# --- helpers -----------------------------------------------------------------------------------------
def _gen(seed):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _randomize(module, seed, weight_scale=1.0, bias_scale=1.0):
    """Random weights and biases (not the initialisation) for every CPL layer of ``module``."""
    g = _gen(seed)
    for m in module.modules():
        if isinstance(m, (ConvexPotentialConv2d, ConvexPotentialLinear)):
            m.inner.weight.copy_(torch.randn(m.inner.weight.shape, generator=g, dtype=torch.float64) * weight_scale)
            m.inner.bias.copy_(torch.randn(m.inner.bias.shape, generator=g, dtype=torch.float64) * bias_scale)


def _conv_layer(channels=3, inner=2, hw=5, epsilon=0.0, seed=0):
    return ConvexPotentialConv2d(channels, inner, (hw, hw), epsilon=epsilon, generator=_gen(seed)).double()


def _linear_layer(features=6, inner=9, epsilon=0.0, seed=0):
    return ConvexPotentialLinear(features, inner, epsilon=epsilon, generator=_gen(seed)).double()


def _shape(layer):
    if isinstance(layer, ConvexPotentialConv2d):
        return tuple(layer.inner.input_shape)
    return (layer.inner.in_features,)


def _jacobian(fn, x):
    """Dense Jacobian of a batch-1 map at the flat point x (float64)."""
    shape = x.shape

    def flat(v):
        return fn(v.reshape(1, *shape)).reshape(-1)

    return torch.autograd.functional.jacobian(flat, x.reshape(-1), vectorize=True)


def _spectral_norm(matrix):
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def _dense_parts(layer):
    """(W as a dense matrix, b broadcast to the output of W) of a CPL layer, built independently."""
    w = layer.inner.dense_operator()
    if isinstance(layer, ConvexPotentialConv2d):
        _, h, wd = layer.inner.input_shape
        b = layer.inner.bias.detach()[:, None, None].expand(-1, h, wd).reshape(-1)
    else:
        b = layer.inner.bias.detach()
    return w, b


def _dense_forward(layer, x, s):
    """x - 2 / (s^2 + epsilon) W^T relu(W x + b) with explicit matrices (x: (N, *shape))."""
    w, b = _dense_parts(layer)
    flat = x.reshape(x.shape[0], -1)
    h = 2.0 / (s * s + layer.epsilon)
    out = flat - h * F.relu(flat @ w.T + b) @ w
    return out.reshape(x.shape)


LAYERS = {
    "conv_dense_path": lambda eps: _conv_layer(3, 2, 5, eps),  # 75 inputs: the converge uses a dense SVD
    "conv_lanczos_path": lambda eps: _conv_layer(4, 3, 9, eps, seed=1),  # 324 inputs: Lanczos
    "linear_wide": lambda eps: _linear_layer(6, 9, eps),  # W injective
    "linear_narrow": lambda eps: _linear_layer(10, 4, eps, seed=2),  # W with a kernel
}


# --- the layers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("epsilon", [0.0, CPL_EPSILON])
def test_layer_jacobian_within_certified_constant(name, epsilon):
    layer = LAYERS[name](epsilon)
    _randomize(layer, seed=10, weight_scale=0.7, bias_scale=1.0)
    layer.converge_sigma(tol=1e-10)
    layer.eval()
    constant = float(layer.converged_sigma())
    assert 1.0 <= constant <= 1.0 + 1e-8  # 1-Lipschitz up to the convergence tolerance
    g = _gen(3)
    worst = 0.0
    for _ in range(4):
        x = torch.randn(_shape(layer), generator=g, dtype=torch.float64)
        norm = _spectral_norm(_jacobian(layer, x))
        assert norm <= constant + 1e-6
        worst = max(worst, norm)
    assert worst > 0.9  # the check is not vacuous: the Jacobians are near-isometries in some direction


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("epsilon", [0.0, CPL_EPSILON])
def test_eval_forward_matches_dense_formula_with_exact_norm(name, epsilon):
    """Eval mode divides by the exact ||W|| (dense SVD): with every unit active the Jacobian
    I - h W^T W has smallest eigenvalue 1 - 2 sigma^2 / (sigma^2 + epsilon) (= -1 for epsilon = 0)."""
    layer = LAYERS[name](epsilon)
    _randomize(layer, seed=11, weight_scale=0.5)
    layer.converge_sigma(tol=1e-10)
    layer.eval()
    w, _ = _dense_parts(layer)
    sigma = float(torch.linalg.svdvals(w)[0])
    assert float(layer.inner.converged_sigma()) == pytest.approx(sigma, rel=1e-9)
    x = torch.randn((3, *_shape(layer)), generator=_gen(4), dtype=torch.float64)
    torch.testing.assert_close(layer(x), _dense_forward(layer, x, sigma), rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        layer.inner.bias.fill_(1e6)  # every unit active near the origin: D = I
    jac = _jacobian(layer, torch.zeros(_shape(layer), dtype=torch.float64))
    eigs = torch.linalg.eigvalsh((jac + jac.T) / 2)
    torch.testing.assert_close(jac, jac.T, rtol=0, atol=1e-12)  # the CPL Jacobian is symmetric
    assert float(eigs[0]) == pytest.approx(1.0 - 2.0 * sigma ** 2 / (sigma ** 2 + epsilon), abs=1e-9)


@pytest.mark.parametrize("name", ["conv_dense_path", "linear_wide", "linear_narrow"])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 1.2, 1.5])
def test_formula_max_1_2r2_minus_1_with_wrong_norm(name, ratio):
    """With s = ||W|| / r (under-estimated for r > 1) the layer's Lipschitz constant is exactly
    max(1, 2 r^2 - 1): never exceeded at random points or between random pairs, and attained."""
    layer = LAYERS[name](0.0)
    _randomize(layer, seed=12, weight_scale=0.6)
    layer.converge_sigma(tol=1e-10)
    sigma = float(layer.inner.converged_sigma())
    s = sigma / ratio
    with torch.no_grad():
        layer.inner.sigma_converged.fill_(s)  # the weights are unchanged: the value stays "fresh"
    layer.inner._sigma_value = s  # and its host copy, which the evaluation forward reads (no device read)
    layer.eval()
    bound = potential_step_bound(2.0 / s ** 2, sigma)
    assert bound == pytest.approx(max(1.0, 2.0 * ratio ** 2 - 1.0), rel=1e-12)
    g = _gen(5)
    for _ in range(3):  # random points (D in {0, 1}) and random pairs (D in [0, 1], mean-value form)
        x = torch.randn(_shape(layer), generator=g, dtype=torch.float64)
        assert _spectral_norm(_jacobian(layer, x)) <= bound + 1e-9
        y = x + 0.3 * torch.randn(_shape(layer), generator=g, dtype=torch.float64)
        with torch.no_grad():
            ratio_xy = torch.linalg.vector_norm(layer(x[None]) - layer(y[None])) / torch.linalg.vector_norm(x - y)
        assert float(ratio_xy) <= bound + 1e-9
    # the formula is attained, so it is exact: at D = I when 2 r^2 - 1 > 1, else (bound 1) at D = 0
    with torch.no_grad():
        layer.inner.bias.fill_(1e6 if ratio > 1 else -1e6)
    attained = _spectral_norm(_jacobian(layer, torch.zeros(_shape(layer), dtype=torch.float64)))
    assert attained == pytest.approx(bound, rel=1e-9)


def test_potential_step_bound_rejects_bad_arguments():
    assert potential_step_bound(2.0, 1.0) == 1.0
    assert potential_step_bound(2.0, 2.0) == 7.0
    for step, sigma in [(-1.0, 1.0), (math.nan, 1.0), (1.0, -0.1), (1.0, math.inf)]:
        with pytest.raises(ValueError, match="step|sigma"):
            potential_step_bound(step, sigma)


@pytest.mark.parametrize("epsilon", [0.0, CPL_EPSILON])
def test_certified_constant_formula(epsilon):
    layer = _linear_layer(6, 9, epsilon)
    _randomize(layer, seed=13, weight_scale=0.3)
    layer.converge_sigma(tol=1e-10)
    s = float(layer.inner.converged_sigma())
    for tol in (1e-9, 1e-6, 1e-2):
        expected = max(1.0, 2.0 * (1 + tol) ** 2 * s ** 2 / (s ** 2 + epsilon) - 1.0)
        got = layer.certified_constant(tol)
        assert got >= expected and got == pytest.approx(expected, rel=1e-14, abs=1e-15)
        if epsilon == 0.0:
            assert got == pytest.approx(2.0 * (1 + tol) ** 2 - 1.0, rel=1e-14)
    assert layer.certified_constant(1e-9) > 1.0 if epsilon == 0.0 else layer.certified_constant(1e-9) == 1.0
    with pytest.raises(ValueError, match="tol"):
        layer.certified_constant(0.0)


def test_zero_weight_layer_is_identity():
    layer = _linear_layer(5, 3)
    with torch.no_grad():
        layer.inner.weight.zero_()
    layer.converge_sigma(tol=1e-9)
    layer.eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x)
    assert layer.certified_constant(1e-9) == 1.0


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_training_forward_one_warm_started_step_with_gradient_through_the_norm(kind):
    """Training mode (CPL layers.py): one power-iteration step from the stored iterate, then
    h = 2 / (||W u||^2 + epsilon) with the iterate detached and the norm differentiable in W."""
    layer = _linear_layer(6, 4, CPL_EPSILON, seed=3) if kind == "linear" else _conv_layer(3, 2, 4, CPL_EPSILON, seed=3)
    layer.train()
    x = torch.randn((3, *_shape(layer)), generator=_gen(6), dtype=torch.float64)
    u0 = layer.inner.pi_vector.clone().reshape(-1)
    w_dense, b_dense = _dense_parts(layer)

    def reference(w):
        u1 = w.T @ (w @ u0)
        u1 = (u1 / torch.linalg.vector_norm(u1)).detach()
        s = torch.linalg.vector_norm(w @ u1)
        flat = x.reshape(3, -1)
        h = 2.0 / (s * s + CPL_EPSILON)
        return (flat - h * F.relu(flat @ w.T + b_dense) @ w).reshape(x.shape), u1

    out = layer(x)
    expected, u1 = reference(w_dense)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.inner.pi_vector.reshape(-1), u1, rtol=1e-10, atol=1e-12)  # warm start stored
    if kind == "linear":  # gradient w.r.t. W through both the map and the norm, vs the dense re-implementation
        (grad,) = torch.autograd.grad(out.square().sum(), layer.inner.weight)
        w_leaf = w_dense.clone().requires_grad_(True)
        ref_out, _ = reference(w_leaf)
        (ref_grad,) = torch.autograd.grad(ref_out.square().sum(), w_leaf)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
        # ... and the norm's share of it is not zero (the norm is not detached)
        h_detached = float(2.0 / (torch.linalg.vector_norm(w_dense @ u1) ** 2 + CPL_EPSILON))
        w_leaf2 = w_dense.clone().requires_grad_(True)
        flat = x.reshape(3, -1)
        det_out = flat - h_detached * F.relu(flat @ w_leaf2.T + b_dense) @ w_leaf2
        (det_grad,) = torch.autograd.grad(det_out.square().sum(), w_leaf2)
        assert float((grad - det_grad).abs().max()) > 1e-6
    before = layer.inner.pi_vector.clone()
    layer(x)
    assert not torch.equal(before, layer.inner.pi_vector)  # every training forward pass iterates once more


def test_eval_needs_converged_norm_and_fresh_weights():
    layer = _conv_layer(3, 2, 4)
    layer.eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="converge"):
        layer(x)
    with pytest.raises(RuntimeError, match="converge"):
        layer.converged_sigma()
    layer.converge_sigma(tol=1e-9)
    layer(x)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer.train()
    layer(x).sum().backward()
    optimizer.step()
    layer.eval()
    with pytest.raises(RuntimeError, match="changed"):
        layer.converged_sigma()
    with pytest.raises(RuntimeError, match="changed"):
        layer(x)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="epsilon"):
        ConvexPotentialLinear(4, 3, epsilon=-1.0)
    with pytest.raises(ValueError, match="epsilon"):
        ConvexPotentialLinear(4, 3, epsilon=math.nan)
    with pytest.raises(ValueError, match="train_iterations"):
        ConvexPotentialLinear(4, 3, train_iterations=0)
    with pytest.raises(ValueError, match="inner_features"):
        ConvexPotentialLinear(4, 0)
    with pytest.raises(ValueError, match="kernel_size"):
        ConvexPotentialConv2d(3, 2, (4, 4), kernel_size=2)
    with pytest.raises(ValueError, match="input_hw"):
        ConvexPotentialConv2d(3, 2, (0, 4))
    with pytest.raises(ValueError, match="channels"):
        ConvexPotentialConv2d(0, 2, (4, 4))
    conv = ConvexPotentialConv2d(3, 2, (4, 4))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        conv(torch.randn(1, 3, 5, 5))  # another spatial size would change ||W||
    with pytest.raises(ValueError, match="expects inputs of shape"):
        ConvexPotentialLinear(4, 3)(torch.randn(2, 5))


# --- the CPL network ---------------------------------------------------------------------------------
def _tiny_model(seed=0, head="linear", **overrides):
    model = cpl_net.build((2, 8, 8), 3, _gen(seed), head, **{**TINY, **overrides}).double()
    return model


@pytest.mark.parametrize("head", ["linear", "lln"])
def test_model_jacobians_within_converged_bounds(head):
    model = _tiny_model(head=head)
    _randomize(model, seed=20, weight_scale=0.5)
    report = model.converge(tol=1e-10)
    model.eval()
    k_body = float(model.converged_body_lipschitz())
    assert k_body == pytest.approx(report.k_body) and 1.0 <= k_body <= 1.0 + 1e-8
    k_pairs = model.pairwise_lipschitz()
    g = _gen(21)
    for _ in range(3):
        x = torch.randn(2, 8, 8, generator=g, dtype=torch.float64)
        assert _spectral_norm(_jacobian(model.body, x)) <= k_body + 1e-6
        jac = _jacobian(model, x)  # (classes, inputs)
        for i in range(3):
            for j in range(3):
                if i != j:
                    assert float(torch.linalg.vector_norm(jac[i] - jac[j])) <= float(k_pairs[i, j]) + 1e-6
    assert float(k_pairs.max()) == pytest.approx(model.global_lipschitz())


def test_attack_never_breaks_a_certified_margin():
    model = _tiny_model(seed=1)
    _randomize(model, seed=22, weight_scale=0.5)
    model.converge(tol=1e-10)
    model.eval()
    x = torch.randn(24, 2, 8, 8, generator=_gen(23), dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    labels = logits.argmax(1)
    radii = certified_margins(logits, model.pairwise_lipschitz())
    assert bool((radii > 0).all())
    _, broken = l2_pgd(model, x, labels, 0.999 * radii, steps=60, restarts=2, targets=2, generator=_gen(24))
    assert not bool(broken.any())
    # the attack is strong enough to matter: a few times the certified radius flips some points
    _, flipped = l2_pgd(model, x, labels, 4.0 * radii, steps=60, restarts=1, targets=2, generator=_gen(25))
    assert bool(flipped.any())


def test_count_parameters_matches_a_real_build():
    configs = [
        ({**TINY}, "linear", (2, 8, 8), 3),
        ({**TINY, "pool": 1, "depth": 0, "kernel_size": 5}, "lln", (2, 8, 8), 3),
        ({"depth": 3, "num_channels": 3, "conv_size": 2, "depth_linear": 0, "pool": 4}, "linear", (3, 8, 4), 5),
    ]
    for options, head, shape, classes in configs:
        model = cpl_net.build(shape, classes, _gen(0), head, **options)
        assert cpl_net.count_parameters(shape, classes, **options) == sum(p.numel() for p in model.parameters())


def test_paper_size_parameter_counts_cifar10():
    """S/M/L/XL (SLL/CPL presets) and the CLL fork's XL on 32x32x3, 10 classes, from the closed form."""
    def closed_form(depth, depth_linear, num_channels, n_features, conv_size):
        features = num_channels * 8 * 8
        conv = depth * (num_channels * conv_size * 9 + conv_size)
        dense = depth_linear * (features + 1) * n_features
        return conv + dense + 10 * features + 10

    counts = {name: cpl_net.count_parameters((3, 32, 32), 10, **opts) for name, opts in cpl_net.SIZES.items()}
    assert counts == {name: closed_form(**opts) for name, opts in cpl_net.SIZES.items()}
    assert counts == {"S": 41_371_426, "M": 78_783_240, "L": 118_245_640, "XL": 236_415_480}
    assert cpl_net.count_parameters((3, 32, 32), 10, **cpl_net.CLL_FORK_SIZES["XL"]) == 472_375_800


def test_build_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = cpl_net.build((2, 8, 8), 3, _gen(5), "linear", **TINY).state_dict()
    b = cpl_net.build((2, 8, 8), 3, _gen(5), "linear", **TINY).state_dict()
    c = cpl_net.build((2, 8, 8), 3, _gen(6), "linear", **TINY).state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) or (torch.isnan(a[k]).all() and torch.isnan(b[k]).all()) for k in a)
    assert not torch.equal(a["body.1.inner.weight"], c["body.1.inner.weight"])


def test_state_dict_round_trip_keeps_outputs_and_constants():
    model = _tiny_model(seed=2)
    _randomize(model, seed=26, weight_scale=2.0)  # norms far from 1: the stored norms matter
    model.converge(tol=1e-10)
    model.eval()
    x = torch.randn(5, 2, 8, 8, generator=_gen(27), dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    saved = model.state_dict()
    other = _tiny_model(seed=3)
    other.load_state_dict(saved)
    other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(other.pairwise_lipschitz(), model.pairwise_lipschitz(), rtol=0, atol=0)
    torch.testing.assert_close(other.converged_body_lipschitz(), model.converged_body_lipschitz(), rtol=0, atol=0)


@pytest.mark.parametrize("options,pattern", [
    ({"depth": -1}, "depth"),
    ({"depth_linear": 1.5}, "depth_linear"),
    ({"num_channels": 1}, "num_channels"),  # fewer than the 2 input channels
    ({"pool": 3}, "pool"),  # does not divide 8
    ({"n_features": 0}, "n_features"),
    ({"conv_size": True}, "conv_size"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"epsilon": -1e-4}, "epsilon"),
    ({"train_iterations": 0}, "train_iterations"),
    ({"width": 3}, "width"),  # unknown option
])
def test_build_rejects_bad_options(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        cpl_net.build((2, 8, 8), 3, _gen(0), "linear", **{**TINY, **options})
    with pytest.raises(ValueError, match=pattern):
        cpl_net.count_parameters((2, 8, 8), 3, **{**TINY, **options})


def test_build_rejects_bad_shapes_and_heads():
    with pytest.raises(ValueError, match="input_shape"):
        cpl_net.build((8, 8), 3, _gen(0), "linear", **TINY)
    with pytest.raises(ValueError, match="num_classes"):
        cpl_net.build((2, 8, 8), 1, _gen(0), "linear", **TINY)
    with pytest.raises(ValueError, match="head"):
        cpl_net.build((2, 8, 8), 3, _gen(0), "trunc", **TINY)


def test_model_converged_bound_is_stale_after_an_optimizer_step():
    model = _tiny_model()
    model.converge(tol=1e-9)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    loss = margin_hinge_loss(model(torch.randn(4, 2, 8, 8, dtype=torch.float64)), torch.tensor([0, 1, 2, 0]),
                             torch.ones((), dtype=torch.float64), model.head_weight(), margin=CPL_MARGIN)
    loss.backward()
    optimizer.step()
    with pytest.raises(RuntimeError, match="changed"):
        model.converged_body_lipschitz()
    model.converge(tol=1e-9)
    assert float(model.converged_body_lipschitz()) >= 1.0


@pytest.mark.gpu
def test_cuda_matches_cpu():
    model = _tiny_model(seed=4)
    _randomize(model, seed=28, weight_scale=0.5)
    model.converge(tol=1e-10)
    model.eval()
    x = torch.randn(6, 2, 8, 8, generator=_gen(29), dtype=torch.float64)
    with torch.no_grad():
        cpu = model(x)
        gpu_model = model.cuda()
        gpu_model.converge(tol=1e-10)
        gpu_model.eval()
        torch.testing.assert_close(gpu_model(x.cuda()).cpu(), cpu, rtol=1e-9, atol=1e-10)
    gpu_model.train()
    gpu_model(x.cuda()).sum().backward()


# --- the margin loss ---------------------------------------------------------------------------------
def _loss_args(logits, targets):
    return logits, torch.tensor(targets), torch.ones(()), torch.randn(logits.shape[1], 4)


def test_margin_hinge_loss_by_hand():
    logits = torch.tensor([[2.0, 1.5, -1.0], [0.0, 0.2, 0.1]])
    targets = [0, 2]
    # sample 0 (t=0): max(0, .7-.5) + max(0, .7-3) = 0.2 ; sample 1 (t=2): max(0, .7-.1) + max(0, .7+.1) = 1.4
    expected = (0.2 / 3 + 1.4 / 3) / 2
    loss = margin_hinge_loss(*_loss_args(logits, targets), margin=0.7)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # margin 0.01: sample 0 has no violation; sample 1: max(0, .01-.1+0) + max(0, .01-.1+.2) = 0.11
    small = margin_hinge_loss(*_loss_args(logits, targets), margin=0.01)
    assert float(small) == pytest.approx((0.0 + 0.11 / 3) / 2, rel=1e-5)


def test_margin_hinge_loss_matches_torch_multi_margin_and_its_gradient():
    g = _gen(30)
    logits = torch.randn(16, 10, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 10, (16,), generator=g)
    ours = margin_hinge_loss(logits, targets, torch.ones(()), torch.randn(10, 3), margin=CPL_MARGIN)
    ref = F.multi_margin_loss(logits, targets, p=1, margin=CPL_MARGIN)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref)
    separated = torch.zeros(4, 3)
    separated[torch.arange(4), torch.tensor([0, 1, 2, 0])] = CPL_MARGIN + 1e-3
    assert float(margin_hinge_loss(*_loss_args(separated, [0, 1, 2, 0]), margin=CPL_MARGIN)) == 0.0


def test_margin_hinge_loss_rejects_bad_arguments():
    logits = torch.zeros(2, 3)
    for margin in (0.0, -0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="margin"):
            margin_hinge_loss(*_loss_args(logits, [0, 1]), margin=margin)
    with pytest.raises(ValueError, match="targets"):
        margin_hinge_loss(*_loss_args(logits, [0, 3]), margin=0.7)
    with pytest.raises(ValueError, match="head_weight"):
        margin_hinge_loss(logits, torch.tensor([0, 1]), torch.ones(()), torch.zeros(4, 2), margin=0.7)
    with pytest.raises(ValueError, match="k_body"):
        margin_hinge_loss(logits, torch.tensor([0, 1]), torch.ones(2), torch.zeros(3, 2), margin=0.7)


def test_private_base_layer_is_abstract():
    """The shared base cannot be built on its own: the hook every concrete layer overrides is abstract."""
    from lipcert.one_lipschitz.convex_potential import _ConvexPotential

    with pytest.raises(TypeError, match="_check_input"):
        _ConvexPotential()
