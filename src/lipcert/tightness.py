"""Empirical Lipschitz lower bound and tightness (CLL supplement C, eqs. (19)-(20)).

For a pair of inputs (x1, x2) and j = argmax_i f_i(x1),

    L(x1, x2) = max_i |(f_j - f_i)(x1) - (f_j - f_i)(x2)| / ||x1 - x2||_2  <=  K_ji <= K(f)   (eq. (20)),

so the largest L found by perturbing both inputs is a lower bound K_lobo on the true Lipschitz constant,
and tightness = K_lobo / K(f) (reported in percent by the paper) is a lower bound on the true tightness
of the upper bound K(f).  Protocol (supplement C): 4000 pairs from the training set, Adam with lr 3e-4 on
both inputs for 1000 steps, clamping into the data domain, keeping the largest value over all steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lipcert.attacks import frozen_model
from lipcert.devices import full_precision

__all__ = ["DEFAULT_N_PAIRS", "TightnessResult", "attack_step", "pair_quotients", "sample_pairs", "tightness_attack"]

# P in supplement C: "We sample 4000 pairs from the training dataset".
DEFAULT_N_PAIRS = 4000
# Only guards the denominator: a pair at zero distance has a zero numerator too (same input, same
# output), so it contributes exactly 0 instead of 0/0.
_DISTANCE_FLOOR = 1e-12
# Pairs that start at identical points are separated by a random offset of this L2 norm.
_SEPARATION_NORM = 1e-3


@dataclass(frozen=True, eq=False)
class TightnessResult:
    """Outcome of :func:`tightness_attack` (supplement C, eq. (19)).

    ``running_max[t]`` is the largest quotient found over all pairs among the points after t Adam steps
    (t = 0 is the starting pairs), cumulatively maximised, so ``running_max[-1] == lower_bound``.
    ``pair_quotients`` holds each pair's best quotient.  ``tightness = lower_bound / global_lipschitz``.
    """

    lower_bound: float
    global_lipschitz: float
    tightness: float
    running_max: np.ndarray
    pair_quotients: np.ndarray
    n_pairs: int
    steps: int
    lr: float
    elapsed_s: float
    pair_steps_per_second: float

    def summary(self) -> dict:
        """JSON-serialisable summary for reports and the benchmark."""
        return {
            "lower_bound": self.lower_bound,
            "global_lipschitz": self.global_lipschitz,
            "tightness": self.tightness,
            "n_pairs": self.n_pairs,
            "steps": self.steps,
            "lr": self.lr,
            "elapsed_s": self.elapsed_s,
            "pair_steps_per_second": self.pair_steps_per_second,
        }


def sample_pairs(
    x: torch.Tensor, n_pairs: int = DEFAULT_N_PAIRS, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw 2 * n_pairs distinct samples of ``x`` (one randperm) and split them into (x1, x2) (supplement C).

    The paper's P = 4000 pairs.  Raises ValueError if ``x`` holds fewer than 2 * n_pairs samples.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if x.shape[0] < 2 * n_pairs:
        raise ValueError(f"need at least 2 * n_pairs = {2 * n_pairs} samples to draw {n_pairs} pairs, got {x.shape[0]}")
    perm = torch.randperm(x.shape[0], generator=generator)[: 2 * n_pairs].to(x.device)
    return x[perm[:n_pairs]], x[perm[n_pairs:]]


def pair_quotients(logits1: torch.Tensor, logits2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Per-pair quotient of eq. (19): max_i |(f_j - f_i)(x1) - (f_j - f_i)(x2)| / ||x1 - x2||_2, j = argmax f(x1).

    Differentiable in the logits and inputs (j is treated as a constant).  The denominator is clamped at a
    tiny floor only to avoid 0/0: a zero-distance pair has a zero numerator and contributes 0.
    """
    j = logits1.detach().argmax(dim=1, keepdim=True)
    diff1 = logits1.gather(1, j) - logits1  # (f_j - f_i)(x1)
    diff2 = logits2.gather(1, j) - logits2  # (f_j - f_i)(x2)
    numerator = (diff1 - diff2).abs().amax(dim=1)
    squared_distance = (x1 - x2).flatten(1).pow(2).sum(dim=1)
    return numerator / squared_distance.clamp_min(_DISTANCE_FLOOR**2).sqrt()


def _attack_chunk(model, x1, x2, steps, lr, domain, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam ascent on the summed quotients of one chunk; returns (per-step max (steps+1,), per-pair max) on the CPU.

    The step loop (:func:`attack_step`) reads nothing back to the host; the maxima are copied once at the end."""
    x1 = x1.detach().clone()
    x2 = x2.detach().clone()
    same = (x1 - x2).flatten(1).abs().amax(dim=1) == 0
    if same.any():
        offset = torch.randn(x2[same].shape, generator=generator, dtype=x2.dtype).to(x2.device)
        norms = torch.linalg.vector_norm(offset.flatten(1), dim=1).clamp_min(1e-30)
        offset = offset * (_SEPARATION_NORM / norms).view(-1, *([1] * (offset.dim() - 1)))
        x2[same] = x2[same] + offset
        if domain is not None:
            # moving away from a boundary point: reflect the offset where clamping would undo it
            x2[same] = torch.where(
                (x2[same] < domain[0]) | (x2[same] > domain[1]), x2[same] - 2 * offset, x2[same]
            ).clamp(domain[0], domain[1])
    x1.requires_grad_(True)
    x2.requires_grad_(True)
    optimizer = torch.optim.Adam([x1, x2], lr=lr)
    step_max = torch.empty(steps + 1, dtype=torch.float64, device=x1.device)
    pair_max = torch.zeros(x1.shape[0], dtype=torch.float64, device=x1.device)
    for t in range(steps + 1):
        pair_max = attack_step(model, optimizer, x1, x2, step_max, pair_max, t, t < steps, domain)
    return step_max.cpu(), pair_max.cpu()


def attack_step(model, optimizer: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor, step_max: torch.Tensor,
                pair_max: torch.Tensor, t: int, ascend: bool, domain: tuple[float, float] | None) -> torch.Tensor:
    """One step of the attack (eq. (19)): record the quotients of the current points in ``step_max[t]`` and the
    returned per-pair maxima, then (``ascend``) one Adam step on both inputs and the clamp into ``domain``."""
    with torch.enable_grad():
        quotients = pair_quotients(model(x1), model(x2), x1, x2)
    with torch.no_grad():
        q = quotients.detach().to(torch.float64)
        pair_max = torch.maximum(pair_max, q)
        step_max[t] = q.max()
    if ascend:
        optimizer.zero_grad(set_to_none=True)
        (-quotients.sum()).backward()
        optimizer.step()
        if domain is not None:
            with torch.no_grad():
                x1.clamp_(domain[0], domain[1])
                x2.clamp_(domain[0], domain[1])
    return pair_max


def tightness_attack(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    *,
    steps: int = 1000,
    lr: float = 3e-4,
    domain: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> TightnessResult:
    """Lower Lipschitz bound K_lobo and tightness K_lobo / K(f) (supplement C, eqs. (19)-(20)).

    Both inputs of every pair are optimised with Adam (``lr``, 3e-4 in the paper) for ``steps`` steps
    (1000 in the paper) to maximise the sum over pairs of the eq. (19) quotient, with j = argmax f(x1)
    recomputed at every step; after each step the inputs are clamped into ``domain`` (None: no clamp).
    The running maximum over all steps (including the starting points) and pairs is the lower bound;
    K(f) = ``model.global_lipschitz()`` (the converged bound).  Pairs are processed in chunks of
    ``batch_size`` (default: all at once); chunks are independent because Adam acts elementwise.
    Pairs whose two points are identical are first separated by a random offset of norm 1e-3 drawn with
    ``generator`` (otherwise their gradient is 0 and they stay at 0).  Model parameters get no gradient
    (``requires_grad`` is switched off during the attack and restored afterwards, even on errors).
    """
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    if x1.dim() < 2 or x1.shape[0] < 1:
        raise ValueError(f"x1 and x2 must be batches (pairs, ...) with at least one pair, got shape {tuple(x1.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}")
    if domain is not None:
        lo, hi = float(domain[0]), float(domain[1])
        if not lo < hi:
            raise ValueError(f"domain must be (lo, hi) with lo < hi, got {domain}")
        domain = (lo, hi)
        for name, x in (("x1", x1), ("x2", x2)):
            if x.min() < lo or x.max() > hi:
                raise ValueError(
                    f"{name} must lie inside the domain {domain}, got range [{float(x.min())}, {float(x.max())}]"
                )
    global_lipschitz = float(model.global_lipschitz())
    if not global_lipschitz > 0:
        raise ValueError(f"model.global_lipschitz() must be positive to form a tightness ratio, got {global_lipschitz}")

    n_pairs = x1.shape[0]
    chunk = n_pairs if batch_size is None else batch_size
    step_maxima, pair_maxima = [], []
    start = time.perf_counter()
    with frozen_model(model), full_precision():
        for first in range(0, n_pairs, chunk):
            step_max, pair_max = _attack_chunk(
                model, x1[first:first + chunk], x2[first:first + chunk], steps, lr, domain, generator
            )
            step_maxima.append(step_max)
            pair_maxima.append(pair_max)
    elapsed = time.perf_counter() - start

    running_max = torch.stack(step_maxima).amax(dim=0).cummax(dim=0).values.numpy()
    lower_bound = float(running_max[-1])
    return TightnessResult(
        lower_bound=lower_bound,
        global_lipschitz=global_lipschitz,
        tightness=lower_bound / global_lipschitz,
        running_max=running_max,
        pair_quotients=torch.cat(pair_maxima).numpy(),
        n_pairs=n_pairs,
        steps=steps,
        lr=lr,
        elapsed_s=elapsed,
        pair_steps_per_second=n_pairs * steps / elapsed if elapsed > 0 else float("inf"),
    )
