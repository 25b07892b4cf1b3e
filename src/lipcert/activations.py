"""1-Lipschitz activations.

MinMax (GroupSort with groups of two; Anil et al. 2019), used after every layer but the last in all
CLL models (supplement B: "All models utilize the MinMax non-linearity").
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MinMax", "minmax"]


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Sort adjacent channel pairs (2k, 2k+1) of dim 1: all maxima first, then all minima.

    This is the channel layout of the authors' code, so their weights map one to one.  The map only
    permutes/sorts coordinates, hence ||minmax(x) - minmax(y)||_2 <= ||x - y||_2 (1-Lipschitz).
    """
    c = x.shape[1]
    if c % 2:
        raise ValueError(f"MinMax needs an even number of channels, got {c}")
    pairs = x.reshape(x.shape[0], c // 2, 2, *x.shape[2:])
    hi, lo = pairs.unbind(dim=2)
    return torch.cat((torch.maximum(hi, lo), torch.minimum(hi, lo)), dim=1)


class MinMax(nn.Module):
    """Module form of :func:`minmax`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minmax(x)
