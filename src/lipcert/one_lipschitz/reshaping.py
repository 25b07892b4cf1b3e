"""Norm-preserving reshapes shared by the 1-Lipschitz architectures (SOC's LipConvnet, CPL, SLL, Sandwich).

Every module here is linear with operator norm exactly 1 on its input space (a permutation, a zero-padding
or an orthogonal projection) or 1-Lipschitz, so a body built from them and 1-Lipschitz layers stays
1-Lipschitz; they are plain modules and contribute no factor to K_body.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FirstChannels", "NormPreservingAvgPool", "PadChannels", "SpaceToDepth"]


class PadChannels(nn.Module):
    """Append zero channels up to ``channels`` (an isometry: ||pad(x) - pad(y)|| = ||x - y||)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.channels - x.shape[1]
        if extra < 0:
            raise ValueError(f"PadChannels({self.channels}) got {x.shape[1]} channels")
        if extra == 0:
            return x
        return torch.cat((x, x.new_zeros((x.shape[0], extra, *x.shape[2:]))), dim=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class FirstChannels(nn.Module):
    """Keep the first ``channels`` channels (an orthogonal projection: norm 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.channels:
            raise ValueError(f"FirstChannels({self.channels}) got {x.shape[1]} channels")
        return x[:, : self.channels]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class SpaceToDepth(nn.Module):
    """(C, H, W) -> (C * b^2, H / b, W / b) by moving each b x b block into channels (a permutation).

    This is the invertible downsampling of SOC's LipConvnet (and ``F.pixel_unshuffle``).
    """

    def __init__(self, block: int = 2) -> None:
        super().__init__()
        self.block = int(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.block or w % self.block:
            raise ValueError(f"SpaceToDepth({self.block}) needs H and W divisible by {self.block}, got {h}x{w}")
        return F.pixel_unshuffle(x, self.block)

    def extra_repr(self) -> str:
        return f"block={self.block}"


class NormPreservingAvgPool(nn.Module):
    """Non-overlapping k x k average pooling times k: each output is (sum of k^2 inputs) / k.

    A plain ``AvgPool2d(k)`` has operator norm 1/k (each output averages k^2 disjoint inputs); scaling by
    k makes the norm exactly 1 (CPL/SLL use ``AvgPool2d(k, divisor_override=k)``, the same map).
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = int(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.kernel or w % self.kernel:
            raise ValueError(f"NormPreservingAvgPool({self.kernel}) needs H and W divisible by {self.kernel}, got {h}x{w}")
        return F.avg_pool2d(x, self.kernel) * self.kernel

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"
