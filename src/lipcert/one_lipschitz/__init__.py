"""Layers that are 1-Lipschitz by construction (SOC, CPL, SLL, Sandwich) and the LLN head.

See :mod:`lipcert.one_lipschitz.base` for the bounded-layer interface they share with the spectral layers.
"""

from .base import LastLayerNormalizedLinear, OneLipschitzLayer, make_head, parameter_versions

__all__ = ["LastLayerNormalizedLinear", "OneLipschitzLayer", "make_head", "parameter_versions"]
