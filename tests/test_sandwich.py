"""Sandwich layers (LBDN, Wang & Manchester ICML 2023) and the LBDN Sandwich architectures.

Independent references: dense Jacobians (torch.autograd.functional.jacobian, float64) and their SVD,
``F.conv2d`` with circular padding for the Fourier-domain convolution, dense operator matrices of the
layers' linear parts, and the L2 PGD attack against the certificates.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from lipcert.attacks import l2_pgd
from lipcert.certification import certified_margins
from lipcert.one_lipschitz.sandwich import (
    SandwichAffine,
    SandwichConv2d,
    SandwichLinear,
    cayley_blocks,
    kernel_frequency_matrices,
    max_row_gram_eigenvalue,
)
from lipcert.one_lipschitz_nets import sandwich_net

TINY = {"conv_channels": (4,), "dense_features": (16,)}
TINY_SHAPE = (2, 8, 8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomise(module: torch.nn.Module, g: torch.Generator, scale: float = 0.7) -> None:
    """Move every parameter away from its initialisation (psi, bias, alpha included)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _jacobian_matrix(fn, x: torch.Tensor) -> torch.Tensor:
    out = jacobian(fn, x)
    return out.reshape(-1, x.numel())


def _sigma_max(fn, x: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(_jacobian_matrix(fn, x))[0])


LAYERS = {
    "linear": (lambda g: SandwichLinear(6, 4, g), (6,)),
    "linear_wide": (lambda g: SandwichLinear(3, 7, g), (3,)),
    "affine_b": (lambda g: SandwichAffine(6, 4, g), (6,)),
    "affine_ab": (lambda g: SandwichAffine(6, 4, g, ab=True), (6,)),
    "conv3": (lambda g: SandwichConv2d(2, 3, 3, 6, g), (2, 6, 6)),
    "conv3_rect_odd": (lambda g: SandwichConv2d(3, 2, 3, (5, 7), g), (3, 5, 7)),
    "conv2_even_kernel": (lambda g: SandwichConv2d(2, 2, 2, (4, 6), g), (2, 4, 6)),
    "conv_stride2": (lambda g: SandwichConv2d(2, 3, 3, (6, 8), g, stride=2), (2, 6, 8)),
    "conv_no_bias": (lambda g: SandwichConv2d(2, 2, 3, 4, g, bias=False), (2, 4, 4)),
}


# --- building blocks ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_cayley_blocks_have_orthonormal_rows(dtype):
    g = _gen(1)
    free = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    if dtype == torch.complex128:
        free = torch.complex(free, torch.randn(5, 7, 3, generator=g, dtype=torch.float64))
    free = 3.0 * free
    a, b = cayley_blocks(free, 3)
    assert a.shape == (5, 3, 3) and b.shape == (5, 3, 4)
    rows = torch.cat((a, b), dim=-1)
    eye = torch.eye(3, dtype=dtype).expand(5, 3, 3)
    torch.testing.assert_close(rows @ rows.mH, eye, atol=1e-12, rtol=0)
    # the defining relations (I + Z) A^T = I - Z and B^T (I + Z) = -2 Y, checked with explicit inverses
    x, y = free[:, :3], free[:, 3:]
    z = x - x.mH + y.mH @ y
    inv = torch.linalg.inv(torch.eye(3, dtype=dtype) + z)
    torch.testing.assert_close(a.mT, inv @ (torch.eye(3, dtype=dtype) - z), atol=1e-12, rtol=0)
    torch.testing.assert_close(b.mT, -2.0 * y @ inv, atol=1e-12, rtol=0)
    assert max_row_gram_eigenvalue(a, b) == pytest.approx(1.0, abs=1e-12)
    assert max_row_gram_eigenvalue(2 * a, b) > 3.0  # not trivially 1


def test_cayley_blocks_reject_bad_shapes():
    with pytest.raises(ValueError, match="free"):
        cayley_blocks(torch.randn(2, 3), 3)
    with pytest.raises(ValueError, match="free"):
        cayley_blocks(torch.randn(4), 1)


@pytest.mark.parametrize("k,size", [(3, (6, 6)), (3, (5, 7)), (2, (4, 6)), (1, (4, 4)), (4, (5, 5))])
def test_kernel_frequency_matrices_are_the_circular_cross_correlation(k, size):
    g = _gen(2)
    kernel = torch.randn(3, 2, k, k, generator=g, dtype=torch.float64)
    x = torch.randn(2, 2, *size, generator=g, dtype=torch.float64)
    s = (k - 1) // 2
    reference = F.conv2d(F.pad(x, (s, k - 1 - s, s, k - 1 - s), mode="circular"), kernel)
    m = kernel_frequency_matrices(kernel, size)
    assert m.shape == (size[0], size[1] // 2 + 1, 3, 2)
    y = torch.fft.irfft2(torch.einsum("hwoc,nchw->nohw", m, torch.fft.rfft2(x)), s=size)
    torch.testing.assert_close(y, reference, atol=1e-12, rtol=0)


# --- acceptance 1: Jacobians of every layer type ---------------------------------------------------
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_jacobian_norm_at_most_one(name):
    make, shape = LAYERS[name]
    g = _gen(3)
    layer = make(g).double()
    _randomise(layer, g)
    layer.eval()
    layer.converge_sigma()
    constant = float(layer.converged_sigma())
    assert constant == pytest.approx(1.0, abs=1e-12)
    for _ in range(4):
        x = 2.0 * torch.randn(1, *shape, generator=g, dtype=torch.float64)
        assert _sigma_max(layer, x) <= 1.0 + 1e-6


def test_conv_layer_is_nearly_tight():
    """A random conv sandwich layer's local Jacobian norm comes close to 1 (the bound is not loose)."""
    g = _gen(4)
    layer = SandwichConv2d(2, 3, 3, 6, g).double().eval()
    best = max(_sigma_max(layer, torch.randn(1, 2, 6, 6, generator=g, dtype=torch.float64)) for _ in range(3))
    assert 0.9 < best <= 1.0 + 1e-6


def _conv_dense_operators(layer: SandwichConv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Real matrices of x -> B * x and z -> A^H * z, read off column by column from the FFT application."""
    a, b = layer.blocks()
    grid = layer.grid

    def apply(mats, v):
        return torch.fft.irfft2(torch.einsum("hwoc,nchw->nohw", mats, torch.fft.rfft2(v)), s=grid)

    def dense(mats, channels):
        n = channels * grid[0] * grid[1]
        basis = torch.eye(n, dtype=torch.float64).reshape(n, channels, *grid)
        return apply(mats, basis).reshape(n, -1).T

    b_op = dense(b, layer.channels_in)  # (out * HW, in * HW)
    at_op = dense(a.conj().mT, layer.out_channels)  # A^H applied; its transpose is the operator A
    return at_op.T, b_op


@pytest.mark.parametrize("stride,size", [(1, (6, 6)), (1, (5, 4)), (2, (4, 8))])
def test_conv_operators_are_real_with_orthonormal_rows(stride, size):
    """The half-spectrum realisation is the real operator [A B] with A A^T + B B^T = I."""
    g = _gen(5)
    layer = SandwichConv2d(2, 3, 3, size, g, stride=stride).double()
    _randomise(layer, g)
    layer.eval()
    a_op, b_op = _conv_dense_operators(layer)
    gram = a_op @ a_op.T + b_op @ b_op.T
    torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-10, rtol=0)
    # and the layer is the dense sandwich formula with these operators (channel-major flattening)
    x = torch.randn(3, 2, *size, generator=g, dtype=torch.float64)
    xin = x if layer.downsample is None else layer.downsample(x)
    psi = layer.psi.repeat_interleave(layer.grid[0] * layer.grid[1])
    bias = layer.bias.repeat_interleave(layer.grid[0] * layer.grid[1])
    v = math.sqrt(2) * torch.exp(-psi) * (xin.flatten(1) @ b_op.T) + bias
    expected = math.sqrt(2) * (torch.relu(v) * torch.exp(psi)) @ a_op
    with torch.no_grad():
        torch.testing.assert_close(layer(x).flatten(1), expected, atol=1e-10, rtol=0)


def test_dense_layer_matches_the_sandwich_formula():
    g = _gen(6)
    layer = SandwichLinear(5, 3, g).double()
    _randomise(layer, g)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    a, b = layer.blocks()
    rows = torch.cat((a, b), dim=1)
    torch.testing.assert_close(rows @ rows.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    psi = torch.diag(torch.exp(layer.psi))
    expected = math.sqrt(2) * a.T @ psi @ torch.relu(
        math.sqrt(2) * torch.linalg.inv(psi) @ b @ x.T + layer.bias[:, None])
    torch.testing.assert_close(layer(x), expected.T)


def test_certified_constant_bounds_non_orthonormal_blocks():
    """kappa = lambda_max([A B][A B]^H) bounds the layer when the blocks are not exactly orthonormal,
    and the Jacobian check detects a broken layer (the acceptance test can fail)."""
    g = _gen(7)
    layer = SandwichConv2d(2, 2, 3, 4, g).double().eval().requires_grad_(False)  # eval forward uses the cache
    layer.prepare_evaluation(1e-9, 0, "", 0)
    key, a, b = layer._eval_cache
    c = 1.3
    layer._eval_cache = (key, c * a, c * b)  # what a badly rounded Cayley transform would look like
    kappa = layer.certified_constant(1e-9)
    assert kappa == pytest.approx(c * c, rel=1e-12)
    sigmas = [_sigma_max(layer, torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64)) for _ in range(3)]
    assert max(sigmas) > 1.0 + 1e-3  # a broken layer fails the acceptance check ...
    assert max(sigmas) <= kappa + 1e-9  # ... but stays within its certified constant


def test_float32_constant_covers_rounding():
    """The certified constant of a float32 layer bounds the map its float32 blocks define (evaluated exactly,
    in float64), not just the ideal orthonormal one."""
    g = _gen(8)
    layer = SandwichLinear(64, 32, g)
    _randomise(layer, g, scale=0.1)
    layer.eval()
    report = layer.converge_sigma()
    assert 1.0 <= report.sigma < 1.0 + 1e-4
    a, b = (t.double() for t in layer._eval_cache[1:])
    psi, bias = layer.psi.detach().double(), layer.bias.detach().double()

    def exact(x):
        v = math.sqrt(2) * torch.exp(-psi) * (x @ b.T) + bias
        return math.sqrt(2) * (torch.relu(v) * torch.exp(psi)) @ a

    for _ in range(3):
        x = torch.randn(1, 64, generator=g, dtype=torch.float64)
        assert _sigma_max(exact, x) <= report.sigma + 1e-12


# --- eval cache, gradients, training -----------------------------------------------------------------
def test_eval_cache_follows_parameter_updates():
    g = _gen(9)
    layer = SandwichConv2d(2, 2, 3, 4, g)
    x = torch.randn(2, 2, 4, 4, generator=g)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer.eval()
    with torch.no_grad():
        before = layer(x)
    layer.train()
    loss = layer(x).square().sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        train_out = layer(x)
        layer.eval()
        after = layer(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, train_out, atol=0, rtol=0)  # eval sees exactly the trained network
    with torch.no_grad():
        assert layer.blocks()[0] is layer.blocks()[0]  # cached in eval mode without parameter gradients


def test_training_steps_reduce_a_loss_and_every_parameter_gets_a_gradient():
    g = _gen(10)
    model = sandwich_net.build(TINY_SHAPE, 4, g, "linear", **TINY)
    x = torch.randn(16, *TINY_SHAPE, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(15):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for name, p in model.named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all(), name
                assert p.grad.abs().sum() > 0, name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# --- acceptance 1 (composed), 2, 3 ------------------------------------------------------------------
def _tiny_model(seed: int = 11, head: str = "linear"):
    g = _gen(seed)
    model = sandwich_net.build(TINY_SHAPE, 4, g, head, **TINY).double()
    _randomise(model.body, g, scale=0.3)
    model.eval()
    return model, g


def test_composed_network_jacobians_within_bounds():
    model, g = _tiny_model()
    report = model.converge()
    assert report.k_body == pytest.approx(1.0, abs=1e-12)
    k_pair = model.pairwise_lipschitz()
    for _ in range(3):
        x = torch.randn(1, *TINY_SHAPE, generator=g, dtype=torch.float64)
        assert _sigma_max(model.body, x) <= 1.0 + 1e-6
        jac = _jacobian_matrix(model, x)  # (classes, inputs)
        pair_norms = torch.linalg.vector_norm(jac[:, None, :] - jac[None, :, :], dim=-1)
        assert (pair_norms <= k_pair * (1 + 1e-6) + 1e-12).all()
        assert float(torch.linalg.svdvals(jac)[0]) <= float(torch.linalg.svdvals(model.head.weight.detach())[0]) + 1e-6


def _flip_distance_upper_bound(model, x, pred):
    """Bisection towards the nearest sample of another predicted class: a flipping distance that surely
    exists (the far end is classified differently).  inf where all samples share one prediction."""
    with torch.no_grad():
        dist = torch.cdist(x.flatten(1), x.flatten(1))
        dist = torch.where(pred[:, None] != pred[None, :], dist, torch.full_like(dist, float("inf")))
        nearest = dist.argmin(dim=1)
        direction = x[nearest] - x
        lo = torch.zeros(x.shape[0], dtype=x.dtype)
        hi = torch.ones(x.shape[0], dtype=x.dtype)
        view = (-1,) + (1,) * (x.dim() - 1)
        for _ in range(40):
            mid = (lo + hi) / 2
            same = model(x + mid.view(view) * direction).argmax(1) == pred
            lo = torch.where(same, mid, lo)
            hi = torch.where(same, hi, mid)
        out = hi * torch.linalg.vector_norm(direction.flatten(1), dim=1)
    return torch.where(torch.isfinite(dist.amin(dim=1)), out, torch.full_like(out, float("inf")))


def test_attack_never_breaks_a_certificate():
    model, g = _tiny_model(12)
    x = torch.randn(24, *TINY_SHAPE, generator=g, dtype=torch.float64)
    # a few training steps on random labels so that the predictions vary
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    y = torch.randint(0, 4, (24,), generator=g)
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.converge()
    with torch.no_grad():
        logits = model(x)
    pred = logits.argmax(1)
    radius = certified_margins(logits, model.pairwise_lipschitz())
    assert (radius > 0).all()
    _, flipped = l2_pgd(model, x, pred, radius * 0.999, steps=100, restarts=2, targets=3, generator=g)
    assert not flipped.any()
    # the attack is strong: where a flip is known to exist (bisection), it finds one
    known = _flip_distance_upper_bound(model, x, pred)
    finite = torch.isfinite(known)
    assert finite.sum() >= 10
    assert (radius[finite] <= known[finite]).all()
    _, flipped = l2_pgd(model, x[finite], pred[finite], known[finite] * 1.01, steps=100, restarts=2, targets=3,
                        generator=g)
    assert flipped.double().mean() >= 0.9


@pytest.mark.parametrize("head", ["linear", "lln"])
@pytest.mark.parametrize("shape,options", [
    (TINY_SHAPE, TINY),
    ((3, 8, 4), {"conv_channels": (2, 3), "dense_features": (5, 6), "kernel_size": 1}),
    ((3, 4, 4), {"conv_channels": (2,), "dense_features": ()}),
    ((5,), {"conv_channels": (), "dense_features": (4, 3)}),
])
def test_count_parameters_matches_a_real_build(head, shape, options):
    model = sandwich_net.build(shape, 3, _gen(13), head, **options)
    assert sandwich_net.count_parameters(shape, 3, head, **options) == sum(p.numel() for p in model.parameters())
    n_conv = sum(isinstance(m, SandwichConv2d) for m in model.modules())
    assert sandwich_net.lbdn_reported_parameters(shape, 3, **options) == sum(
        p.numel() for p in model.parameters()) - n_conv
    x = torch.randn(2, *shape)
    assert model(x).shape == (2, 3)


def test_paper_size_parameter_counts():
    """LBDN's Tiny-ImageNet model: 39.15M parameters (CLL main text: "39M"); LBDN's CIFAR-100 model 25.8M."""
    tiny = sandwich_net.SIZES[sandwich_net.CLL_TABLE1_SIZE]
    assert sandwich_net.count_parameters((3, 64, 64), 200, **tiny) == 39_149_203
    assert sandwich_net.lbdn_reported_parameters((3, 64, 64), 200, **tiny) == 39_149_195
    assert sandwich_net.lbdn_reported_parameters((3, 32, 32), 100, **sandwich_net.SIZES["CIFAR"]) == 25_806_375


def test_build_is_deterministic_and_state_dict_round_trips():
    a = sandwich_net.build(TINY_SHAPE, 4, _gen(14), "lln", **TINY)
    b = sandwich_net.build(TINY_SHAPE, 4, _gen(14), "lln", **TINY)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb, na
        torch.testing.assert_close(pa, pb, atol=0, rtol=0, equal_nan=True)
    _randomise(a, _gen(15), scale=0.2)
    a.eval()
    report = a.converge()
    x = torch.randn(3, *TINY_SHAPE, generator=_gen(16))
    with torch.no_grad():
        out_a = a(x)
    c = sandwich_net.build(TINY_SHAPE, 4, _gen(99), "lln", **TINY).eval()
    c.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(c(x), out_a, atol=0, rtol=0)
    assert float(c.converged_body_lipschitz()) == report.k_body
    torch.testing.assert_close(c.pairwise_lipschitz(), a.pairwise_lipschitz(), atol=0, rtol=0)


# --- acceptance 4: failure paths ----------------------------------------------------------------------
def test_converged_sigma_is_stale_after_an_optimiser_step():
    model = sandwich_net.build(TINY_SHAPE, 4, _gen(17), "linear", **TINY)
    model.converge()
    model.converged_body_lipschitz()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(2, *TINY_SHAPE)).sum()
    loss.backward()
    opt.step()
    with pytest.raises(RuntimeError, match="changed"):
        model.converged_body_lipschitz()
    fresh = sandwich_net.build(TINY_SHAPE, 4, _gen(17), "linear", **TINY)
    with pytest.raises(RuntimeError, match="converge"):
        fresh.converged_body_lipschitz()


@pytest.mark.parametrize("options,match", [
    ({"conv_channels": (4,)}, "dense_features"),
    ({"dense_features": (4,)}, "conv_channels"),
    ({"conv_channels": (0,), "dense_features": ()}, "conv_channels"),
    ({"conv_channels": "64", "dense_features": ()}, "conv_channels"),
    ({"conv_channels": (4,), "dense_features": (2.5,)}, "dense_features"),
    ({"conv_channels": (4,), "dense_features": (), "kernel_size": 0}, "kernel_size"),
    ({"conv_channels": (4, 4, 4, 4), "dense_features": (), "kernel_size": 1}, "divisible"),
    ({"conv_channels": (4,), "dense_features": (), "kernel_size": 9}, "kernel_size"),
])
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        sandwich_net.build(TINY_SHAPE, 4, _gen(), "linear", **options)
    with pytest.raises(ValueError, match=match):
        sandwich_net.count_parameters(TINY_SHAPE, 4, **options)


def test_bad_arguments_raise():
    g = _gen()
    with pytest.raises(ValueError, match="num_classes"):
        sandwich_net.build(TINY_SHAPE, 1, g, "linear", **TINY)
    with pytest.raises(ValueError, match="input_shape"):
        sandwich_net.build((2, 8), 4, g, "linear", **TINY)
    with pytest.raises(ValueError, match="conv_channels"):
        sandwich_net.build((5,), 4, g, "linear", **TINY)
    with pytest.raises(ValueError, match="head"):
        sandwich_net.build(TINY_SHAPE, 4, g, "softmax", **TINY)
    with pytest.raises(ValueError, match="head"):
        sandwich_net.count_parameters(TINY_SHAPE, 4, "softmax", **TINY)
    for stride in (3, 2.0, True):
        with pytest.raises(ValueError, match="stride"):
            SandwichConv2d(2, 2, 3, 4, g, stride=stride)
    with pytest.raises(ValueError, match="bias"):
        SandwichConv2d(2, 2, 3, 4, g, bias=1)
    with pytest.raises(ValueError, match="bias"):
        SandwichLinear(2, 2, g, bias=None)
    with pytest.raises(ValueError, match="input_size"):
        SandwichConv2d(2, 2, 3, (4, 0), g)
    with pytest.raises(ValueError, match="even input_size"):
        SandwichConv2d(2, 2, 3, 5, g, stride=2)
    with pytest.raises(ValueError, match="kernel_size"):
        SandwichConv2d(2, 2, 5, 4, g)
    with pytest.raises(ValueError, match="in_features"):
        SandwichLinear(0, 2, g)
    with pytest.raises(ValueError, match="ab"):
        SandwichAffine(2, 2, g, ab="yes")
    layer = SandwichConv2d(2, 2, 3, 4, g)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        layer(torch.randn(1, 2, 6, 6))


def test_private_base_layer_is_abstract():
    """The shared base cannot be built on its own: the hook every concrete layer overrides is abstract."""
    from lipcert.one_lipschitz.sandwich import _SandwichBase

    with pytest.raises(TypeError, match="_free"):
        _SandwichBase()
