"""Largest eigenpair of symmetric positive semi-definite operators (W^T W) by thick-restart Lanczos, in pure torch.

The converged bound of CLL eq. (1)/(16) needs ||W||_2 = sqrt(lambda_max(W^T W)) of every body layer to a
relative error of 1e-9 (supplement B, "Computing upper Lipschitz bound").  This module computes it on the
device of the weight, in float64, without ever moving an iterate to the host:

* **Expansion** (:func:`expand_basis`): the Krylov basis V grows one vector per application of the
  operator A; each new vector is orthogonalised against the whole basis twice (classical Gram-Schmidt with
  re-orthogonalisation, "twice is enough"), so V stays orthonormal to rounding.  The images A v_j are kept
  beside the basis, so the projected matrix H = V A V^T and every residual are computed explicitly instead
  of from the three-term recurrence.  Nothing here reads a value back to the host.
* **Rayleigh-Ritz and the stopping test** (once per cycle of ``basis_size`` steps): the eigenvalues of H are
  Ritz values, which never exceed lambda_max and increase towards it (Cauchy interlacing); the top Ritz
  pair (theta, y) has the residual r = A y - theta y, and a problem has converged once
  ||r|| <= tol * theta, the stopping rule of ARPACK (``eigsh(tol=...)``).  This is the one host read of
  a cycle, taken for all problems at once.
* **Early checks**: the first cycle is also checked after 4, 8 and 16 steps (``FIRST_CYCLE_CHECKS``), so a warm
  start that is already (nearly) converged stops after a few operator applications.
* **Thick restart**: the ``keep`` largest Ritz vectors (and their images, so no operator application is
  repeated) plus the last basis vector, which is orthogonal to them, start the next cycle.

Several independent problems (all layers of a network) advance in lock step: every cycle expands each
unfinished problem, then one batched eigen-decomposition and one host read decide for all of them.  The
operators need not have the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

__all__ = ["DEFAULT_BASIS_SIZE", "DEFAULT_KEEP", "EigenProblem", "TopEigenpair", "expand_basis", "top_eigenpairs",
           "unit_vector"]

# Basis size per cycle (ARPACK's ncv as the ARPACK path used it) and Ritz vectors kept at a restart;
# chosen by `python -m lipcert.bench converge` (docs/benchmarks.md 1.1).
DEFAULT_BASIS_SIZE = 32
DEFAULT_KEEP = 12
# The first cycle is also checked after this many steps: a warm start that is already converged (the epoch's
# bound after a few optimiser steps) then costs a few operator applications, not a whole cycle.
FIRST_CYCLE_CHECKS = (4, 8, 16)

Operator = Callable[[torch.Tensor], torch.Tensor]


def unit_vector(v: torch.Tensor) -> torch.Tensor:
    """v / ||v|| over all entries; a zero tensor stays zero (no epsilon: it would bias small norms low)."""
    n = torch.linalg.vector_norm(v)
    return v / torch.where(n > 0, n, torch.ones_like(n))


@dataclass
class EigenProblem:
    """One operator A (flat float64 vectors of length n in, same out) with its start vector (any non-zero)."""

    operator: Operator
    start: torch.Tensor


@dataclass(frozen=True)
class TopEigenpair:
    """Outcome for one problem: the top Ritz value theta <= lambda_max, its unit Ritz vector (on the operator's
    device), the number of operator applications, whether ||A y - theta y|| <= tol * theta was reached, and
    that relative residual."""

    value: float
    vector: torch.Tensor
    matvecs: int
    converged: bool
    relative_residual: float


def expand_basis(operator: Operator, basis: torch.Tensor, images: torch.Tensor, start: int, stop: int) -> None:
    """Grow an orthonormal basis from ``basis[:start + 1]`` to ``basis[:stop + 1]`` in place (no host reads).

    For j in [start, stop): images[j] = A basis[j]; w = images[j] orthogonalised twice against basis[:j + 1];
    basis[j + 1] = w / ||w||.  ``basis`` has shape (m + 1, n) and ``images`` (m, n), both float64 on the
    operator's device.  A breakdown (w = 0: the basis spans an invariant subspace) leaves a zero vector, which
    adds a zero row and column to H and changes no Ritz value.
    """
    for j in range(start, stop):
        w = operator(basis[j])
        images[j] = w
        q = basis[: j + 1]
        w = w - q.T @ (q @ w)
        w = w - q.T @ (q @ w)
        basis[j + 1] = unit_vector(w)


def _ritz(basis: torch.Tensor, images: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values (ascending) and coefficient vectors of the projected matrix V A V^T on basis[:size]."""
    h = basis[:size] @ images[:size].T
    return torch.linalg.eigh(0.5 * (h + h.T))


def top_eigenpairs(problems: Sequence[EigenProblem], tol: float, max_matvecs: int, *,
                   basis_size: int = DEFAULT_BASIS_SIZE, keep: int = DEFAULT_KEEP) -> list[TopEigenpair]:
    """Top eigenpair of every problem's PSD operator by thick-restart Lanczos, all problems in lock step.

    Stops a problem when its relative Ritz residual is at most ``tol`` or after ``max_matvecs`` operator
    applications (then ``converged`` is False).  ``basis_size`` is capped at n - 1 and ``keep`` at
    basis_size - 2 per problem.  Every tensor stays on the device of the problem's start vector; the
    only host reads are one small transfer per cycle (the top Ritz values and residual norms of all
    unfinished problems).
    """
    if not (tol > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_matvecs < 1:
        raise ValueError(f"max_matvecs must be >= 1, got {max_matvecs}")
    if basis_size < 3 or keep < 1:
        raise ValueError(f"basis_size must be >= 3 and keep >= 1, got {basis_size} and {keep}")
    states = []
    for p in problems:
        v0 = p.start.reshape(-1).to(torch.float64)
        n = v0.numel()
        if n < 2:
            raise ValueError(f"operator size must be >= 2 for Lanczos, got {n}; use a dense decomposition")
        m = min(basis_size, n - 1)
        basis = torch.zeros((m + 1, n), dtype=torch.float64, device=v0.device)
        basis[0] = unit_vector(v0)
        states.append({"op": p.operator, "basis": basis, "images": torch.zeros((m, n), dtype=torch.float64,
                                                                             device=v0.device),
                       "m": m, "k": min(keep, m - 2), "filled": 0, "matvecs": 0, "result": None,
                       "checks": [c for c in FIRST_CYCLE_CHECKS if c < m]})
    active = list(range(len(states)))
    while active:
        summaries = []
        for i in active:
            s = states[i]
            target = s["checks"].pop(0) if s["checks"] else s["m"]
            stop = min(target, s["filled"] + max_matvecs - s["matvecs"])
            expand_basis(s["op"], s["basis"], s["images"], s["filled"], stop)
            s["matvecs"] += stop - s["filled"]
            s["size"] = stop
            values, vectors = _ritz(s["basis"], s["images"], stop)
            theta, coeff = values[-1], vectors[:, -1]
            residual = coeff @ s["images"][:stop] - theta * (coeff @ s["basis"][:stop])
            s["values"], s["vectors"] = values, vectors
            summaries.append(torch.stack((theta, torch.linalg.vector_norm(residual))))
        host = torch.stack(summaries).cpu().tolist()  # the cycle's one host read, for all problems
        still = []
        for i, (theta, res) in zip(active, host):
            s = states[i]
            converged = res <= tol * theta or res == 0.0
            if converged or s["matvecs"] >= max_matvecs:
                coeff = s["vectors"][:, -1]
                vector = unit_vector(coeff @ s["basis"][: s["size"]])
                rel = res / theta if theta > 0 else (0.0 if res == 0.0 else math.inf)
                s["result"] = TopEigenpair(max(theta, 0.0), vector, s["matvecs"], bool(converged), rel)
                continue
            if s["size"] < s["m"]:  # an early check of the first cycle: keep expanding the same basis
                s["filled"] = s["size"]
            else:
                _restart(s)
            still.append(i)
        active = still
    return [s["result"] for s in states]


def _restart(s: dict) -> None:
    """Keep the k largest Ritz vectors and their images, then the last basis vector (orthogonal to them)."""
    k, m = s["k"], s["size"]
    coeff = s["vectors"][:, -k:].T  # (k, m), ascending order kept
    basis, images = s["basis"], s["images"]
    last = basis[m].clone()
    ritz_vectors = coeff @ basis[:m]
    ritz_images = coeff @ images[:m]
    basis[:k] = ritz_vectors
    images[:k] = ritz_images
    basis[k] = last
    basis[k + 1:] = 0.0
    s["filled"] = k
