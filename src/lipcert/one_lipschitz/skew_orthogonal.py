"""Skew orthogonal convolution (SOC; Singla & Feizi, "Skew Orthogonal Convolutions", ICML 2021).

A convolution whose Jacobian is skew-symmetric, L^T = -L, has an orthogonal exponential exp(L).  SOC
builds such a convolution from an unconstrained kernel M (c x c x k x k, odd k, zero padding k // 2):

    L = conv(K_n),   K_n = correction * (M - M^T) / (2 sigma)                       (SOC sec. 4)

where M^T is the kernel of the adjoint convolution (in/out channels swapped, taps flipped spatially), so
conv(M^T) = conv(M)^T and L is exactly skew-symmetric, and sigma is the SOC code's estimate of the
"fantastic four" bound of the skew kernel (Singla & Feizi, ICLR 2021, thm. 1):

    ||conv(K)||_2 <= sqrt(k * k) * min(||R_1(K)||, ||R_2(K)||, ||R_3(K)||, ||R_4(K)||)

with the four reshapes R_1: (out*k_h, in*k_w), R_2: (out*k_w, in*k_h), R_3: (out, in*k_h*k_w) and
R_4: (out*k_h*k_w, in).  Facts from the SOC code (singlasahil14/SOC ``skew_ortho_conv.py``): the four
spectral norms are estimated by power iteration with persistent vectors (50 iterations at construction
and on every 200th training step, 1 iteration on the others, none in evaluation), sigma is the minimum of
the four estimates (without the sqrt(k k) factor), correction = 0.7 (1.0 for 1x1 kernels); M ~ N(0, 1/c),
bias ~ U(-1/sqrt(out), 1/sqrt(out)).  The layer output is the truncated Taylor series of exp(L) x,

    y = sum_{j=0}^{terms} L^j x / j!  + b,                                          (SOC eq. (6))

with ``terms`` = 5 in training and 12 in evaluation (the code's ``train_terms``/``eval_terms``: the
highest power, i.e. 6 and 13 summands).  Input channels fewer than c are zero-padded and the output keeps
the first ``out_channels`` channels (an isometry and a projection, both of norm <= 1).  Striding is not
part of this layer: the LipConvnet builder puts :class:`~lipcert.one_lipschitz.reshaping.SpaceToDepth`
in front, which is what the SOC code's einops rearrange does.

Certification.  The truncated series T_K(L) is not exactly orthogonal (the SOC authors' error bound is
||exp(L) - T_K(L)|| <= ||L||^{K+1} / (K+1)!; CLL's reference notes record constants slightly above 1).
:meth:`SkewOrthogonalConv2d.certified_constant` therefore returns the rigorous

    ||T_K(L)|| <= ||exp(L)|| + sum_{j>K} ||L||^j / j! <= 1 + sum_{j>K} s^j / j!,

where s >= ||L||_2 is the fantastic-four bound of K_n evaluated exactly (float64 eigenvalues of the Gram
matrices of the four reshapes; a proof sketch is in :func:`fantastic_four_bound`), and K = ``eval_terms``.
:func:`truncation_error_report` compares the series with ``torch.linalg.matrix_exp`` of the dense L.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import OneLipschitzLayer

__all__ = [
    "SkewOrthogonalConv2d",
    "fantastic_four_bound",
    "kernel_reshapes",
    "taylor_tail_bound",
    "transpose_kernel",
    "truncated_series",
    "truncation_error_report",
]

#: Relative safety margin on float64 spectral norms (eigvalsh backward error is ~ n * 1e-16).
_NORM_SAFETY = 1e-10


def transpose_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Kernel of the adjoint convolution: swap out/in channels and flip the taps (SOC sec. 4).

    For an odd k x k kernel with zero padding k // 2 and stride 1, conv(transpose_kernel(K)) is exactly
    the transpose of conv(K) as a linear map on (C, H, W) images.
    """
    if kernel.dim() != 4:
        raise ValueError(f"kernel must be 4-D (out, in, kh, kw), got shape {tuple(kernel.shape)}")
    return kernel.transpose(0, 1).flip(2, 3)


def kernel_reshapes(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four matrices R_1..R_4 of the fantastic-four bound (Singla & Feizi, ICLR 2021, thm. 1).

    For ``kernel`` K of shape (o, i, h, w): R_1[(o, a), (i, b)], R_2[(o, b), (i, a)], R_3[o, (i, a, b)]
    and R_4[(o, a, b), i] with value K[o, i, a, b].
    """
    o, i, h, w = kernel.shape
    r1 = kernel.permute(0, 2, 1, 3).reshape(o * h, i * w)
    r2 = kernel.permute(0, 3, 1, 2).reshape(o * w, i * h)
    r3 = kernel.reshape(o, i * h * w)
    r4 = kernel.permute(0, 2, 3, 1).reshape(o * h * w, i)
    return r1, r2, r3, r4


def _spectral_norm_f64(matrix: torch.Tensor) -> float:
    """Largest singular value of ``matrix`` in float64 via the smaller Gram matrix, rounded up."""
    m = matrix.detach().to(torch.float64)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    top = float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0))
    return math.sqrt(top) * (1.0 + _NORM_SAFETY)


def fantastic_four_bound(kernel: torch.Tensor) -> float:
    """Rigorous float64 upper bound of the l2 operator norm of the zero-padded, stride-1 convolution.

    sqrt(h * w) * min_m ||R_m(kernel)||_2 (Singla & Feizi, ICLR 2021, thm. 1), with exact spectral norms.
    Why it holds for every input size with zero padding: for R_3, each output pixel is R_3 applied to the
    input patch under it, and every input entry lies in at most h * w patches, so
    ||y||^2 <= ||R_3||^2 * h * w * ||x||^2.  For R_1, y[o, p, q] = sum_a z[(o, a), p + a, q] with
    z = R_1 applied to the 1-D (row) patches of width w; Cauchy-Schwarz over the h terms a and the w-fold
    patch overlap give ||y||^2 <= h * w * ||R_1||^2 * ||x||^2.  R_2 is R_1 with the spatial axes swapped
    and R_4 is R_3 of the adjoint kernel (same operator norm).
    """
    if kernel.dim() != 4:
        raise ValueError(f"kernel must be 4-D (out, in, kh, kw), got shape {tuple(kernel.shape)}")
    h, w = kernel.shape[-2:]
    return math.sqrt(h * w) * min(_spectral_norm_f64(r) for r in kernel_reshapes(kernel))


def taylor_tail_bound(s: float, terms: int) -> float:
    """sum_{j > terms} s^j / j!: bounds ||exp(L) - sum_{j<=terms} L^j / j!|| whenever ||L|| <= s.

    Summed term by term in float64 (no cancellation against e^s); once the ratio s / (j + 1) is below 1/2
    the remaining terms are bounded by a geometric series, and a relative margin of 1e-10 covers rounding,
    so the result is an upper bound.
    """
    s = float(s)
    if not math.isfinite(s) or s < 0.0:
        raise ValueError(f"s (a norm bound) must be a finite number >= 0, got {s!r}")
    if isinstance(terms, bool) or not isinstance(terms, int) or terms < 0:
        raise ValueError(f"terms must be an integer >= 0, got {terms!r}")
    if s == 0.0:
        return 0.0
    # log of the first tail term s^(K+1)/(K+1)! to avoid overflow for large s
    j = terms + 1
    term = math.exp(j * math.log(s) - math.lgamma(j + 1))
    total = 0.0
    while True:
        total += term
        ratio = s / (j + 1)
        next_term = term * ratio
        if ratio <= 0.5 and next_term <= 1e-17 * total:
            # remaining sum <= next_term / (1 - ratio) <= 2 * next_term; the relative margin covers the
            # float64 rounding of exp/lgamma and of the summation (~1e-15)
            return (total + 2.0 * next_term) * (1.0 + _NORM_SAFETY)
        term = next_term
        j += 1


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class SkewOrthogonalConv2d(OneLipschitzLayer):
    """SOC layer (module docstring): y = FirstChannels(T_K(L) PadChannels(x)) + b, stride 1.

    Parameters: ``kernel`` M (c, c, k, k) with c = max(in_channels, out_channels) and ``bias`` (out,).
    Buffers: the eight power-iteration vectors of the four reshapes (``pi_u1`` ... ``pi_v4``) and
    ``pi_steps`` (training forwards so far, for the every-``update_freq`` refresh).  Everything random is
    drawn from ``generator``.  In training mode each forward first refines the power-iteration vectors
    (``init_iters`` on every ``update_freq``-th step counting from the first, ``update_iters`` otherwise) and
    sums ``train_terms`` powers; in evaluation mode nothing is updated and ``eval_terms`` powers are summed.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = True,
                 train_terms: int = 5, eval_terms: int = 12, correction: float | None = None,
                 init_iters: int = 50, update_iters: int = 1, update_freq: int = 200,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        self.kernel_size = _check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the adjoint of a 'same' convolution), got {kernel_size}")
        self.train_terms = _check_int("train_terms", train_terms, 1)
        self.eval_terms = _check_int("eval_terms", eval_terms, 1)
        self.init_iters = _check_int("init_iters", init_iters, 1)
        self.update_iters = _check_int("update_iters", update_iters, 0)
        self.update_freq = _check_int("update_freq", update_freq, 1)
        if correction is None:
            correction = 1.0 if kernel_size == 1 else 0.7
        correction = float(correction)
        if not math.isfinite(correction) or correction <= 0.0:
            raise ValueError(f"correction must be a finite number > 0, got {correction!r}")
        self.correction = correction
        self.channels = max(in_channels, out_channels)

        c, k = self.channels, kernel_size
        self.kernel = nn.Parameter(torch.randn(c, c, k, k, generator=generator) / math.sqrt(c))
        if bias:
            bound = 1.0 / math.sqrt(out_channels)
            self.bias = nn.Parameter((torch.rand(out_channels, generator=generator) * 2.0 - 1.0) * bound)
        else:
            self.register_parameter("bias", None)
        shapes = [r.shape for r in kernel_reshapes(torch.empty(c, c, k, k, device="meta"))]
        for m, (rows, cols) in enumerate(shapes, start=1):
            u = torch.randn(cols, generator=generator)
            v = torch.randn(rows, generator=generator)
            self.register_buffer(f"pi_u{m}", u / u.norm())
            self.register_buffer(f"pi_v{m}", v / v.norm())
        self.register_buffer("pi_steps", torch.zeros((), dtype=torch.int64))
        self._steps = 0  # host copy of pi_steps (no device sync per forward)
        self._scale_at: tuple[int, ...] | None = None
        self._power_iterate(self.init_iters)

    # --- the skew-symmetric kernel and its scale -----------------------------------------------------
    def skew_kernel(self) -> torch.Tensor:
        """(M - M^T) / 2: the kernel of a skew-symmetric convolution (before scaling)."""
        return 0.5 * (self.kernel - transpose_kernel(self.kernel))

    def _vectors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"pi_u{m}"), getattr(self, f"pi_v{m}")) for m in range(1, 5)]

    @torch.no_grad()
    def _power_iterate(self, iterations: int) -> None:
        """Refine the persistent power-iteration vectors of the four reshapes (no gradient)."""
        if iterations <= 0:
            return
        reshapes = kernel_reshapes(self.skew_kernel().detach())
        for r, (u, v) in zip(reshapes, self._vectors()):
            r = r.to(u.dtype)
            for _ in range(iterations):
                v.copy_(F.normalize(r @ u, dim=0, eps=1e-12))
                u.copy_(F.normalize(r.T @ v, dim=0, eps=1e-12))

    def sigma_estimate(self, skew: torch.Tensor | None = None) -> torch.Tensor:
        """min_m v_m^T R_m u_m over the four reshapes (the SOC code's scale), differentiable in the kernel."""
        skew = self.skew_kernel() if skew is None else skew
        values = [v.to(skew.dtype) @ (r @ u.to(skew.dtype))
                  for r, (u, v) in zip(kernel_reshapes(skew), self._vectors())]
        sigma = torch.stack(values).min()
        return sigma.clamp_min(torch.finfo(skew.dtype).tiny)

    def normalized_kernel(self) -> torch.Tensor:
        """K_n = correction * (M - M^T) / (2 sigma), exactly skew (sign-symmetric rounding), no update."""
        skew = self.skew_kernel()
        return (self.correction * skew) / self.sigma_estimate(skew)

    def _training_update(self) -> None:
        self._power_iterate(self.init_iters if self._steps % self.update_freq == 0 else self.update_iters)
        self._steps += 1
        with torch.no_grad():
            self.pi_steps.add_(1)

    @property
    def terms(self) -> int:
        """Highest power of L summed in the current mode."""
        return self.train_terms if self.training else self.eval_terms

    # --- forward -----------------------------------------------------------------------------------
    def skew_conv(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """L x for x of shape (B, c, H, W) (zero padding k // 2)."""
        kernel = self.normalized_kernel() if kernel is None else kernel
        return F.conv2d(x, kernel.to(x.dtype), padding=self.kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SkewOrthogonalConv2d expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.training:
            self._training_update()
        kernel = self.normalized_kernel()
        extra = self.channels - self.in_channels
        z = torch.cat((x, x.new_zeros(x.shape[0], extra, *x.shape[2:])), dim=1) if extra else x
        out = z
        for j in range(1, self.terms + 1):
            z = self.skew_conv(z, kernel) / float(j)
            out = out + z
        out = out[:, : self.out_channels]
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).view(1, -1, 1, 1)
        return out

    # --- certification -----------------------------------------------------------------------------
    @torch.no_grad()
    def norm_bound(self) -> float:
        """Rigorous s >= ||L||_2 for every input size: fantastic-four bound of the kernel used in forward."""
        return fantastic_four_bound(self.normalized_kernel())

    def certified_constant(self, tol: float) -> float:
        """1 + sum_{j > eval_terms} s^j / j! >= ||T_K(L)||_2 >= the layer's l2 constant in eval mode."""
        return 1.0 + taylor_tail_bound(self.norm_bound(), self.eval_terms)

    def _scale_versions(self) -> tuple[int, ...]:
        return tuple(t._version for pair in self._vectors() for t in pair)

    @torch.no_grad()
    def converge_sigma(self, tol: float = 1e-9, max_iter: int = 100_000, method: str = "lanczos",
                       block_size: int = 4):
        """Freeze the certified constant; it is stale once the kernel *or* the scale vectors change."""
        result = super().converge_sigma(tol, max_iter, method, block_size)
        self._scale_at = self._scale_versions()
        return result

    def converged_sigma(self) -> torch.Tensor:
        sigma = super().converged_sigma()
        if self._scale_at is not None and self._scale_at != self._scale_versions():
            raise RuntimeError("SkewOrthogonalConv2d: the scale (power-iteration vectors) changed since the bound "
                               "was converged (a training-mode forward); call model.converge() again")
        return sigma

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401 - torch hook
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._steps = int(self.pi_steps)
        self._scale_at = None if torch.isnan(self.certified_sigma) else self._scale_versions()

    # --- dense operators (tests, reports) ----------------------------------------------------------
    @torch.no_grad()
    def dense_skew_operator(self, height: int, width: int) -> torch.Tensor:
        """Dense float64 matrix of L on (c, height, width) images (row-major flattening)."""
        kernel = self.normalized_kernel().to(torch.float64)
        n = self.channels * height * width
        basis = torch.eye(n, dtype=torch.float64, device=kernel.device).reshape(n, self.channels, height, width)
        return F.conv2d(basis, kernel, padding=self.kernel_size // 2).reshape(n, n).T

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, channels={self.channels}, "
                f"train_terms={self.train_terms}, eval_terms={self.eval_terms}, correction={self.correction}, "
                f"bias={self.bias is not None}")


def truncated_series(operator: torch.Tensor, terms: int) -> torch.Tensor:
    """sum_{j=0}^{terms} A^j / j! of a dense square matrix."""
    out = torch.eye(operator.shape[0], dtype=operator.dtype, device=operator.device)
    power = out
    for j in range(1, terms + 1):
        power = power @ operator / float(j)
        out = out + power
    return out


@torch.no_grad()
def truncation_error_report(layer: SkewOrthogonalConv2d, input_shape: tuple[int, int, int],
                            terms: tuple[int, ...] = (2, 4, 5, 6, 8, 10, 12, 14)) -> dict:
    """Compare the truncated series with exp(L) on the dense float64 operator (SOC eq. (6) vs matrix_exp).

    ``input_shape`` = (in_channels, H, W) of the layer input.  For each K in ``terms``: ``operator_error``
    ||T_K(L) - exp(L)||_2, ``sigma_max`` the largest singular value of T_K(L), ``layer_sigma_max`` that of the
    whole layer map (padding, T_K(L), first channels), and ``tail_bound`` sum_{j>K} s^j / j!.  Also
    ``norm_L`` (exact ||L||_2 on this input size), ``s_bound`` (the fantastic-four bound s >= norm_L) and
    ``exp_orthogonality_error`` ||exp(L)^T exp(L) - I||_2.
    """
    if not isinstance(layer, SkewOrthogonalConv2d):
        raise ValueError(f"layer must be a SkewOrthogonalConv2d, got {type(layer).__name__}")
    if len(input_shape) != 3 or int(input_shape[0]) != layer.in_channels:
        raise ValueError(f"input_shape must be ({layer.in_channels}, H, W), got {tuple(input_shape)}")
    _, h, w = (int(v) for v in input_shape)
    if h < 1 or w < 1:
        raise ValueError(f"input_shape must be positive, got {tuple(input_shape)}")
    for t in terms:
        _check_int("terms", t, 0)
    skew = layer.dense_skew_operator(h, w)
    exp = torch.linalg.matrix_exp(skew)
    n = skew.shape[0]
    eye = torch.eye(n, dtype=torch.float64, device=skew.device)
    s = layer.norm_bound()
    in_idx = torch.arange(layer.in_channels * h * w, device=skew.device)   # leading channels come first
    out_idx = torch.arange(layer.out_channels * h * w, device=skew.device)
    report = {
        "input_shape": (layer.in_channels, h, w),
        "channels": layer.channels,
        "norm_L": float(torch.linalg.matrix_norm(skew, ord=2)),
        "s_bound": s,
        "exp_orthogonality_error": float(torch.linalg.matrix_norm(exp.T @ exp - eye, ord=2)),
        "terms": list(terms),
        "operator_error": [],
        "sigma_max": [],
        "layer_sigma_max": [],
        "tail_bound": [],
    }
    for t in terms:
        series = truncated_series(skew, t)
        report["operator_error"].append(float(torch.linalg.matrix_norm(series - exp, ord=2)))
        report["sigma_max"].append(float(torch.linalg.matrix_norm(series, ord=2)))
        block = series[out_idx][:, in_idx]
        report["layer_sigma_max"].append(float(torch.linalg.matrix_norm(block, ord=2)))
        report["tail_bound"].append(taylor_tail_bound(s, t))
    return report

