"""The classifier ``f = head o body`` with a certified Lipschitz bound (CLL eq. (1)/(16), supplement C).

K_body is the product of the body's bounded layers' constants: spectral norms of
:class:`~lipcert.power_iteration.SpectralConv2d` / :class:`~lipcert.power_iteration.SpectralLinear` and the
certified constants of :class:`~lipcert.one_lipschitz.base.OneLipschitzLayer` (1 up to approximation).  Every
other module of the body must be 1-Lipschitz (MinMax, reshapes, zero padding).  The pairwise constants are
K_ij = K_body * ||W_i - W_j|| of the head's effective weight (row-normalised for an LLN head) and the global
K(f) = max_ij K_ij.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from .bounds import pairwise_constants, per_logit_constants, product
from .one_lipschitz.base import LastLayerNormalizedLinear, OneLipschitzLayer
from .power_iteration import LayerConvergence, SpectralConv2d, SpectralLinear, converge_spectral_layers

__all__ = ["ConvergenceReport", "LipschitzClassifier"]


@dataclass(frozen=True)
class ConvergenceReport:
    """Result of :meth:`LipschitzClassifier.converge` (float64)."""

    layers: tuple[LayerConvergence, ...]
    k_body: float
    k_global: float
    tol: float
    seconds: float

    @property
    def iterations(self) -> int:
        """Total power-iteration steps over all layers."""
        return sum(layer.iterations for layer in self.layers)

    @property
    def converged(self) -> bool:
        return all(layer.converged for layer in self.layers)


class LipschitzClassifier(nn.Module):
    """``f = head o body`` with tracked per-layer spectral norms.

    Training uses :meth:`body_lipschitz` (few differentiable power-iteration steps); evaluation and
    certification use :meth:`converge` and the frozen float64 values of :meth:`pairwise_lipschitz`.
    """

    def __init__(self, body: nn.Sequential, head: nn.Linear, input_shape: tuple[int, ...], name: str = "") -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.input_shape = tuple(input_shape)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def spectral_layers(self) -> list[SpectralConv2d | SpectralLinear | OneLipschitzLayer]:
        """The bounded layers of the body whose constants enter K_body, in order.

        Spectral layers contribute their spectral norm, 1-Lipschitz layers their certified constant
        (:mod:`lipcert.one_lipschitz.base`).  The search descends into containers (residual blocks, nested
        ``Sequential``) but not into a bounded layer (a CPL layer's inner convolution is part of it).
        """
        return list(_bounded_layers(self.body))

    def head_weight(self) -> torch.Tensor:
        """The head's effective weight (row-normalised for an LLN head), with gradient."""
        if isinstance(self.head, LastLayerNormalizedLinear):
            return self.head.effective_weight()
        return self.head.weight

    # --- training-time bound ------------------------------------------------------------------
    def body_lipschitz(self, n_iter: int = 5, update: bool = True, grad_through_iterates: bool = True) -> torch.Tensor:
        """K_body from ``n_iter`` warm-started power-iteration steps per layer, differentiable.

        A (slightly low) training-time estimate; the lambda*K^2 term and GloRo backpropagate through it.
        """
        return product([layer.power_sigma(n_iter, update, grad_through_iterates) for layer in self.spectral_layers()])

    # --- converged bound ----------------------------------------------------------------------
    def converge(self, tol: float = 1e-9, max_iter: int = 100_000, method: str = "lanczos",
                 block_size: int = 4) -> ConvergenceReport:
        """Converge every layer in float64 so that the global bound's relative error is below ``tol``.

        Each of the L layers is iterated to an estimated relative error below tol / L, which bounds the
        relative error of the product by tol (``method``: Lanczos or block power iteration, see
        :meth:`SpectralLinear.converge_sigma`).  Afterwards the norms are frozen for evaluation.
        """
        start = time.perf_counter()
        layers = self.spectral_layers()
        per_layer_tol = tol / max(1, len(layers))
        spectral = [layer for layer in layers if isinstance(layer, (SpectralConv2d, SpectralLinear))]
        together = {}
        if method == "lanczos" and spectral:
            # all spectral layers in lock step (one host read per Lanczos cycle for the whole body)
            together = dict(zip(map(id, spectral), converge_spectral_layers(spectral, per_layer_tol, max_iter)))
        results = tuple(together[id(layer)] if id(layer) in together
                        else layer.converge_sigma(per_layer_tol, max_iter, method, block_size) for layer in layers)
        k_body = math.prod(r.sigma for r in results)
        k_global = k_body * float(self._head_pairwise().max()) if k_body > 0 else 0.0
        return ConvergenceReport(results, k_body, k_global, tol, time.perf_counter() - start)

    def converged_body_lipschitz(self) -> torch.Tensor:
        """Frozen float64 K_body from the last :meth:`converge` (raises if stale or missing)."""
        return product([layer.converged_sigma() for layer in self.spectral_layers()]).to(torch.float64)

    def _head_pairwise(self) -> torch.Tensor:
        weight = self.head_weight().detach().to(torch.float64)
        return pairwise_constants(torch.ones((), dtype=torch.float64, device=weight.device), weight)

    @torch.no_grad()
    def pairwise_lipschitz(self) -> torch.Tensor:
        """(C, C) float64 matrix K_ij = K_body * ||W_i - W_j|| from the converged bound (eq. (18))."""
        return pairwise_constants(self.converged_body_lipschitz(), self.head_weight().detach().to(torch.float64))

    @torch.no_grad()
    def logit_lipschitz(self) -> torch.Tensor:
        """(C,) float64 per-logit constants K_body * ||W_i|| from the converged bound."""
        return per_logit_constants(self.converged_body_lipschitz(), self.head_weight().detach().to(torch.float64))

    def global_lipschitz(self) -> float:
        """K(f) = max_ij K_ij from the converged bound."""
        return float(self.pairwise_lipschitz().max())


_BOUNDED = (SpectralConv2d, SpectralLinear, OneLipschitzLayer)


def _bounded_layers(module: nn.Module):
    for child in module.children():
        if isinstance(child, _BOUNDED):
            yield child
        else:
            yield from _bounded_layers(child)


