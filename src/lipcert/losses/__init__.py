"""Training losses: CLL (calibrated Lipschitz-margin), GloRo, plain cross-entropy, and the 1-Lipschitz methods'
own losses: SOC's certificate regularisation, CPL's multi-class margin hinge and the AOL loss of SLL/LBDN.

All share the call style ``loss(logits (B, C), targets (B,) int64, k_body (scalar tensor),
head_weight (C, D), *, ...) -> scalar tensor``; binary CLL (main eqs. (3)-(5)) takes a scalar score.  Each
module also defines the loss's config dataclass (its keys in a run's ``loss`` section, their defaults and their
validation); :mod:`lipcert.losses.registry` names them.
"""

from lipcert.losses.aol_loss import SLL_OFFSET, SLL_TEMPERATURE, AOLLossConfig, aol_loss
from lipcert.losses.calibrated_loss import (
    NORMALISATIONS,
    CalibratedLossConfig,
    OFFSET_MODES,
    binary_calibrated_loss,
    calibrated_logits,
    calibrated_loss,
    calibration_scale,
    global_lipschitz,
    k_hf,
    p_from_printed,
)
from lipcert.losses.certificate_regularized import CertificateRegularizedConfig, certificate_regularized_loss
from lipcert.losses.cross_entropy import CrossEntropyConfig, cross_entropy_loss
from lipcert.losses.margin_hinge import CPL_MARGIN, MarginHingeConfig, margin_hinge_loss
from lipcert.losses.gloro_loss import GloroLossConfig, gloro_bottom_logit, gloro_loss

__all__ = [
    "AOLLossConfig",
    "CalibratedLossConfig",
    "CertificateRegularizedConfig",
    "CrossEntropyConfig",
    "GloroLossConfig",
    "MarginHingeConfig",
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
