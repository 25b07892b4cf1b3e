"""Worst-case logits from the penultimate ball ∩ box (seed 004 appendix B, eq. (24)) and GloRo's ⊥ logit.

With mu the clean penultimate features, [lo, hi] their box and r the local radius of
:func:`lipcert.local_lipschitz.local_bound.penultimate_radius`, every reachable feature vector is mu + d with
d in D = {||d|| <= r} ∩ [lo - mu, hi - mu].  The worst increase of z_i - z_y is

    T_i = max_{d in D} (w_i - w_y)^T d,      z*_i = z_i + T_i (i != y),  z*_y = z_y      (eq. (24)).

Seed 004's code approximates the maximiser by clipping the scaled direction into the box and rescaling the rest
(``opt_iter`` times); a finite number of such steps gives a point, whose value can fall below the maximum.  Here the
same iteration only picks the multiplier of the ball constraint, and the value returned is the Lagrangian dual

    g(lambda) = lambda r^2 + sum_k max_{d_k in [a_k, b_k]} (c_k d_k - lambda d_k^2) >= T_i   for every lambda >= 0,

so every iteration count gives an upper bound (sound in training and certification) and converged iterations give
T_i exactly (strong duality).  With lambda = 1 / (2t) the inner maximiser is d = clip(t c, a, b); the iteration
t <- sqrt((r^2 - ||d_clipped||^2) / ||c_free||^2) starts at the ball's t = r / ||c|| and increases monotonically to
the optimum (the clipped set only grows), as many steps as coordinates at most.
"""

from __future__ import annotations

import torch

__all__ = ["gloro_bottom_logit", "worst_case_logits", "worst_logit_offsets"]


def worst_logit_offsets(features: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, radius: torch.Tensor,
                        head_weight: torch.Tensor, labels: torch.Tensor, iterations: int = 1,
                        box: bool = True) -> torch.Tensor:
    """T (N, C): an upper bound of max (w_i - w_y)^T d over the ball of ``radius`` (N,) ∩ the box ``[lower, upper]``
    around ``features`` (N, D) (``box=False``: the ball alone, T_i = r ||w_i - w_y||, GloRo's translation);
    ``iterations`` steps of the multiplier search (0: the ball's multiplier).  T_y = 0."""
    w = head_weight.to(features.dtype)
    c = w[None, :, :] - w[labels][:, None, :]                       # (N, C, D)
    r = radius.to(features.dtype)[:, None, None]                    # (N, 1, 1)
    c_norm = torch.linalg.vector_norm(c, dim=2, keepdim=True)
    if not box:
        return (r * c_norm)[..., 0]
    a = (lower - features)[:, None, :].clamp(max=0)                  # the box contains mu (clean features)
    b = (upper - features)[:, None, :].clamp(min=0)
    with torch.no_grad():
        t = r / c_norm.clamp_min(torch.finfo(c.dtype).tiny)
        for _ in range(iterations):
            tc = t * c
            clipped = (tc < a) | (tc > b)
            d = torch.minimum(torch.maximum(tc, a), b)
            s = torch.where(clipped, d * d, torch.zeros_like(d)).sum(2, keepdim=True)
            free = torch.where(clipped, torch.zeros_like(c), c * c).sum(2, keepdim=True)
            t_next = ((r * r - s).clamp_min(0) / free.clamp_min(torch.finfo(c.dtype).tiny)).sqrt()
            t = torch.where(free > 0, torch.maximum(t, t_next), torch.full_like(t, float("inf")))
        corner = torch.where(c > 0, b, torch.where(c < 0, a, torch.zeros_like(a)))
        t_finite = torch.isfinite(t)
        lam = torch.where(t_finite, 0.5 / t.clamp_min(torch.finfo(c.dtype).tiny), torch.zeros_like(t))
    d = torch.where(t_finite, torch.minimum(torch.maximum(torch.where(t_finite, t, 0.0) * c, a), b), corner)
    dual = lam * r * r + (c * d - lam * d * d).sum(2, keepdim=True)
    return dual[..., 0].clamp_min(0)


def worst_case_logits(logits: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z* of eq. (24): z_i + T_i for i != y, z_y unchanged (T_y = 0 already)."""
    return logits + offsets.to(logits.dtype)


def gloro_bottom_logit(logits: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """GloRo's logits with the ⊥ class appended: [z | max_{i != y} (z_i + T_i)] (seed 004 appendix B; Leino et al.)."""
    worst = (logits + offsets.to(logits.dtype)).scatter(1, labels[:, None], float("-inf"))
    return torch.cat((logits, worst.amax(1, keepdim=True)), dim=1)
