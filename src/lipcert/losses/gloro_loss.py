"""GloRo loss (Leino, Wang, Fredrikson, "Globally-Robust Neural Networks", ICML 2021).

The baseline of the CLL paper's Tables 1 and 2 ([25] in the main text). GloRo appends a "bottom"
logit y_bot = max_{i != j} (y_i + eps * K_ji) to the C logits, where j is the predicted class and
K_ji = k_body * ||W_j - W_i|| the pairwise Lipschitz constant of y_j - y_i; the bottom class is the
argmax exactly when the prediction is not certified at radius eps. The loss is cross-entropy over
the C + 1 logits with the true label (the bottom class is never a target). Unlike CLL, k_body keeps
its gradient: GloRo trains through the bound (reference_implementation.md sec. 1.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lipcert.bounds import pairwise_row_distances
from lipcert.config_validation import check_range
from lipcert.losses.calibrated_loss import _check_inputs
from lipcert.schedules import ScheduleConfig

__all__ = ["GloroLossConfig", "gloro_bottom_logit", "gloro_loss"]


@dataclass(frozen=True)
class GloroLossConfig:
    """The keys of loss ``gloro`` in a run's ``loss`` section.

    ``eps``: the certification radius trained for, a required schedule (table B4 ramps it from 0);
    ``trades_weight``: the TRADES weight schedule (None: plain GloRo; table B4: linear 0.5 -> 20);
    ``output_scale``: the fixed temperature s = 1/T of CLL supplement D (Fig. D4c).
    """

    eps: ScheduleConfig | None = None
    trades_weight: ScheduleConfig | None = None
    output_scale: float = 1.0

    def __post_init__(self) -> None:
        check_range("loss.output_scale", self.output_scale, lo=0.0, lo_inclusive=False)
        if self.eps is None:
            raise ValueError("loss.eps is required for loss 'gloro'")
        for value in self.eps.endpoints():
            check_range("loss.eps", value, lo=0.0)
        if self.trades_weight is not None:
            for value in self.trades_weight.endpoints():
                check_range("loss.trades_weight", value, lo=0.0)


def _check_radius(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0.0:
        raise ValueError(f"eps must be a finite number >= 0 (the GloRo ramp starts at 0), got {eps!r}")
    return eps


def gloro_bottom_logit(
    logits: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    eps: float,
) -> torch.Tensor:
    """Bottom logit y_bot = max_{i != j} (y_i + eps * k_body * ||W_j - W_i||), j = argmax y (Leino et al. 2021).

    j is the predicted class, taken from the detached logits; exactly one class (the argmax index)
    is excluded per row, also under ties (the authors' port masks every class equal to the maximum).
    Gradient flows through the logits, k_body and head_weight. Returns a (B,) tensor.
    """
    eps = _check_radius(eps)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (batch, classes >= 2), got {tuple(logits.shape)}")
    if not torch.is_tensor(k_body) or k_body.numel() != 1:
        raise ValueError("k_body must be a scalar tensor")
    if head_weight.dim() != 2 or head_weight.shape[0] != logits.shape[1]:
        raise ValueError(
            f"head_weight must have shape ({logits.shape[1]}, D) to match the logits, got {tuple(head_weight.shape)}"
        )
    predicted = logits.detach().argmax(dim=1, keepdim=True)  # (B, 1)
    distances = pairwise_row_distances(head_weight.to(logits.dtype))[predicted[:, 0]]  # (B, C): ||W_j - W_i||
    candidates = logits + eps * k_body.reshape(()).to(logits.dtype) * distances
    is_predicted = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, predicted, True)
    candidates = candidates.masked_fill(is_predicted, float("-inf"))
    return candidates.max(dim=1).values


def gloro_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    eps: float,
    trades_weight: float | None = None,
    output_scale: float = 1.0,
) -> torch.Tensor:
    """GloRo loss (Leino et al. 2021), optionally in its TRADES form.

    ``output_scale`` is the fixed temperature s = 1/T of CLL supplement D ("Comparison to fixed temperature
    scaling", Fig. D4c): the loss is evaluated on s * [y, y_bot] (and s * y for the TRADES terms).

    ``trades_weight=None`` (plain GloRo): mean over the batch of CE([y, y_bot], t), the
    cross-entropy over the C + 1 logits with the true label t.

    ``trades_weight=lam`` (GloRo's TRADES variant, "GloRo + TRADES" of the CLL paper's Table 1 and
    Table B4, with lam annealed linearly 0.5 -> 20): following Leino et al.'s ``Trades`` loss,
        CE(y, t) + lam * KL( [softmax(y), 0] || softmax([y, y_bot]) ),
    i.e. the clean cross-entropy over the C logits plus the KL divergence from the clean prediction
    (padded with probability 0 for the bottom class) to the GloRo prediction with the bottom class;
    the KL term is summed over classes and averaged over the batch, and gradient flows through both
    of its arguments. ``trades_weight=0`` therefore gives plain CE(y, t), not plain GloRo.

    ``eps`` >= 0 is the certification radius (GloRo ramps it from 0); k_body keeps its gradient.
    """
    _check_inputs(logits, targets, k_body, head_weight)
    output_scale = float(output_scale)
    if not math.isfinite(output_scale) or output_scale <= 0.0:
        raise ValueError(f"output_scale (s = 1/T) must be a finite number > 0, got {output_scale!r}")
    bottom = gloro_bottom_logit(logits, k_body, head_weight, eps=eps)
    extended = output_scale * torch.cat([logits, bottom[:, None]], dim=1)
    logits = output_scale * logits
    if trades_weight is None:
        return F.cross_entropy(extended, targets)
    trades_weight = float(trades_weight)
    if not math.isfinite(trades_weight) or trades_weight < 0.0:
        raise ValueError(f"trades_weight must be a finite number >= 0 or None, got {trades_weight!r}")
    clean = F.cross_entropy(logits, targets)
    log_clean = F.log_softmax(logits, dim=1)  # log P_i, i < C (P_bot = 0 contributes 0 to the KL)
    log_extended = F.log_softmax(extended, dim=1)[:, :-1]  # log Q_i, i < C
    kl = (log_clean.exp() * (log_clean - log_extended)).sum(dim=1).mean()
    return clean + trades_weight * kl
