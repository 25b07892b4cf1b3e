"""Local-Lip training objectives (Huang et al., NeurIPS 2021; seed 004): Local-Lip-B and Local-Lip-G.

One step (seed 004 Algorithm 1, appendix B): BCP boxes of every layer over the ball of the scheduled eps (ball
radius from the layers' warm-started global power iterations, :mod:`lipcert.local_lipschitz.propagation`), the
masked per-sample norms from the previous epoch's vectors (or random starts), the local radius into the last layer,
and the worst-logit offsets T (eq. (24), :func:`lipcert.local_lipschitz.worst_logits.worst_logit_offsets`); then

* ``mode: bcp`` (Local-Lip-B): the mixed loss (25) (1 - lambda) CE(z) + lambda CE(z*), z* = z + T;
* ``mode: gloro`` (Local-Lip-G): CE over [z | max_{i != y} (z_i + T_i)] (GloRo's ⊥ logit from the same bound, box
  kept, as seed 004's ``--gloro`` mode; no mixture, as that code);

plus lambda_sparse times the sparsity loss (12) (per layer the mean of relu(UB) + lambda_theta relu(theta - LB) for
ReLUθ, relu(UB_min - b) + lambda_theta relu(a - LB_max) for clipped MaxMin, summed over layers; for plain ReLU the
first term only).

Schedules, as fractions of the run's iterations (so every scale keeps table 3's proportions): clean warm-up
(``warmup``: 20 of 800 epochs on CIFAR), then eps (eq. (28)) and lambda (eq. (29)) ramp linearly over ``ramp``
(400 of 800 epochs) and stay.  ``ramp_overshoot_eps`` (default off) reproduces seed 004's code instead
(``Local_bound.train``): per-epoch values plus, within each epoch, i/I of one epoch's slope computed with that
(test) eps, continued after the ramp (CIFAR: eps_train + 3.5e-4 and a mixture weight of CE(z) down to -0.0025).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from lipcert.activations import ClippedMaxMin, ReLUTheta
from lipcert.config_validation import check_range
from lipcert.local_lipschitz import (PerSampleVectors, gloro_bottom_logit, masked_norms, penultimate_radius,
                                     propagate_bounds, worst_logit_offsets)
from lipcert.local_lipschitz.propagation import weight_layers

__all__ = ["LocalLipLossConfig", "LocalLipState", "TrainingBatch", "local_lip_loss", "local_lip_schedule",
           "local_lip_state", "sparsity_loss"]


@dataclass(frozen=True)
class LocalLipLossConfig:
    """The keys of loss ``local_lip`` (seed 004 table 3; the power iterations per step are the common ``power_iter``).

    ``eps``: eps_train, the end of the ramp (28) (CIFAR 0.1551 for certification at 36/255 = 0.141); ``mode``:
    ``bcp`` (Local-Lip-B) or ``gloro`` (Local-Lip-G); ``warmup`` / ``ramp``: fractions of the run (clean epochs,
    then the ramp of eps and of the mixture); ``vectors``: ``saved`` (per-sample warm starts on disk, ``vector_dtype``)
    or ``random`` (fresh random starts every step: seed 004 table 1 needs more iterations then); ``clip_iter``: the
    iterations of the worst-logit multiplier search (the code's ``opt_iter``: 1 on CIFAR, 10 on MNIST);
    ``sparsity`` / ``sparsity_theta``: lambda_sparse and lambda_theta of (26); ``ramp_overshoot_eps``: see the
    module docstring (None: off)."""

    eps: float | None = None
    mode: Literal["bcp", "gloro"] = "bcp"
    warmup: float = 0.0
    ramp: float = 0.5
    vectors: Literal["saved", "random"] = "saved"
    vector_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    clip_iter: int = 1
    sparsity: float = 0.0
    sparsity_theta: float = 0.0
    ramp_overshoot_eps: float | None = None

    def __post_init__(self) -> None:
        if self.eps is None:
            raise ValueError("loss.eps is required for loss 'local_lip' (eps_train, seed 004 table 3)")
        check_range("loss.eps", self.eps, lo=0.0, lo_inclusive=False)
        check_range("loss.warmup", self.warmup, lo=0.0, hi=1.0, hi_inclusive=False)
        check_range("loss.ramp", self.ramp, lo=0.0, hi=1.0, lo_inclusive=False)
        if self.warmup + self.ramp > 1.0 + 1e-12:
            raise ValueError(f"loss.warmup + loss.ramp must be <= 1 (fractions of the run), got "
                             f"{self.warmup} + {self.ramp}")
        check_range("loss.clip_iter", self.clip_iter, lo=0)
        check_range("loss.sparsity", self.sparsity, lo=0.0)
        check_range("loss.sparsity_theta", self.sparsity_theta, lo=0.0)
        if self.ramp_overshoot_eps is not None:
            check_range("loss.ramp_overshoot_eps", self.ramp_overshoot_eps, lo=0.0, lo_inclusive=False)


@dataclass
class TrainingBatch:
    """What a per-sample objective needs besides the logits: the model, the batch's inputs and their positions in the
    training set, the step counters, the loss's ``power_iter`` and the run's loss state (e.g. stored vectors)."""

    model: Any
    inputs: torch.Tensor
    index: torch.Tensor
    iteration: int
    iterations_per_epoch: int
    power_iter: int
    state: Any = None


class LocalLipState:
    """A Local-Lip run's state between steps: the per-sample vectors (None with random starts) and the seed of the
    random starts (a fresh generator per step, seeded by (seed, iteration): deterministic on resume)."""

    def __init__(self, vectors: PerSampleVectors | None, seed: int) -> None:
        self.vectors = vectors
        self.seed = int(seed)

    def generator(self, iteration: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)

    def end_epoch(self) -> None:
        if self.vectors is not None:
            self.vectors.end_epoch()

    def state_dict(self) -> dict:
        return {"vectors": None if self.vectors is None else self.vectors.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.vectors is not None and state.get("vectors") is not None:
            self.vectors.load_state_dict(state["vectors"])


def local_lip_state(c: LocalLipLossConfig, model, n_train: int, directory, seed: int) -> LocalLipState:
    """The state of a run in ``directory``: with ``vectors: saved``, memory-mapped vectors in
    ``<directory>/local_vectors`` for every conv/linear input of the body."""
    if c.vectors == "random":
        return LocalLipState(None, seed)
    shapes = [tuple(layer.input_shape) for layer in weight_layers(model.body)]
    return LocalLipState(PerSampleVectors(directory / "local_vectors", shapes, n_train, c.vector_dtype), seed)


def local_lip_schedule(c: LocalLipLossConfig, t: int, total: int, iterations_per_epoch: int) -> tuple[float, float]:
    """(eps, lambda) at iteration t of T: warm-up, then the linear ramps (28)/(29) (or the code's overshoot)."""
    if c.ramp_overshoot_eps is None:
        frac = min(1.0, max(0.0, (t / total - c.warmup) / c.ramp))
        return c.eps * frac, frac
    epochs = total / iterations_per_epoch
    epoch, within = divmod(t, iterations_per_epoch)
    warm, ramp = c.warmup * epochs, c.ramp * epochs
    if epoch < warm:
        return 0.0, 0.0
    base = min(1.0, (epoch - warm) / ramp)
    step = within / iterations_per_epoch / ramp
    return c.eps * base + c.ramp_overshoot_eps * step, base + step


def sparsity_loss(bounds, theta_weight: float) -> torch.Tensor:
    """Eq. (12) summed over layers (each the mean over units and samples)."""
    total = bounds.features.new_zeros(())
    for act in bounds.activations:
        lo, hi = act.lower, act.upper
        if isinstance(act.activation, ReLUTheta):
            term = hi.clamp_min(0) + theta_weight * (act.activation.theta - lo).clamp_min(0)
        elif isinstance(act.activation, ClippedMaxMin):
            lo1, lo2 = lo.chunk(2, dim=1)
            hi1, hi2 = hi.chunk(2, dim=1)
            term = torch.cat(((torch.minimum(hi1, hi2) - act.activation.floor).clamp_min(0),
                              theta_weight * (act.activation.cap - torch.maximum(lo1, lo2)).clamp_min(0)), dim=1)
        elif isinstance(act.activation, torch.nn.ReLU):
            term = hi.clamp_min(0)
        else:
            continue
        total = total + term.mean()
    return total


def local_lip_loss(c: LocalLipLossConfig, total: int):
    """The loss ``f(logits, targets, k_body, head_weight, t, batch)`` of a Local-Lip run (``batch``: a
    :class:`TrainingBatch`)."""
    def loss(logits, targets, k_body, head_weight, t, batch: TrainingBatch):
        eps, lam = local_lip_schedule(c, t, total, batch.iterations_per_epoch)
        clean = F.cross_entropy(logits, targets)
        if eps <= 0.0:
            return clean
        model, state = batch.model, batch.state
        sigmas = [layer.power_sigma(batch.power_iter, update=True, grad_through_iterates=False)
                  for layer in weight_layers(model.body)]
        bounds = propagate_bounds(model.body, batch.inputs, eps, sigmas=sigmas)
        vectors = state.vectors if state is not None else None
        starts, complete = vectors.read(batch.index, logits.device) if vectors is not None else (None, False)
        generator = None if complete else (state.generator(t) if state is not None else None)
        local, final = masked_norms(bounds, batch.power_iter, starts, generator)
        if vectors is not None:
            vectors.write(batch.index, final)
        offsets = worst_logit_offsets(bounds.features, bounds.lower, bounds.upper, penultimate_radius(bounds, local),
                                      head_weight, targets, c.clip_iter)
        if c.mode == "gloro":
            value = F.cross_entropy(gloro_bottom_logit(logits, offsets, targets), targets)
        else:
            value = (1.0 - lam) * clean + lam * F.cross_entropy(logits + offsets, targets)
        if c.sparsity > 0:
            value = value + c.sparsity * sparsity_loss(bounds, c.sparsity_theta)
        return value
    return loss
