"""Sandwich layers (LBDN: Wang & Manchester, "Direct parameterization of Lipschitz-bounded deep networks",
ICML 2023), the 1-Lipschitz layers of the "LBDN Sandwich" row of CLL table 1.

A sandwich layer maps ``h`` to

    h' = sqrt(2) A^T Psi relu(sqrt(2) Psi^{-1} B h + b),

with ``Psi = diag(exp(psi))`` positive diagonal and ``[A B]`` (A square) having orthonormal rows,
``A A^T + B B^T = I``.  The rows come from the Cayley transform of free parameters ``X`` (square) and ``Y``:

    Z = X - X^H + Y^H Y,   A^T = (I + Z)^{-1} (I - Z),   B^T = -2 Y (I + Z)^{-1},

whose stacked result ``[A^T; B^T]`` has orthonormal columns for any ``X, Y`` (``I + Z`` has a positive
definite Hermitian part, so it is invertible).  As in the LBDN code, ``X`` and ``Y`` are one matrix scaled to
Frobenius norm ``alpha`` (a learned scalar initialised to the initial norm).

Why the layer is 1-Lipschitz (the incremental version of LBDN's quadratic-constraint argument): for two
inputs, the relu's secant slopes ``D`` lie in [0, 1], so ``dz = D dv`` and ``dz^T Psi^2 (dv - dz) >= 0``.
With ``w = Psi dz`` and ``dv = sqrt(2) Psi^{-1} B dx``,

    |dx|^2 - |dh'|^2 >= |dx|^2 - 2|w|^2 + 2|B^T w|^2 - 2 (sqrt(2) w^T B dx - |w|^2) = |dx - sqrt(2) B^T w|^2 >= 0

using ``A A^T = I - B B^T``.  More generally, if ``[A B][A B]^H <= kappa I`` the layer is kappa-Lipschitz
(its secant Jacobians are ``2 A^T D B``); :meth:`certified_constant` evaluates kappa in float64 on the
matrices the evaluation forward really uses, so float32 rounding of the Cayley transform is covered.

The convolutional layer (LBDN's ``SandwichConv``) is a circular convolution: in the 2-D Fourier domain it is
block diagonal, one complex matrix per frequency.  The free parameter is a k x k kernel whose per-frequency
matrices (those of a circular cross-correlation, as ``conv2d`` with circular padding) are Cayley-transformed
frequency by frequency; the result is a full (n x n) circular convolution, not a k x k one.  Because the
kernel is real, frequency f and -f carry conjugate matrices, so the layer maps real images to real images;
only the ``rfft2`` half of the spectrum is stored.  The input size is therefore fixed at construction.
Stride 2 is LBDN's: a 2x2 space-to-depth (a permutation) followed by a stride-1 layer with 4x the input
channels and kernel ``max(1, k // 2)``.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import OneLipschitzLayer, parameter_versions
from .reshaping import SpaceToDepth

__all__ = [
    "SandwichAffine",
    "SandwichConv2d",
    "SandwichLinear",
    "cayley_blocks",
    "kernel_frequency_matrices",
    "max_row_gram_eigenvalue",
]

_SQRT2 = math.sqrt(2.0)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    """U(-bound, bound) drawn from ``generator`` (torch's default Linear/Conv initialisation range)."""
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0).mul_(bound).float()


def cayley_blocks(free: torch.Tensor, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Cayley transform of LBDN: ``free`` = [X; Y] of shape (..., out + in, out), real or complex.

    Returns ``(A, B)`` with shapes (..., out, out) and (..., out, in) such that ``A A^H + B B^H = I``:
    ``Z = X - X^H + Y^H Y``, ``A^T = (I + Z)^{-1}(I - Z)``, ``B^T = -2 Y (I + Z)^{-1}``.
    """
    if free.dim() < 2 or free.shape[-1] != out_features or free.shape[-2] < out_features:
        raise ValueError(f"free must have shape (..., out + in, out) with out={out_features}, got {tuple(free.shape)}")
    x, y = free[..., :out_features, :], free[..., out_features:, :]
    eye = torch.eye(out_features, dtype=free.dtype, device=free.device)
    z = x - x.mH + y.mH @ y
    m = eye + z
    a_t = torch.linalg.solve(m, eye - z)
    # Y (I + Z)^{-1} = (M^{-T} Y^T)^T with the plain transpose (also for complex matrices)
    b_t = -2.0 * torch.linalg.solve(m.mT, y.mT).mT
    return a_t.mT, b_t.mT


@torch.no_grad()
def max_row_gram_eigenvalue(a: torch.Tensor, b: torch.Tensor) -> float:
    """kappa = max over the batch of lambda_max([A B][A B]^H), in float64 (1 for exact Cayley output)."""
    rows = torch.cat((a, b), dim=-1).to(torch.complex128 if a.is_complex() else torch.float64)
    gram = rows @ rows.mH
    return float(torch.linalg.eigvalsh(gram).amax())


def _frequency_phase(kernel_size: int, size: tuple[int, int], dtype: torch.dtype, device) -> torch.Tensor:
    """exp(-2 pi i s (f1 / H + f2 / W)) on the rfft2 grid, s = (k - 1) // 2: centres the kernel."""
    h, w = size
    s = (kernel_size - 1) // 2
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    f1 = torch.arange(h, device=device, dtype=real)[:, None] / h
    f2 = torch.arange(w // 2 + 1, device=device, dtype=real)[None, :] / w
    return torch.polar(torch.ones((), dtype=real, device=device), -2.0 * math.pi * s * (f1 + f2))


def kernel_frequency_matrices(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-frequency matrices of the circular cross-correlation with ``kernel`` (out, in, k, k) on an H x W grid.

    The map ``y = conv2d(pad_circular(x, s before, k - 1 - s after), kernel)``, ``s = (k - 1) // 2``, satisfies
    ``rfft2(y)[..., f] = M(f) rfft2(x)[..., f]`` with ``M(f) = conj(K_hat(f)) exp(-2 pi i s (f1/H + f2/W))``.
    Returns M with shape (H, W // 2 + 1, out, in).
    """
    k = kernel.shape[-1]
    k_hat = torch.fft.rfft2(kernel, s=size)  # (out, in, H, W//2+1)
    m = k_hat.conj() * _frequency_phase(k, size, k_hat.dtype, kernel.device)
    return m.permute(2, 3, 0, 1)


class _SandwichBase(OneLipschitzLayer, abc.ABC):
    """Shared computation, eval-time caching and certification of the Cayley blocks (A, B).

    Subclasses implement :meth:`_free`: the Cayley input [X; Y], scaled to Frobenius norm ``alpha``.
    """

    out_features: int

    def __init__(self) -> None:
        super().__init__()
        self._eval_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    @abc.abstractmethod
    def _free(self) -> torch.Tensor:
        """The Cayley input [X; Y] (..., out + in, out), scaled to Frobenius norm ``alpha``."""

    def _cache_key(self) -> tuple:
        params = list(self.parameters())
        return (parameter_versions(self), tuple(p.data_ptr() for p in params),
                tuple((p.dtype, p.device) for p in params))

    @torch.no_grad()
    def _evaluation_blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) without gradient, computed exactly as in training (same dtype), so that evaluation sees the
        network that was trained.  (In float32 the Cayley transform of LBDN's large-norm inputs, where
        A is close to -I, differs from the float64 one by up to ~1e-2 per entry; both are orthonormal to ~1e-6,
        and :meth:`certified_constant` measures the blocks actually used.)"""
        return cayley_blocks(self._free(), self.out_features)

    def blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The Cayley blocks (A, B) used by the forward pass.

        In training mode, or whenever gradients may flow to the parameters, they are recomputed with
        gradient in the parameters' precision.  Otherwise (evaluation without parameter gradients:
        validation, attacks, certification) cached blocks are used; the cache is keyed
        by the parameters' versions, storage, dtype and device, so it is never stale.
        """
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if self.training or needs_grad:
            return cayley_blocks(self._free(), self.out_features)
        key = self._cache_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = (key, *self._evaluation_blocks())
        return self._eval_cache[1], self._eval_cache[2]

    def prepare_evaluation(self, tol: float, max_iter: int, method: str, block_size: int) -> tuple[int, bool, float]:
        """Freeze the evaluation blocks (the cache the eval forward uses)."""
        self._eval_cache = (self._cache_key(), *self._evaluation_blocks())
        return 0, True, 0.0

    def certified_constant(self, tol: float) -> float:
        """max(1, kappa), kappa = lambda_max([A B][A B]^H) of the evaluation blocks, in float64.

        The layer's secant Jacobians are ``2 A^T D B`` with D diagonal in [0, 1] (``B`` alone for
        :class:`SandwichAffine`), whose norm is at most kappa (module docstring); kappa exceeds 1 only by the
        rounding of the Cayley transform in the parameters' precision (~1e-6 in float32).
        """
        if self._eval_cache is None or self._eval_cache[0] != self._cache_key():
            self.prepare_evaluation(tol, 0, "", 0)
        _, a, b = self._eval_cache  # type: ignore[misc]
        return max(1.0, max_row_gram_eigenvalue(a, b))

    def _load_from_state_dict(self, *args, **kwargs):  # noqa: D401 - torch hook
        self._eval_cache = None
        super()._load_from_state_dict(*args, **kwargs)


class _DenseSandwich(_SandwichBase):
    """Parameters of the dense layers: ``weight`` (out, out + in) = [X; Y]^T, scalar ``alpha`` and ``bias``.

    Initialisation as LBDN's ``nn.Linear(in + out, out)``: weight and bias ~ U(+-1/sqrt(in + out)), and
    alpha = ||weight||_F (so the first Cayley input is the weight itself).
    """

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator, bias: bool) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be a bool, got {bias!r}")
        fan_in = in_features + out_features
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(_uniform((out_features, fan_in), bound, generator))
        self.alpha = nn.Parameter(torch.linalg.vector_norm(self.weight.detach()).reshape(()))
        self.bias = nn.Parameter(_uniform((out_features,), bound, generator)) if bias else None

    def _free(self) -> torch.Tensor:
        return self.weight.mT * (self.alpha / torch.linalg.vector_norm(self.weight))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class SandwichLinear(_DenseSandwich):
    """Dense sandwich layer (LBDN ``SandwichFc``): h' = sqrt(2) A^T Psi relu(sqrt(2) Psi^{-1} B h + b).

    Parameters: those of the dense layers (``weight``, ``alpha``, ``bias``) and ``psi`` (out,) with
    Psi = diag(exp(psi)), initialised to 0 as in LBDN.  Exactly 1-Lipschitz (module docstring).
    """

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator, bias: bool = True) -> None:
        super().__init__(in_features, out_features, generator, bias)
        self.psi = nn.Parameter(torch.zeros(self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.blocks()
        v = F.linear(x, b) * (_SQRT2 * torch.exp(-self.psi))
        if self.bias is not None:
            v = v + self.bias
        z = F.relu(v) * torch.exp(self.psi)
        return _SQRT2 * (z @ a)  # sqrt(2) A^T z for row vectors


class SandwichAffine(_DenseSandwich):
    """The affine 1-Lipschitz variant of LBDN (``SandwichLin``): ``B h + b`` or, with ``ab=True``,
    ``2 A^T B h + b`` (the sandwich layer with the identity as activation).

    ||B|| <= 1 since B B^T <= I, and ||2 A^T B|| <= 1 by the sandwich argument (D = I).  LBDN uses it as the
    last layer of its non-LLN models; here the architectures use :func:`~lipcert.one_lipschitz.base.make_head`
    instead, so it is offered for completeness.
    """

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator, bias: bool = True,
                 ab: bool = False) -> None:
        if not isinstance(ab, bool):
            raise ValueError(f"ab must be a bool, got {ab!r}")
        super().__init__(in_features, out_features, generator, bias)
        self.ab = ab

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.blocks()
        y = F.linear(x, b)
        if self.ab:
            y = 2.0 * (y @ a)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ab={self.ab}"


class SandwichConv2d(_SandwichBase):
    """Convolutional sandwich layer (LBDN ``SandwichConv``), computed in the Fourier domain.

    ``in_channels -> out_channels`` on a fixed ``input_size`` (H, W) grid (before any stride).  Per frequency
    f, ``[A(f) B(f)]`` is the Cayley transform of the kernel's frequency matrix ``M(f)`` (see
    :func:`kernel_frequency_matrices`; ``M^T = [X; Y]``), the whole spectrum scaled to Frobenius norm
    ``alpha``.  Then

        v = sqrt(2) Psi^{-1} (B * x) + b,   y = sqrt(2) A^H * (Psi relu(v)),

    where ``*`` applies the per-frequency matrices (circular convolution) and Psi is per channel.
    ``stride=2``: 2x2 space-to-depth first, then a stride-1 layer with 4 * in_channels inputs and kernel
    ``max(1, kernel_size // 2)`` on the (H/2, W/2) grid (LBDN's ``StridedConv``).

    Parameters: ``kernel`` (out, out + in', k', k'), ``alpha``, ``psi`` (out,), ``bias`` (out,), with in', k'
    after the stride rewrite.  Initialisation as LBDN's ``nn.Conv2d``: U(+-1/sqrt(fan_in)), psi = 0,
    alpha = Frobenius norm of the initial spectrum.  Unlike LBDN, whose conv ``alpha`` is registered at the
    first forward (after the optimiser was built, so never trained), ``alpha`` is a regular parameter.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: int | tuple[int, int],
                 generator: torch.Generator, stride: int = 1, bias: bool = True) -> None:
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels")
        self.out_features = self.out_channels = _positive_int(out_channels, "out_channels")
        kernel_size = _positive_int(kernel_size, "kernel_size")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be a bool, got {bias!r}")
        if isinstance(input_size, int) and not isinstance(input_size, bool):
            input_size = (input_size, input_size)
        if (not isinstance(input_size, (tuple, list)) or len(input_size) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_size)):
            raise ValueError(f"input_size must be a positive int or (H, W), got {input_size!r}")
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if stride == 2:
            if self.input_size[0] % 2 or self.input_size[1] % 2:
                raise ValueError(f"stride 2 needs an even input_size, got {self.input_size}")
            self.downsample: nn.Module | None = SpaceToDepth(2)
            self.grid = (self.input_size[0] // 2, self.input_size[1] // 2)
            self.channels_in = 4 * in_channels
            self.kernel_eff = max(1, kernel_size // 2)
        else:
            self.downsample = None
            self.grid = self.input_size
            self.channels_in = in_channels
            self.kernel_eff = kernel_size
        if self.kernel_eff > min(self.grid):
            raise ValueError(f"kernel_size {kernel_size} is larger than the {self.grid} grid it acts on")
        chn = self.out_channels + self.channels_in
        bound = 1.0 / math.sqrt(chn * self.kernel_eff ** 2)
        kernel_shape = (self.out_channels, chn, self.kernel_eff, self.kernel_eff)
        self.kernel = nn.Parameter(_uniform(kernel_shape, bound, generator))
        with torch.no_grad():
            init_norm = torch.linalg.vector_norm(kernel_frequency_matrices(self.kernel, self.grid))
        self.alpha = nn.Parameter(init_norm.float().reshape(()))
        self.psi = nn.Parameter(torch.zeros(self.out_channels))
        self.bias = nn.Parameter(_uniform((self.out_channels,), bound, generator)) if bias else None

    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the output."""
        return (self.out_channels, *self.grid)

    def _free(self) -> torch.Tensor:
        """M(f)^T = [X(f); Y(f)] of every rfft2 frequency, shape (H, W // 2 + 1, out + in, out); the blocks
        are then A: (H, W // 2 + 1, out, out) and B: (H, W // 2 + 1, out, in)."""
        m = kernel_frequency_matrices(self.kernel, self.grid)
        return m.mT * (self.alpha / torch.linalg.vector_norm(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if tuple(x.shape[1:]) != (self.channels_in, *self.grid):
            expected = (self.in_channels, *self.input_size)
            raise ValueError(f"{type(self).__name__} expects inputs of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        a, b = self.blocks()
        x_hat = torch.fft.rfft2(x)  # (N, in, H, Wf)
        u = torch.fft.irfft2(torch.einsum("hwoc,nchw->nohw", b, x_hat), s=self.grid)
        v = u * (_SQRT2 * torch.exp(-self.psi))[:, None, None]
        if self.bias is not None:
            v = v + self.bias[:, None, None]
        z = F.relu(v) * torch.exp(self.psi)[:, None, None]
        z_hat = torch.fft.rfft2(z)
        y = torch.fft.irfft2(torch.einsum("hwco,nchw->nohw", a.conj(), z_hat), s=self.grid)
        return _SQRT2 * y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"input_size={self.input_size}, bias={self.bias is not None}")
