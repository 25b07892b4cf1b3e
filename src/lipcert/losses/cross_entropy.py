"""Plain cross-entropy with the loss call signature of CLL and GloRo, for reference runs.

The CLL paper's Fig. 2a ("vanilla cross-entropy and no Lipschitz regularization") is this loss
with lam = 0; lam > 0 adds the same K(f)^2 regulariser as CLL's main eq. (3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lipcert.config_validation import check_range
from lipcert.losses.calibrated_loss import _check_inputs, global_lipschitz

__all__ = ["CrossEntropyConfig", "cross_entropy_loss"]


@dataclass(frozen=True)
class CrossEntropyConfig:
    """The keys of loss ``ce``: ``lam`` weighs the K(f)^2 regulariser (main eq. (3)); 0 is Fig. 2a's plain CE."""

    lam: float = 0.0

    def __post_init__(self) -> None:
        check_range("loss.lam", self.lam, lo=0.0)


def cross_entropy_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    lam: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy CE(y, t) over the batch, plus lam * K(f)^2 (CLL main eq. (3)'s regulariser).

    k_body and head_weight are used only by the regulariser (K(f) = k_body * max_ij ||W_i - W_j||,
    with gradient); they are still validated so that all losses accept the same arguments.
    """
    _check_inputs(logits, targets, k_body, head_weight)
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0.0:
        raise ValueError(f"lam (weight of the K^2 regulariser) must be a finite number >= 0, got {lam!r}")
    loss = F.cross_entropy(logits, targets)
    if lam > 0.0:
        loss = loss + lam * global_lipschitz(k_body, head_weight).to(loss.dtype) ** 2
    return loss
