"""Decision function, decision boundary and certified margins of a 2-D classifier on a grid.

This is the model side of the two-moons figures (CLL paper, Fig. 4 and supplement Fig. D2): a
finished run is loaded, its bound converged, and every point of a regular grid over the data gets its
logits, predicted class and certified L2 radius

    radius(x) = min_{i != j} (f_j(x) - f_i(x)) / K_ji,     j = argmax_i f_i(x)      (supplement C, eq. (18)),

with K_ji = K_body * ||W_j - W_i|| the converged pairwise bound.  The decision boundary is the set where
the radius reaches 0, the drawn margin is the eps-level set {radius = eps}, and a point is certified at
eps iff it is correctly classified and its radius exceeds eps.  Everything is saved into one ``.npz``
file that the reporting code (:mod:`lipcert.reporting.two_moons_figures`) draws without touching models.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .certification import certified_margins, certify_model
from .io_utils import atomic_write_bytes

__all__ = ["GRID_FILE_VERSION", "grid_evaluation", "evaluate_run_grid", "grid_bounds", "read_grid_metadata", "main"]

GRID_FILE_VERSION = 1
"""Version of the ``.npz`` layout written by :func:`evaluate_run_grid`."""

METHOD_LABELS = {"cll": "CLL", "gloro": "GloRo", "ce": "CE"}
"""Display names of the training losses (paper Fig. 4: "Ours" = CLL, GloRo)."""

_BATCH = 16384


def _check_range(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"{name} must be finite with low < high, got ({low}, {high})")
    return low, high


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2 (grid points per axis), got {resolution!r}")
    return int(resolution)


@torch.no_grad()
def _logits_in_batches(model: torch.nn.Module, points: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(points[s:s + _BATCH]) for s in range(0, points.shape[0], _BATCH)])
    finally:
        model.train(was_training)


def grid_evaluation(model: torch.nn.Module, x_range: Sequence[float], y_range: Sequence[float],
                    resolution: int) -> dict[str, np.ndarray]:
    """Logits, predicted class and certified radius on a ``resolution`` x ``resolution`` grid (eq. (18)).

    The grid has ``xs = linspace(*x_range, resolution)`` (columns) and ``ys = linspace(*y_range,
    resolution)`` (rows); grid point (r, c) is (xs[c], ys[r]).  ``model`` maps (B, 2) inputs to (B, C)
    logits and must have a converged bound (``model.converge()``): its ``pairwise_lipschitz()`` gives
    the K_ji of supplement C, and the radius min_{i != j} (f_j - f_i) / K_ji is computed in float64 by
    :func:`lipcert.certification.certified_margins`.

    Returns a dict of numpy arrays: ``xs`` (W,), ``ys`` (H,), ``logits`` (H, W, C) in the model's
    dtype, ``predicted`` (H, W) int64, ``radius`` (H, W) float64 and ``k_pairwise`` (C, C) float64.
    """
    x_low, x_high = _check_range("x_range", x_range)
    y_low, y_high = _check_range("y_range", y_range)
    n = _check_resolution(resolution)
    k_pairwise = model.pairwise_lipschitz()
    xs = np.linspace(x_low, x_high, n)
    ys = np.linspace(y_low, y_high, n)
    grid_x, grid_y = np.meshgrid(xs, ys, indexing="xy")  # (H, W): grid_x[r, c] = xs[c], grid_y[r, c] = ys[r]
    param = next(model.parameters())
    points = torch.from_numpy(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)).to(param.device, param.dtype)
    logits = _logits_in_batches(model, points)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"model must return (B, C) logits with C >= 2 for 2-D inputs, got {tuple(logits.shape)}")
    radius = certified_margins(logits, k_pairwise)
    c = logits.shape[1]
    return {
        "xs": xs,
        "ys": ys,
        "logits": logits.cpu().numpy().reshape(n, n, c),
        "predicted": logits.argmax(dim=1).cpu().numpy().astype(np.int64).reshape(n, n),
        "radius": radius.cpu().numpy().reshape(n, n),
        "k_pairwise": k_pairwise.detach().cpu().numpy().astype(np.float64),
    }


def grid_bounds(points: np.ndarray, pad: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Bounding box of 2-D ``points`` (N, 2) widened by ``pad`` on every side: ((x0, x1), (y0, y1))."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"points must have shape (N, 2) with N >= 1, got {points.shape}")
    if not math.isfinite(pad) or pad <= 0:
        raise ValueError(f"pad must be a positive finite number, got {pad!r}")
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0] - pad), float(high[0] + pad)), (float(low[1] - pad), float(high[1] + pad))


def _final_value(spec, total: int) -> float | None:
    return None if spec is None else float(spec.spec().value(total, total))


def evaluate_run_grid(run_dir: str | Path, out_npz: str | Path, resolution: int = 300, *,
                      eps: float | None = None, pad: float = 0.5, tol: float = 1e-9) -> Path:
    """Evaluate a finished two-moons run on a grid and save the panel data of Fig. 4 / Fig. D2 to ``out_npz``.

    Loads the run (:func:`lipcert.trained_run.load_trained_model`), converges its bound to relative error
    ``tol``, regenerates its data (:func:`lipcert.datasets.load_data`) and evaluates
    :func:`grid_evaluation` over the training points' bounding box widened by ``pad``.  ``eps`` (default:
    the run's ``eval_eps[0]``) is the margin half-width drawn and certified (eq. (18), strict: radius > eps).

    The file (written atomically) holds the grid arrays of :func:`grid_evaluation` plus ``x_train``,
    ``y_train``, ``train_predicted``, ``train_radius`` (float64 radius of the predicted class),
    ``train_certified`` (correct and radius > eps), ``eps`` and ``metadata``: a 1-element string array
    with a JSON object (see :func:`read_grid_metadata`) holding method, eps, p (eq. (5) p, and
    ``p_printed`` = 2 p as Fig. D2 prints it), test/train CRA and clean accuracy in percent at eps,
    K_f = K(f) of the converged bound, K_hf = K(h o f) (1/sigma_eps(p) for CLL, K(f) otherwise;
    section 3.3) and the run's own ``metrics.json`` numbers.
    """
    from .datasets import load_data
    from .run_record import read_metrics
    from .losses.registry import calibrated_model_constant
    from .trained_run import load_trained_model

    run_dir = Path(run_dir)
    cfg, model = load_trained_model(run_dir)
    if cfg.data.name != "two_moons":
        raise ValueError(f"{run_dir}: grid figures need 2-D inputs (data 'two_moons'), got data {cfg.data.name!r}")
    eps = float(cfg.eval_eps[0]) if eps is None else float(eps)
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive finite radius, got {eps!r}")
    report = model.converge(tol)
    data = load_data(cfg.data)
    x_range, y_range = grid_bounds(data.x_train.numpy(), pad)
    grid = grid_evaluation(model, x_range, y_range, resolution)

    k_pairwise = model.pairwise_lipschitz()
    train_logits = _logits_in_batches(model, data.x_train)
    train_radius = certified_margins(train_logits, k_pairwise).cpu().numpy()
    train_predicted = train_logits.argmax(dim=1).cpu().numpy().astype(np.int64)
    y_train = data.y_train.numpy().astype(np.int64)
    train_certified = (train_predicted == y_train) & (train_radius > eps)
    test = certify_model(model, data.x_test, data.y_test, (eps,))

    run_metrics = read_metrics(run_dir)["metrics"]
    total = int(run_metrics["iteration"])
    p = _final_value(cfg.loss.get("p"), total)
    k_f = float(k_pairwise.max())
    metadata = {
        "version": GRID_FILE_VERSION,
        "run_dir": str(run_dir),
        "method": cfg.loss.name,
        "method_label": METHOD_LABELS.get(cfg.loss.name, cfg.loss.name),
        "model": cfg.model,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "eps": eps,
        "train_eps": _final_value(cfg.loss.get("eps"), total),
        "p": p,
        # the printed p of Fig. D2 (authors' convention, 2 x eq. (5) p); only for constant slack
        "p_printed": None if p is None or cfg.loss.get("p").kind != "constant" else 2.0 * p,
        "cra": 100.0 * test.certified_accuracy[0],
        "clean": 100.0 * test.clean_accuracy,
        "train_cra": 100.0 * float(train_certified.mean()),
        "train_clean": 100.0 * float((train_predicted == y_train).mean()),
        "n_train": int(y_train.shape[0]),
        "n_test": int(test.n_samples),
        "K_f": k_f,
        "K_hf": float(calibrated_model_constant(cfg.loss, k_f, total, total)),
        "k_body": float(report.k_body),
        "run_metrics": {k: v for k, v in run_metrics.items() if isinstance(v, (int, float))},
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, **grid, x_train=data.x_train.numpy(), y_train=y_train, train_predicted=train_predicted,
        train_radius=train_radius, train_certified=train_certified, eps=np.float64(eps),
        metadata=np.array([json.dumps(metadata, sort_keys=True)]))
    return atomic_write_bytes(out_npz, buffer.getvalue())


def read_grid_metadata(npz: np.lib.npyio.NpzFile | dict) -> dict:
    """The JSON ``metadata`` object of a grid file opened with ``np.load`` (see :func:`evaluate_run_grid`)."""
    if "metadata" not in npz:
        raise ValueError("grid file has no 'metadata' entry; expected a file written by evaluate_run_grid")
    return json.loads(str(np.asarray(npz["metadata"]).reshape(-1)[0]))


def main(argv: list[str] | None = None) -> int:
    """``python -m lipcert.decision_grid --run DIR --out FILE.npz [--resolution N]`` (Fig. 4 / D2 panel data)."""
    parser = argparse.ArgumentParser(prog="python -m lipcert.decision_grid", description=main.__doc__)
    parser.add_argument("--run", required=True, help="finished two-moons run directory")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--resolution", type=int, default=300, help="grid points per axis")
    parser.add_argument("--eps", type=float, default=None, help="margin half-width (default: run's eval_eps[0])")
    parser.add_argument("--pad", type=float, default=0.5, help="grid extends this far beyond the training data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        out = evaluate_run_grid(args.run, args.out, args.resolution, eps=args.eps, pad=args.pad)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with np.load(out, allow_pickle=False) as npz:
        meta = read_grid_metadata(npz)
    print(f"{out}: {meta['method_label']} eps={meta['eps']:.4g} CRA={meta['cra']:.2f}% "
          f"clean={meta['clean']:.2f}% K(f)={meta['K_f']:.4g} K(h o f)={meta['K_hf']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
