"""SciPy's ARPACK on a layer's W^T W: the independent oracle for :mod:`lipcert.lanczos` (tests and benchmark only).

This was the converge path before the pure-torch Lanczos (issue 12): implicitly restarted Lanczos
(``scipy.sparse.linalg.eigsh``, ``which="LA"``, ``ncv=32``), stopping when the Ritz residual is below ``tol``
times the Ritz value.  It runs on the CPU (operator inputs are NumPy arrays), so it is used only to check and
to time the library's own solver; nothing in training, certification or tightness imports it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .power_iteration import LayerConvergence, SpectralConv2d, SpectralLinear

__all__ = ["arpack_converge"]


@torch.no_grad()
def arpack_converge(layer: SpectralConv2d | SpectralLinear, tol: float = 1e-9, max_iter: int = 100_000,
                    ncv: int = 32) -> LayerConvergence:
    """||W||_2 of ``layer`` in float64 by ARPACK, warm-started from its ``pi_vector`` (on a CPU copy).

    The layer is not modified (no write-back, nothing frozen).  ``iterations`` counts W^T W applications.
    """
    w = layer.weight.detach().to("cpu", torch.float64)
    shape = tuple(layer.pi_vector.shape)
    n = math.prod(shape)
    count = [0]

    def gram_matvec(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape(shape)
        return layer.apply_adjoint(layer.apply_operator(t, w), w).reshape(-1).numpy()

    op = LinearOperator((n, n), matvec=gram_matvec, dtype=np.float64)
    v0 = layer.pi_vector.detach().to("cpu", torch.float64).reshape(-1).numpy()
    if not np.any(v0):
        v0 = None
    try:
        vals, vecs = eigsh(op, k=1, which="LA", tol=tol, v0=v0, ncv=min(n - 1, ncv), maxiter=max_iter)
        converged = True
    except ArpackNoConvergence as err:
        if len(err.eigenvalues) == 0:
            return LayerConvergence(math.nan, count[0], False, math.inf)
        vals, vecs, converged = err.eigenvalues, err.eigenvectors, False
    vector = torch.from_numpy(np.ascontiguousarray(vecs[:, 0])).reshape(shape)
    vector = vector / torch.linalg.vector_norm(vector)
    sigma = float(torch.linalg.vector_norm(layer.apply_operator(vector, w)))
    sigma = max(sigma, math.sqrt(max(float(vals[0]), 0.0)))
    return LayerConvergence(sigma, count[0], converged, tol if converged else math.inf)
