"""SOC's training loss with certificate regularisation (CR; Singla, Singla & Feizi, "Improved deterministic l2
robustness on CIFAR-10 and CIFAR-100", ICLR 2022, sec. 5), the loss of the SOC baselines in CLL (its margin
parameter gamma is swept in CLL table B3).

As coded in singlasahil14/SOC ``train_robust.py`` (and the CLL fork mlosch/CLL ``soc/train_robust.py``):

    loss = CE(f(x), y) - gamma * mean_batch relu(cert(x, y))

with the certificate of the *label* y (``utils.py``: ``ortho_certificates`` / ``lln_certificates``)

    cert(x, y) = min_{j != y} (f_y - f_j) / (L * ||W_y - W_j||)

for an LLN head (rows W normalised, with gradient through them), and (f_y - max_{j != y} f_j) / (sqrt(2) L)
for an orthogonal last layer, which is the same formula since orthogonal rows have ||W_y - W_j|| = sqrt(2).
L there is the input normalisation's constant 1 / min(std); here the whole body constant ``k_body`` takes its
place, so the pairwise constants are K_yj = k_body * ||W_y - W_j|| (CLL supplement C, eq. (18)) and the
same function serves unconstrained ("linear") and LLN heads.  Samples the model misclassifies have a
negative certificate and contribute 0 through the relu.  Gradients flow through the logits, ``head_weight``
and ``k_body`` (as in the SOC code, where the LLN weights carry gradient and L is a constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lipcert.bounds import pairwise_row_distances
from lipcert.config_validation import check_range
from lipcert.losses.calibrated_loss import _check_inputs

__all__ = ["CertificateRegularizedConfig", "certificate_regularized_loss", "label_certificates"]


@dataclass(frozen=True)
class CertificateRegularizedConfig:
    """The keys of loss ``certificate_regularized``: ``gamma``, the CR weight (None: 0, the SOC code's default;
    CLL table B3 sweeps 0.05-0.4)."""

    gamma: float | None = None

    def __post_init__(self) -> None:
        if self.gamma is not None:
            check_range("loss.gamma", self.gamma, lo=0.0)


def label_certificates(logits: torch.Tensor, targets: torch.Tensor, k_body: torch.Tensor,
                       head_weight: torch.Tensor) -> torch.Tensor:
    """Per-sample certificate of the label, min_{j != y} (f_y - f_j) / (k_body * ||W_y - W_j||), shape (B,).

    Positive iff the label wins against every other class; then it is a certified l2 radius.
    """
    _check_inputs(logits, targets, k_body, head_weight)
    distances = pairwise_row_distances(head_weight.to(logits.dtype))[targets]  # (B, C): ||W_y - W_j||
    is_target = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, targets[:, None], True)
    k = k_body.reshape(()).to(logits.dtype)
    margins = logits.gather(1, targets[:, None]) - logits  # f_y - f_j
    ratios = margins / (k * torch.where(is_target, torch.ones_like(distances), distances))
    ratios = torch.where(is_target, torch.full_like(ratios, float("inf")), ratios)
    return ratios.amin(dim=1)


def certificate_regularized_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    gamma: float,
) -> torch.Tensor:
    """CE(logits, targets) - gamma * mean(relu(label certificate)) (module docstring; SOC ``train_robust.py``).

    ``gamma`` >= 0 is the CR weight (the SOC code's ``--gamma``, default 0; CLL table B3 sweeps 0.05-0.4 and
    picks 0.3 for LipConv-10 on Tiny-ImageNet).  With gamma = 0 this is plain cross-entropy.
    """
    _check_inputs(logits, targets, k_body, head_weight)
    gamma_f = float(gamma) if not isinstance(gamma, bool) else float("nan")
    if not math.isfinite(gamma_f) or gamma_f < 0.0:
        raise ValueError(f"gamma (certificate regularisation weight) must be a finite number >= 0, got {gamma!r}")
    loss = F.cross_entropy(logits, targets)
    if gamma_f > 0.0:
        certificates = label_certificates(logits, targets, k_body, head_weight)
        loss = loss - gamma_f * F.relu(certificates).mean()
    return loss
