"""Multi-class hinge (margin) loss, the training loss of CPL (Meunier et al., ICML 2022).

Facts from the authors' code (MILES-PSL/Convex-Potential-Layer ``util.py`` ``margin_loss`` and
``trainer.py``; unchanged as the ``loss_type == 'default'`` path of the CLL fork mlosch/CLL ``cpl/``):
the loss is ``F.multi_margin_loss(logits, targets, margin=m, p=1)``, i.e. per sample

    (1 / C) * sum_{i != t} max(0, m - (f_t - f_i)),

averaged over the batch (note the division by the number of classes C, PyTorch's definition).  The
margin is a fixed number, ``--margin`` with default **0.7**; it is *not* derived from the certification
radius in the code (no sqrt(2) * eps scaling and no separate offset; the "offset" and "temperature" of the
SLL code belong to the AOL-style loss in :mod:`lipcert.losses.aol_loss`).  For reference: with a
1-Lipschitz body and the authors' truncation head every pairwise constant is sqrt(2), so a logit margin m
corresponds to a certified radius m / sqrt(2) (0.7 -> 0.495 ~ 126/255).

k_body and head_weight do not enter the loss; they are validated so that every loss accepts the same
arguments (see :mod:`lipcert.losses`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lipcert.config_validation import check_range
from lipcert.losses.calibrated_loss import _check_inputs

__all__ = ["CPL_MARGIN", "MarginHingeConfig", "margin_hinge_loss"]

#: Default margin of the CPL code (``main.py --margin``).
CPL_MARGIN: float = 0.7


@dataclass(frozen=True)
class MarginHingeConfig:
    """The keys of loss ``margin_hinge``: ``margin``, the logit margin m > 0, required (CPL uses :data:`CPL_MARGIN`)."""

    margin: float | None = None

    def __post_init__(self) -> None:
        if self.margin is None:
            raise ValueError(f"loss.margin is required for loss 'margin_hinge' (CPL uses {CPL_MARGIN})")
        check_range("loss.margin", self.margin, lo=0.0, lo_inclusive=False)


def margin_hinge_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    margin: float,
) -> torch.Tensor:
    """mean_b (1/C) sum_{i != t_b} max(0, margin - (f_{t_b} - f_i)) (CPL's ``margin_loss``; module doc).

    ``margin`` > 0 is the logit margin the loss asks for (the CPL code uses :data:`CPL_MARGIN` = 0.7).
    """
    _check_inputs(logits, targets, k_body, head_weight)
    margin = float(margin)
    if not (math.isfinite(margin) and margin > 0.0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    classes = logits.shape[1]
    target_column = targets[:, None]
    true_logit = logits.gather(1, target_column)
    hinge = (margin - true_logit + logits).clamp_min(0.0)
    is_target = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, target_column, True)
    hinge = hinge.masked_fill(is_target, 0.0)
    return (hinge.sum(dim=1) / classes).mean()
