"""Certification with the local Lipschitz bound (seed 004 section 5, appendix B; issue 15).

Per radius eps a correctly classified sample counts when its worst-case logits (eq. (24)) still have the label as
arg max: z_y > z_i + T_i for every i != y, T from the BCP ball ∩ box of the penultimate features with the local
radius eps * prod_l sigma_l(x) (for Local-Lip-G's ⊥ logit the condition is the same).  Made sound thus:

* the boxes are propagated in float64 with the *converged* global norms (the upper bounds the global certificate
  uses, :meth:`lipcert.classifier.LipschitzClassifier.converge`);
* each masked norm sigma_l(x) is converged per sample by float64 Lanczos to a relative Ritz residual of
  tol / L (tol = 1e-9, the global bound's rule) and capped by the global norm; a sample that does not converge
  within the iteration cap uses the global norm (:func:`lipcert.local_lipschitz.local_bound.converged_local_norms`);
* T is the Lagrangian dual value at the converged multiplier, an upper bound of the maximum for any multiplier
  (:func:`lipcert.local_lipschitz.worst_logits.worst_logit_offsets`).

The paper's shortcut: the global certificate (eq. (18)) decides first; PGD-100 (ℓ2, step eps/4, one random start,
as seed 004's evaluation) runs on the rest, and a sample it breaks cannot be certified; only the remaining samples
get the local bound.  ``details`` of the result records, per radius, the PGD accuracy, how many samples each stage
decided and the local bound's time, with the estimated time the shortcut saved (the local seconds per sample times
the samples it skipped), the Lanczos operator applications and how many (sample, layer) norms fell back to the
global norm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .attacks import l2_pgd
from .certification import CertificationResult, certification_logits, certification_tensors, certify
from .devices import full_precision
from .local_lipschitz import converged_local_norms, penultimate_radius, propagate_bounds, worst_logit_offsets
from .local_lipschitz.local_bound import LocalNormReport

__all__ = ["certify_local", "local_certified"]

PGD_STEPS = 100


def local_certified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, tol: float = 1e-9,
                    clip_iter: int | None = None, max_matvecs: int = 4000,
                    report: LocalNormReport | None = None) -> torch.Tensor:
    """(N,) bool: the sound local-bound certificate at radius ``eps`` for model inputs ``x`` with labels ``y``
    (the model must be converged; ``clip_iter`` None: as many multiplier steps as penultimate features + 1, which
    reaches the exact maximum; ``report`` collects the operator applications and the samples that fell back to the
    global norm, per layer)."""
    layers = model.spectral_layers()
    global_sigmas = [layer.converged_sigma() for layer in layers]
    with torch.no_grad(), full_precision():
        bounds = propagate_bounds(model.body, x, eps, sigmas=global_sigmas, dtype=torch.float64)
        sigmas = converged_local_norms(bounds, global_sigmas, tol=tol, max_matvecs=max_matvecs, report=report)
        w = model.head_weight().detach().to(torch.float64)
        b = model.head.bias.detach().to(torch.float64) if model.head.bias is not None else 0.0
        logits = bounds.features @ w.T + b
        steps = bounds.features.shape[1] + 1 if clip_iter is None else clip_iter
        offsets = worst_logit_offsets(bounds.features, bounds.lower, bounds.upper, penultimate_radius(bounds, sigmas),
                                      w, y, steps)
        worst = (logits + offsets).scatter(1, y[:, None], float("-inf")).amax(1)
        return (logits.argmax(1) == y) & (logits.gather(1, y[:, None])[:, 0] > worst)


def certify_local(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps_list: Sequence[float], *,
                  batch_size: int = 1000, transform: Callable | None = None,
                  domain: tuple[float, float] | None = None, local_batch: int = 32,
                  generator: torch.Generator | None = None) -> CertificationResult:
    """Clean accuracy and CRA per radius with the global certificate, then PGD-100, then the local bound (module
    docstring); returns the global result with the combined CRA and the ``details``."""
    logits = certification_logits(model, inputs, batch_size, transform)
    k_pairwise = model.pairwise_lipschitz()
    result = certify(logits, labels, k_pairwise, eps_list)
    labels = labels.to(logits.device).long()
    _, correct, certified, _ = certification_tensors(logits, labels, k_pairwise, result.eps_list)
    prepared = (lambda t: t) if transform is None else transform
    gen = generator or torch.Generator().manual_seed(0)
    combined, details = [], {"pgd_accuracy": {}, "global_certified": {}, "pgd_broken": {}, "local_checked": {},
                             "local_certified": {}, "local_seconds": {}, "seconds_saved_estimate": {},
                             "local_matvecs": {}, "global_norm_fallbacks": {}}
    for k, eps in enumerate(result.eps_list):
        cert = certified[k].clone()
        rest = torch.nonzero(correct & ~cert).flatten()
        robust = correct.clone()
        for start in range(0, rest.numel(), batch_size):
            idx = rest[start:start + batch_size]
            x = prepared(inputs[idx.to(inputs.device)]).to(logits.device)
            _, broken = l2_pgd(model, x, labels[idx], eps, steps=PGD_STEPS, restarts=2, step_size=eps / 4,
                               domain=domain, targets=0, generator=gen)
            robust[idx] = ~broken
        todo = torch.nonzero(robust & ~cert).flatten()
        t0 = time.perf_counter()
        report = LocalNormReport()
        for start in range(0, todo.numel(), local_batch):
            idx = todo[start:start + local_batch]
            x = prepared(inputs[idx.to(inputs.device)]).to(logits.device)
            cert[idx] = local_certified(model, x, labels[idx], eps, report=report)
        seconds = time.perf_counter() - t0
        n_todo = int(todo.numel())
        skipped = int(correct.sum()) - n_todo
        key = f"{eps:.6g}"
        details["pgd_accuracy"][key] = float(robust.sum()) / max(1, labels.numel())
        details["global_certified"][key] = int(certified[k].sum())
        details["pgd_broken"][key] = int((correct & ~robust).sum())
        details["local_checked"][key] = n_todo
        details["local_certified"][key] = int(cert.sum()) - int(certified[k].sum())
        details["local_seconds"][key] = seconds
        details["seconds_saved_estimate"][key] = seconds / n_todo * skipped if n_todo else 0.0
        details["local_matvecs"][key] = sum(report.matvecs)
        details["global_norm_fallbacks"][key] = sum(report.unconverged)  # sample-layers that used the global norm
        combined.append(float(cert.sum()) / max(1, labels.numel()))
    return CertificationResult(**{**{f: getattr(result, f) for f in result.__dataclass_fields__},
                                  "certified_accuracy": tuple(combined), "details": details})
