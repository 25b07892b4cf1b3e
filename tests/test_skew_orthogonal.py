"""SOC layer (Singla & Feizi, ICML 2021), LipConvnet builder and SOC's certificate-regularised loss.

Independent references: dense operators built column by column from F.conv2d, float64 SVDs,
torch.linalg.matrix_exp, dense Jacobians (torch.autograd.functional.jacobian), hand-computed losses.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lipcert.attacks import l2_pgd
from lipcert.certification import certified_margins
from lipcert.losses.certificate_regularized import certificate_regularized_loss, label_certificates
from lipcert.one_lipschitz.base import LastLayerNormalizedLinear
from lipcert.one_lipschitz.skew_orthogonal import (
    SkewOrthogonalConv2d,
    fantastic_four_bound,
    kernel_reshapes,
    taylor_tail_bound,
    transpose_kernel,
    truncated_series,
    truncation_error_report,
)
from lipcert.one_lipschitz_nets import lipconvnet

torch.set_num_threads(1)


# --- helpers -----------------------------------------------------------------------------------------
def _dense_conv(kernel: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Dense float64 matrix of the zero-padded stride-1 convolution on (in, h, w) images."""
    kernel = kernel.detach().to(torch.float64)
    n_in = kernel.shape[1] * h * w
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, kernel.shape[1], h, w)
    return F.conv2d(basis, kernel, padding=(kernel.shape[2] // 2, kernel.shape[3] // 2)).reshape(n_in, -1).T


def _spec(matrix: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def _layer(c_in, c_out, k=3, seed=0, perturb=0.0, **kw) -> SkewOrthogonalConv2d:
    g = torch.Generator().manual_seed(seed)
    layer = SkewOrthogonalConv2d(c_in, c_out, k, generator=g, **kw).double()
    if perturb:
        # random parameters away from the init; the scale vectors become stale (still a valid layer)
        with torch.no_grad():
            layer.kernel.add_(perturb * torch.randn(layer.kernel.shape, generator=g, dtype=torch.float64))
            if layer.bias is not None:
                layer.bias.add_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return layer.eval()


def _jacobian_norm(fn, x: torch.Tensor) -> float:
    jac = torch.autograd.functional.jacobian(fn, x)
    return _spec(jac.reshape(-1, x.numel()))


def _tiny_lipconvnet(seed=0, head="linear", **kw):
    opts = {"depth": 6, "blocks": 3, "init_channels": 2, **kw}
    g = torch.Generator().manual_seed(seed)
    return lipconvnet.build((3, 8, 8), 5, g, head, **opts).double().eval()


# --- the kernel transpose, the fantastic-four bound, the Taylor tail ------------------------------------
def test_transpose_kernel_is_the_adjoint_and_skew_kernel_gives_skew_operator():
    g = torch.Generator().manual_seed(0)
    kernel = torch.randn(3, 5, 3, 3, generator=g, dtype=torch.float64)
    a = _dense_conv(kernel, 4, 5)
    at = _dense_conv(transpose_kernel(kernel), 4, 5)
    torch.testing.assert_close(at, a.T, rtol=0, atol=1e-12)
    layer = _layer(4, 4, perturb=0.3)
    skew = layer.dense_skew_operator(4, 3)
    assert torch.equal(skew, -skew.T)  # exactly skew (sign-symmetric rounding)
    torch.testing.assert_close(skew, _dense_conv(layer.normalized_kernel(), 4, 3))
    with pytest.raises(ValueError, match="4-D"):
        transpose_kernel(torch.zeros(3, 3))


@pytest.mark.parametrize("shape", [(4, 4, 3, 3), (3, 6, 3, 3), (6, 2, 5, 5), (5, 5, 1, 1), (2, 3, 3, 1)])
def test_fantastic_four_bound_is_an_upper_bound_of_the_dense_operator(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for trial in range(3):
        kernel = torch.randn(shape, generator=g, dtype=torch.float64) * (1 + trial)
        bound = fantastic_four_bound(kernel)
        reshaped = [_spec(r) for r in kernel_reshapes(kernel)]
        assert bound == pytest.approx(math.sqrt(shape[2] * shape[3]) * min(reshaped), rel=1e-9)
        for h, w in [(1, 1), (4, 4), (7, 5), (9, 9)]:
            assert _spec(_dense_conv(kernel, h, w)) <= bound
    # for a 1x1 kernel the bound is the exact norm of the channel-mixing matrix
    k1 = torch.randn(4, 3, 1, 1, generator=g, dtype=torch.float64)
    assert fantastic_four_bound(k1) == pytest.approx(_spec(k1[:, :, 0, 0]), rel=1e-9)
    with pytest.raises(ValueError, match="4-D"):
        fantastic_four_bound(torch.zeros(3, 3, 3))


def test_taylor_tail_bound_against_direct_sums():
    # moderate values: e^s minus the partial sum has no harmful cancellation
    for s, k in [(2.0, 3), (0.5, 1), (2.1, 5), (1.0, 0)]:
        partial = sum(s ** j / math.factorial(j) for j in range(k + 1))
        exact = math.exp(s) - partial
        assert exact <= taylor_tail_bound(s, k) <= exact * (1 + 1e-9)
    # small tails: compare with a long explicit sum
    for s, k in [(2.1, 12), (0.7, 12), (5.0, 20)]:
        direct = math.fsum(s ** j / math.factorial(j) for j in range(k + 1, k + 80))
        assert direct <= taylor_tail_bound(s, k) <= direct * (1 + 1e-9)
    values = [taylor_tail_bound(2.1, k) for k in range(1, 16)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert taylor_tail_bound(0.0, 3) == 0.0
    assert math.isfinite(taylor_tail_bound(60.0, 5))
    with pytest.raises(ValueError, match="s "):
        taylor_tail_bound(-1.0, 3)
    with pytest.raises(ValueError, match="terms"):
        taylor_tail_bound(1.0, -1)


# --- the SOC layer ---------------------------------------------------------------------------------
def test_forward_is_the_truncated_series_of_the_dense_operator_in_both_modes():
    layer = _layer(3, 5, perturb=0.2, train_terms=4, eval_terms=9)
    h, w = 4, 3
    skew = layer.dense_skew_operator(h, w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    padded = torch.cat([x, torch.zeros(2, 2, h, w, dtype=torch.float64)], 1).reshape(2, -1)
    for mode, terms in [("eval", 9), ("train", 4)]:
        getattr(layer, mode)()
        with torch.no_grad():
            before = [b.clone() for name, b in layer.named_buffers() if name.startswith("pi_")]
            y = layer(x)
        if mode == "train":  # the scale vectors were refined first: rebuild the reference
            skew = layer.dense_skew_operator(h, w)
            assert int(layer.pi_steps) == 1
        else:
            after = [b for name, b in layer.named_buffers() if name.startswith("pi_")]
            assert all(torch.equal(a, b) for a, b in zip(before, after))
        expected = (padded @ truncated_series(skew, terms).T).reshape(2, 5, h, w)[:, :5] + layer.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(y, expected.detach(), rtol=1e-10, atol=1e-12)


def test_truncation_error_report_errors_below_rigorous_tail_bound():
    layer = _layer(4, 4, perturb=0.1)
    rep = truncation_error_report(layer, (4, 5, 5))
    assert rep["norm_L"] <= rep["s_bound"]
    assert rep["exp_orthogonality_error"] < 1e-10
    for err, sigma, layer_sigma, tail in zip(rep["operator_error"], rep["sigma_max"], rep["layer_sigma_max"],
                                             rep["tail_bound"]):
        assert err <= tail
        assert sigma <= 1 + tail and layer_sigma <= 1 + tail
    assert all(a > b for a, b in zip(rep["tail_bound"], rep["tail_bound"][1:]))
    assert all(a > b for a, b in zip(rep["operator_error"], rep["operator_error"][1:]))
    # the SOC scale keeps ||L|| <= correction * sqrt(k*k) * (1 + estimate error): the eval series has converged
    assert rep["tail_bound"][rep["terms"].index(12)] < 1e-4
    with pytest.raises(ValueError, match="input_shape"):
        truncation_error_report(layer, (3, 5, 5))


@pytest.mark.parametrize("c_in,c_out,k", [(4, 4, 3), (2, 6, 3), (6, 2, 3), (5, 3, 1), (3, 4, 5)])
def test_layer_jacobian_below_certified_constant(c_in, c_out, k):
    g = torch.Generator().manual_seed(c_in * 10 + c_out)
    for seed, perturb in [(0, 0.0), (1, 0.5)]:
        layer = _layer(c_in, c_out, k, seed=seed, perturb=perturb)
        constant = layer.certified_constant(1e-9)
        assert constant >= 1.0
        for _ in range(2):
            x = torch.randn(1, c_in, 5, 4, generator=g, dtype=torch.float64)
            assert _jacobian_norm(layer, x) <= constant + 1e-6
        if perturb == 0.0 and k <= 3:  # at init the SOC scale (s ~ 0.7 k) makes the 12-term tail tiny
            assert constant < 1 + 1e-4


def test_truncation_can_exceed_one_and_the_constant_covers_it():
    """With few terms and a large ||L|| the layer is not 1-Lipschitz; certifying 1 would be wrong."""
    layer = _layer(4, 4, perturb=2.0, eval_terms=2, correction=2.0)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    measured = _jacobian_norm(layer, x)
    assert measured > 1.01
    assert measured <= layer.certified_constant(1e-9) + 1e-6


def test_eval_layer_is_orthogonal_when_channels_match():
    layer = _layer(4, 4, perturb=0.1, eval_terms=16)
    jac = torch.autograd.functional.jacobian(layer, torch.randn(1, 4, 4, 4, dtype=torch.float64)).reshape(64, 64)
    sv = torch.linalg.svdvals(jac)
    tail = layer.certified_constant(1e-9) - 1
    assert float(sv.max()) <= 1 + tail + 1e-12 and float(sv.min()) >= 1 - tail - 1e-12


def test_power_iteration_scale_and_schedule():
    layer = _layer(6, 6, seed=2)
    exact = min(_spec(r) for r in kernel_reshapes(layer.skew_kernel().detach()))
    sigma = float(layer.sigma_estimate().detach())
    assert sigma <= exact * (1 + 1e-9) and sigma >= 0.5 * exact  # power iteration: a lower estimate
    layer.train()
    counts = []
    original = layer._power_iterate
    layer._power_iterate = lambda n: (counts.append(n), original(n))[1]
    x = torch.randn(1, 6, 3, 3, dtype=torch.float64)
    for _ in range(5):
        layer(x)
    layer.eval()
    layer(x)
    assert counts == [50, 1, 1, 1, 1]  # init_iters at step 0 (mod update_freq), update_iters otherwise
    small = _layer(6, 6, seed=2, update_freq=2)
    small.train()
    counts = []
    original_small = small._power_iterate
    small._power_iterate = lambda n: (counts.append(n), original_small(n))[1]
    for _ in range(4):
        small(x)
    assert counts == [50, 1, 50, 1]


def test_gradients_reach_kernel_and_bias():
    layer = _layer(3, 4).train()
    layer(torch.randn(2, 3, 4, 4, dtype=torch.float64)).square().sum().backward()
    assert layer.kernel.grad is not None and layer.kernel.grad.abs().sum() > 0
    assert layer.bias.grad is not None and layer.bias.grad.abs().sum() > 0


def test_converged_constant_goes_stale_and_survives_state_dict():
    layer = _layer(4, 4)
    result = layer.converge_sigma()
    assert float(layer.converged_sigma()) == result.sigma == layer.certified_constant(1e-9)
    # a training-mode forward refines the scale vectors: the frozen constant is stale
    layer.train()
    layer(torch.randn(1, 4, 3, 3, dtype=torch.float64))
    layer.eval()
    with pytest.raises(RuntimeError, match="scale"):
        layer.converged_sigma()
    layer.converge_sigma()
    # an optimiser step changes the kernel
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(1, 4, 3, 3, dtype=torch.float64)).sum().backward()
    opt.step()
    with pytest.raises(RuntimeError, match="changed"):
        layer.converged_sigma()
    layer.converge_sigma()
    fresh = _layer(4, 4, seed=9)
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)
    assert float(fresh.converged_sigma()) == float(layer.converged_sigma())


def test_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        SkewOrthogonalConv2d(3, 3, 2)
    with pytest.raises(ValueError, match="eval_terms"):
        SkewOrthogonalConv2d(3, 3, eval_terms=0)
    with pytest.raises(ValueError, match="train_terms"):
        SkewOrthogonalConv2d(3, 3, train_terms=1.5)
    with pytest.raises(ValueError, match="in_channels"):
        SkewOrthogonalConv2d(0, 3)
    with pytest.raises(ValueError, match="correction"):
        SkewOrthogonalConv2d(3, 3, correction=-1.0)
    with pytest.raises(ValueError, match="expects"):
        SkewOrthogonalConv2d(3, 3)(torch.zeros(1, 4, 3, 3))


# --- LipConvnet -------------------------------------------------------------------------------------
def test_layer_plan_follows_the_soc_code():
    opts = lipconvnet.resolve_options({"size": "LipConv-5"})
    plan, features = lipconvnet.layer_plan((3, 32, 32), opts)
    assert plan == [(True, 12, 64, 3), (True, 256, 128, 3), (True, 512, 256, 3), (True, 1024, 512, 3),
                    (True, 2048, 1024, 1)]
    assert features == 1024
    plan10, _ = lipconvnet.layer_plan((3, 32, 32), lipconvnet.resolve_options({"size": "LipConv-10"}))
    assert plan10 == [(False, 3, 32, 3), (True, 128, 64, 3), (False, 64, 64, 3), (True, 256, 128, 3),
                      (False, 128, 128, 3), (True, 512, 256, 3), (False, 256, 256, 3), (True, 1024, 512, 3),
                      (False, 512, 512, 3), (True, 2048, 1024, 1)]
    # Tiny-ImageNet: same stages, the final 2x2x1024 map is flattened (CLL fork: flat_features * 4)
    assert lipconvnet.layer_plan((3, 64, 64), opts)[1] == 4096


def _soc_count(plan_channels, features, classes):
    """Hand formula: sum over SOC layers of max(in, out)^2 k^2 + out, plus the head."""
    return sum(max(i, o) ** 2 * k * k + o for i, o, k in plan_channels) + features * classes + classes


def test_paper_size_parameter_counts():
    lc10 = [(3, 32, 3), (128, 64, 3), (64, 64, 3), (256, 128, 3), (128, 128, 3), (512, 256, 3), (256, 256, 3),
            (1024, 512, 3), (512, 512, 3), (2048, 1024, 1)]
    assert lipconvnet.count_parameters((3, 32, 32), 10, size="LipConv-10") == _soc_count(lc10, 1024, 10)
    assert lipconvnet.count_parameters((3, 64, 64), 200, size="LipConv-10") == _soc_count(lc10, 4096, 200)
    lc20 = ([(3, 32, 3)] + [(32, 32, 3)] * 2 + [(128, 64, 3)] + [(64, 64, 3)] * 3 + [(256, 128, 3)]
            + [(128, 128, 3)] * 3 + [(512, 256, 3)] + [(256, 256, 3)] * 3 + [(1024, 512, 3)]
            + [(512, 512, 3)] * 3 + [(2048, 1024, 1)])
    assert lipconvnet.count_parameters((3, 32, 32), 10, size="LipConv-20") == _soc_count(lc20, 1024, 10)
    assert lipconvnet.count_parameters((3, 64, 64), 200, head="lln", size="LipConv-20") == _soc_count(lc20, 4096, 200)


@pytest.mark.parametrize("shape,opts", [((3, 8, 8), {"depth": 6, "blocks": 3, "init_channels": 2}),
                                        ((3, 32, 32), {"size": "LipConv-5", "init_channels": 2}),
                                        ((3, 64, 64), {"depth": 5, "init_channels": 2, "eval_terms": 6})])
@pytest.mark.parametrize("head", ["linear", "lln"])
def test_count_parameters_matches_a_real_build(shape, opts, head):
    model = lipconvnet.build(shape, 7, torch.Generator().manual_seed(0), head, **opts)
    assert lipconvnet.count_parameters(shape, 7, head, **opts) == sum(p.numel() for p in model.parameters())
    assert isinstance(model.head, LastLayerNormalizedLinear) == (head == "lln")
    with torch.no_grad():
        out = model.eval()(torch.rand(2, *shape))
    assert out.shape == (2, 7)
    factor = 2 ** opts.get("blocks", 5)
    assert model.head.in_features == 2 * factor * (shape[1] // factor) * (shape[2] // factor)


def test_build_is_deterministic_given_the_generator():
    a = _tiny_lipconvnet(seed=4)
    torch.manual_seed(123)  # the global RNG does not matter
    b = _tiny_lipconvnet(seed=4)
    c = _tiny_lipconvnet(seed=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])
    assert a.name == "LipConv-6"
    assert len(a.spectral_layers()) == 6


def test_composed_network_jacobian_below_k():
    model = _tiny_lipconvnet(seed=1)
    with torch.no_grad():  # random parameters, not only the init
        for layer in model.spectral_layers():
            layer.kernel.mul_(1.5)
    report = model.converge()
    k_body = report.k_body
    assert 1.0 <= k_body < 1.001
    k_pair = model.pairwise_lipschitz()
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        x = torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
        assert _jacobian_norm(model.body, x) <= k_body + 1e-6
        jac = torch.autograd.functional.jacobian(model, x).reshape(5, -1)
        pair_norms = (jac[:, None, :] - jac[None, :, :]).norm(dim=-1)
        assert (pair_norms <= k_pair + 1e-6).all()
        assert _spec(jac) <= model.global_lipschitz() * (1 + 1e-9) + 1e-6


def test_attack_never_breaks_a_certified_margin():
    model = _tiny_lipconvnet(seed=2, head="lln")
    model.converge()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 3, 8, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    labels = logits.argmax(1)
    radius = certified_margins(logits, model.pairwise_lipschitz())
    assert (radius > 0).all()
    _, flipped = l2_pgd(model, x, labels, radius * 0.999, steps=60, restarts=2, generator=g)
    assert not flipped.any()
    # the attack is strong and the certificate fairly tight: at 1.5 x the radius most predictions flip
    _, flipped_far = l2_pgd(model, x, labels, radius * 1.5, steps=30, restarts=1, generator=g)
    assert flipped_far.float().mean() >= 0.5


def test_model_state_dict_round_trip_keeps_outputs_and_constants():
    a = _tiny_lipconvnet(seed=3)
    a.train()
    a(torch.rand(2, 3, 8, 8, dtype=torch.float64))  # advances the scale vectors and step counters
    a.eval()
    a.converge()
    b = _tiny_lipconvnet(seed=8)
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    torch.testing.assert_close(b.pairwise_lipschitz(), a.pairwise_lipschitz(), rtol=0, atol=0)
    assert [int(la.pi_steps) for la in b.spectral_layers()] == [1] * 6
    # the refresh schedule continues from the loaded step count (step 1: update_iters, not init_iters)
    layer = b.spectral_layers()[0]
    counts = []
    original = layer._power_iterate
    layer._power_iterate = lambda n: (counts.append(n), original(n))[1]
    b.train()
    b(x)
    assert counts == [1]


def test_lipconvnet_rejects_bad_options():
    g = torch.Generator()
    with pytest.raises(ValueError, match="unknown LipConvnet option"):
        lipconvnet.build((3, 32, 32), 10, g, size="LipConv-5", width=3)
    with pytest.raises(ValueError, match="size"):
        lipconvnet.build((3, 32, 32), 10, g, size="LipConv-7")
    with pytest.raises(ValueError, match="depth"):
        lipconvnet.build((3, 32, 32), 10, g, depth=7)
    with pytest.raises(ValueError, match="depth"):
        lipconvnet.count_parameters((3, 32, 32), 10)
    with pytest.raises(ValueError, match="init_channels"):
        lipconvnet.build((3, 32, 32), 10, g, depth=5, init_channels=3)
    with pytest.raises(ValueError, match="2\\^blocks"):
        lipconvnet.build((3, 48, 40), 10, g, depth=5)
    with pytest.raises(ValueError, match="head"):
        lipconvnet.build((3, 32, 32), 10, g, "soc", depth=5)
    with pytest.raises(ValueError, match="num_classes"):
        lipconvnet.count_parameters((3, 32, 32), 1, depth=5)
    with pytest.raises(ValueError, match="eval_terms"):
        lipconvnet.count_parameters((3, 32, 32), 10, depth=5, eval_terms=0)
    with pytest.raises(ValueError, match="correction"):
        lipconvnet.count_parameters((3, 32, 32), 10, depth=5, correction=0)


# --- the certificate-regularised loss -------------------------------------------------------------------
def test_certificate_regularized_loss_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.5, 2.5]], dtype=torch.float64)
    targets = torch.tensor([0, 2, 2])
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    k = torch.tensor(2.0, dtype=torch.float64)
    d01, d02, d12 = math.sqrt(5.0), math.sqrt(20.0), math.sqrt(13.0)
    cert0 = min((3 - 1) / (2 * d01), (3 - 0) / (2 * d02))          # label 0 wins: positive
    cert1 = min((1 - 0) / (2 * d02), (1 - 2) / (2 * d12))          # label 2 loses to class 1: negative
    cert2 = min((2.5 - 1) / (2 * d02), (2.5 - 0.5) / (2 * d12))
    torch.testing.assert_close(label_certificates(logits, targets, k, w),
                               torch.tensor([cert0, cert1, cert2], dtype=torch.float64))
    ce = float(F.cross_entropy(logits, targets))
    gamma = 0.3
    expected = ce - gamma * (cert0 + 0.0 + cert2) / 3
    assert float(certificate_regularized_loss(logits, targets, k, w, gamma=gamma)) == pytest.approx(expected, rel=1e-12)
    assert float(certificate_regularized_loss(logits, targets, k, w, gamma=0.0)) == pytest.approx(ce, rel=1e-12)


def test_certificate_matches_soc_ortho_formula_and_has_gradients():
    # orthonormal head rows: ||W_i - W_j|| = sqrt(2), the SOC code's margin / (sqrt(2) L)
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 4, generator=g, dtype=torch.float64))
    w = q.T.contiguous().requires_grad_(True)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0])
    k = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    others = logits.detach().scatter(1, targets[:, None], float("-inf")).amax(1)
    soc = (logits.detach().gather(1, targets[:, None])[:, 0] - others) / (math.sqrt(2) * 1.5)
    torch.testing.assert_close(label_certificates(logits, targets, k, w).detach(), soc)
    loss = certificate_regularized_loss(logits, targets, k, w, gamma=1.0)
    loss.backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (logits, w, k))
    # the regulariser pushes the label logit up more than cross-entropy alone
    ce_grad = torch.autograd.grad(F.cross_entropy(logits, targets), logits)[0]
    positive = soc > 0
    assert positive.any()
    rows = torch.arange(5)[positive]
    assert (logits.grad[rows, targets[positive]] < ce_grad[rows, targets[positive]]).all()


def test_certificate_regularized_loss_rejects_bad_inputs():
    logits = torch.zeros(2, 3)
    targets = torch.tensor([0, 1])
    w = torch.eye(3)
    k = torch.tensor(1.0)
    for bad in (-0.1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="gamma"):
            certificate_regularized_loss(logits, targets, k, w, gamma=bad)
    with pytest.raises(ValueError, match="head_weight"):
        certificate_regularized_loss(logits, targets, k, torch.eye(4), gamma=0.1)
    with pytest.raises(ValueError, match="targets"):
        certificate_regularized_loss(logits, torch.tensor([0, 3]), k, w, gamma=0.1)
