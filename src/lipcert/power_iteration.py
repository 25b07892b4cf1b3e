"""Spectral norms of linear and convolutional layers by power iteration.

Implements the per-layer factors ||g^(l)||_2 of the Lipschitz upper bound of CLL eq. (1) / supplement
eq. (16): K <= prod_l ||g^(l)||_2.  Following supplement B ("Computing upper Lipschitz bound"), each layer
keeps its power-iteration vector as persistent state, updates it a few times per forward pass during
training (5 by default) and, before evaluation, iterates to convergence (relative error below 1e-9).

Two properties matter for soundness and are tested against dense SVDs:

* the convolution iterate has the layer's true input shape (channels, height, width), and
* the transpose operator is the exact adjoint of the forward operator, for every stride, padding and
  kernel size.  ``conv_transpose2d`` alone is not: for a stride-2 layer whose input size is not reached
  by the transposed output shape it drops a row and a column (the authors' code does this on its 4C3F
  and under-estimates the norm).  We pass the ``output_padding`` that restores the input shape.

Converged norms are computed in float64: float32 stalls near a relative change of 1e-7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .lanczos import EigenProblem, TopEigenpair, top_eigenpairs, unit_vector

# Layers with at most this many inputs are solved exactly with a dense SVD.
_DENSE_LIMIT = 256

__all__ = [
    "LayerConvergence",
    "SpectralConv2d",
    "SpectralLinear",
    "converge_layer",
    "converge_spectral_layers",
]


@dataclass(frozen=True)
class LayerConvergence:
    """Outcome of converging one layer's power iteration (float64)."""

    sigma: float
    iterations: int
    converged: bool
    estimated_rel_error: float


class _SpectralMixin:
    """Power-iteration state and logic shared by :class:`SpectralLinear` and :class:`SpectralConv2d`.

    Subclasses provide ``apply_operator(u, weight)`` (the linear operator W u, no bias), ``apply_adjoint(v, weight)``
    (its exact adjoint W^T v) and ``_iterate_shape()``.

    Buffers (saved in the state dict):

    * ``pi_vector``: the current right singular vector estimate u (unit norm, shape (1, *input_shape)).
    * ``sigma_converged``: the last converged norm (float64); NaN until :meth:`converge_sigma` ran.
    """

    pi_vector: torch.Tensor
    sigma_converged: torch.Tensor
    weight: torch.Tensor

    def _init_power_iteration(self, input_shape: tuple[int, ...] | None) -> None:
        shape = (1, *input_shape) if input_shape is not None else (1, 0)
        self.register_buffer("pi_vector", torch.zeros(shape))
        self.register_buffer("sigma_converged", torch.tensor(float("nan"), dtype=torch.float64))
        self._converged_at_version: int | None = None
        self._sigma_value = math.nan
        if input_shape is not None:
            self.reset_power_iteration()

    # --- shape handling -------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of one input sample (without batch dimension), or None before it is known."""
        if self.pi_vector.numel() == 0:
            return None
        return tuple(self.pi_vector.shape[1:])

    def set_input_shape(self, input_shape: tuple[int, ...], generator: torch.Generator | None = None) -> None:
        """Fix the operator's input shape and draw a random unit start vector of that shape."""
        self._check_input_shape(tuple(input_shape))
        self.pi_vector = torch.zeros((1, *input_shape), dtype=self.weight.dtype, device=self.weight.device)
        self.reset_power_iteration(generator)

    def reset_power_iteration(self, generator: torch.Generator | None = None) -> None:
        """Cold start: a random unit vector (the state before any iteration)."""
        if self.input_shape is None:
            raise RuntimeError(f"{type(self).__name__}: input shape unknown; call set_input_shape first")
        u = torch.randn(self.pi_vector.shape, generator=generator, dtype=torch.float64)
        self.pi_vector.copy_(unit_vector(u).to(self.pi_vector.dtype))
        self.sigma_converged.fill_(float("nan"))
        self._converged_at_version = None
        self._sigma_value = math.nan

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:  # overridden by conv
        if shape != (self.weight.shape[1],):
            raise ValueError(f"SpectralLinear expects input shape ({self.weight.shape[1]},), got {shape}")

    # --- training-time estimate -----------------------------------------------------------------
    def power_sigma(self, n_iter: int = 5, update: bool = True, grad_through_iterates: bool = True) -> torch.Tensor:
        """Training-time estimate of ||W||_2: ``n_iter`` warm-started power-iteration steps.

        Returns ||W u|| for the unit iterate u, differentiable w.r.t. the weight (so a lambda*K^2 term
        can backpropagate through the bound, CLL eq. (3)).  With ``grad_through_iterates`` the iteration
        itself is part of the graph (as in the authors' code); otherwise only the final Rayleigh quotient
        is (as in GloRo).  ``update`` stores the new iterate (detached) for the next call.  The estimate
        is a lower bound of the true norm; certification never uses it (see :meth:`converge_sigma`).
        """
        if n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        w = self.weight
        u = self.pi_vector.to(w.dtype, copy=True)
        ctx = torch.enable_grad() if grad_through_iterates else torch.no_grad()
        with ctx:
            for _ in range(n_iter):
                u = unit_vector(self.apply_adjoint(self.apply_operator(u, w), w))
        if not grad_through_iterates:
            u = u.detach()
        sigma = torch.linalg.vector_norm(self.apply_operator(u, w))
        if update and n_iter > 0:
            with torch.no_grad():
                self.pi_vector.copy_(u.detach())
        return sigma

    # --- converged (certification) value --------------------------------------------------------
    @torch.no_grad()
    def converge_sigma(self, tol: float = 1e-9, max_iter: int = 100_000, method: str = "lanczos",
                       block_size: int = 4) -> LayerConvergence:
        """Converge ||W||_2 in float64 to relative error below ``tol`` and freeze it for evaluation.

        ``method``:

        * ``"lanczos"`` (default): thick-restart Lanczos with full re-orthogonalisation on W^T W
          (:mod:`lipcert.lanczos`, pure torch on the weight's device), warm-started from ``pi_vector``,
          stopping when the Ritz residual is below ``tol`` times the Ritz value (ARPACK's rule).  Krylov methods converge with the square root of the relative
          spectral gap; convolutions on large images have densely clustered top singular values, where
          (block) power iteration needs tens of thousands of steps (8C2F: 735 s vs 42 s, see
          docs/benchmarks.md).  Layers with at most ``_DENSE_LIMIT`` inputs are solved exactly by a dense SVD.
        * ``"block_power"``: block power iteration (see :meth:`_converge_block_power`); ``block_size=1``
          is plain power iteration.

        Every method approaches sigma from below (Ritz values never exceed the top eigenvalue).  The
        returned ``iterations`` count applications of W^T W.  The top singular vector is written back
        to ``pi_vector`` (warm start for training and the next call).
        """
        if not (tol > 0):
            raise ValueError(f"tol must be > 0, got {tol}")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if method == "lanczos":
            return converge_spectral_layers([self], tol, max_iter)[0]
        if method == "block_power":
            result, vector = self._converge_block_power(tol, max_iter, block_size)
        else:
            raise ValueError(f"unknown method {method!r}; expected 'lanczos' or 'block_power'")
        self._store_converged(result, vector)
        return result

    def _start_vector(self) -> torch.Tensor:
        """The warm start ``pi_vector`` in float64, unit norm; a fixed-seed random vector if it is zero.

        Chosen with ``torch.where`` on the weight's device (no host read of the norm)."""
        u = self.pi_vector.to(torch.float64)
        fallback = torch.randn(u.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(u.device)
        return unit_vector(torch.where(torch.linalg.vector_norm(u) > 0, u, fallback))

    def gram_operator(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """x -> W^T W x on flat float64 vectors of the layer's input size, on the weight's device (no bias)."""
        w = self.weight.detach().to(torch.float64)
        shape = tuple(self.pi_vector.shape)

        def gram(x: torch.Tensor) -> torch.Tensor:
            return self.apply_adjoint(self.apply_operator(x.reshape(shape), w), w).reshape(-1)
        return gram

    def uses_dense_solver(self) -> bool:
        """Layers with at most ``_DENSE_LIMIT`` inputs are solved exactly by a dense SVD."""
        return math.prod(self.pi_vector.shape) <= _DENSE_LIMIT

    def _converge_dense(self) -> tuple[LayerConvergence, torch.Tensor]:
        _, s, vh = torch.linalg.svd(self.dense_operator(), full_matrices=False)
        return LayerConvergence(float(s[0]), 1, True, 0.0), vh[:1].reshape(self.pi_vector.shape)

    def _from_ritz_pair(self, pair: TopEigenpair) -> tuple[LayerConvergence, torch.Tensor]:
        """sigma = max(||W y||, sqrt(theta)) for the unit Ritz vector y; both are <= ||W|| (from below)."""
        w = self.weight.detach().to(torch.float64)
        vector = pair.vector.reshape(self.pi_vector.shape)
        sigma = max(float(torch.linalg.vector_norm(self.apply_operator(vector, w))), math.sqrt(pair.value))
        error = pair.relative_residual if pair.converged else math.inf
        return LayerConvergence(sigma, pair.matvecs, pair.converged, error), vector

    def _store_converged(self, result: LayerConvergence, vector: torch.Tensor) -> None:
        self.pi_vector.copy_(vector.to(self.pi_vector.dtype))
        self.sigma_converged.fill_(result.sigma)
        self._converged_at_version = self.weight._version
        self._sigma_value = float(result.sigma)

    def _converge_block_power(self, tol: float, max_iter: int, block_size: int) -> tuple[LayerConvergence, torch.Tensor]:
        """Block power iteration (subspace iteration with Rayleigh-Ritz): the warm-started vector ``pi_vector``
        plus ``block_size - 1`` further vectors (from a fixed-seed generator, so the result is
        deterministic and the global RNG is untouched) are multiplied by W^T W and re-orthonormalised;
        sigma is the square root of the largest Ritz value of W^T W on the block.  Ritz values never
        exceed the true top eigenvalue and increase to it; the rate is (sigma_{b+1}/sigma_1)^2 instead
        of plain power iteration's (sigma_2/sigma_1)^2, which matters for convolutions, whose top
        singular values are clustered (plain power iteration there stalls, or stops early, 1e-7 to
        1e-6 below the true norm).  ``block_size=1`` is plain power iteration.

        Stopping rule: with relative change d_k and observed contraction r = d_k / d_{k-1}, the
        remaining error of a geometric sequence is d_k * r / (1 - r); we stop once max(d_k, that
        estimate) < tol.  The top Ritz vector is written back to ``pi_vector``; sigma is stored in
        ``sigma_converged`` and frozen until the next call.
        """
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        w = self.weight.detach().to(torch.float64)
        shape = tuple(self.pi_vector.shape[1:])
        n = math.prod(shape)
        b = min(block_size, n)
        gen = torch.Generator().manual_seed(0)
        q = torch.randn((b, *shape), generator=gen, dtype=torch.float64).to(w.device)
        q[0] = self._start_vector()[0]
        q = self._orthonormal_rows(q)
        sigma_prev = math.nan
        d_prev = math.inf
        est = math.inf
        converged = False
        it = 0
        while it < max_iter:
            it += 1
            v = self.apply_operator(q, w)
            vf = v.reshape(b, -1)
            evals, evecs = torch.linalg.eigh(vf @ vf.T)  # Rayleigh-Ritz: Q^T (W^T W) Q
            sigma = math.sqrt(max(float(evals[-1]), 0.0))
            z = self.apply_adjoint(v, w).reshape(b, -1)  # W^T W Q
            q = self._orthonormal_rows((evecs.flip(1).T @ z).reshape(b, *shape))
            if sigma == 0.0:
                converged, est, sigma_prev = True, 0.0, 0.0
                break
            if math.isfinite(sigma_prev):
                d = abs(sigma - sigma_prev) / sigma
                r = d / d_prev if 0 < d_prev < math.inf else 1.0
                est = max(d, d * r / (1.0 - r)) if r < 1.0 else (math.inf if d > 1e-15 else d)
                if est < tol or d < 1e-15:
                    converged, sigma_prev = True, sigma
                    break
                d_prev = d
            sigma_prev = sigma
        return LayerConvergence(sigma_prev, it, converged, est), q[:1]

    @staticmethod
    def _orthonormal_rows(x: torch.Tensor) -> torch.Tensor:
        """Orthonormalise the b flattened vectors of ``x`` (b, ...) with a reduced QR, keeping their order."""
        b = x.shape[0]
        qm, rm = torch.linalg.qr(x.reshape(b, -1).T)
        signs = torch.sign(torch.diagonal(rm))
        qm = qm * torch.where(signs == 0, torch.ones_like(signs), signs)
        return qm.T.reshape(x.shape)

    def converged_sigma(self) -> torch.Tensor:
        """The frozen float64 norm from the last :meth:`converge_sigma` (a tensor on the weight's device).

        Raises if it was never converged or the weights changed in place since (an optimiser step).  The checks
        use host-side state only (no read of the buffer), so evaluation forwards that need the value stay
        synchronisation-free.
        """
        self._check_converged()
        return self.sigma_converged

    def converged_sigma_value(self) -> float:
        """:meth:`converged_sigma` as a Python float, kept on the host since the convergence (no device read)."""
        self._check_converged()
        return self._sigma_value

    def _check_converged(self) -> None:
        if self._converged_at_version is None:
            raise RuntimeError(f"{type(self).__name__}: bound not converged; call model.converge() first")
        if self._converged_at_version != self.weight._version:
            raise RuntimeError(
                f"{type(self).__name__}: weights changed since the bound was converged; call model.converge() again"
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401 - torch hook
        # Adopt the saved iterate's shape (it may be empty in a fresh module), then let torch copy values.
        key = prefix + "pi_vector"
        if key in state_dict and state_dict[key].shape != self.pi_vector.shape:
            self.pi_vector = torch.zeros_like(state_dict[key], dtype=self.pi_vector.dtype, device=self.pi_vector.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # Loading copies weights in place; the saved sigma_converged belongs to the saved weights.
        self._sigma_value = float(self.sigma_converged)
        self._converged_at_version = None if math.isnan(self._sigma_value) else self.weight._version

    # --- dense operator (tests, small layers) ---------------------------------------------------
    @torch.no_grad()
    def dense_operator(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The layer's linear map (bias excluded) as an explicit matrix of shape (out_numel, in_numel).

        Built by applying the operator to every basis vector; only for small layers (tests, checks).
        """
        if self.input_shape is None:
            raise RuntimeError("input shape unknown")
        n = math.prod(self.input_shape)
        eye = torch.eye(n, dtype=dtype, device=self.weight.device).reshape(n, *self.input_shape)
        out = self.apply_operator(eye, self.weight.detach().to(dtype))
        return out.reshape(n, -1).T.contiguous()


class SpectralLinear(_SpectralMixin, nn.Linear):
    """``nn.Linear`` whose spectral norm is tracked by power iteration (CLL eq. (16))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_power_iteration((in_features,))

    @staticmethod
    def apply_operator(u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return u @ weight.T

    @staticmethod
    def apply_adjoint(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return v @ weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class SpectralConv2d(_SpectralMixin, nn.Conv2d):
    """``nn.Conv2d`` whose operator norm (on its true input shape) is tracked by power iteration.

    The input shape (C, H, W) is fixed with :meth:`set_input_shape` (the model builder does this from the
    model's input size); the adjoint uses the ``output_padding`` that maps back to exactly (H, W), so
    <W x, y> = <x, W^T y> holds to rounding for every stride and padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, input_hw: tuple[int, int] | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self._output_padding = (0, 0)
        self._init_power_iteration(None)
        if input_hw is not None:
            self.set_input_shape((in_channels, *input_hw))

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"SpectralConv2d expects input shape ({self.in_channels}, H, W), got {shape}")
        out_hw = self.output_hw(shape[1:])
        if min(out_hw) < 1:
            raise ValueError(f"input {shape} too small for kernel {self.kernel_size}, stride {self.stride}")

    def output_hw(self, input_hw: tuple[int, ...]) -> tuple[int, int]:
        """Spatial output size of this convolution for an input of size ``input_hw``."""
        return tuple(  # type: ignore[return-value]
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(input_hw, self.padding, self.dilation, self.kernel_size, self.stride)
        )

    def set_input_shape(self, input_shape, generator=None):  # type: ignore[override]
        super().set_input_shape(input_shape, generator)
        self._update_output_padding()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.input_shape is not None:
            self._update_output_padding()

    def _update_output_padding(self) -> None:
        in_hw = self.input_shape[1:]
        out_hw = self.output_hw(in_hw)
        # conv_transpose2d output size: (o - 1) * s - 2p + d(k - 1) + 1 + output_padding
        self._output_padding = tuple(
            n - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
            for n, o, s, p, d, k in zip(in_hw, out_hw, self.stride, self.padding, self.dilation, self.kernel_size)
        )

    def apply_operator(self, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(u, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def apply_adjoint(self, v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(v, weight, None, self.stride, self.padding, self._output_padding, self.groups,
                                  self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def converge_layer(layer: _SpectralMixin, tol: float = 1e-9, max_iter: int = 100_000, method: str = "lanczos",
                   block_size: int = 4) -> LayerConvergence:
    """Functional form of ``layer.converge_sigma``."""
    return layer.converge_sigma(tol=tol, max_iter=max_iter, method=method, block_size=block_size)


def converge_spectral_layers(layers: Sequence[_SpectralMixin], tol: float = 1e-9,
                             max_iter: int = 100_000) -> list[LayerConvergence]:
    """Converge the spectral norms of several layers together and freeze them (``method="lanczos"``).

    Small layers (at most ``_DENSE_LIMIT`` inputs) get a dense SVD; all others run thick-restart Lanczos
    (:func:`lipcert.lanczos.top_eigenpairs`) in lock step, one host read per cycle for all of them, each on
    its weight's device in float64.  Every layer's relative Ritz residual ends below ``tol``; the top vector
    is written back to ``pi_vector`` as the next warm start.
    """
    if not (tol > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    outcomes: dict[int, tuple[LayerConvergence, torch.Tensor]] = {}
    iterative = [i for i, layer in enumerate(layers) if not layer.uses_dense_solver()]
    for i, layer in enumerate(layers):
        if i not in iterative:
            outcomes[i] = layer._converge_dense()
    pairs = top_eigenpairs([EigenProblem(layers[i].gram_operator(), layers[i]._start_vector()) for i in iterative],
                           tol, max_iter)
    for i, pair in zip(iterative, pairs):
        outcomes[i] = layers[i]._from_ritz_pair(pair)
    results = []
    for i, layer in enumerate(layers):
        result, vector = outcomes[i]
        layer._store_converged(result, vector)
        results.append(result)
    return results
