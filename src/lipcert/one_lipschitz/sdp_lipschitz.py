"""SDP-based Lipschitz layers (SLL; Araujo, Havens, Delattre, Allauzen, Hu, ICLR 2023, Theorem 3).

An SLL layer is the residual map

    h(x) = x - 2 W T^{-1} relu(W^T x + b),     T = diag(t),  t_i = sum_j |W^T W|_ij q_j / q_i,  q > 0,

with W of shape (features, inner) here stored as ``weight = W^T`` of shape (inner, features), like
``nn.Linear``.  Why it is 1-Lipschitz (the SDP statement, seeds_digest.md sec. 1.3 "Residual structure"):

* Gershgorin with scaling: D (T - W^T W) D with D = diag(q) has diagonal q_i sum_{j != i} |M_ij| q_j and
  off-diagonal entries -q_i q_j M_ij (M = W^T W), so it is symmetric and diagonally dominant with a
  non-negative diagonal, hence T - W^T W is positive semi-definite for *every* q > 0.
* For two inputs the secant of relu is a diagonal D~ with entries in [0, 1], so
  h(x) - h(y) = (I - 2 G D~ G^T)(x - y) with G = W T^{-1/2} and ||G|| <= 1 (previous point).  The matrix
  I - 2 G D~ G^T is symmetric with eigenvalues in [-1, 1]: h is 1-Lipschitz.  An entry t_i = 0 means
  that column i of W is zero; the unit then contributes nothing and its T^{-1} entry is set to 0 (the
  limit t_i -> infinity, which keeps the argument valid on the remaining units).

The scaling q must be strictly positive *and* the ratios must be exactly q_j / q_i.  The CLL fork's SLL
linear layer used q_inv = 1 / (|q| + 1e-6) next to q = |q|; that "epsilon" variant has t_i below the
Gershgorin value (already t_i < M_ii when W has orthogonal columns), so it is not guaranteed 1-Lipschitz
(SLL paper v2 App. D; issue #2 of berndprach/1LipschitzLayersCompared; reference_implementation.md).
Here, as in the later SLL code, q = exp(log_q): every ratio exp(log_q_j - log_q_i) is a genuine q_j / q_i
with q > 0.  log_q is clamped to [-30, 30] before use; a clamped log_q is still some positive q, so the
construction stays valid and no ratio can overflow to inf (which would give inf * 0 = NaN).

Convolutions: W^T is the stride-1 convolution with the kernel K (inner, features, k, k) and zero padding
k // 2 (k odd), W its adjoint (the transposed convolution).  On an unbounded image W^T W is the
convolution with the (2k-1) x (2k-1) kernel K * K^T over channel pairs, and t_i sums the absolute values
of its entries (over j and the offsets) weighted with q_j / q_i; the block-circulant Gershgorin argument
then holds per pixel.  Zero padding keeps the bound: the padded convolution is R C E with an isometric
zero-extension E and a restriction R of an unbounded convolution C, so (RCE)(RCE)^T <= R C C^T R^T <= T.

Evaluation: :meth:`_SDPLipschitzBase.prepare_evaluation` recomputes 1 / t in float64, shrinks it by a
relative 1e-9 (more than the float64 rounding of the sums) and rounds it *down* to the parameters' dtype;
a smaller T^{-1} only strengthens the SDP condition, so the evaluation-mode layer is 1-Lipschitz exactly
and :meth:`certified_constant` is 1.  Training mode (and evaluation with weights changed since) computes
1 / t on the fly in the working precision, as the SLL code does.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import OneLipschitzLayer, parameter_versions

__all__ = ["LOG_Q_BOUND", "SDPLipschitzConv2d", "SDPLipschitzLinear", "inverse_t"]

#: log q is clamped to [-LOG_Q_BOUND, LOG_Q_BOUND]; ratios q_j / q_i stay below e^60 (finite in float32).
LOG_Q_BOUND: float = 30.0
#: Relative shrink of the frozen 1/t (covers float64 rounding of the Gershgorin sums).
_FREEZE_MARGIN: float = 1e-9


def inverse_t(gram_abs: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """1 / t_i with t_i = sum_j gram_abs_ij * q_j / q_i and q = exp(clamp(log_q)) (SLL Theorem 3).

    ``gram_abs`` (n, n) holds |W^T W|_ij (for a convolution: summed over the kernel offsets).  Entries with
    t_i = 0 (a zero column of W) get 0 instead of inf; the gradient stays finite there.
    """
    if gram_abs.dim() != 2 or gram_abs.shape[0] != gram_abs.shape[1] or log_q.shape != gram_abs.shape[:1]:
        raise ValueError(
            f"gram_abs must be (n, n) and log_q (n,), got {tuple(gram_abs.shape)} and {tuple(log_q.shape)}")
    lq = log_q.clamp(-LOG_Q_BOUND, LOG_Q_BOUND)
    ratio = torch.exp(lq[None, :] - lq[:, None])  # ratio[i, j] = q_j / q_i
    t = (gram_abs * ratio).sum(dim=1)
    positive = t > 0
    safe = torch.where(positive, t, torch.ones_like(t))
    return torch.where(positive, safe.reciprocal(), torch.zeros_like(t))


def _round_down(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast non-negative float64 ``values`` to ``dtype`` without ever rounding up."""
    cast = values.to(dtype)
    too_big = cast.to(torch.float64) > values
    return torch.where(too_big, torch.nextafter(cast, torch.zeros_like(cast)), cast)


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class _SDPLipschitzBase(OneLipschitzLayer, abc.ABC):
    """Shared parts: the rescaling 1/t, its frozen evaluation copy and the certified constant."""

    weight: torch.Tensor
    log_q: nn.Parameter
    frozen_inverse_t: torch.Tensor

    def _init_common(self, inner_dim: int, generator: torch.Generator | None) -> None:
        # q ~ exp(N(0, 1)), as the SLL code initialises its q parameter with randn and uses exp(q).
        self.log_q = nn.Parameter(torch.randn(inner_dim, generator=generator))
        self.register_buffer("frozen_inverse_t", torch.full((inner_dim,), float("nan")))

    @abc.abstractmethod
    def gram_abs(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(inner, inner) matrix |W^T W|_ij (summed over kernel offsets for a convolution)."""

    def inverse_t(self) -> torch.Tensor:
        """The diagonal of T^{-1} in the working precision, with gradient (the training-time rescaling)."""
        return inverse_t(self.gram_abs(), self.log_q)

    def _evaluation_inverse_t(self) -> torch.Tensor:
        """Frozen T^{-1} in evaluation mode when fresh, otherwise computed on the fly."""
        # _certified_at is set (by converge_sigma or a state-dict load) only together with the frozen copy
        if not self.training and self._certified_at is not None and self._certified_at == parameter_versions(self):
            return self.frozen_inverse_t
        return self.inverse_t()

    @torch.no_grad()
    def prepare_evaluation(self, tol: float, max_iter: int, method: str, block_size: int) -> tuple[int, bool, float]:
        """Freeze 1/t: computed in float64, shrunk by 1e-9 and rounded down to the parameters' dtype."""
        for name, p in self.named_parameters():
            if not torch.isfinite(p).all():
                raise ValueError(f"{type(self).__name__}: parameter {name!r} has non-finite entries")
        exact = inverse_t(self.gram_abs(torch.float64), self.log_q.to(torch.float64))
        frozen = _round_down(exact * (1.0 - _FREEZE_MARGIN), self.weight.dtype)
        self.frozen_inverse_t.copy_(frozen)
        return 0, True, 0.0

    def certified_constant(self, tol: float) -> float:
        """1: the frozen 1/t never exceeds the exact Gershgorin value (see the module docstring)."""
        return 1.0


class SDPLipschitzLinear(_SDPLipschitzBase):
    """SLL dense layer x - 2 W T^{-1} relu(W^T x + b) on (batch, features) inputs (SLL Theorem 3).

    ``weight`` = W^T (inner_dim, features), ``bias`` (inner_dim,), ``log_q`` (inner_dim,).  Initialisation
    as in the SLL code: Xavier-normal weight, bias ~ U(-1/sqrt(features), 1/sqrt(features)), q = exp(N(0,1));
    everything is drawn from ``generator``.
    """

    def __init__(self, features: int, inner_dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.features = _check_positive_int("features", features)
        self.inner_dim = _check_positive_int("inner_dim", inner_dim)
        std = math.sqrt(2.0 / (features + inner_dim))
        bound = 1.0 / math.sqrt(features)
        self.weight = nn.Parameter(torch.randn(inner_dim, features, generator=generator) * std)
        self.bias = nn.Parameter((torch.rand(inner_dim, generator=generator) * 2.0 - 1.0) * bound)
        self._init_common(inner_dim, generator)

    def gram_abs(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        w = self.weight if dtype is None else self.weight.to(dtype)
        return (w @ w.T).abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(
                f"SDPLipschitzLinear({self.features}) expects (batch, {self.features}), got {tuple(x.shape)}")
        hidden = F.relu(F.linear(x, self.weight, self.bias)) * self._evaluation_inverse_t()
        return x - 2.0 * F.linear(hidden, self.weight.T)

    def extra_repr(self) -> str:
        return f"features={self.features}, inner_dim={self.inner_dim}"


class SDPLipschitzConv2d(_SDPLipschitzBase):
    """SLL convolutional layer x - 2 W T^{-1} relu(W^T x + b) on (batch, channels, H, W) inputs.

    W^T x = conv2d(x, kernel, padding=k // 2) with ``kernel`` (inner_dim, channels, k, k), k odd, stride 1;
    W is its exact adjoint, the transposed convolution with the same kernel and padding.  t sums
    |K * K^T| (the (2k-1) x (2k-1) self-correlation of the kernel over channel pairs) as described in the
    module docstring.  Initialisation as in the SLL code (Xavier-normal kernel, bias ~ U(+-1/sqrt(fan_in)),
    q = exp(N(0, 1))), all from ``generator``.
    """

    def __init__(self, channels: int, inner_dim: int, kernel_size: int = 3,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.channels = _check_positive_int("channels", channels)
        self.inner_dim = _check_positive_int("inner_dim", inner_dim)
        _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size output and an exact adjoint), got {kernel_size}")
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        fan_in, fan_out = channels * kernel_size ** 2, inner_dim * kernel_size ** 2
        std = math.sqrt(2.0 / (fan_in + fan_out))
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(
            torch.randn(inner_dim, channels, kernel_size, kernel_size, generator=generator) * std)
        self.bias = nn.Parameter((torch.rand(inner_dim, generator=generator) * 2.0 - 1.0) * bound)
        self._init_common(inner_dim, generator)

    def gram_abs(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        k = self.weight if dtype is None else self.weight.to(dtype)
        # entry [i, j, u, v]: sum over channels and taps of K_i(c, s) K_j(c, s + offset(u, v))
        gram = F.conv2d(k, k, padding=self.kernel_size - 1)
        return gram.abs().sum(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SDPLipschitzConv2d({self.channels}) expects (batch, {self.channels}, H, W), "
                             f"got {tuple(x.shape)}")
        hidden = F.relu(F.conv2d(x, self.weight, self.bias, padding=self.padding))
        hidden = hidden * self._evaluation_inverse_t()[None, :, None, None]
        return x - 2.0 * F.conv_transpose2d(hidden, self.weight, padding=self.padding)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner_dim={self.inner_dim}, kernel_size={self.kernel_size}"
