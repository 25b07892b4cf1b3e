"""Certified robust accuracy from pairwise Lipschitz constants (CLL supplement C, eq. (18)).

With j = argmax_i f_i(x) the predicted class and K_ji the Lipschitz constant of f_j - f_i, an input is
certified eps-robust (L2) iff

    f_j(x) - f_i(x) > eps * K_ji   for every i != j            (strict, eq. (18)),

and it counts towards the certified robust accuracy (CRA) iff it is also correctly classified (j == y).
The certified radius of x is min_{i != j} (f_j - f_i) / K_ji.  All arithmetic is done in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .devices import full_precision
from .run_record import PAPER_RADII
from .tensor_checks import require

__all__ = [
    "DEFAULT_EPS_LIST",
    "RADIUS_QUANTILE_LEVELS",
    "CertificationResult",
    "certification_logits",
    "certification_tensors",
    "check_certification_inputs",
    "certified_margins",
    "certify",
    "certify_model",
]

# The L2 budgets the paper reports CRA at (Tables 1 and 2: 36/255, 72/255, 108/255).
DEFAULT_EPS_LIST: tuple[float, ...] = PAPER_RADII
# Quantiles reported for the certified radius distribution (misclassified samples count as radius 0).
RADIUS_QUANTILE_LEVELS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
_HISTOGRAM_BINS = 20


@dataclass(frozen=True, eq=False)
class CertificationResult:
    """Clean accuracy, CRA per budget and the certified radius distribution (supplement C, eq. (18)).

    Accuracies are fractions in [0, 1].  ``radii`` holds one certified radius per sample (0 for
    misclassified samples, +inf where every K_ji of the predicted class is 0 and all margins are
    positive).  The histogram covers [0, max finite radius] in ``_HISTOGRAM_BINS`` bins; infinite radii
    are counted in the last bin.  ``global_lipschitz`` is K(f) = max_ij K_ij.  ``details``: what a certificate
    adds (e.g. the local certificate's PGD accuracy and how many samples needed the local bound), JSON values.
    """

    n_samples: int
    clean_accuracy: float
    eps_list: tuple[float, ...]
    certified_accuracy: tuple[float, ...]
    radii: np.ndarray
    predictions: np.ndarray
    correct: np.ndarray
    radius_quantile_levels: tuple[float, ...]
    radius_quantiles: tuple[float, ...]
    radius_histogram_counts: np.ndarray
    radius_histogram_edges: np.ndarray
    global_lipschitz: float
    details: dict = field(default_factory=dict)

    def cra(self, eps: float) -> float:
        """CRA at one of the budgets this result was computed for (eq. (18))."""
        for e, value in zip(self.eps_list, self.certified_accuracy):
            if e == eps:
                return value
        raise ValueError(f"eps={eps!r} was not certified; available eps values: {list(self.eps_list)}")

    def summary(self) -> dict:
        """JSON-serialisable summary (no per-sample arrays) for reports and metric logging."""
        return {
            "n_samples": self.n_samples,
            "clean_accuracy": self.clean_accuracy,
            "certified_accuracy": {f"{e:.6g}": c for e, c in zip(self.eps_list, self.certified_accuracy)},
            "radius_quantiles": {f"{q:g}": r for q, r in zip(self.radius_quantile_levels, self.radius_quantiles)},
            "radius_histogram_counts": [int(c) for c in self.radius_histogram_counts],
            "radius_histogram_edges": [float(e) for e in self.radius_histogram_edges],
            "global_lipschitz": self.global_lipschitz,
            **({"details": self.details} if self.details else {}),
        }


def _check_logits_and_constants(logits: torch.Tensor, k_pairwise: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (samples, classes), got shape {tuple(logits.shape)}")
    c = logits.shape[1]
    if c < 2:
        raise ValueError(f"certification needs at least 2 classes, got logits of shape {tuple(logits.shape)}")
    if tuple(k_pairwise.shape) != (c, c):
        raise ValueError(
            f"k_pairwise must have shape ({c}, {c}) to match logits with {c} classes, "
            f"got {tuple(k_pairwise.shape)}"
        )
    # queued on the device, not read back (lipcert.tensor_checks)
    require(torch.isfinite(k_pairwise).all(), "k_pairwise contains non-finite values; expected finite Lipschitz constants")
    require((k_pairwise >= 0).all(), "k_pairwise must be non-negative Lipschitz constants")


def _predicted_margins(logits: torch.Tensor, k_pairwise: torch.Tensor):
    """float64 margins f_j - f_i and constants K_ji for the predicted class j of every sample."""
    f = logits.detach().to(torch.float64)
    k = k_pairwise.detach().to(device=f.device, dtype=torch.float64)
    pred = f.argmax(dim=1)
    margins = f.gather(1, pred[:, None]) - f  # (N, C), f_j - f_i
    k_rows = k[pred]  # (N, C), K_ji
    others = torch.ones_like(margins, dtype=torch.bool)
    others[torch.arange(f.shape[0], device=f.device), pred] = False  # i != j
    return pred, margins, k_rows, others


def certified_margins(logits: torch.Tensor, k_pairwise: torch.Tensor) -> torch.Tensor:
    """Certified L2 radius per sample, radius = min_{i != j} (f_j - f_i) / K_ji (supplement C, eq. (18)).

    j is the predicted class (argmax of the logits), computed in float64.  A pair with K_ji == 0 has
    radius +inf if f_j > f_i and 0 otherwise.  The label is not used here (see :func:`certify`).
    Returns a float64 tensor of shape (N,).
    """
    _check_logits_and_constants(logits, k_pairwise)
    _, margins, k_rows, others = _predicted_margins(logits, k_pairwise)
    positive_k = k_rows > 0
    pair_radius = torch.where(
        positive_k,
        margins / torch.where(positive_k, k_rows, torch.ones_like(k_rows)),
        torch.where(margins > 0, torch.full_like(margins, float("inf")), torch.zeros_like(margins)),
    )
    pair_radius = torch.where(others, pair_radius, torch.full_like(pair_radius, float("inf")))
    return pair_radius.amin(dim=1)


def _as_eps_tuple(eps_list: Sequence[float]) -> tuple[float, ...]:
    eps = tuple(float(e) for e in eps_list)
    if not eps:
        raise ValueError("eps_list is empty; expected at least one L2 budget")
    bad = [e for e in eps if not np.isfinite(e) or e < 0]
    if bad:
        raise ValueError(f"eps_list must hold finite non-negative budgets, got {bad}")
    return eps


def certification_tensors(logits: torch.Tensor, labels: torch.Tensor, k_pairwise: torch.Tensor,
                          eps: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The device part of :func:`certify` (eq. (18)), without any host read.

    Returns the predictions (N,), ``correct`` (N,), ``certified`` (E, N) (correct and f_j - f_i > eps K_ji for
    every i != j, strict) and the radii (N,), 0 for misclassified samples, all on the logits' device.
    """
    pred, margins, k_rows, others = _predicted_margins(logits, k_pairwise)
    correct = pred == labels.long()
    eps_t = torch.tensor(tuple(eps), dtype=torch.float64, device=margins.device)[:, None, None]
    beats_all = ((margins[None] > eps_t * k_rows[None]) | ~others[None]).all(dim=2)  # (E, N)
    certified = beats_all & correct[None]
    radii = certified_margins(logits, k_pairwise)
    return pred, correct, certified, torch.where(correct, radii, torch.zeros_like(radii))


def certify(
    logits: torch.Tensor,
    labels: torch.Tensor,
    k_pairwise: torch.Tensor,
    eps_list: Sequence[float] = DEFAULT_EPS_LIST,
) -> CertificationResult:
    """Clean accuracy and certified robust accuracy (CRA) for every budget in ``eps_list`` (eq. (18)).

    A sample counts towards CRA at eps iff argmax f == label and f_j - f_i > eps * K_ji for every
    i != j (strict inequality, evaluated directly rather than through the radius so that a margin of
    exactly eps * K_ji is never certified).  All budgets are evaluated in one vectorised pass.
    """
    _check_logits_and_constants(logits, k_pairwise)
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({logits.shape[0]},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    n, c = logits.shape
    labels = labels.to(logits.device)
    if n:
        require(((labels >= 0) & (labels < c)).all(), f"labels must lie in [0, {c - 1}]")
    eps = _as_eps_tuple(eps_list)
    pred, correct, certified, radii = certification_tensors(logits, labels, k_pairwise, eps)
    denom = max(n, 1)
    # the one host transfer of a certification: counts, then the per-sample arrays
    tallies = torch.cat((correct.sum()[None], certified.sum(dim=1))).tolist()
    cra = tuple(float(v) / denom for v in tallies[1:])
    radii = radii.cpu().numpy()
    if n:
        quantiles = tuple(float(q) for q in np.quantile(radii, RADIUS_QUANTILE_LEVELS))
        finite = radii[np.isfinite(radii)]
        top = float(finite.max()) if finite.size else 0.0
        edges = np.linspace(0.0, top if top > 0 else 1.0, _HISTOGRAM_BINS + 1)
        counts, edges = np.histogram(np.minimum(radii, edges[-1]), bins=edges)
    else:
        quantiles = tuple(float("nan") for _ in RADIUS_QUANTILE_LEVELS)
        edges = np.linspace(0.0, 1.0, _HISTOGRAM_BINS + 1)
        counts = np.zeros(_HISTOGRAM_BINS, dtype=np.int64)

    return CertificationResult(
        n_samples=n,
        clean_accuracy=float(tallies[0]) / denom,
        eps_list=eps,
        certified_accuracy=cra,
        radii=radii,
        predictions=pred.cpu().numpy(),
        correct=correct.cpu().numpy(),
        radius_quantile_levels=RADIUS_QUANTILE_LEVELS,
        radius_quantiles=quantiles,
        radius_histogram_counts=counts,
        radius_histogram_edges=edges,
        global_lipschitz=float(k_pairwise.detach().to(torch.float64).max()),
    )


def certify_model(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    eps_list: Sequence[float] = DEFAULT_EPS_LIST,
    batch_size: int = 1000,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> CertificationResult:
    """Certify ``model`` on (inputs, labels) with its converged pairwise constants (supplement C, eq. (18)).

    Uses ``model.pairwise_lipschitz()``, the frozen float64 bound K_ij = K_body * ||W_i - W_j||; that call
    raises if the model has not been converged (``model.converge()``), and this function lets it raise.
    The logits are computed in eval mode without gradients, ``batch_size`` inputs at a time; the model's
    train/eval mode is restored afterwards.  K(f) = max_ij K_ij is returned as ``global_lipschitz``.
    ``transform`` (e.g. uint8 images to [0, 1] floats) is applied per batch, so stored inputs are never converted
    as a whole (the training set of Tiny-ImageNet would take 4.9 GB as float32).
    """
    check_certification_inputs(inputs, labels, batch_size)
    k_pairwise = model.pairwise_lipschitz()
    return certify(certification_logits(model, inputs, batch_size, transform), labels, k_pairwise, eps_list)


def check_certification_inputs(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
    """The argument checks of a model certification (:func:`certify_model`, :func:`lipcert.methods.certify_with`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if inputs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"inputs and labels must have the same number of samples, got {inputs.shape[0]} and {labels.shape[0]}"
        )


def certification_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1000,
                         transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Logits for certification: eval mode, no gradients, TF32 off (:func:`lipcert.devices.full_precision`),
    ``batch_size`` inputs at a time (each passed through ``transform`` first, if given); the model's train/eval
    mode is restored afterwards.  No host reads."""
    def prepared(chunk):
        return chunk if transform is None else transform(chunk)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), full_precision():
            return torch.cat(
                [model(prepared(inputs[start:start + batch_size])) for start in range(0, inputs.shape[0], batch_size)]
            ) if inputs.shape[0] else model(prepared(inputs))
    finally:
        model.train(was_training)
