"""Common interface of layers that are 1-Lipschitz by construction (CLL main section 4, table 1 and 2 rows
SOC, CPL, SLL and LBDN), and the last-layer normalisation (LLN) head.

A model's body bound K_body is the product of its *bounded layers'* constants (CLL eq. (16)).  Spectral
layers (:mod:`lipcert.power_iteration`) contribute their spectral norm; a :class:`OneLipschitzLayer`
contributes its certified constant, which is 1 for exact constructions and slightly above 1 where the
construction is approximate (e.g. SOC's truncated Taylor series, or CPL's normalisation by a converged
spectral norm with tolerance ``tol``).  Every bounded layer offers the same three methods:

* ``power_sigma(n_iter, update, grad_through_iterates)``: the training-time factor (a tensor);
* ``converge_sigma(tol, max_iter, method, block_size)``: compute and freeze the certified float64
  constant, returning a :class:`~lipcert.power_iteration.LayerConvergence`;
* ``converged_sigma()``: the frozen float64 constant; raises if stale (parameters changed since) or missing.

A :class:`OneLipschitzLayer` subclass implements :meth:`OneLipschitzLayer.certified_constant` (and may
override :meth:`OneLipschitzLayer.prepare_evaluation` to freeze eval-time state such as a converged norm).
"""

from __future__ import annotations

import torch
from torch import nn

from ..power_iteration import LayerConvergence

__all__ = ["LastLayerNormalizedLinear", "OneLipschitzLayer", "make_head", "parameter_versions"]


def parameter_versions(module: nn.Module) -> tuple[int, ...]:
    """In-place version counters of all parameters (an optimiser step bumps them)."""
    return tuple(p._version for p in module.parameters())


def _record_versions_after_load(module: "OneLipschitzLayer", incompatible_keys) -> None:
    """Load post-hook: a loaded certified constant belongs to the loaded parameters."""
    module._certified_at = None if torch.isnan(module.certified_sigma) else parameter_versions(module)


class OneLipschitzLayer(nn.Module):
    """Base of layers whose Lipschitz constant (l2) is 1 by construction, up to :meth:`certified_constant`.

    Buffers: ``certified_sigma`` (float64, NaN until :meth:`converge_sigma` ran), saved in the state dict.
    """

    certified_sigma: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("certified_sigma", torch.tensor(float("nan"), dtype=torch.float64))
        self._certified_at: tuple[int, ...] | None = None
        # a post-hook, not _load_from_state_dict: it runs after the children (e.g. CPL's inner convolution)
        # were loaded too, so the recorded versions are those of the loaded parameters
        self.register_load_state_dict_post_hook(_record_versions_after_load)

    # --- to implement ------------------------------------------------------------------------------
    def certified_constant(self, tol: float) -> float:
        """A float64 upper bound on the layer's l2 Lipschitz constant in evaluation mode (default 1)."""
        return 1.0

    def prepare_evaluation(self, tol: float, max_iter: int, method: str, block_size: int) -> tuple[int, bool, float]:
        """Freeze whatever evaluation needs (e.g. converge an inner spectral norm).

        Returns (iterations, converged, estimated relative error); the default has nothing to do.
        """
        return 0, True, 0.0

    # --- bounded-layer interface --------------------------------------------------------------------
    def power_sigma(self, n_iter: int = 5, update: bool = True, grad_through_iterates: bool = True) -> torch.Tensor:
        """Training-time factor: 1 (the constraint is built into the layer)."""
        ref = next(self.parameters(), None)
        device = ref.device if ref is not None else None
        return torch.ones((), device=device)

    @torch.no_grad()
    def converge_sigma(self, tol: float = 1e-9, max_iter: int = 100_000, method: str = "lanczos",
                       block_size: int = 4) -> LayerConvergence:
        """Freeze evaluation state and the certified constant (see :meth:`certified_constant`)."""
        if not (tol > 0):
            raise ValueError(f"tol must be > 0, got {tol}")
        iterations, converged, rel_error = self.prepare_evaluation(tol, max_iter, method, block_size)
        sigma = float(self.certified_constant(tol))
        if not sigma >= 1.0 - 1e-12:
            raise ValueError(f"{type(self).__name__}: certified constant {sigma} < 1 contradicts the construction")
        self.certified_sigma.fill_(sigma)
        self._certified_at = parameter_versions(self)
        return LayerConvergence(sigma=sigma, iterations=iterations, converged=converged,
                                estimated_rel_error=rel_error)

    def converged_sigma(self) -> torch.Tensor:
        """The frozen constant; raises if never computed or if parameters changed since."""
        if torch.isnan(self.certified_sigma):
            raise RuntimeError(f"{type(self).__name__}: bound not converged; call model.converge() first")
        if self._certified_at is not None and self._certified_at != parameter_versions(self):
            raise RuntimeError(
                f"{type(self).__name__}: weights changed since the bound was converged; call model.converge() again")
        return self.certified_sigma



class LastLayerNormalizedLinear(nn.Linear):
    """Last-layer normalisation (LLN, Singla et al. 2022; used by SOC/SLL with their own losses).

    Logits are ``W_hat x + b`` with rows ``W_hat_i = W_i / ||W_i||``, so ||W_hat_i - W_hat_j|| <= 2; the
    pairwise certification constants use :meth:`effective_weight` (never "K = 1": the LLN head is not
    1-Lipschitz, SLL issue #2 in reference_implementation.md).
    """

    def effective_weight(self) -> torch.Tensor:
        return self.weight / torch.linalg.vector_norm(self.weight, dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)


def make_head(in_features: int, classes: int, kind: str, generator: torch.Generator) -> nn.Linear:
    """The last layer of a 1-Lipschitz architecture: ``"linear"`` (unconstrained; CLL, supplement B) or
    ``"lln"`` (:class:`LastLayerNormalizedLinear`).  Weights ~ N(0, 1/in_features), zero bias, from ``generator``.
    """
    if kind not in ("linear", "lln"):
        raise ValueError(f"unknown head {kind!r}; expected 'linear' or 'lln'")
    head = LastLayerNormalizedLinear(in_features, classes) if kind == "lln" else nn.Linear(in_features, classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) / in_features ** 0.5)
        head.bias.zero_()
    return head
