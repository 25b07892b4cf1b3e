"""GloRo loss (Leino et al. 2021): bottom logit and loss vs hand computation, ties, gradient
through the bound, the TRADES form, the certification meaning of the bottom logit, bad input."""

import math

import pytest
import torch

from lipcert.losses import gloro_bottom_logit, gloro_loss

torch.set_num_threads(1)

LOGITS = [[2.0, -1.0, 0.5], [0.3, 0.4, -0.2], [-1.5, 2.5, 1.0], [1.0, 1.0, 0.0]]
TARGETS = [0, 2, 1, 1]
HEAD = [[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]]
K_BODY = 0.8


def _tensors(requires_grad=False):
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=requires_grad)
    targets = torch.tensor(TARGETS, dtype=torch.int64)
    k_body = torch.tensor(K_BODY, dtype=torch.float64, requires_grad=requires_grad)
    head = torch.tensor(HEAD, dtype=torch.float64, requires_grad=requires_grad)
    return logits, targets, k_body, head


def _dist(i, j):
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(HEAD[i], HEAD[j])))


def _hand_bottom(row, eps):
    j = max(range(len(row)), key=lambda c: (row[c], -c))  # first index of the maximum
    return max(row[i] + eps * K_BODY * _dist(j, i) for i in range(len(row)) if i != j)


def _hand_gloro(eps):
    total = 0.0
    for row, t in zip(LOGITS, TARGETS):
        ext = row + [_hand_bottom(row, eps)]
        total += math.log(sum(math.exp(v) for v in ext)) - ext[t]
    return total / len(LOGITS)


def _hand_trades(eps, weight):
    total = 0.0
    for row, t in zip(LOGITS, TARGETS):
        ext = row + [_hand_bottom(row, eps)]
        z_clean = sum(math.exp(v) for v in row)
        z_ext = sum(math.exp(v) for v in ext)
        ce = math.log(z_clean) - row[t]
        kl = 0.0
        for v in row:
            P = math.exp(v) / z_clean
            Q = math.exp(v) / z_ext
            kl += P * math.log(P / Q)
        total += ce + weight * kl
    return total / len(LOGITS)


@pytest.mark.parametrize("eps", [0.0, 0.15, 1.0])
def test_bottom_logit_and_loss_match_hand_computation(eps):
    logits, targets, k_body, head = _tensors()
    bottom = gloro_bottom_logit(logits, k_body, head, eps=eps)
    for b, row in zip(bottom.tolist(), LOGITS):
        assert b == pytest.approx(_hand_bottom(row, eps), rel=1e-12)
    loss = gloro_loss(logits, targets, k_body, head, eps=eps)
    assert loss.item() == pytest.approx(_hand_gloro(eps), rel=1e-12)


def test_ties_mask_exactly_one_class():
    # row [1, 1, 0]: argmax index 0; class 1 (tied) must stay a candidate of the bottom logit.
    logits = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    head = torch.tensor(HEAD, dtype=torch.float64)
    k_body = torch.tensor(K_BODY, dtype=torch.float64)
    eps = 0.5
    bottom = gloro_bottom_logit(logits, k_body, head, eps=eps).item()
    with_class_1 = 1.0 + eps * K_BODY * _dist(0, 1)
    only_class_2 = 0.0 + eps * K_BODY * _dist(0, 2)
    assert with_class_1 > only_class_2  # the authors' tie bug would give only_class_2
    assert bottom == pytest.approx(with_class_1, rel=1e-12)


def test_bottom_logit_is_below_the_top_logit_exactly_when_certified():
    torch.manual_seed(3)
    logits = torch.randn(64, 5, dtype=torch.float64) * 2
    head = torch.randn(5, 7, dtype=torch.float64)
    k_body = torch.tensor(0.6, dtype=torch.float64)
    eps = 0.4
    bottom = gloro_bottom_logit(logits, k_body, head, eps=eps)
    top, pred = logits.max(dim=1)
    for n in range(64):
        j = pred[n].item()
        certified = all(
            logits[n, j] - logits[n, i] > eps * k_body * torch.linalg.vector_norm(head[j] - head[i])
            for i in range(5) if i != j
        )
        assert certified == bool(bottom[n] < top[n])


def test_gradient_flows_through_the_bound_to_k_body():
    logits, targets, _, head = _tensors()
    k_body = torch.tensor(K_BODY, dtype=torch.float64, requires_grad=True)
    eps = 0.3
    (grad,) = torch.autograd.grad(gloro_loss(logits, targets, k_body, head, eps=eps), [k_body])
    h = 1e-6
    plus = gloro_loss(logits, targets, torch.tensor(K_BODY + h, dtype=torch.float64), head, eps=eps)
    minus = gloro_loss(logits, targets, torch.tensor(K_BODY - h, dtype=torch.float64), head, eps=eps)
    assert grad.item() > 0.0  # a larger bound makes the bottom class more likely
    assert grad.item() == pytest.approx((plus - minus).item() / (2 * h), rel=1e-6)
    # at eps = 0 the bound does not enter the loss
    (grad0,) = torch.autograd.grad(gloro_loss(logits, targets, k_body, head, eps=0.0), [k_body])
    assert grad0.item() == 0.0


def test_gradient_reaches_head_weight_and_logits():
    logits, targets, k_body, head = _tensors(requires_grad=True)
    loss = gloro_loss(logits, targets, k_body, head, eps=0.3)
    g_logits, g_k, g_head = torch.autograd.grad(loss, [logits, k_body, head])
    assert torch.isfinite(g_head).all() and g_head.abs().sum() > 0
    assert torch.isfinite(g_logits).all() and g_k.item() > 0


@pytest.mark.parametrize("weight", [0.5, 20.0])
def test_trades_form_matches_hand_computation(weight):
    logits, targets, k_body, head = _tensors()
    got = gloro_loss(logits, targets, k_body, head, eps=0.3, trades_weight=weight)
    assert got.item() == pytest.approx(_hand_trades(0.3, weight), rel=1e-12)


def test_trades_weight_zero_is_clean_cross_entropy_and_none_is_plain_gloro():
    logits, targets, k_body, head = _tensors()
    clean = torch.nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(gloro_loss(logits, targets, k_body, head, eps=0.3, trades_weight=0.0), clean)
    assert gloro_loss(logits, targets, k_body, head, eps=0.3).item() == pytest.approx(_hand_gloro(0.3), rel=1e-12)
    # the KL term is >= 0 and grows with the bound
    small = gloro_loss(logits, targets, k_body, head, eps=0.1, trades_weight=1.0).item()
    large = gloro_loss(logits, targets, k_body, head, eps=1.0, trades_weight=1.0).item()
    assert clean.item() < small < large


def test_bad_input_raises():
    logits, targets, k_body, head = _tensors()
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        gloro_loss(logits, targets, k_body, head, eps=-0.1)
    with pytest.raises(ValueError, match="trades_weight"):
        gloro_loss(logits, targets, k_body, head, eps=0.1, trades_weight=-1.0)
    with pytest.raises(ValueError, match="head_weight must have shape"):
        gloro_loss(logits, targets, k_body, head[:2], eps=0.1)
    with pytest.raises(ValueError, match="targets must lie"):
        gloro_loss(logits, torch.tensor([0, 1, 2, 5]), k_body, head, eps=0.1)
    with pytest.raises(ValueError, match="logits must have shape"):
        gloro_bottom_logit(logits[:, :1], k_body, head[:1], eps=0.1)


def test_output_scale_is_a_temperature_on_all_c_plus_1_logits():
    """Supplement D, Fig. D4c: L_GloRo(y; h(s * f(x))) = CE(s * [y, y_bot], t), checked by hand."""
    import math as _math

    logits = torch.tensor([[1.0, -0.5, 0.25]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = torch.tensor(2.0)
    s, eps = 0.5, 0.1
    # predicted j = 0; bottom = max(-0.5 + eps*k*||W0-W1||, 0.25 + eps*k*||W0-W2||)
    bot = max(-0.5 + eps * 2.0 * _math.sqrt(2.0), 0.25 + eps * 2.0 * 1.0)
    z = [s * v for v in (1.0, -0.5, 0.25, bot)]
    expected = -(z[0] - _math.log(sum(_math.exp(v) for v in z)))
    got = gloro_loss(logits, torch.tensor([0]), k, w, eps=eps, output_scale=s)
    assert abs(float(got) - expected) < 1e-6
    with pytest.raises(ValueError, match="output_scale"):
        gloro_loss(logits, torch.tensor([0]), k, w, eps=eps, output_scale=0.0)
