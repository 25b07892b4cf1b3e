"""The local Lipschitz bound of seed 004 (eq. (6), Algorithm 1): masked spectral norms per sample.

On the ball around x the units that :mod:`.propagation` proves constant drop out of the Jacobian, so for the map
from the input to the penultimate features

    L_local(x) <= prod_l ||R_l W^l C_l||,

with C_l the varying outputs of the activation before layer l and R_l the varying inputs of a ReLU/ReLUθ after it
(eq. (6); for clipped MaxMin only the next layer's inputs are masked, as in seed 004's code).  Each factor is at
most ||W^l|| (Proposition 1: deleting rows or columns never increases the spectral norm), hence local <= global
(Theorem 1).  The factors are per sample and are found by power iteration on the masked operator with the exact
adjoint (the layers' ``apply_operator`` / ``apply_adjoint``):

* training (:func:`masked_norms`): ``n_iter`` steps without gradient from warm-start vectors (kept per sample
  between epochs, :class:`lipcert.local_lipschitz.vector_store.PerSampleVectors`) or random starts, then
  sigma = ||R W C u|| with gradient (a lower estimate, as every training-time bound here);
* certification (:func:`converged_local_norms`): float64 Lanczos per sample (explicit restarts, all samples of a
  batch in lock step, finished samples dropped) to a relative Ritz residual of ``tol / L``, the convergence rule of
  the global bound (:meth:`lipcert.classifier.LipschitzClassifier.converge`) (small linear layers: an exact SVD per
  sample instead); the value used is
  min(converged masked norm, converged global norm), and a sample that has not converged within ``max_matvecs``
  gets the global norm, which is an upper bound of its masked norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..power_iteration import SpectralLinear
from .propagation import BodyBounds, WeightLayerBounds

__all__ = ["LocalNormReport", "converged_local_norms", "local_lipschitz_product", "masked_norms",
           "masked_operator", "penultimate_radius"]


def _unit_rows(v: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(v.flatten(1), dim=1).view(-1, *([1] * (v.dim() - 1)))
    return v / torch.where(n > 0, n, torch.ones_like(n))


def masked_operator(info: WeightLayerBounds, dtype: torch.dtype, rows: torch.Tensor | None = None):
    """(u -> R W C u, v -> C W^T R v) of one layer for the samples ``rows`` (None: all), bias excluded; the second is
    the exact adjoint of the first (the layer's own adjoint, masks are diagonal)."""
    layer = info.layer
    weight = layer.weight.to(dtype)
    c = info.input_mask if rows is None or info.input_mask is None else info.input_mask[rows]
    r = info.output_mask if rows is None or info.output_mask is None else info.output_mask[rows]

    def forward(u: torch.Tensor) -> torch.Tensor:
        out = layer.apply_operator(u if c is None else u * c, weight)
        return out if r is None else out * r

    def adjoint(v: torch.Tensor) -> torch.Tensor:
        out = layer.apply_adjoint(v if r is None else v * r, weight)
        return out if c is None else out * c
    return forward, adjoint


def _random_like(shape, dtype, device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def _start(info: WeightLayerBounds, n: int, start: torch.Tensor | None, dtype, device, generator) -> torch.Tensor:
    """A warm start or a random start (drawn with ``generator``), unit rows.  With both, the zero rows of the warm
    start (never stored yet) get the random vector; a warm start without a generator is used as it is."""
    shape = (n, *info.layer.input_shape)
    if start is not None and generator is None:
        return _unit_rows(start.to(device=device, dtype=dtype).reshape(shape))
    fresh = _random_like(shape, dtype, device, generator)
    if start is None:
        return _unit_rows(fresh)
    start = start.to(device=device, dtype=dtype).reshape(shape)
    stored = torch.linalg.vector_norm(start.flatten(1), dim=1) > 0
    return _unit_rows(torch.where(stored.view(-1, *([1] * (start.dim() - 1))), start, fresh))


def masked_norms(bounds: BodyBounds, n_iter: int, starts: Sequence[torch.Tensor | None] | None = None,
                 generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Training-time masked norms sigma_l(x) (N,) of every body layer (Algorithm 1): ``n_iter`` power-iteration
    steps without gradient from ``starts`` (per layer, (N, *input shape); their zero rows get random starts when a
    ``generator`` is given) or from random starts drawn with ``generator`` (``starts`` None), then sigma = ||R W C u|| with gradient to the weights.  Returns (sigmas, final unit vectors)."""
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    n = bounds.features.shape[0]
    sigmas, vectors = [], []
    for i, info in enumerate(bounds.layers):
        dtype, device = info.layer.weight.dtype, info.layer.weight.device
        forward, adjoint = masked_operator(info, dtype)
        with torch.no_grad():
            u = _start(info, n, None if starts is None else starts[i], dtype, device, generator)
            for _ in range(n_iter):
                u = _unit_rows(adjoint(forward(u)))
        sigmas.append(torch.linalg.vector_norm(forward(u).flatten(1), dim=1))
        vectors.append(u)
    return sigmas, vectors


def penultimate_radius(bounds: BodyBounds, sigmas: Sequence[torch.Tensor]) -> torch.Tensor:
    """eps * prod_l sigma_l(x) (N,): the ball around the clean penultimate features that holds every feature vector of
    the input ball (the local radius into the last layer, seed 004's code)."""
    radius = bounds.eps.to(sigmas[0].dtype) if sigmas else bounds.eps
    for s in sigmas:
        radius = radius * s
    return radius


def local_lipschitz_product(bounds: BodyBounds, sigmas: Sequence[torch.Tensor], head_weight: torch.Tensor) -> torch.Tensor:
    """Eq. (6) with the head: prod_l sigma_l(x) * ||W^L C_L|| (N,), the last factor exact (an SVD per sample of the
    head with its masked columns)."""
    w = head_weight.to(sigmas[0].dtype if sigmas else head_weight.dtype)
    mask = bounds.head_input_mask
    n = bounds.features.shape[0]
    head = w.expand(n, *w.shape) if mask is None else w[None] * mask[:, None, :].to(w.dtype)
    value = torch.linalg.matrix_norm(head, ord=2)
    for s in sigmas:
        value = value * s
    return value


class LocalNormReport:
    """Counts of a certification's local norms: ``matvecs`` per layer, ``unconverged`` samples per layer (they use
    the global norm)."""

    def __init__(self) -> None:
        self.matvecs: list[int] = []
        self.unconverged: list[int] = []


def _lanczos_top(forward_at, adjoint_at, start: torch.Tensor, tol: float, max_matvecs: int, basis: int):
    """Per-sample top eigenvalue of (R W C)^T (R W C) by Lanczos with explicit restarts from the top Ritz vector,
    float64, the samples in lock step; converged samples leave the active set.  Returns (sigma (N,), converged (N,),
    matvecs)."""
    n = start.shape[0]
    shape = start.shape[1:]
    dev = start.device
    sigma = torch.zeros(n, dtype=torch.float64, device=dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    active = torch.arange(n, device=dev)
    x = _unit_rows(start.flatten(1).to(torch.float64))
    matvecs = 0
    m = max(2, min(basis, x.shape[1] - 1)) if x.shape[1] > 2 else 1
    while active.numel() and matvecs < max_matvecs:
        forward, adjoint = forward_at(active), adjoint_at(active)

        def gram(v):
            return adjoint(forward(v.view(-1, *shape))).flatten(1)
        basis_v = x.new_zeros((m + 1, *x.shape))
        basis_a = x.new_zeros((m, *x.shape))
        basis_v[0] = x
        for j in range(m):
            w = gram(basis_v[j])
            basis_a[j] = w
            q = basis_v[:j + 1]
            for _ in range(2):
                w = w - torch.einsum("kN,kNn->Nn", torch.einsum("kNn,Nn->kN", q, w), q)
            basis_v[j + 1] = _unit_rows(w)
        matvecs += m
        basis_v = basis_v[:m]
        h = torch.einsum("iNn,jNn->Nij", basis_v, basis_a)
        values, vectors = torch.linalg.eigh(0.5 * (h + h.transpose(1, 2)))
        theta, coeff = values[:, -1], vectors[:, :, -1]
        y = torch.einsum("Nk,kNn->Nn", coeff, basis_v)
        residual = torch.linalg.vector_norm(torch.einsum("Nk,kNn->Nn", coeff, basis_a) - theta[:, None] * y, dim=1)
        image_norm = torch.linalg.vector_norm(forward(y.view(-1, *shape)).flatten(1), dim=1)
        value = torch.maximum(theta.clamp_min(0).sqrt(), image_norm)
        finished = (residual <= tol * theta) | (residual == 0)
        sigma[active] = value
        done[active] = finished
        keep = ~finished
        if not bool(keep.any()):  # the cycle's one host read
            break
        active, x = active[keep], _unit_rows(y[keep])
    return sigma, done, matvecs


DENSE_LOCAL_LIMIT = 65536
"""Linear layers with at most this many weights get their masked norms from a dense SVD per sample."""


def _dense_masked_norms(info: WeightLayerBounds) -> torch.Tensor:
    """||R W C|| per sample of a linear layer, exact (float64 singular values of the masked matrices)."""
    w = info.layer.weight.detach().to(torch.float64)
    r, c = info.output_mask, info.input_mask
    n = (r if r is not None else c).shape[0] if (r is not None or c is not None) else 1
    m = w.expand(n, *w.shape)
    if r is not None:
        m = m * r[:, :, None].to(w.dtype)
    if c is not None:
        m = m * c[:, None, :].to(w.dtype)
    return torch.linalg.matrix_norm(m, ord=2)


def converged_local_norms(bounds: BodyBounds, global_sigmas: Sequence[float | torch.Tensor], *, tol: float = 1e-9,
                          max_matvecs: int = 4000, basis: int = 16, report: LocalNormReport | None = None,
                          generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Certification-time masked norms (float64, (N,) per layer): Lanczos to a relative Ritz residual of
    ``tol / L``, then min(value, global norm); unconverged samples get the global norm (an upper bound by
    Proposition 1).  ``global_sigmas``: the converged global norms of the same layers."""
    n = bounds.features.shape[0]
    per_layer_tol = tol / max(1, len(bounds.layers))
    out = []
    for info, global_sigma in zip(bounds.layers, global_sigmas):
        device = info.layer.weight.device
        g = torch.as_tensor(global_sigma, dtype=torch.float64, device=device)
        if isinstance(info.layer, SpectralLinear) and info.layer.weight.numel() <= DENSE_LOCAL_LIMIT:
            out.append(torch.minimum(_dense_masked_norms(info), g))  # exact: an SVD per sample
            if report is not None:
                report.matvecs.append(0)
                report.unconverged.append(0)
            continue
        start = _start(info, n, None, torch.float64, device, generator)
        sigma, done, matvecs = _lanczos_top(lambda rows, i=info: masked_operator(i, torch.float64, rows)[0],
                                            lambda rows, i=info: masked_operator(i, torch.float64, rows)[1],
                                            start, per_layer_tol, max_matvecs, basis)
        out.append(torch.where(done, torch.minimum(sigma, g), g))
        if report is not None:
            report.matvecs.append(matvecs)
            report.unconverged.append(int((~done).sum()))
    return out
