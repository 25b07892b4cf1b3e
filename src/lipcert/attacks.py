"""Empirical L2 attack used to check certificates (supplement C: certified points must not be flipped).

``l2_pgd`` is projected gradient ascent on the margin violation max_{i != y} f_i(x') - f_y(x') over the
L2 ball ||x' - x||_2 <= eps (optionally intersected with a box data domain), with normalised-gradient
steps, random restarts and a best-iterate record.  A certified point (eq. (18)) can never be flipped by
it; a non-certified one often is, which is how the tests show the attack is strong.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["frozen_model", "margin_violation", "l2_pgd"]


@contextlib.contextmanager
def frozen_model(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with ``requires_grad=False`` on every parameter; both restored on exit, even on errors.

    Used by the attacks so that gradients w.r.t. the inputs never accumulate into parameter ``.grad``.
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)


def margin_violation(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """max_{i != y} f_i - f_y per sample (> 0 iff the label is strictly beaten, i.e. the attack succeeded)."""
    true = logits.gather(1, labels[:, None])
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - true[:, 0]


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v.flatten(1), dim=1).view(-1, *([1] * (v.dim() - 1)))


def _project(x: torch.Tensor, delta: torch.Tensor, eps: torch.Tensor, domain) -> torch.Tensor:
    """Project x + delta onto the L2 ball of radius eps around x, then into the box; returns the point."""
    scale = (eps / _per_sample_norm(delta).clamp_min(1e-30)).clamp(max=1.0)
    point = x + delta * scale
    if domain is not None:
        # x lies in the box, so clamping moves every coordinate towards x and stays inside the ball.
        point = point.clamp(domain[0], domain[1])
    return point


def l2_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    steps: int = 100,
    restarts: int = 1,
    step_size: float | None = None,
    domain: tuple[float, float] | None = None,
    targets: int = 9,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 PGD maximising max_{i != y} f_i - f_y in {x' : ||x' - x||_2 <= eps, x' in domain}.

    Used to check the eq. (18) certificates empirically.  ``eps`` is a scalar or a per-sample (N,)
    tensor.  The margin violation is a maximum of several class differences, so plain gradient ascent can
    stall at the wrong class's boundary; besides the untargeted run, ``targets`` targeted runs ascend
    f_t - f_y for the ``targets`` highest-scoring classes t != y at x (as APGD-T does).  Every run is
    repeated ``restarts`` times: the first starts at x, the others at a uniform random point of the ball
    (drawn with ``generator``).  Each step moves by ``step_size`` times the normalised gradient (default
    2.5 * eps / steps, per sample) and is projected back onto the ball and the box.  All runs are batched
    together (no per-sample loop).  The best iterate by margin violation over all runs and steps
    (including x itself) is returned with ``success`` = its violation > 0 (some other class strictly beats
    the label).  Parameters get no gradient (see :func:`frozen_model`).
    Returns (x_adv, success).
    """
    if steps < 1 or restarts < 1 or targets < 0:
        raise ValueError(
            f"steps and restarts must be >= 1 and targets >= 0, got steps={steps}, restarts={restarts}, targets={targets}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    if domain is not None:
        lo, hi = float(domain[0]), float(domain[1])
        if not lo < hi:
            raise ValueError(f"domain must be (lo, hi) with lo < hi, got {domain}")
        if x.numel() and (x.min() < lo or x.max() > hi):
            raise ValueError(f"x must lie inside the domain {domain}, got range [{float(x.min())}, {float(x.max())}]")
        domain = (lo, hi)
    n = x.shape[0]
    shape = (n,) + (1,) * (x.dim() - 1)
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps_t.dim() == 0:
        eps_t = eps_t.expand(n)
    if tuple(eps_t.shape) != (n,):
        raise ValueError(f"eps must be a scalar or have shape ({n},), got {tuple(eps_t.shape)}")
    if (eps_t < 0).any() or not torch.isfinite(eps_t).all():
        raise ValueError("eps must be finite and non-negative")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    x = x.detach()
    y = y.to(x.device).long()

    with frozen_model(model):
        with torch.no_grad():
            clean_logits = model(x)
        n_targets = min(targets, clean_logits.shape[1] - 1)
        # runs: index 0 is untargeted (-1), then the n_targets best other classes at x
        ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        run_targets = torch.cat([torch.full((n, 1), -1, device=x.device), ranked[:, :n_targets]], dim=1)
        runs = run_targets.shape[1]
        # replicate every sample once per run: replica r * n + s is run r of sample s
        xr = x.repeat(runs, *([1] * (x.dim() - 1)))
        yr = y.repeat(runs)
        tr = run_targets.T.reshape(-1)
        eps_r = eps_t.repeat(runs).reshape((-1,) + shape[1:])
        alpha = 2.5 * eps_r / steps if step_size is None else torch.full_like(eps_r, float(step_size))
        rshape = eps_r.shape
        untargeted = tr < 0
        safe_t = torch.where(untargeted, yr, tr)

        def objective(logits):
            targeted = logits.gather(1, safe_t[:, None])[:, 0] - logits.gather(1, yr[:, None])[:, 0]
            return torch.where(untargeted, margin_violation(logits, yr), targeted)

        best_x = x.clone()
        best_violation = margin_violation(clean_logits, y)

        def keep_best(points, logits):
            nonlocal best_x, best_violation
            violation = margin_violation(logits, yr).view(runs, n)
            run_best, which = violation.max(dim=0)
            candidate = points.view(runs, *x.shape)[which, torch.arange(n, device=x.device)]
            better = run_best > best_violation
            best_violation = torch.where(better, run_best, best_violation)
            best_x = torch.where(better.view(shape), candidate, best_x)

        for restart in range(restarts):
            if restart == 0:
                delta = torch.zeros_like(xr)
            else:
                direction = torch.randn(xr.shape, generator=generator, dtype=x.dtype).to(x.device)
                direction = direction / _per_sample_norm(direction).clamp_min(1e-30)
                u = torch.rand(rshape, generator=generator, dtype=x.dtype).to(x.device)
                delta = direction * eps_r * u.pow(1.0 / max(1, x[0].numel()))
            x_adv = _project(xr, delta, eps_r, domain)
            for step in range(steps + 1):
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    logits = model(x_adv)
                    if step < steps:
                        (grad,) = torch.autograd.grad(objective(logits).sum(), x_adv)
                with torch.no_grad():
                    keep_best(x_adv.detach(), logits.detach())
                    if step < steps:
                        direction = grad / _per_sample_norm(grad).clamp_min(1e-30)
                        x_adv = _project(xr, x_adv.detach() + alpha * direction - xr, eps_r, domain)
    return best_x.detach(), best_violation > 0
