"""Training losses: CLL (calibrated Lipschitz-margin), GloRo and plain cross-entropy.

All share the call style ``loss(logits (B, C), targets (B,) int64, k_body (scalar tensor),
head_weight (C, D), *, ...) -> scalar tensor``; binary CLL (main eqs. (3)-(5)) takes a scalar score.
"""

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
from lipcert.losses.cross_entropy import cross_entropy_loss
from lipcert.losses.gloro_loss import gloro_bottom_logit, gloro_loss

__all__ = [
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
