"""1-Lipschitz activations.

MinMax (GroupSort with groups of two; Anil et al. 2019), used after every layer but the last in all
CLL models (supplement B: "All models utilize the MinMax non-linearity"); ReLU, ReLUθ and clipped MaxMin of
Local-Lip (seed 004 eq. (8), section 4.3), whose thresholds make units provably constant on a ball.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "ClippedMaxMin", "MinMax", "ReLUTheta", "make_activation", "minmax"]


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


class ReLUTheta(nn.Module):
    """ReLU with a learnable upper threshold per element (seed 004 eq. (8)): 0 for z <= 0, z for 0 < z < theta,
    theta for z >= theta.  ``theta`` has the shape of one sample's features (per element of a feature map, as the
    Local-Lip code's ``ReLU_x``), starts at ``init`` and is projected to >= 0 after every optimiser step
    (:meth:`project_`).  1-Lipschitz for every theta >= 0, so every global bound of the body stays valid."""

    def __init__(self, feature_shape: tuple[int, ...], init: float = 1.0) -> None:
        super().__init__()
        if not init >= 0:
            raise ValueError(f"ReLUTheta: the initial threshold must be >= 0, got {init}")
        self.theta = nn.Parameter(torch.full((1, *feature_shape), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(x), self.theta)

    @torch.no_grad()
    def project_(self) -> None:
        """theta <- max(theta, 0) (the projection after each step of seed 004's code)."""
        self.theta.clamp_(min=0.0)


class ClippedMaxMin(nn.Module):
    """Clipped MaxMin (seed 004 section 4.3): the channels split into halves x1 (first) and x2 (second); the output
    is (min(max(x1, x2), a), max(min(x1, x2), b)) with a learnable cap ``a`` of the max branch and floor ``b`` of the
    min branch, one per element of a half (the Local-Lip code's ``ClampGroupSort``).  Sorting a pair and clipping
    each output are 1-Lipschitz, so the map is.  ``a`` starts at ``+init`` and ``b`` at ``-init``."""

    def __init__(self, feature_shape: tuple[int, ...], init: float = 1.0) -> None:
        super().__init__()
        if feature_shape[0] % 2:
            raise ValueError(f"ClippedMaxMin needs an even number of channels, got {feature_shape[0]}")
        half = (1, feature_shape[0] // 2, *feature_shape[1:])
        self.cap = nn.Parameter(torch.full(half, float(init)))
        self.floor = nn.Parameter(torch.full(half, -float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return torch.cat((torch.minimum(torch.maximum(x1, x2), self.cap),
                          torch.maximum(torch.minimum(x1, x2), self.floor)), dim=1)


ACTIVATIONS = ("minmax", "relu", "relu_theta", "clipped_maxmin")
"""The activation slot of a table-B2 architecture (``activation:`` in params/architectures.yaml); MinMax is CLL's."""


def make_activation(name: str, feature_shape: tuple[int, ...], init: float = 1.0) -> nn.Module:
    """The activation ``name`` for features of ``feature_shape`` (one sample); ``init`` is the threshold of ReLUθ or
    the cap of clipped MaxMin."""
    if name == "minmax":
        if feature_shape[0] % 2:
            raise ValueError(f"MinMax needs an even width, got {feature_shape[0]}")
        return MinMax()
    if name == "relu":
        return nn.ReLU()
    if name == "relu_theta":
        return ReLUTheta(feature_shape, init)
    if name == "clipped_maxmin":
        return ClippedMaxMin(feature_shape, init)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
