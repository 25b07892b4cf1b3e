"""Offset cross-entropy with a fixed temperature: the "AOL loss" that SLL and LBDN train with.

The CLL supplement (sec. A.1, "Similarity to AOL loss") writes it as h((-u_y + f(x)) / t) * t: the logit
of the true class is lowered by an offset u, all logits are divided by a temperature t, the softmax
cross-entropy h is taken, and the result is scaled back by t.  Unlike CLL, both u and t stay fixed during
training, whatever the model's Lipschitz constant does (CLL main eq. (5) ties its scale to K instead).

Facts from the SLL code (araujoalexandre/Lipschitz-SLL-Networks, ``core/utils.py`` class ``LossXent`` and
``main.py``; the same in the CLL fork mlosch/CLL ``sll/``): the loss is
``temperature * CE((logits - offset * onehot(y)) / temperature, y)`` with the batch mean of CE, and the
command-line defaults are ``offset = sqrt(2) * 3 / 2`` and ``temperature = 0.25``.  Reading of the offset:
for a 1-Lipschitz body and a head whose rows are orthonormal (SLL's truncation head) every pairwise
constant is K_ij = sqrt(2), so a logit margin of sqrt(2) * r is a certified radius of r; the default
offset therefore asks for margins corresponding to radius 3/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lipcert.config_validation import check_range
from lipcert.losses.calibrated_loss import _check_inputs

__all__ = ["AOLLossConfig", "SLL_OFFSET", "SLL_TEMPERATURE", "aol_loss"]

#: Default offset u of the SLL code (``main.py --offset``): sqrt(2) * 3 / 2.
SLL_OFFSET: float = math.sqrt(2.0) * 3.0 / 2.0
#: Default temperature t of the SLL code (``main.py --temperature``).
SLL_TEMPERATURE: float = 0.25


@dataclass(frozen=True)
class AOLLossConfig:
    """The keys of loss ``aol``: ``offset`` u >= 0 and ``temperature`` t > 0 (None: the SLL code's
    :data:`SLL_OFFSET` and :data:`SLL_TEMPERATURE`, as the SLL and LBDN recipes use them)."""

    offset: float | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        if self.offset is not None:
            check_range("loss.offset", self.offset, lo=0.0)
        if self.temperature is not None:
            check_range("loss.temperature", self.temperature, lo=0.0, lo_inclusive=False)

    def offset_value(self) -> float:
        return SLL_OFFSET if self.offset is None else self.offset

    def temperature_value(self) -> float:
        return SLL_TEMPERATURE if self.temperature is None else self.temperature


def aol_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    k_body: torch.Tensor,
    head_weight: torch.Tensor,
    *,
    offset: float = SLL_OFFSET,
    temperature: float = SLL_TEMPERATURE,
) -> torch.Tensor:
    """t * mean_b CE((f(x_b) - u * onehot(y_b)) / t, y_b) (CLL supplement A.1; SLL ``LossXent``).

    ``offset`` u >= 0 is subtracted from the true-class logit only, so the loss keeps pushing until the
    true logit beats every other one by about u; ``temperature`` t > 0 sets how sharp the softmax is.
    k_body and head_weight do not enter the loss (u and t are fixed); they are validated so that every
    loss accepts the same arguments (see :mod:`lipcert.losses`).
    """
    _check_inputs(logits, targets, k_body, head_weight)
    offset = float(offset)
    temperature = float(temperature)
    if not math.isfinite(offset) or offset < 0.0:
        raise ValueError(f"offset must be a finite number >= 0, got {offset!r}")
    if not math.isfinite(temperature) or temperature <= 0.0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    shifted = logits - offset * F.one_hot(targets, num_classes=logits.shape[1]).to(logits.dtype)
    return F.cross_entropy(shifted / temperature, targets) * temperature
