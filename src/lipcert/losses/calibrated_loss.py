"""Calibrated Lipschitz-Margin Loss (CLL; Losch et al., GCPR 2023).

Paper references are to the CLL paper (main text eqs. (1)-(5), section 3) and its supplement
(sec. A, Definition 2 and eqs. (1)-(15); sec. B, eq. (17); sec. D "margin offset as tuneable parameter").

The p convention
----------------
``calibration_scale``, ``k_hf`` and every loss here take the **eq. (5) p**: the probability the
calibrated logistic attains at *one* margin side, so sigma = 2 eps / (logit(1 - p) - logit(p)).
The numbers printed in the paper's Table 1, Table D5 and most Table B4 rows follow the authors'
code, which splits the printed value over both margin sides (p/2 each side). Convert those with
``p_from_printed``. The exception is Table B4's p = 0.15 for 4C3F/6C2F, which is already an
eq. (5) p (it gives the printed K(h o f) = 11.6 of Tables 2 and D6 directly).

Offsets and where the logistic is centred
-----------------------------------------
With r_tj = (f_t - f_j) / K_tj (the input-space distance to the t-vs-j decision boundary):

* binary CLL (main eq. (4)) with offset delta: per-sample loss softplus((delta - r) / sigma), the
  logistic is centred at r = delta and equals p at r = delta - eps, 1 - p at r = delta + eps;
* multinomial CLL, two-sided offset (supplement eq. (2): +eps on j != t, -eps on t): each pair
  contributes exp((2 delta - r_tj) / sigma), i.e. it is centred at r = 2 delta (supplement eq. (5):
  "encourages a margin width of 2 eps");
* multinomial CLL, one-sided offset (the target offset is 0, as in the authors' two-moons runs):
  centred at r = delta.

Hence supplement A's statement that multinomial CLL with N = 2 "is a generalization of the
logistic function" holds for the form; as loss values, two-class multinomial CLL equals binary CLL
with offset 2 delta (two-sided) or delta (one-sided). ``tests/test_calibrated_loss.py`` checks both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from lipcert.bounds import pairwise_row_distances, row_norms
from lipcert.config_validation import check_range
from lipcert.run_record import p_from_printed  # the one definition (re-exported here)
from lipcert.schedules import ScheduleConfig
from lipcert.tensor_checks import require

__all__ = [
    "CalibratedLossConfig",
    "NORMALISATIONS",
    "OFFSET_MODES",
    "calibration_scale",
    "k_hf",
    "p_from_printed",
    "global_lipschitz",
    "calibrated_logits",
    "calibrated_loss",
    "binary_calibrated_loss",
]

NORMALISATIONS = ("pairwise", "per_logit")
OFFSET_MODES = ("two_sided", "one_sided")


@dataclass(frozen=True)
class CalibratedLossConfig:
    """The keys of loss ``cll`` in a run's ``loss`` section (CLL supplement table B1 / B4 give their values).

    ``eps`` (margin half-width) and ``p`` (the eq. (5) p, half the value printed in most of table B4 / table 1 /
    table D5; see :func:`p_from_printed`) are required schedules (a number is a constant); ``beta`` is the K scale
    of supplement B (None: 1, no scaling), ``delta`` the margin offset of supplement D (None: eps); ``lam``
    weighs the K(f)^2 regulariser of main eq. (3).  See :func:`calibrated_logits` for the others.
    """

    eps: ScheduleConfig | None = None
    p: ScheduleConfig | None = None
    delta: float | None = None
    beta: ScheduleConfig | None = None
    normalisation: Literal["pairwise", "per_logit"] = "pairwise"
    offset_mode: Literal["two_sided", "one_sided"] = "two_sided"
    detach_k: bool = True
    lam: float = 0.0

    def __post_init__(self) -> None:
        check_range("loss.lam", self.lam, lo=0.0)
        if self.delta is not None:
            check_range("loss.delta", self.delta, lo=0.0)
        if self.eps is None:
            raise ValueError("loss.eps is required for loss 'cll'")
        if self.p is None:
            raise ValueError("loss.p (eq. (5) slack) is required for loss 'cll'")
        for value in self.p.endpoints():
            check_range("loss.p", value, lo=0.0, hi=0.5, lo_inclusive=False, hi_inclusive=False)
        for value in self.eps.endpoints():
            check_range("loss.eps", value, lo=0.0)
        if self.beta is not None:
            for value in self.beta.endpoints():
                check_range("loss.beta", value, lo=0.0, lo_inclusive=False)


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps <= 0.0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    return eps


def _check_p(p: float) -> float:
    p = float(p)
    if not (0.0 < p < 0.5):
        raise ValueError(
            f"p must lie in (0, 0.5) (the eq. (5) p, one margin side), got {p!r}; "
            "for a value printed in the paper's tables use p_from_printed(p_printed)"
        )
    return p


def _logit(q: float) -> float:
    """Inverse cdf of the standard logistic, h^{-1}(q) = log(q / (1 - q)) (main text below eq. (5))."""
    return math.log(q) - math.log1p(-q)


def calibration_scale(eps: float, p: float) -> float:
    """Calibrated logistic scale sigma_eps(p) = 2 eps / (h^{-1}(1 - p) - h^{-1}(p)) (main eq. (5)).

    ``eps`` is the margin half-width (eps > 0) and ``p`` the eq. (5) probability at one margin side
    (0 < p < 0.5); see the module docstring for the convention of the printed tables.
    """
    eps = _check_eps(eps)
    p = _check_p(p)
    # h^{-1}(1 - p) = log((1 - p) / p) computed as log1p(-p) - log(p) for accuracy at tiny p.
    upper = math.log1p(-p) - math.log(p)
    lower = _logit(p)
    return 2.0 * eps / (upper - lower)


def k_hf(eps: float, p: float) -> float:
    """Lipschitz constant of the calibrated model, K(h o f) = 1 / sigma_eps(p) = logit(1 - p) / eps.

    Main text sec. 3.3 ("K(h o f) = K(h) = 1/sigma_eps(p)") and sec. 4.2; the column K(h o f) of
    Tables 1, 2 and D5. ``p`` is the eq. (5) p (use ``p_from_printed`` for the printed tables).
    """
    return 1.0 / calibration_scale(eps, p)


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, k_body: torch.Tensor,
                  head_weight: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (batch, classes), got shape {tuple(logits.shape)}")
    batch, classes = logits.shape
    if classes < 2:
        raise ValueError(f"logits need at least 2 classes, got {classes}")
    if targets.dim() != 1 or targets.shape[0] != batch:
        raise ValueError(f"targets must have shape ({batch},), got {tuple(targets.shape)}")
    if targets.dtype != torch.int64:
        raise ValueError(f"targets must be int64 class indices, got dtype {targets.dtype}")
    if batch > 0:  # queued, not read back: no host synchronisation per training step (lipcert.tensor_checks)
        require(((targets >= 0) & (targets < classes)).all(), f"targets must lie in [0, {classes - 1}]")
    if not torch.is_tensor(k_body) or k_body.numel() != 1:
        raise ValueError(f"k_body must be a scalar tensor, got {type(k_body).__name__} "
                         f"with shape {tuple(getattr(k_body, 'shape', ()))}")
    if head_weight.dim() != 2 or head_weight.shape[0] != classes:
        raise ValueError(
            f"head_weight must have shape ({classes}, D) to match the logits, got {tuple(head_weight.shape)}"
        )


def global_lipschitz(k_body: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """K(f) = k_body * max_ij ||W_i - W_j||_2, with gradient through k_body and W.

    This is the K of the regulariser lam * K^2 in main eq. (3) (product of norms, eq. (1)/(16), with
    the last layer's largest pairwise row distance, as the authors' code does).
    """
    return k_body.reshape(()) * pairwise_row_distances(head_weight).max()


def calibrated_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    eps: float,
    p: float,
    delta: float | None = None,
    beta: float = 1.0,
    normalisation: str = "pairwise",
    offset_mode: str = "two_sided",
    detach_k: bool = True,
) -> torch.Tensor:
    """Calibrated softmax inputs g_t(j, x) of multinomial CLL (supplement Definition 2, eqs. (1)-(2)).

    ``normalisation="pairwise"`` (supplement eq. (2)):
        z_j = (f_j - f_t) / (K_tj * beta * sigma) + delta_j / sigma,  K_tj = k_body * ||W_t - W_j||
    with K_tt set to 1 (its numerator is 0).
    ``normalisation="per_logit"`` (the authors' per-logit code variant, not in the paper):
        z_j = f_j / (k_body * ||W_j|| * beta * sigma) + delta_j / sigma.

    delta_j = +delta for j != t; delta_t = -delta (``offset_mode="two_sided"``, supplement eq. (2))
    or 0 (``"one_sided"``). ``delta`` defaults to ``eps`` (supplement D, "margin offset as tuneable
    parameter"). ``beta`` is the K-scale of supplement B (f(x) / (K beta), scheduled on Tiny-ImageNet).
    sigma = ``calibration_scale(eps, p)`` (main eq. (5), eq. (5) p). With ``detach_k`` (default)
    k_body and the head norms are constants inside the normaliser (no gradient through them).
    Returns a (B, C) tensor.
    """
    _check_inputs(logits, targets, k_body, head_weight)
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; expected one of {NORMALISATIONS}")
    if offset_mode not in OFFSET_MODES:
        raise ValueError(f"unknown offset_mode {offset_mode!r}; expected one of {OFFSET_MODES}")
    sigma = calibration_scale(eps, p)
    delta = float(eps) if delta is None else float(delta)
    if not math.isfinite(delta) or delta < 0.0:
        raise ValueError(f"delta (margin offset) must be a finite number >= 0, got {delta!r}")
    beta = float(beta)
    if not math.isfinite(beta) or beta <= 0.0:
        raise ValueError(f"beta (K scale) must be a finite number > 0, got {beta!r}")

    k = k_body.reshape(()).to(logits.dtype)
    weight = head_weight.to(logits.dtype)
    if detach_k:
        k = k.detach()
        weight = weight.detach()

    target_column = targets[:, None]
    is_target = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, target_column, True)

    if normalisation == "pairwise":
        distances = pairwise_row_distances(weight)[targets]  # (B, C): ||W_t - W_j||
        distances = torch.where(is_target, torch.ones_like(distances), distances)
        numerator = logits - logits.gather(1, target_column)
        scaled = numerator / (k * distances * (beta * sigma))
    else:
        norms = row_norms(weight)  # (C,)
        scaled = logits / (k * norms[None, :] * (beta * sigma))

    target_offset = -delta if offset_mode == "two_sided" else 0.0
    offsets = torch.where(
        is_target,
        torch.full_like(scaled, target_offset / sigma),
        torch.full_like(scaled, delta / sigma),
    )
    return scaled + offsets


def calibrated_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    eps: float,
    p: float,
    delta: float | None = None,
    beta: float = 1.0,
    normalisation: str = "pairwise",
    offset_mode: str = "two_sided",
    detach_k: bool = True,
    lam: float = 0.0,
) -> torch.Tensor:
    """Multinomial CLL: mean over the batch of -log softmax(z)_t, plus lam * K(f)^2 (main eq. (3)).

    z are the calibrated logits of ``calibrated_logits`` (supplement Definition 2, eqs. (1)-(2));
    see there for eps, p (eq. (5) p), delta, beta, normalisation, offset_mode and detach_k.
    The regulariser uses K(f) = ``global_lipschitz(k_body, head_weight)`` **with** gradient through
    k_body and W regardless of ``detach_k``, so with ``detach_k=True`` the lam term is the only path
    from the loss to k_body. ``lam`` must be >= 0; the term is skipped when lam == 0.
    """
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0.0:
        raise ValueError(f"lam (weight of the K^2 regulariser) must be a finite number >= 0, got {lam!r}")
    z = calibrated_logits(
        logits, targets, k_body, head_weight, eps=eps, p=p, delta=delta, beta=beta,
        normalisation=normalisation, offset_mode=offset_mode, detach_k=detach_k,
    )
    loss = F.cross_entropy(z, targets)
    if lam > 0.0:
        loss = loss + lam * global_lipschitz(k_body, head_weight).to(loss.dtype) ** 2
    return loss


def binary_calibrated_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    lipschitz: torch.Tensor,
    *,
    eps: float,
    p: float,
    delta: float | None = None,
    detach_k: bool = True,
    lam: float = 0.0,
) -> torch.Tensor:
    """Binary CLL (main Definition 1, eqs. (3)-(5)) for a scalar score f(x) with Lipschitz constant K.

    h_hat(f(x); y) = h(-y delta / sigma + f(x) / (sigma K)) with h the standard logistic, labels
    y in {-1, +1} and sigma = ``calibration_scale(eps, p)``; the loss is the binary cross-entropy
    -log h_hat for y = +1 and -log(1 - h_hat) for y = -1, i.e. softplus((delta - y f(x)/K) / sigma),
    averaged over the batch, plus lam * K^2 (K with gradient). ``delta`` defaults to eps (the paper's
    Definition 1); supplement D treats it as a separate knob. With ``detach_k`` the K inside h_hat is
    a constant. ``scores`` has shape (B,), ``labels`` shape (B,), ``lipschitz`` is a scalar tensor.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (batch,), got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels must have shape {tuple(scores.shape)}, got {tuple(labels.shape)}")
    if labels.numel() > 0:
        require(((labels == 1) | (labels == -1)).all(), "labels must be -1 or +1 (main eq. (4) uses y in {-1, 1})")
    if not torch.is_tensor(lipschitz) or lipschitz.numel() != 1:
        raise ValueError("lipschitz must be a scalar tensor (the Lipschitz constant K of the score)")
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0.0:
        raise ValueError(f"lam (weight of the K^2 regulariser) must be a finite number >= 0, got {lam!r}")
    sigma = calibration_scale(eps, p)
    delta = float(eps) if delta is None else float(delta)
    if not math.isfinite(delta) or delta < 0.0:
        raise ValueError(f"delta (margin offset) must be a finite number >= 0, got {delta!r}")

    k = lipschitz.reshape(()).to(scores.dtype)
    k_in_loss = k.detach() if detach_k else k
    y = labels.to(scores.dtype)
    # -log h(u) = softplus(-u) with u = (f/K - y delta) / sigma; for y = -1, -log(1 - h(u)) = softplus(u).
    loss = F.softplus((delta - y * scores / k_in_loss) / sigma).mean()
    if lam > 0.0:
        loss = loss + lam * k ** 2
    return loss
