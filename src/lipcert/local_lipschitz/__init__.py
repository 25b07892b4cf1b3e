"""Local Lipschitz bounds of Local-Lip (Huang et al., NeurIPS 2021; seed 004): interval and BCP bound propagation,
masks of provably constant units, the masked per-sample power iteration of Algorithm 1, per-sample warm-start vectors
on disk, and the BCP / GloRo worst logits (eqs. (6), (9), (21)-(24) of seed 004)."""

from .propagation import BodyBounds, WeightLayerBounds, propagate_bounds
from .local_bound import converged_local_norms, local_lipschitz_product, masked_norms, penultimate_radius
from .worst_logits import gloro_bottom_logit, worst_case_logits, worst_logit_offsets
from .vector_store import PerSampleVectors

__all__ = ["BodyBounds", "PerSampleVectors", "WeightLayerBounds", "converged_local_norms", "gloro_bottom_logit",
           "local_lipschitz_product", "masked_norms", "penultimate_radius", "propagate_bounds", "worst_case_logits",
           "worst_logit_offsets"]
