"""SLL layers (Araujo et al. ICLR 2023, Theorem 3), the SLL network builder and the AOL loss.

Independent references: dense Jacobians (torch.autograd.functional.jacobian, float64) and their SVDs,
dense convolution matrices, the Gershgorin sums recomputed with plain Python loops, a Householder
reflection, and the loss evaluated by hand with math.exp / math.log.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from lipcert.attacks import l2_pgd
from lipcert.certification import certified_margins
from lipcert.losses.aol_loss import SLL_OFFSET, SLL_TEMPERATURE, aol_loss
from lipcert.one_lipschitz.base import LastLayerNormalizedLinear
from lipcert.one_lipschitz.sdp_lipschitz import LOG_Q_BOUND, SDPLipschitzConv2d, SDPLipschitzLinear
from lipcert.one_lipschitz_nets import sll_net

TINY = dict(depth=2, num_channels=4, depth_linear=2, n_features=6, conv_size=3, pool=2)


def _randomise(module, seed, scale=1.0):
    """Parameters far from the initialisation: N(0, scale^2) weights and biases, log q ~ N(0, 2^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            spread = 2.0 if name.endswith("log_q") else scale
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * spread)


def _sigma_max(fn, x):
    j = jacobian(fn, x)
    return float(torch.linalg.matrix_norm(j.reshape(-1, x.numel()), ord=2))


# --------------------------------------------------------------------------------------------------
# AOL loss
# --------------------------------------------------------------------------------------------------
def _hand_aol(logits, targets, offset, temperature):
    total = 0.0
    for row, y in zip(logits, targets):
        z = [(v - (offset if i == y else 0.0)) / temperature for i, v in enumerate(row)]
        lse = math.log(sum(math.exp(v) for v in z))
        total += temperature * (lse - z[y])
    return total / len(logits)


def test_aol_loss_matches_hand_computation():
    logits = [[1.0, -0.5, 2.0], [0.3, 0.2, -1.0], [-2.0, 4.0, 0.5], [0.0, 0.0, 0.0]]
    targets = [2, 0, 1, 1]
    lt = torch.tensor(logits, dtype=torch.float64)
    yt = torch.tensor(targets)
    w = torch.randn(3, 5, dtype=torch.float64)
    for offset, temperature in [(SLL_OFFSET, SLL_TEMPERATURE), (0.0, 1.0), (0.7, 2.5)]:
        got = aol_loss(lt, yt, torch.ones(()), w, offset=offset, temperature=temperature)
        assert float(got) == pytest.approx(_hand_aol(logits, targets, offset, temperature), rel=1e-12)
    # defaults are the SLL code's: offset sqrt(2) * 3 / 2 and temperature 0.25
    assert SLL_OFFSET == pytest.approx(2.1213203435596424) and SLL_TEMPERATURE == 0.25
    default = aol_loss(lt, yt, torch.ones(()), w)
    assert float(default) == pytest.approx(_hand_aol(logits, targets, 1.5 * math.sqrt(2), 0.25), rel=1e-12)


def test_aol_loss_offset_lowers_the_true_logit():
    """The sign: the offset is subtracted from the true class, so it raises the loss and needs a margin."""
    w = torch.randn(2, 3, dtype=torch.float64)
    logits = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    plain = aol_loss(logits, y, torch.ones(()), w, offset=0.0, temperature=0.25)
    offset = aol_loss(logits, y, torch.ones(()), w, offset=2.0, temperature=0.25)
    assert float(offset) > float(plain)
    # with margin 3 and offset 2 the offset logit margin is 1: loss = t * softplus(-1 / t)
    assert float(offset) == pytest.approx(0.25 * math.log1p(math.exp(-4.0)), rel=1e-12)
    # raising the true logit by u and subtracting the offset u cancel (adding it would not)
    raised = logits + torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    shifted = aol_loss(raised, y, torch.ones(()), w, offset=1.0, temperature=0.25)
    assert float(shifted) == pytest.approx(float(plain), rel=1e-12)


def test_aol_loss_gradient_flows_to_logits_only():
    logits = torch.randn(4, 3, requires_grad=True)
    k = torch.ones((), requires_grad=True)
    w = torch.randn(3, 5, requires_grad=True)
    aol_loss(logits, torch.tensor([0, 1, 2, 0]), k, w).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert k.grad is None and w.grad is None


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"), (dict(offset=-0.1), "offset"),
    (dict(offset=float("inf")), "offset"),
])
def test_aol_loss_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aol_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.ones(()), torch.randn(3, 4), **kwargs)


def test_aol_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="targets"):
        aol_loss(torch.randn(2, 3), torch.tensor([0, 3]), torch.ones(()), torch.randn(3, 4))
    with pytest.raises(ValueError, match="head_weight"):
        aol_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.ones(()), torch.randn(4, 4))


# --------------------------------------------------------------------------------------------------
# layers: dense Jacobians
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("features,inner", [(6, 4), (5, 9), (8, 1)])
def test_linear_layer_jacobian_is_at_most_one(seed, features, inner):
    layer = SDPLipschitzLinear(features, inner, generator=torch.Generator().manual_seed(seed)).double()
    _randomise(layer, seed, scale=2.0)
    xs = torch.randn(6, features, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    train_sigmas = [_sigma_max(lambda v: layer(v[None])[0], x) for x in xs]
    layer.converge_sigma()
    layer.eval()
    eval_sigmas = [_sigma_max(lambda v: layer(v[None])[0], x) for x in xs]
    assert max(train_sigmas + eval_sigmas) <= 1.0 + 1e-9
    assert layer.converged_sigma().item() == 1.0
    # not trivially contractive: some direction keeps its length (I - 2 G D G^T has eigenvalue 1)
    assert max(eval_sigmas) >= 1.0 - 1e-9


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("channels,inner,k,hw", [(3, 4, 3, 5), (2, 3, 5, 3), (4, 2, 1, 4), (2, 6, 3, 4)])
def test_conv_layer_jacobian_is_at_most_one(seed, channels, inner, k, hw):
    layer = SDPLipschitzConv2d(channels, inner, k, generator=torch.Generator().manual_seed(seed)).double()
    _randomise(layer, seed, scale=1.5)
    xs = torch.randn(4, channels, hw, hw, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 5))
    sigmas = [_sigma_max(lambda v: layer(v[None])[0], x) for x in xs]
    layer.converge_sigma()
    layer.eval()
    sigmas += [_sigma_max(lambda v: layer(v[None])[0], x) for x in xs]
    assert max(sigmas) <= 1.0 + 1e-9
    assert min(sigmas) > 0.0


def test_single_active_unit_is_a_householder_reflection():
    """inner 1, unit always active: h(x) = x - 2 w (w.x + b) / ||w||^2, Jacobian I - 2 w w^T / ||w||^2."""
    layer = SDPLipschitzLinear(5, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0, 1.0]], dtype=torch.float64))
        layer.bias.fill_(1e3)
    w = layer.weight.detach()[0]
    x = torch.randn(5, dtype=torch.float64)
    j = jacobian(lambda v: layer(v[None])[0], x)
    reflection = torch.eye(5, dtype=torch.float64) - 2.0 * torch.outer(w, w) / w.dot(w)
    assert torch.allclose(j, reflection, atol=1e-12)
    assert torch.allclose(torch.linalg.svdvals(j), torch.ones(5, dtype=torch.float64), atol=1e-12)


# --------------------------------------------------------------------------------------------------
# layers: the SDP condition and the Gershgorin sums, recomputed independently
# --------------------------------------------------------------------------------------------------
def _loop_t_conv(kernel, q):
    """t_i = sum_j sum_offsets |sum_{c, taps} K_i K_j shifted| q_j / q_i with plain Python loops."""
    inner, channels, k, _ = kernel.shape
    kk = kernel.tolist()
    t = []
    for i in range(inner):
        total = 0.0
        for j in range(inner):
            for du in range(-(k - 1), k):
                for dv in range(-(k - 1), k):
                    s = 0.0
                    for c in range(channels):
                        for a in range(k):
                            for b in range(k):
                                if 0 <= a + du < k and 0 <= b + dv < k:
                                    s += kk[i][c][a][b] * kk[j][c][a + du][b + dv]
                    total += abs(s) * q[j] / q[i]
        t.append(total)
    return t


def _dense_conv(kernel, padding, shape):
    """Matrix A of x -> conv2d(x, kernel, padding) on inputs of ``shape`` (exact, the map is linear)."""
    x = torch.zeros(shape, dtype=kernel.dtype)
    j = jacobian(lambda v: F.conv2d(v[None], kernel, padding=padding)[0], x)
    return j.reshape(-1, x.numel())


@pytest.mark.parametrize("channels,inner,k,hw", [(2, 3, 3, 4), (3, 2, 3, 3), (2, 2, 5, 3)])
def test_conv_gershgorin_sums_and_sdp_condition(channels, inner, k, hw):
    layer = SDPLipschitzConv2d(channels, inner, k, generator=torch.Generator().manual_seed(3)).double()
    _randomise(layer, 3)
    kernel = layer.weight.detach()
    q = torch.exp(layer.log_q.detach()).tolist()
    t_loop = torch.tensor(_loop_t_conv(kernel, q), dtype=torch.float64)
    assert torch.allclose(layer.inverse_t().detach(), 1.0 / t_loop, rtol=1e-10)
    # SDP condition A A^T <= T on the finite, zero-padded image (T repeated over the pixels)
    a = _dense_conv(kernel, k // 2, (channels, hw, hw))
    t_diag = torch.repeat_interleave(t_loop, hw * hw)
    assert float(torch.linalg.eigvalsh(torch.diag(t_diag) - a @ a.T).min()) >= -1e-10
    # the layer is x - 2 A^T T^{-1} relu(A x + b): the transposed convolution is the exact adjoint
    x = torch.randn(channels * hw * hw, dtype=torch.float64)
    b = torch.repeat_interleave(layer.bias.detach(), hw * hw)
    dense = x - 2.0 * a.T @ (torch.relu(a @ x + b) / t_diag)
    got = layer(x.reshape(1, channels, hw, hw)).reshape(-1)
    assert torch.allclose(got, dense.detach(), atol=1e-12)


def test_linear_gershgorin_sums_and_sdp_condition():
    layer = SDPLipschitzLinear(7, 5, generator=torch.Generator().manual_seed(4)).double()
    _randomise(layer, 4)
    w = layer.weight.detach().tolist()
    q = torch.exp(layer.log_q.detach()).tolist()
    t = [sum(abs(sum(a * b for a, b in zip(w[i], w[j]))) * q[j] / q[i] for j in range(5)) for i in range(5)]
    t = torch.tensor(t, dtype=torch.float64)
    assert torch.allclose(layer.inverse_t().detach(), 1.0 / t, rtol=1e-12)
    wt = layer.weight.detach()
    assert float(torch.linalg.eigvalsh(torch.diag(t) - wt @ wt.T).min()) >= -1e-12


def _epsilon_variant(weight, bias, q, x, epsilon=1e-6):
    """The CLL fork's old SLL linear layer: q_inv = 1 / (|q| + epsilon) next to q = |q| (not ours)."""
    q_abs = q.abs()
    t = 2.0 / ((1.0 / (q_abs + epsilon))[:, None] * (weight @ weight.T) * q_abs[None, :]).abs().sum(1)
    return x - F.linear(t * torch.relu(F.linear(x, weight, bias)), weight.T)


def test_epsilon_variant_is_not_one_lipschitz_but_exp_parameterisation_is():
    """Orthogonal rows, small q: the epsilon variant's t_i < ||w_i||^2 gives slope -(1 + 2 eps / q_i)."""
    weight = torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    bias = torch.full((3,), 10.0, dtype=torch.float64)  # all units active near 0
    q = torch.tensor([1e-6, 1e-6, 1e-6], dtype=torch.float64)
    x = torch.zeros(3, dtype=torch.float64)
    old = _sigma_max(lambda v: _epsilon_variant(weight, bias, q, v[None])[0], x)
    assert old == pytest.approx(3.0, rel=1e-6)  # 1 + 2 * 1e-6 / 1e-6
    layer = SDPLipschitzLinear(3, 3).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        layer.log_q.copy_(torch.log(q))
    assert _sigma_max(lambda v: layer(v[None])[0], x) == pytest.approx(1.0, abs=1e-12)


def test_zero_column_and_extreme_q_are_guarded():
    layer = SDPLipschitzLinear(4, 3, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        layer.weight[1].zero_()
        layer.log_q.copy_(torch.tensor([-500.0, 0.0, 500.0]))
    inv = layer.inverse_t()
    assert inv[1] == 0 and torch.isfinite(inv).all()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    assert torch.isfinite(x.grad).all()
    assert _sigma_max(lambda v: layer(v[None])[0], x.detach()[0]) <= 1.0 + 1e-9
    # the clamp keeps a genuine positive q: inverse_t equals the formula with the clamped log q
    clamped = torch.tensor([-LOG_Q_BOUND, 0.0, LOG_Q_BOUND], dtype=torch.float64)
    w = layer.weight.detach()
    t = ((w @ w.T).abs() * torch.exp(clamped[None, :] - clamped[:, None])).sum(1)
    assert torch.allclose(inv[[0, 2]].detach(), 1.0 / t[[0, 2]], rtol=1e-12)
    conv = SDPLipschitzConv2d(2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        conv.weight[0].zero_()
    assert conv.inverse_t()[0] == 0 and torch.isfinite(conv(torch.randn(1, 2, 4, 4))).all()


def test_frozen_inverse_t_is_rounded_down_in_float32():
    layer = SDPLipschitzLinear(30, 20, generator=torch.Generator().manual_seed(1))
    _randomise(layer, 1)
    layer.converge_sigma()
    exact = 1.0 / ((layer.weight.double() @ layer.weight.double().T).abs()
                   * torch.exp(layer.log_q.double()[None, :] - layer.log_q.double()[:, None])).sum(1)
    frozen = layer.frozen_inverse_t.double()
    assert layer.frozen_inverse_t.dtype == torch.float32
    assert (frozen <= exact).all()
    assert torch.allclose(frozen, exact.detach(), rtol=1e-6)
    # evaluation mode uses the frozen copy, training mode recomputes it with gradient
    layer.eval()
    x = torch.randn(3, 30)
    expected = x - 2.0 * F.linear(torch.relu(F.linear(x, layer.weight, layer.bias)) * layer.frozen_inverse_t,
                                  layer.weight.T)
    assert torch.equal(layer(x), expected)
    layer.train()
    layer(x).sum().backward()
    assert layer.log_q.grad is not None and layer.log_q.grad.abs().sum() > 0  # q is trained through 1/t


# --------------------------------------------------------------------------------------------------
# the SLL network
# --------------------------------------------------------------------------------------------------
def _tiny(head="linear", seed=0, shape=(3, 4, 4), classes=3, **over):
    opts = {**TINY, **over}
    return sll_net.build(shape, classes, torch.Generator().manual_seed(seed), head, **opts)


@pytest.mark.parametrize("head", sll_net.HEADS)
def test_composed_network_is_one_lipschitz_and_within_pairwise_bounds(head):
    model = _tiny(head).double()
    _randomise(model, 7)
    model.converge()
    model.eval()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    body_sigmas = [_sigma_max(lambda v: model.body(v[None])[0], xi) for xi in x]
    assert max(body_sigmas) <= 1.0 + 1e-9
    assert float(model.converged_body_lipschitz()) == 1.0
    k = model.pairwise_lipschitz()
    for xi in x:
        j = jacobian(lambda v: model(v[None])[0], xi).reshape(3, -1)
        for a in range(3):
            for b in range(3):
                if a != b:
                    assert float(torch.linalg.vector_norm(j[a] - j[b])) <= float(k[a, b]) * (1 + 1e-9)
    if head == "pooling_linear":
        off = ~torch.eye(3, dtype=torch.bool)
        assert torch.allclose(k[off], torch.full((6,), math.sqrt(2), dtype=torch.float64))
        assert isinstance(model.head, sll_net.TruncationHead) and not list(model.head.parameters())
    if head == "lln":
        assert isinstance(model.head, LastLayerNormalizedLinear)


def test_pgd_never_breaks_a_certified_margin():
    torch.manual_seed(0)
    model = _tiny("pooling_linear", seed=1, shape=(3, 8, 8), classes=3)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(48, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long() + (x[:, 2].mean((1, 2)) > 0.5).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    unit = torch.ones(())
    for _ in range(25):  # a little AOL training for non-trivial margins (also exercises the loss)
        opt.zero_grad()
        aol_loss(model(x), y, unit, model.head_weight(), offset=0.3, temperature=0.1).backward()
        opt.step()
    model.converge()
    model.eval()
    with torch.no_grad():
        logits = model(x)
        radius = certified_margins(logits, model.pairwise_lipschitz()).float()
    pred = logits.argmax(1)
    assert (radius > 0).all()
    _, broken = l2_pgd(model, x, pred, radius * 0.999, steps=60, restarts=2, generator=torch.Generator().manual_seed(3))
    assert not broken.any()
    # the attack is not toothless: with a larger budget it does flip predictions
    _, flipped = l2_pgd(model, x, pred, radius * 3.0 + 0.05, steps=60, restarts=2,
                        generator=torch.Generator().manual_seed(3))
    assert flipped.any()


@pytest.mark.parametrize("head", sll_net.HEADS)
@pytest.mark.parametrize("over", [{}, dict(depth=0, depth_linear=1, kernel_size=1), dict(pool=4, num_channels=3)])
def test_count_parameters_matches_a_real_build(head, over):
    shape = (3, 8, 8)
    model = _tiny(head, shape=shape, **over)
    real = sum(p.numel() for p in model.parameters())
    assert sll_net.count_parameters(shape, 3, head, **{**TINY, **over}) == real


def test_paper_size_parameter_counts():
    """Hand-expanded: 70 convs (5*120*9 + 10), 15 dense (2048 * F + 4096), head F * C + C."""
    xl_cifar10 = 70 * 5410 + 15 * (2048 * 120 * 64 + 4096) + (120 * 64 * 10 + 10)
    xl_tiny = 70 * 5410 + 15 * (2048 * 120 * 256 + 4096) + (120 * 256 * 200 + 200)
    assert sll_net.count_parameters((3, 32, 32), 10, "lln", size="XL") == xl_cifar10 == 236_446_550
    assert sll_net.count_parameters((3, 64, 64), 200, "lln", size="XL") == xl_tiny == 950_302_740
    assert sll_net.count_parameters((3, 32, 32), 10, "lln", size="S") == 41_385_862
    assert sll_net.count_parameters((3, 32, 32), 10, "pooling_linear", size="XL") == 236_446_550 - 76_810
    # the size presets and explicit options build the same model
    a = sll_net.build((3, 8, 8), 3, torch.Generator().manual_seed(0), "linear", size="S", depth=1, depth_linear=1,
                      n_features=4, num_channels=4)
    b = sll_net.build((3, 8, 8), 3, torch.Generator().manual_seed(0), "linear", depth=1, num_channels=4, depth_linear=1,
                      n_features=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_build_is_deterministic_and_draws_from_the_generator():
    a, b, c = _tiny(seed=5), _tiny(seed=5), _tiny(seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("head", ["lln", "pooling_linear"])
def test_state_dict_round_trip_keeps_outputs_and_constants(head):
    model = _tiny(head, seed=1)
    _randomise(model, 9, scale=0.5)
    model.converge()
    model.eval()
    x = torch.randn(5, 3, 4, 4)
    other = _tiny(head, seed=2)
    other.load_state_dict(model.state_dict())
    other.eval()
    assert torch.equal(model(x), other(x))
    assert torch.equal(model.pairwise_lipschitz(), other.pairwise_lipschitz())
    for la, lb in zip(model.spectral_layers(), other.spectral_layers()):
        assert torch.equal(la.frozen_inverse_t, lb.frozen_inverse_t)


def test_converged_sigma_after_an_optimiser_step_raises_and_eval_recomputes():
    model = _tiny()
    model.converge()
    layer = model.spectral_layers()[0]
    frozen = layer.frozen_inverse_t.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    loss = aol_loss(model(torch.randn(4, 3, 4, 4)), torch.tensor([0, 1, 2, 0]), torch.ones(()), model.head_weight())
    loss.backward()
    opt.step()
    with pytest.raises(RuntimeError, match="changed"):
        model.converged_body_lipschitz()
    model.eval()
    assert not torch.equal(layer._evaluation_inverse_t(), frozen)  # stale copy not used
    assert torch.equal(layer._evaluation_inverse_t(), layer.inverse_t())
    model.converge()
    assert float(model.converged_body_lipschitz()) == 1.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(size="XXL"), "size"),
    (dict(depth=2), "missing"),
    (dict(**TINY, width=3), "unknown"),
    (dict(**{**TINY, "num_channels": 2}), "num_channels"),
    (dict(**{**TINY, "pool": 3}), "pool"),
    (dict(**{**TINY, "kernel_size": 2}), "kernel_size"),
    (dict(**{**TINY, "depth": -1}), "depth"),
    (dict(**{**TINY, "n_features": 0}), "n_features"),
    (dict(**{**TINY, "conv_size": 1.5}), "conv_size"),
])
def test_build_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sll_net.build((3, 4, 4), 3, torch.Generator(), "linear", **kwargs)
    with pytest.raises(ValueError, match=match):
        sll_net.count_parameters((3, 4, 4), 3, "linear", **kwargs)


def test_build_rejects_bad_shapes_heads_and_classes():
    g = torch.Generator()
    with pytest.raises(ValueError, match="head"):
        sll_net.build((3, 4, 4), 3, g, "orthogonal", **TINY)
    with pytest.raises(ValueError, match="input_shape"):
        sll_net.build((3, 4), 3, g, "linear", **TINY)
    with pytest.raises(ValueError, match="num_classes"):
        sll_net.build((3, 4, 4), 1, g, "linear", **TINY)
    with pytest.raises(ValueError, match="pooling_linear"):
        sll_net.build((3, 2, 2), 10, g, "pooling_linear", **{**TINY, "num_channels": 3})


def test_layers_reject_bad_arguments_and_non_finite_weights():
    with pytest.raises(ValueError, match="inner_dim"):
        SDPLipschitzLinear(4, 0)
    with pytest.raises(ValueError, match="features"):
        SDPLipschitzLinear(-1, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        SDPLipschitzConv2d(3, 3, kernel_size=4)
    with pytest.raises(ValueError, match="channels"):
        SDPLipschitzConv2d(0, 3)
    with pytest.raises(ValueError, match="expects"):
        SDPLipschitzConv2d(3, 2)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="expects"):
        SDPLipschitzLinear(3, 2)(torch.randn(2, 4))
    layer = SDPLipschitzLinear(3, 2)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        layer.converge_sigma()


def test_private_base_layer_is_abstract():
    """The shared base cannot be built on its own: the hook every concrete layer overrides is abstract."""
    from lipcert.one_lipschitz.sdp_lipschitz import _SDPLipschitzBase

    with pytest.raises(TypeError, match="gram_abs"):
        _SDPLipschitzBase()
