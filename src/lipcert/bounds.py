"""Composing per-layer norms into the classifier's Lipschitz bounds (CLL eq. (1)/(16), supplement C).

For f = head o body with body = g^(L-1) o ... o g^(1) (1-Lipschitz activations in between),
K_body = prod_l ||g^(l)||_2 and, for the last linear layer with rows W_i,

* pairwise constants  K_ij = K_body * ||W_i - W_j||_2  (Lipschitz constant of f_i - f_j), used by the
  pairwise CLL normalisation, GloRo and certification (eq. (18));
* per-logit constants K_i = K_body * ||W_i||_2 (the authors' per-logit CLL variant);
* the global bound K(f) = max_ij K_ij.
"""

from __future__ import annotations

import torch

__all__ = ["pairwise_row_distances", "row_norms", "pairwise_constants", "per_logit_constants", "product"]

_CHUNK_ELEMENTS = 1 << 24


def pairwise_row_distances(weight: torch.Tensor) -> torch.Tensor:
    """Matrix of ||W_i - W_j||_2 over the rows of ``weight`` (C, D), zero on the diagonal.

    Computed from explicit differences (no Gram-matrix cancellation), in row chunks to bound memory,
    and differentiable with a zero (not NaN) gradient at the diagonal.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (classes, features), got shape {tuple(weight.shape)}")
    c, d = weight.shape
    rows = max(1, _CHUNK_ELEMENTS // max(1, c * d))
    blocks = []
    for start in range(0, c, rows):
        diff = weight[start:start + rows, None, :] - weight[None, :, :]
        blocks.append(diff.pow(2).sum(-1))
    sq = torch.cat(blocks, dim=0)
    off_diag = ~torch.eye(c, dtype=torch.bool, device=weight.device)
    return torch.where(off_diag, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """Euclidean norms ||W_i||_2 of the rows of ``weight``."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (classes, features), got shape {tuple(weight.shape)}")
    return torch.linalg.vector_norm(weight, dim=1)


def product(factors: list[torch.Tensor]) -> torch.Tensor:
    """Product of per-layer norms (eq. (16)); 1 for an empty body."""
    out = torch.ones((), dtype=factors[0].dtype, device=factors[0].device) if factors else torch.ones(())
    for f in factors:
        out = out * f
    return out


def pairwise_constants(k_body: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """K_ij = K_body * ||W_i - W_j||_2 (supplement C, eq. (18))."""
    return k_body * pairwise_row_distances(head_weight)


def per_logit_constants(k_body: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """K_i = K_body * ||W_i||_2 (per-logit normalisation)."""
    return k_body * row_norms(head_weight)
