"""Spectral norms by power iteration against dense SVDs (CLL eq. (16), supplement B)."""

import math

import pytest
import torch
import torch.nn.functional as F

from lipcert.power_iteration import _DENSE_LIMIT, SpectralConv2d, SpectralLinear

# (kernel, stride, padding) of every convolution in table B2 (4C3F, 6C2F, 8C2F) and the authors' 4C3F.
CONV_CONFIGS = [(3, 1, 1), (4, 2, 1), (4, 2, 0), (3, 2, 1)]
# Spatial sizes: even and odd, including those where conv_transpose2d alone cannot restore the input size.
SIZES = [6, 7, 8, 9]


def _conv(k, s, p, hw, cin=3, cout=4, seed=0):
    torch.manual_seed(seed)
    conv = SpectralConv2d(cin, cout, k, stride=s, padding=p).double()
    conv.set_input_shape((cin, hw, hw))
    return conv


def _dense_sigma(layer):
    return float(torch.linalg.matrix_norm(layer.dense_operator(), ord=2))


@pytest.mark.parametrize("k,s,p", CONV_CONFIGS)
@pytest.mark.parametrize("hw", SIZES)
def test_conv_adjoint_is_exact(k, s, p, hw):
    conv = _conv(k, s, p, hw)
    w = conv.weight.detach()
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, 3, hw, hw), generator=g, dtype=torch.float64)
    y_shape = (2, 4, *conv.output_hw((hw, hw)))
    y = torch.randn(y_shape, generator=g, dtype=torch.float64)
    wx = conv.apply_operator(x, w)
    wty = conv.apply_adjoint(y, w)
    assert wty.shape == x.shape  # the transpose maps back to the true input shape
    lhs = float((wx * y).sum())
    rhs = float((x * wty).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_plain_conv_transpose_loses_a_row_on_stride2_even_input():
    """The authors' adjoint (no output_padding) shrinks a 4C3F-authors stride-2 iterate: ours does not."""
    conv = _conv(3, 2, 1, 8)
    y = torch.randn(1, 4, *conv.output_hw((8, 8)), dtype=torch.float64)
    naive = F.conv_transpose2d(y, conv.weight.detach(), stride=2, padding=1)
    assert naive.shape[-1] == 7
    assert conv.apply_adjoint(y, conv.weight.detach()).shape[-1] == 8


@pytest.mark.parametrize("method", ["lanczos", "block_power"])
@pytest.mark.parametrize("k,s,p", CONV_CONFIGS)
@pytest.mark.parametrize("hw", SIZES)
def test_conv_sigma_matches_dense_svd(k, s, p, hw, method):
    conv = _conv(k, s, p, hw, cin=8, cout=8, seed=hw)  # 8*hw*hw > _DENSE_LIMIT: the iterative path runs
    assert 8 * hw * hw > _DENSE_LIMIT
    res = conv.converge_sigma(tol=1e-9, method=method)
    exact = _dense_sigma(conv)
    assert res.converged and res.iterations > 1
    assert abs(res.sigma - exact) / exact < 1e-8
    assert res.sigma <= exact * (1 + 1e-12)  # Ritz values approach from below
    assert tuple(conv.pi_vector.shape) == (1, 8, hw, hw)
    # the stored vector is the top right singular vector: ||W u|| = sigma
    assert float(conv.power_sigma(0, update=False).detach()) == pytest.approx(exact, rel=1e-7)


def test_small_layers_are_solved_exactly_by_dense_svd():
    conv = _conv(3, 1, 1, 6)  # 3*6*6 = 108 inputs
    res = conv.converge_sigma()
    assert res.iterations == 1 and res.estimated_rel_error == 0.0
    assert res.sigma == pytest.approx(_dense_sigma(conv), rel=1e-12)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        _conv(3, 1, 1, 6).converge_sigma(method="svd")


@pytest.mark.parametrize("method", ["lanczos", "block_power"])
@pytest.mark.parametrize("shape", [(5, 3), (40, 20), (2, 10), (64, 7), (300, 400), (50, 600)])
def test_linear_sigma_matches_svd(shape, method):
    torch.manual_seed(3)
    lin = SpectralLinear(shape[1], shape[0]).double()
    res = lin.converge_sigma(tol=1e-9, method=method)
    exact = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert abs(res.sigma - exact) / exact < 1e-8


def test_plain_power_iteration_is_a_lower_estimate():
    conv = _conv(4, 2, 1, 8, cin=4, cout=6)
    exact = _dense_sigma(conv)
    for n_iter in (1, 3, 10):
        assert float(conv.power_sigma(n_iter).detach()) <= exact * (1 + 1e-12)


def test_training_estimate_gradient_is_top_singular_pair():
    """With a converged iterate, d sigma / dW = u1 v1^T (the top singular vectors)."""
    torch.manual_seed(4)
    lin = SpectralLinear(6, 5).double()
    lin.converge_sigma(tol=1e-12)
    sigma = lin.power_sigma(n_iter=5, grad_through_iterates=False)
    sigma.backward()
    u, s, vh = torch.linalg.svd(lin.weight.detach())
    expected = torch.outer(u[:, 0], vh[0])
    if (lin.weight.grad * expected).sum() < 0:
        expected = -expected
    torch.testing.assert_close(lin.weight.grad, expected, atol=1e-8, rtol=0)
    assert abs(float(sigma.detach()) - float(s[0])) < 1e-10


def test_grad_flows_through_iterates():
    torch.manual_seed(5)
    conv = _conv(3, 1, 1, 6).float()
    w0 = conv.weight.detach().clone()
    sigma = conv.power_sigma(n_iter=5, grad_through_iterates=True)
    sigma.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0
    torch.testing.assert_close(conv.weight.detach(), w0)


def test_update_false_keeps_vector():
    conv = _conv(3, 1, 1, 6)
    before = conv.pi_vector.clone()
    conv.power_sigma(n_iter=3, update=False)
    torch.testing.assert_close(conv.pi_vector, before)
    conv.power_sigma(n_iter=3, update=True)
    assert not torch.equal(conv.pi_vector, before)


def test_zero_weight_gives_zero_not_nan():
    lin = SpectralLinear(4, 3).double()
    with torch.no_grad():
        lin.weight.zero_()
    assert float(lin.power_sigma(3).detach()) == 0.0
    assert lin.converge_sigma().sigma == 0.0


def test_tiny_weights_are_not_underestimated():
    """No epsilon in the normalisation: a 1e-12-scaled layer keeps its exact (scaled) norm."""
    torch.manual_seed(6)
    lin = SpectralLinear(8, 8).double()
    with torch.no_grad():
        lin.weight.mul_(1e-12)
    exact = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert abs(lin.converge_sigma().sigma - exact) / exact < 1e-8


def test_converged_value_is_frozen_and_guarded():
    lin = SpectralLinear(4, 3).double()
    with pytest.raises(RuntimeError, match="not converged"):
        lin.converged_sigma()
    lin.converge_sigma()
    sigma = float(lin.converged_sigma())
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    lin.weight.sum().backward()
    opt.step()
    with pytest.raises(RuntimeError, match="weights changed"):
        lin.converged_sigma()
    lin.converge_sigma()
    assert float(lin.converged_sigma()) != sigma


@pytest.mark.parametrize("method,hw", [("lanczos", 16), ("block_power", 8)])
def test_warm_start_needs_fewer_iterations_than_cold(method, hw):
    """(Lanczos builds a 32-vector Krylov space before its first check, so its layer is larger.)"""
    torch.manual_seed(7)
    conv = SpectralConv2d(8, 8, 3, padding=1).double()
    conv.set_input_shape((8, hw, hw))
    conv.converge_sigma(method=method, block_size=1)
    with torch.no_grad():  # a small "training step"
        conv.weight.add_(1e-3 * torch.randn_like(conv.weight))
    warm = conv.converge_sigma(method=method, block_size=1)
    conv.reset_power_iteration(torch.Generator().manual_seed(0))
    cold = conv.converge_sigma(method=method, block_size=1)
    assert warm.iterations < cold.iterations
    assert abs(warm.sigma - cold.sigma) / cold.sigma < 1e-7


def test_bad_arguments():
    lin = SpectralLinear(4, 3)
    with pytest.raises(ValueError, match="tol"):
        lin.converge_sigma(tol=0)
    with pytest.raises(ValueError, match="n_iter"):
        lin.power_sigma(-1)
    conv = SpectralConv2d(3, 4, 3)
    with pytest.raises(ValueError, match="expects input shape"):
        conv.set_input_shape((4, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        conv.set_input_shape((3, 2, 2))
    with pytest.raises(RuntimeError, match="input shape unknown"):
        conv.reset_power_iteration()


def test_max_iter_cap_reports_not_converged():
    conv = _conv(3, 1, 1, 9)
    res = conv.converge_sigma(tol=1e-15, max_iter=3, method="block_power", block_size=1)
    assert res.iterations == 3 and not res.converged
    assert math.isfinite(res.sigma)
