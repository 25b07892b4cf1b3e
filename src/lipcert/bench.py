"""Benchmarks of the bound computation, the training-loss overhead and the tightness attack (CPU).

``python -m lipcert.bench {converge,overhead,loss,tightness,all} [--threads N] [--models ...]`` prints a
readable table and one JSON line (prefixed ``JSON``) per result; docs/benchmarks.md records the numbers.

* ``converge``: float64 convergence of the upper bound to relative error 1e-9 (CLL eq. (16), supplement B
  "Computing upper Lipschitz bound") with the library's pure-torch Lanczos (all layers in lock step), SciPy's ARPACK
  (the path before issue 12, as a reference) and block power iteration, per layer and total, and an
  authors-style float32 baseline (reference_implementation.md section 1.3, "Post-epoch convergence").
* ``overhead``: cost of putting the power iteration into the graph through the lambda * K(f)^2 term of
  main eq. (3), per training step.
* ``loss``: training throughput of multinomial CLL (supplement Definition 2, main eq. (3)) against plain
  cross-entropy without any bound computation.
* ``tightness``: pair-steps per second of the lower-bound attack of supplement C, eq. (19).
* ``fwdbwd``: seconds per forward + backward pass of a batch (cross-entropy on random inputs, training mode)
  for every architecture, the 1-Lipschitz ones included (issue 6).
* ``soc_truncation``: SOC's truncated Taylor series against the exact matrix exponential of the skew
  convolution (dense float64, small kernels): operator error, largest singular value, rigorous tail bound.
* ``loading``: images per second of the data path alone (uint8 dataset in memory, batch indexing, conversion
  to [0, 1], the supplement-B augmentation) against a 4C3F CLL training step; loading must cost under 10 % of
  a step.

Each benchmark is a plain function that takes a zero-argument model factory (so tests can pass tiny
models) and returns a JSON-serialisable dict.  Timings are wall-clock seconds from ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from lipcert.bounds import pairwise_row_distances
from lipcert.devices import cpu_name
from lipcert.data.augment import make_augment
from lipcert.data.tensor_data import as_model_input
from lipcert.data.two_moons import make_two_moons
from lipcert.losses import calibrated_loss, cross_entropy_loss
from lipcert.models import LipschitzClassifier, build_model, load_architectures
from lipcert.power_iteration import converge_layer, converge_spectral_layers
from lipcert.reference_solvers import arpack_converge
from lipcert.tightness import sample_pairs, tightness_attack

__all__ = [
    "CONVERGE_METHODS",
    "authors_style_convergence",
    "benchmark_converge",
    "benchmark_loss",
    "benchmark_overhead",
    "benchmark_tightness",
    "main",
]

ModelFactory = Callable[[], LipschitzClassifier]

CONVERGE_METHODS = ("lanczos", "arpack", "block_power")
BENCHMARKS = ("converge", "overhead", "loss", "tightness", "loading", "fwdbwd", "soc_truncation", "local_bound")
DEFAULT_MODELS = {
    "converge": ("4C3F", "4C3F_authors_code", "6C2F", "8C2F"),
    "overhead": ("4C3F", "6C2F"),
    "loss": ("4C3F",),
    "local_bound": ("4C3F_relu_theta", "6C2F_relu_theta"),
    "loading": ("4C3F", "6C2F", "8C2F"),
    "fwdbwd": ("4C3F", "6C2F", "8C2F", "LipConv-10", "LipConv-20", "CPL-S", "SLL-S", "Sandwich-S", "CPL-XL",
               "SLL-XL", "Sandwich"),
}
# Block power iteration on 8C2F needs more than 10 minutes on 2 CPU threads (clustered top singular
# values of the 64x64 convolutions); it is skipped there unless --block-power-all is given.
BLOCK_POWER_SKIPPED_BY_DEFAULT = ("8C2F",)


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(v)
    return v / n if n > 0 else v


# --- converge ----------------------------------------------------------------------------------------

def authors_style_convergence(model: LipschitzClassifier, *, tol: float = 1e-9,
                              max_sweeps: int = 10_000) -> dict:
    """Float32 post-epoch convergence as the authors' code does it (reference_implementation.md 1.3).

    Starting from each layer's current iterate, repeat global sweeps of one power-iteration step per body
    layer, x <- W^T W x / ||W^T W x||, sigma_l = ||W x||, all in float32, and K_t = prod_l sigma_l *
    max_ij ||W_i - W_j|| (the head's largest row distance, CLL eq. (16)/(18)); stop when
    |K_t - K_{t-1}| <= ``tol`` (absolute) or after ``max_sweeps`` sweeps.  In float32 with K of order
    10^1..10^3 this means "until K stops changing bit-wise", which can happen well before the iterate
    has converged.  Unlike the authors' code, the operators are our layers' ``apply_operator`` /
    ``apply_adjoint`` (the exact adjoint on the true input shape), so the only differences to our
    converged bound are float32 and the stopping rule.  The model's iterates are not modified.

    Returns sweeps, seconds, whether the stopping rule fired, K_body and K_global (float32 values as
    Python floats) and the per-layer sigmas.
    """
    if not (tol >= 0):
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    _check_positive_int("max_sweeps", max_sweeps)
    layers = model.spectral_layers()
    with torch.no_grad():
        weights = [layer.weight.detach().to(torch.float32) for layer in layers]
        iterates = [_unit(layer.pi_vector.detach().to(torch.float32).clone()) for layer in layers]
        head_factor = pairwise_row_distances(model.head.weight.detach().to(torch.float32)).max()
        sigmas = [torch.zeros((), dtype=torch.float32) for _ in layers]
        k_prev: torch.Tensor | None = None
        k_body = torch.ones((), dtype=torch.float32)
        stopped = False
        sweeps = 0
        start = time.perf_counter()
        while sweeps < max_sweeps:
            sweeps += 1
            k_body = torch.ones((), dtype=torch.float32)
            for i, (layer, w) in enumerate(zip(layers, weights)):
                x = _unit(layer.apply_adjoint(layer.apply_operator(iterates[i], w), w))
                iterates[i] = x
                sigmas[i] = torch.linalg.vector_norm(layer.apply_operator(x, w))
                k_body = k_body * sigmas[i]
            k = k_body * head_factor
            if k_prev is not None and float(torch.abs(k - k_prev)) <= tol:
                stopped = True
                break
            k_prev = k
        seconds = time.perf_counter() - start
    return {
        "sweeps": sweeps,
        "seconds": seconds,
        "stopped_by_tolerance": stopped,
        "k_body": float(k_body),
        "k_global": float(k_body * head_factor),
        "layer_sigmas": [float(s) for s in sigmas],
    }


def _converge_timed(model: LipschitzClassifier, *, tol: float, method: str, block_size: int,
                    max_iter: int) -> dict:
    """Converge every body layer like :meth:`LipschitzClassifier.converge` (per-layer tolerance tol / L),
    timing each layer separately."""
    layers = model.spectral_layers()
    per_layer_tol = tol / max(1, len(layers))
    rows = []
    k_body = 1.0
    if method == "lanczos":
        # the library path: all layers in lock step (per-layer times are not separable)
        start = time.perf_counter()
        results = converge_spectral_layers(layers, tol=per_layer_tol, max_iter=max_iter)
        timed = [(r, None) for r in results]
        total = time.perf_counter() - start
    else:
        timed = []
        for layer in layers:
            start = time.perf_counter()
            if method == "arpack":  # SciPy's ARPACK (the converge path before issue 12), CPU only
                result = arpack_converge(layer, tol=per_layer_tol, max_iter=max_iter)
            else:
                result = converge_layer(layer, tol=per_layer_tol, max_iter=max_iter, method=method,
                                        block_size=block_size)
            timed.append((result, time.perf_counter() - start))
        total = sum(seconds for _, seconds in timed)
    for index, (layer, (result, seconds)) in enumerate(zip(layers, timed)):
        k_body *= result.sigma
        rows.append({
            "layer": index,
            "kind": type(layer).__name__,
            "input_shape": list(layer.input_shape or ()),
            "sigma": result.sigma,
            "iterations": result.iterations,
            "converged": result.converged,
            "estimated_rel_error": result.estimated_rel_error,
            "seconds": seconds,
        })
    head_factor = float(pairwise_row_distances(model.head.weight.detach().to(torch.float64)).max())
    return {
        "method": method,
        "block_size": block_size if method == "block_power" else None,
        "seconds": total,
        "iterations": sum(r["iterations"] for r in rows),
        "converged": all(r["converged"] for r in rows),
        "k_body": k_body,
        "k_global": k_body * head_factor,
        "layers": rows,
    }


def benchmark_converge(make_model: ModelFactory, *, label: str = "", tol: float = 1e-9,
                       methods: Sequence[str] = CONVERGE_METHODS, block_size: int = 4,
                       max_iter: int = 100_000, block_power_max_iter: int = 100_000,
                       authors_tol: float = 1e-9, authors_max_sweeps: int = 10_000) -> dict:
    """Time the float64 convergence of K_body (CLL eq. (16), supplement B) per method and per layer.

    Every method and the authors-style float32 baseline (:func:`authors_style_convergence`) start from
    a freshly built model (``make_model()``), i.e. from the same cold random iterates.  The baseline's
    relative errors are taken against the first method's converged float64 K_body / K_global
    (Lanczos by default); negative values mean the baseline over-estimates.  ``max_iter`` is passed to
    Lanczos (ARPACK restarts), ``block_power_max_iter`` caps block power's W^T W applications per layer
    (a capped layer is reported with ``converged: false``).
    """
    methods = tuple(methods)
    if not methods:
        raise ValueError("methods must name at least one of " + repr(CONVERGE_METHODS))
    for method in methods:
        if method not in CONVERGE_METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {CONVERGE_METHODS}")
    caps = {"lanczos": max_iter, "arpack": max_iter, "block_power": block_power_max_iter}
    results = {m: _converge_timed(make_model(), tol=tol, method=m, block_size=block_size, max_iter=caps[m])
               for m in methods}
    reference = results[methods[0]]
    for method, m in results.items():
        m["max_rel_diff_sigma_vs_reference"] = max(
            (abs(a["sigma"] - b["sigma"]) / b["sigma"] if b["sigma"] > 0 else abs(a["sigma"])
             for a, b in zip(m["layers"], reference["layers"])), default=0.0)
    authors = authors_style_convergence(make_model(), tol=authors_tol, max_sweeps=authors_max_sweeps)
    authors["rel_error_k_body"] = (reference["k_body"] - authors["k_body"]) / reference["k_body"]
    authors["rel_error_k_global"] = (reference["k_global"] - authors["k_global"]) / reference["k_global"]
    authors["reference_method"] = methods[0]
    return {
        "benchmark": "converge",
        "model": label,
        "tol": tol,
        "methods": results,
        "authors_style_float32": authors,
    }


# --- overhead and loss -------------------------------------------------------------------------------

def _random_batch(model: LipschitzClassifier, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch_size, *model.input_shape), generator=g)
    y = torch.randint(0, model.head.out_features, (batch_size,), generator=g)
    return x, y


def _interleaved_step_times(steps: dict[str, Callable[[], None]], warmup: int, timed: int) -> dict[str, list[float]]:
    """Run every step function ``warmup`` times, then ``timed`` rounds of one timed call each, interleaved
    so that load from other processes hits all variants alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(timed):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def _training_step(model: LipschitzClassifier, optimizer: torch.optim.Optimizer,
                   loss_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(x))
        loss.backward()
        optimizer.step()
    return step


def benchmark_overhead(make_model: ModelFactory, *, label: str = "", batch_size: int = 128, warmup: int = 3,
                       steps: int = 10, lam: float = 1e-6, n_iter: int = 5, seed: int = 0) -> dict:
    """Seconds per training step (forward, backward, Adam) with and without the lambda * K(f)^2 term.

    (a) plain cross-entropy; (b) cross-entropy + ``lam`` * (K_body * max_ij ||W_i - W_j||)^2 with K_body =
    ``body_lipschitz(n_iter)`` (main eq. (3)'s regulariser), so the ``n_iter`` power-iteration steps of
    every layer are part of the graph.  Both run on copies of the same model and batch, interleaved;
    the median over ``steps`` timed steps (after ``warmup``) is reported with the ratio (b)/(a).
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("steps", steps)
    models = {"plain_ce": make_model(), "ce_plus_lambda_k2": make_model()}
    x, y = _random_batch(models["plain_ce"], batch_size, seed)
    unit = torch.ones(())
    plain, reg = models["plain_ce"], models["ce_plus_lambda_k2"]
    step_functions = {
        "plain_ce": _training_step(
            plain, torch.optim.Adam(plain.parameters(), lr=1e-4),
            lambda logits: cross_entropy_loss(logits, y, unit, plain.head.weight), x),
        "ce_plus_lambda_k2": _training_step(
            reg, torch.optim.Adam(reg.parameters(), lr=1e-4),
            lambda logits: cross_entropy_loss(logits, y, reg.body_lipschitz(n_iter=n_iter), reg.head.weight,
                                              lam=lam), x),
    }
    times = _interleaved_step_times(step_functions, warmup, steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "benchmark": "overhead",
        "model": label,
        "batch_size": batch_size,
        "lam": lam,
        "n_iter": n_iter,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "plain_ce_s_per_step": medians["plain_ce"],
        "ce_plus_lambda_k2_s_per_step": medians["ce_plus_lambda_k2"],
        "ratio": medians["ce_plus_lambda_k2"] / medians["plain_ce"],
    }


def benchmark_loss(make_model: ModelFactory, *, label: str = "", batch_size: int = 128, warmup: int = 3,
                   steps: int = 10, eps: float = 0.15, p: float = 0.15, lam: float = 1e-4, n_iter: int = 5,
                   seed: int = 0) -> dict:
    """Training throughput (images/s) of multinomial CLL against plain cross-entropy.

    CLL (supplement Definition 2 with the pairwise normalisation of supplement eq. (2), plus
    ``lam`` * K(f)^2 of main eq. (3); ``p`` is an eq. (5) p) uses K_body = ``body_lipschitz(n_iter)``,
    updated at every step, as in training; plain cross-entropy computes no bound at all.  Steps are
    Adam steps on a fixed random batch, interleaved; throughput = batch_size / median step time.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("steps", steps)
    cll_model, ce_model = make_model(), make_model()
    x, y = _random_batch(cll_model, batch_size, seed)

    def cll_of(logits: torch.Tensor) -> torch.Tensor:
        return calibrated_loss(logits, y, cll_model.body_lipschitz(n_iter=n_iter), cll_model.head.weight,
                               eps=eps, p=p, lam=lam, normalisation="pairwise")

    step_functions = {
        "cll": _training_step(cll_model, torch.optim.Adam(cll_model.parameters(), lr=1e-4), cll_of, x),
        "cross_entropy": _training_step(ce_model, torch.optim.Adam(ce_model.parameters(), lr=1e-4),
                                        lambda logits: F.cross_entropy(logits, y), x),
    }
    times = _interleaved_step_times(step_functions, warmup, steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    cll_rate = batch_size / medians["cll"]
    ce_rate = batch_size / medians["cross_entropy"]
    return {
        "benchmark": "loss",
        "model": label,
        "batch_size": batch_size,
        "eps": eps,
        "p": p,
        "lam": lam,
        "n_iter": n_iter,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "cll_images_per_second": cll_rate,
        "cross_entropy_images_per_second": ce_rate,
        "ratio": cll_rate / ce_rate,
    }


# --- data loading --------------------------------------------------------------------------------------

def benchmark_loading(make_model: ModelFactory, *, label: str = "", n_images: int = 50_000, batch_size: int = 128,
                      pad: int = 4, warmup: int = 3, steps: int = 10, eps: float = 0.15, p: float = 0.15,
                      lam: float = 1e-4, seed: int = 0) -> dict:
    """Seconds per batch of the loading path alone against one CLL training step, interleaved.

    Loading is what :func:`lipcert.training.train_run` does per batch: index a random batch of the whole
    uint8 training set held in memory (``n_images`` images of the model's input shape), convert it to [0, 1]
    (:func:`~lipcert.data.tensor_data.as_model_input`) and apply the batched augmentation of supplement B
    (crop with ``pad``, flip, colour jitter 0.25, rotation 2 degrees).  The training step is a CLL step
    (supplement Definition 2, pairwise, plus lam * K(f)^2) with 5 power-iteration steps.  Pixel values do not
    change the cost, so the images are random.  ``fraction`` = loading time / training-step time.
    """
    _check_positive_int("n_images", n_images)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("steps", steps)
    model = make_model()
    shape = model.input_shape
    if len(shape) != 3:
        raise ValueError(f"loading benchmark needs an image model, {label or 'model'} has input shape {shape}")
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, *shape), generator=g, dtype=torch.uint8)
    augment = make_augment(shape[-1], pad)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    holder: dict[str, torch.Tensor] = {}

    def load() -> None:
        idx = torch.randperm(n_images, generator=g)[:batch_size]
        holder["x"] = augment(as_model_input(images[idx]), aug_gen)

    x, y = _random_batch(model, batch_size, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def cll_of(logits: torch.Tensor) -> torch.Tensor:
        return calibrated_loss(logits, y, model.body_lipschitz(n_iter=5), model.head_weight(), eps=eps, p=p,
                               lam=lam, normalisation="pairwise")

    times = _interleaved_step_times({"loading": load, "train_step": _training_step(model, optimizer, cll_of, x)},
                                    warmup, steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "benchmark": "loading",
        "model": label,
        "n_images": n_images,
        "batch_size": batch_size,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "loading_s_per_batch": medians["loading"],
        "train_step_s_per_batch": medians["train_step"],
        "loading_images_per_second": batch_size / medians["loading"],
        "train_images_per_second": batch_size / medians["train_step"],
        "fraction": medians["loading"] / medians["train_step"],
    }


# --- forward + backward per architecture ------------------------------------------------------------

def benchmark_forward_backward(make_model: ModelFactory, *, label: str = "", batch_size: int = 128, warmup: int = 1,
                               steps: int = 3, seed: int = 0) -> dict:
    """Median seconds of one forward + backward pass (cross-entropy, training mode, no optimiser step).

    Training mode includes what each layer does per step (power-iteration updates, SOC's 5-term series,
    Sandwich's per-frequency Cayley transforms).  Also reports the parameter count.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("steps", steps)
    model = make_model()
    model.train()
    x, y = _random_batch(model, batch_size, seed)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    times = _interleaved_step_times({"fwdbwd": step}, warmup, steps)["fwdbwd"]
    median = statistics.median(times)
    return {
        "benchmark": "fwdbwd",
        "model": label,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": batch_size,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "s_per_batch": median,
        "images_per_second": batch_size / median,
    }


# --- SOC truncation -----------------------------------------------------------------------------------

SOC_TRUNCATION_CASES = ((4, 4, 3, 6), (8, 8, 3, 6), (4, 8, 3, 6), (16, 16, 1, 8))
"""(in_channels, out_channels, kernel, image size): small layers whose dense operators fit in memory."""


def benchmark_soc_truncation(cases=SOC_TRUNCATION_CASES, seed: int = 0,
                             terms: tuple[int, ...] = (2, 4, 5, 6, 8, 10, 12, 14)) -> list[dict]:
    """:func:`lipcert.one_lipschitz.skew_orthogonal.truncation_error_report` for freshly initialised SOC layers
    (the initial filter scaling, as in training: ||L|| <= 0.7 * fantastic-four bound)."""
    from lipcert.one_lipschitz.skew_orthogonal import SkewOrthogonalConv2d, truncation_error_report

    out = []
    for cin, cout, k, size in cases:
        layer = SkewOrthogonalConv2d(cin, cout, k, generator=torch.Generator().manual_seed(seed)).double().eval()
        report = truncation_error_report(layer, (cin, size, size), terms)
        out.append({"benchmark": "soc_truncation", "model": f"SOC {cin}->{cout} k{k} on {size}x{size}", **report})
    return out


# --- tightness ---------------------------------------------------------------------------------------

def benchmark_tightness(make_model: ModelFactory, x1: torch.Tensor, x2: torch.Tensor, *, label: str = "",
                        steps: int = 20, lr: float = 3e-4, domain: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """Pair-steps per second of the tightness attack (supplement C, eq. (19)) on the pairs (x1, x2).

    The model's bound is converged first (Lanczos, not timed); the attack's own timing is reported.
    """
    _check_positive_int("steps", steps)
    model = make_model()
    model.converge(tol=1e-9)
    result = tightness_attack(model, x1, x2, steps=steps, lr=lr, domain=domain)
    return {
        "benchmark": "tightness",
        "model": label,
        "n_pairs": result.n_pairs,
        "steps": result.steps,
        "elapsed_s": result.elapsed_s,
        "pair_steps_per_second": result.pair_steps_per_second,
        "tightness": result.tightness,
    }


# --- CLI ---------------------------------------------------------------------------------------------

def _factory(name: str, seed: int) -> ModelFactory:
    return lambda: build_model(name, seed=seed)


def _format_converge(r: dict) -> list[str]:
    lines = [f"converge {r['model']} (tol {r['tol']:g})"]
    for method, m in r["methods"].items():
        lines.append(f"  {method:<12} total {m['seconds']:9.2f} s  {m['iterations']:7d} it  "
                     f"K_body {m['k_body']:.12g}  converged {m['converged']}  "
                     f"max |d sigma|/sigma vs {next(iter(r['methods']))} {m['max_rel_diff_sigma_vs_reference']:.2e}")
        for layer in m["layers"]:
            lines.append(f"    layer {layer['layer']} {layer['kind']:<15} {str(tuple(layer['input_shape'])):<16} "
                         f"sigma {layer['sigma']:.12f}  it {layer['iterations']:6d}  "
                         + ("   (together)" if layer["seconds"] is None else f"{layer['seconds']:8.3f} s")
                         + ("" if layer["converged"] else "  NOT CONVERGED"))
    for method in r.get("skipped_methods", []):
        lines.append(f"  {method:<12} skipped ({r['skip_reason']})")
    a = r["authors_style_float32"]
    lines.append(f"  authors-style float32: {a['sweeps']} sweeps, {a['seconds']:.2f} s, "
                 f"stopped by |dK|<=tol: {a['stopped_by_tolerance']}, K_body {a['k_body']:.9g}, "
                 f"rel. error vs {a['reference_method']} {a['rel_error_k_body']:.3e} (K_body), "
                 f"{a['rel_error_k_global']:.3e} (K_global)")
    return lines


def _format_row(r: dict) -> list[str]:
    if r["benchmark"] == "overhead":
        return [f"overhead {r['model']}: plain CE {r['plain_ce_s_per_step']:.4f} s/step, "
                f"CE + {r['lam']:g} K^2 (body_lipschitz({r['n_iter']})) {r['ce_plus_lambda_k2_s_per_step']:.4f} "
                f"s/step, ratio {r['ratio']:.3f}  (batch {r['batch_size']}, median of {r['timed_steps']})"]
    if r["benchmark"] == "loss":
        return [f"loss {r['model']}: CLL {r['cll_images_per_second']:.1f} img/s, cross-entropy "
                f"{r['cross_entropy_images_per_second']:.1f} img/s, ratio {r['ratio']:.3f}  "
                f"(batch {r['batch_size']}, median of {r['timed_steps']})"]
    if r["benchmark"] == "soc_truncation":
        lines = [f"soc_truncation {r['model']}: ||L|| = {r['norm_L']:.4f} (bound s = {r['s_bound']:.4f}), "
                 f"||exp(L)^T exp(L) - I|| = {r['exp_orthogonality_error']:.2e}"]
        lines += [f"  K = {t:2d}: ||T_K(L) - exp(L)|| = {e:.3e}  sigma_max(T_K) - 1 = {m - 1:+.3e}  "
                  f"tail bound = {b:.3e}" for t, e, m, b in
                  zip(r["terms"], r["operator_error"], r["sigma_max"], r["tail_bound"])]
        return lines
    if r["benchmark"] == "fwdbwd":
        return [f"fwdbwd {r['model']}: {r['s_per_batch']:.3f} s per forward+backward of {r['batch_size']} "
                f"({r['images_per_second']:.1f} img/s), {r['parameters']:,} parameters (median of {r['timed_steps']})"]
    if r["benchmark"] == "loading":
        return [f"loading {r['model']}: data path {r['loading_images_per_second']:.0f} img/s "
                f"({1000 * r['loading_s_per_batch']:.2f} ms/batch), CLL training step "
                f"{r['train_images_per_second']:.0f} img/s ({1000 * r['train_step_s_per_batch']:.1f} ms/batch), "
                f"loading = {100 * r['fraction']:.1f} % of a step  (batch {r['batch_size']}, median of {r['timed_steps']})"]
    if r["benchmark"] == "local_bound":
        return [f"local_bound {r['model']}: plain CE {r['plain_ce_s_per_step']:.3f} s/step, global bound (GloRo) "
                f"{r['global_bound_s_per_step']:.3f}, Local-Lip-B {r['local_bound_s_per_step']:.3f} s/step "
                f"(local/global {r['local_over_global']:.2f}, local/CE {r['local_over_ce']:.2f}); stored vectors "
                f"{r['vector_bytes_per_sample']:,} B per sample ({r['vector_gb_cifar_train']:.1f} GB for 50 000) "
                f"(batch {r['batch_size']}, {r['n_iter']} iterations, median of {r['timed_steps']})"]
    if r["benchmark"] == "tightness":
        return [f"tightness {r['model']}: {r['n_pairs']} pairs x {r['steps']} steps in {r['elapsed_s']:.2f} s = "
                f"{r['pair_steps_per_second']:.1f} pair-steps/s"]
    return _format_converge(r)


def _emit(result: dict) -> None:
    for line in _format_row(result):
        print(line)
    print("JSON " + json.dumps(result, sort_keys=True))
    sys.stdout.flush()


def _run_converge(args: argparse.Namespace) -> None:
    for name in args.models or DEFAULT_MODELS["converge"]:
        methods = list(args.methods or CONVERGE_METHODS)
        skipped = [m for m in CONVERGE_METHODS if m not in methods]
        if "block_power" in methods and name in BLOCK_POWER_SKIPPED_BY_DEFAULT and not args.block_power_all:
            methods.remove("block_power")
            skipped.append("block_power")
        result = benchmark_converge(_factory(name, args.seed), label=name, tol=args.tol, methods=methods,
                                    block_size=args.block_size, block_power_max_iter=args.block_power_max_iter)
        if skipped:
            result["skipped_methods"] = skipped
            result["skip_reason"] = ("not in --methods" if args.methods else
                                     "takes > 10 min on 2 threads; include it with --block-power-all")
        _emit(result)


def _run_overhead(args: argparse.Namespace) -> None:
    for name in args.models or DEFAULT_MODELS["overhead"]:
        _emit(benchmark_overhead(_factory(name, args.seed), label=name, batch_size=args.batch_size,
                                 warmup=args.warmup, steps=args.repeats))


def _run_loss(args: argparse.Namespace) -> None:
    for name in args.models or DEFAULT_MODELS["loss"]:
        _emit(benchmark_loss(_factory(name, args.seed), label=name, batch_size=args.batch_size,
                             warmup=args.warmup, steps=args.repeats))


def _run_tightness(args: argparse.Namespace) -> None:
    g = torch.Generator().manual_seed(args.seed)
    image_shape = load_architectures()["4C3F"].input_shape
    images = torch.rand((2 * args.image_pairs, *image_shape), generator=g)
    x1, x2 = sample_pairs(images, args.image_pairs, generator=g)
    _emit(benchmark_tightness(_factory("4C3F", args.seed), x1, x2, label="4C3F", steps=args.image_steps,
                              domain=(0.0, 1.0)))
    points, _ = make_two_moons(2 * args.moons_pairs, seed=args.seed)
    x1, x2 = sample_pairs(points, args.moons_pairs, generator=g)
    _emit(benchmark_tightness(_factory("two_moons", args.seed), x1, x2, label="two_moons",
                              steps=args.moons_steps, domain=None))


def _run_loading(args: argparse.Namespace) -> None:
    for name in args.models or DEFAULT_MODELS["loading"]:
        _emit(benchmark_loading(_factory(name, args.seed), label=name, batch_size=args.batch_size,
                                warmup=args.warmup, steps=args.repeats))


def _run_fwdbwd(args: argparse.Namespace) -> None:
    known = load_architectures()
    # the defaults that the architecture file defines (a custom file may hold only some); --models is strict
    for name in args.models or [n for n in DEFAULT_MODELS["fwdbwd"] if n in known]:
        _emit(benchmark_forward_backward(_factory(name, args.seed), label=name, batch_size=args.batch_size,
                                         warmup=min(args.warmup, 1), steps=min(args.repeats, 3)))


def benchmark_local_bound(make_model: ModelFactory, *, label: str = "", batch_size: int = 128, warmup: int = 2,
                          steps: int = 5, n_iter: int = 2, eps: float = 0.1551, seed: int = 0) -> dict:
    """Seconds per training step of Local-Lip-B (seed 004: BCP bounds, masked per-sample power iteration from stored
    vectors, worst logits; :mod:`lipcert.losses.local_lip_loss`) against a step with the global bound (GloRo's loss,
    K_body from ``n_iter`` warm-started power iterations) and plain cross-entropy, interleaved on copies of one model
    and batch; plus the bytes per training sample of the stored vectors (fp16, two buffers)."""
    import tempfile
    from pathlib import Path

    from lipcert.losses.gloro_loss import gloro_loss
    from lipcert.losses.local_lip_loss import LocalLipLossConfig, TrainingBatch, local_lip_loss, local_lip_state

    _check_positive_int("batch_size", batch_size)
    models = {"plain_ce": make_model(), "global_bound": make_model(), "local_bound": make_model()}
    x, y = _random_batch(models["plain_ce"], batch_size, seed)
    index = torch.arange(batch_size)
    config = LocalLipLossConfig(eps=eps, warmup=0.0, ramp=1e-9)
    with tempfile.TemporaryDirectory() as tmp:
        local = models["local_bound"]
        state = local_lip_state(config, local, batch_size, Path(tmp), seed)
        loss_fn = local_lip_loss(config, 1000)
        unit = torch.ones(())
        optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-5) for name, m in models.items()}
        glob = models["global_bound"]
        projected = [m for m in local.modules() if hasattr(m, "project_")]
        counter = {"t": 0}

        def local_step() -> None:
            counter["t"] += 1
            optimizers["local_bound"].zero_grad(set_to_none=True)
            batch = TrainingBatch(local, x, index, counter["t"], 10, n_iter, state)
            loss_fn(local(x), y, unit, local.head.weight, counter["t"], batch).backward()
            optimizers["local_bound"].step()
            for module in projected:
                module.project_()
            state.end_epoch()  # every step reads the vectors the previous one wrote (the epoch-to-epoch warm start)

        step_functions = {
            "plain_ce": _training_step(models["plain_ce"], optimizers["plain_ce"],
                                       lambda logits: F.cross_entropy(logits, y), x),
            "global_bound": _training_step(glob, optimizers["global_bound"], lambda logits: gloro_loss(
                logits, y, glob.body_lipschitz(n_iter), glob.head.weight, eps=eps), x),
            "local_bound": local_step,
        }
        times = _interleaved_step_times(step_functions, warmup, steps)
        bytes_per_sample = state.vectors.bytes_per_sample()
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"benchmark": "local_bound", "model": label, "batch_size": batch_size, "n_iter": n_iter,
            "timed_steps": steps, "warmup_steps": warmup, **{f"{k}_s_per_step": v for k, v in medians.items()},
            "local_over_global": medians["local_bound"] / medians["global_bound"],
            "local_over_ce": medians["local_bound"] / medians["plain_ce"],
            "vector_bytes_per_sample": bytes_per_sample,
            "vector_gb_cifar_train": bytes_per_sample * 50_000 / 1e9}


def _run_local_bound(args: argparse.Namespace) -> None:
    known = load_architectures()
    for name in args.models or [n for n in DEFAULT_MODELS["local_bound"] if n in known]:
        _emit(benchmark_local_bound(_factory(name, args.seed), label=name, batch_size=args.batch_size,
                                    warmup=min(args.warmup, 2), steps=min(args.repeats, 5)))


def _run_soc_truncation(args: argparse.Namespace) -> None:
    for result in benchmark_soc_truncation(seed=args.seed):
        _emit(result)


RUNNERS = {"converge": _run_converge, "overhead": _run_overhead, "loss": _run_loss, "tightness": _run_tightness,
           "loading": _run_loading, "fwdbwd": _run_fwdbwd, "soc_truncation": _run_soc_truncation,
           "local_bound": _run_local_bound}


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``python -m lipcert.bench``."""
    parser = argparse.ArgumentParser(prog="python -m lipcert.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=(*BENCHMARKS, "all"))
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="architectures for converge/overhead/loss (defaults: converge 4C3F 4C3F_authors_code 6C2F 8C2F, "
                             "overhead 4C3F 6C2F, loss 4C3F)")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and data seed (default 0)")
    parser.add_argument("--tol", type=float, default=1e-9, help="converge: relative tolerance (default 1e-9)")
    parser.add_argument("--methods", nargs="+", choices=CONVERGE_METHODS, default=None,
                        help="converge: methods to run, the first is the reference (default: all)")
    parser.add_argument("--block-size", type=int, default=4, help="converge: block power block size (default 4)")
    parser.add_argument("--block-power-all", action="store_true",
                        help="converge: also run block power on " + ", ".join(BLOCK_POWER_SKIPPED_BY_DEFAULT)
                             + " (more than 10 minutes)")
    parser.add_argument("--block-power-max-iter", type=int, default=100_000,
                        help="converge: cap on W^T W applications per layer for block power; a capped layer "
                             "is reported as not converged (default 100000)")
    parser.add_argument("--batch-size", type=int, default=128, help="overhead/loss: batch size (default 128)")
    parser.add_argument("--warmup", type=int, default=3, help="overhead/loss: untimed warm-up steps (default 3)")
    parser.add_argument("--repeats", "--steps", dest="repeats", type=int, default=10,
                        help="overhead/loss: timed training steps per variant, the median is reported (default 10)")
    parser.add_argument("--image-pairs", type=int, default=200, help="tightness: 4C3F pairs (default 200)")
    parser.add_argument("--image-steps", type=int, default=20, help="tightness: 4C3F attack steps (default 20)")
    parser.add_argument("--moons-pairs", type=int, default=4000, help="tightness: two_moons pairs (default 4000)")
    parser.add_argument("--moons-steps", type=int, default=100, help="tightness: two_moons steps (default 100)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmark(s) and print a table plus one ``JSON {...}`` line per result."""
    args = build_parser().parse_args(argv)
    for name in ("threads", "block_size", "block_power_max_iter", "batch_size", "repeats", "image_pairs",
                 "image_steps", "moons_pairs", "moons_steps"):
        _check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    torch.set_num_threads(args.threads)
    header = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "argv": list(sys.argv[1:] if argv is None else argv),
    }
    print("JSON " + json.dumps({"benchmark": "header", **header}, sort_keys=True))
    selected = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    for name in selected:
        RUNNERS[name](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
