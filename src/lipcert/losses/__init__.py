"""Training losses: CLL (calibrated Lipschitz-margin), GloRo, plain cross-entropy, and the 1-Lipschitz methods'
own losses: SOC's certificate regularisation, CPL's multi-class margin hinge and the AOL loss of SLL/LBDN.

All share the call style ``loss(logits (B, C), targets (B,) int64, k_body (scalar tensor),
head_weight (C, D), *, ...) -> scalar tensor``; binary CLL (main eqs. (3)-(5)) takes a scalar score.
"""

from lipcert.losses.aol_loss import SLL_OFFSET, SLL_TEMPERATURE, aol_loss
from lipcert.losses.calibrated_loss import (
    NORMALISATIONS,
    OFFSET_MODES,
    binary_calibrated_loss,
    calibrated_logits,
    calibrated_loss,
    calibration_scale,
    global_lipschitz,
    k_hf,
    p_from_printed,
)
from lipcert.losses.certificate_regularized import certificate_regularized_loss
from lipcert.losses.cross_entropy import cross_entropy_loss
from lipcert.losses.margin_hinge import CPL_MARGIN, margin_hinge_loss
from lipcert.losses.gloro_loss import gloro_bottom_logit, gloro_loss

__all__ = [
    "CPL_MARGIN",
    "SLL_OFFSET",
    "SLL_TEMPERATURE",
    "aol_loss",
    "certificate_regularized_loss",
    "margin_hinge_loss",
    "NORMALISATIONS",
    "OFFSET_MODES",
    "binary_calibrated_loss",
    "calibrated_logits",
    "calibrated_loss",
    "calibration_scale",
    "global_lipschitz",
    "k_hf",
    "p_from_printed",
    "cross_entropy_loss",
    "gloro_bottom_logit",
    "gloro_loss",
]
