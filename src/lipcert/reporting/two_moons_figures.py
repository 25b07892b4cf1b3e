"""Two-moons decision-boundary panels (CLL paper Fig. 4 and supplement Fig. D2), drawn from grid files.

Each panel shows one run: the predicted class as a light background, the decision boundary (black),
the margins of half-width eps (the certified eps-level set {radius = eps}, gray lines, with the
uncertified band radius <= eps shaded gray), the training points coloured by class and, in red, the
training points that are misclassified or not certified at eps (Fig. 4: "Red points denote incorrect
or non-robust samples"), with the test CRA (eq. (18)) and K(h o f) (section 3.3) written in the corners. A legend
and a caption under the panels say what each mark is and which set the CRA is from; the scale is stamped in the
top-right corner. Layout and fonts: :mod:`lipcert.reporting.figure_style` (paper width, TrueType PDF fonts);
numbers are shown by :mod:`lipcert.display` (a CRA is rounded down: 99.995 % shows as 99.99 %).

The input files come from :func:`lipcert.decision_grid.evaluate_run_grid`; this module only reads
them (no models, no training code), as all reporting does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..display import display_accuracy, display_significant
from .figure_style import LINE_IN, PAPER_WIDTH_IN, finish_figure, paper_style, save_figure

__all__ = ["MAX_COLUMNS", "REQUIRED_KEYS", "caption", "draw_figure", "load_panel", "plot_panels", "main"]

REQUIRED_KEYS = ("xs", "ys", "logits", "predicted", "radius", "x_train", "y_train", "train_certified", "eps",
                 "metadata")
"""Arrays a grid file must hold (written by :func:`lipcert.decision_grid.evaluate_run_grid`)."""

CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
BACKGROUND_COLORS = ("#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#d9c3b8", "#f7d0e8", "#d9d9d9", "#eeeeb5")
NOT_CERTIFIED_COLOR = "#d62728"
BOUNDARY_COLOR, MARGIN_COLOR, BAND_COLOR, BAND_ALPHA = "black", "#505050", "#808080", 0.35

MAX_COLUMNS = 4
"""Most panels per row at paper width (Fig. D2's seven slack values wrap onto two rows)."""


def load_panel(npz_path: str | Path) -> dict:
    """Read one grid file into a dict of arrays plus ``meta`` (the decoded JSON metadata).

    Raises FileNotFoundError for a missing file and ValueError naming a missing array or a shape
    mismatch between the grid arrays.
    """
    path = Path(npz_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: grid file not found (write it with python -m lipcert.decision_grid)")
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in REQUIRED_KEYS if key not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; expected a file written by evaluate_run_grid")
        panel = {key: np.asarray(npz[key]) for key in npz.files}
    panel["meta"] = json.loads(str(panel["metadata"].reshape(-1)[0]))
    h, w = panel["ys"].shape[0], panel["xs"].shape[0]
    for key in ("predicted", "radius"):
        if panel[key].shape != (h, w):
            raise ValueError(f"{path}: {key} has shape {panel[key].shape}, expected (len(ys), len(xs)) = ({h}, {w})")
    if panel["logits"].shape[:2] != (h, w) or panel["logits"].ndim != 3:
        raise ValueError(f"{path}: logits has shape {panel['logits'].shape}, expected ({h}, {w}, C)")
    return panel


def _class_gaps(logits: np.ndarray) -> list[np.ndarray]:
    """f_c - max_{i != c} f_i per class c; its zero level set bounds class c's region (binary: one gap)."""
    f = logits.astype(np.float64)
    c = f.shape[-1]
    if c == 2:
        return [f[..., 1] - f[..., 0]]
    gaps = []
    for k in range(c):
        others = np.delete(f, k, axis=-1).max(axis=-1)
        gaps.append(f[..., k] - others)
    return gaps


def _crosses(values: np.ndarray, level: float) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 0 and finite.min() < level < finite.max()


def _default_title(meta: dict) -> str:
    method, two_eps = meta.get("method_label", meta.get("method", "?")), f"{2 * float(meta['eps']):.3g}"
    if isinstance(meta.get("p_printed"), (int, float)):  # constant slack (Fig. D2): the paper's printed p, compact
        return f"{method}, 2ε={two_eps}, p={float(meta['p_printed']):g}"  # to fit a quarter of the paper width
    return f"{method}, 2ε = {two_eps}"


def _draw_panel(ax, panel: dict, title: str) -> None:
    xs, ys, meta = panel["xs"], panel["ys"], panel["meta"]
    eps = float(panel["eps"])
    n_classes = panel["logits"].shape[-1]
    from matplotlib.colors import ListedColormap

    background = ListedColormap([BACKGROUND_COLORS[k % len(BACKGROUND_COLORS)] for k in range(n_classes)])
    ax.pcolormesh(xs, ys, panel["predicted"], cmap=background, vmin=-0.5, vmax=n_classes - 0.5,
                  shading="nearest", rasterized=True)
    radius = panel["radius"].astype(np.float64)
    finite = radius[np.isfinite(radius)]
    cap = max(float(finite.max()) if finite.size else 0.0, 2.0 * eps) * 2.0
    radius = np.where(np.isfinite(radius), radius, cap)
    if (radius <= eps).any():
        ax.contourf(xs, ys, radius, levels=[-1.0, eps], colors=[BAND_COLOR], alpha=BAND_ALPHA)
    if _crosses(radius, eps):
        ax.contour(xs, ys, radius, levels=[eps], colors=[MARGIN_COLOR], linewidths=0.6)
    for gap in _class_gaps(panel["logits"]):
        if _crosses(gap, 0.0):
            ax.contour(xs, ys, gap, levels=[0.0], colors=[BOUNDARY_COLOR], linewidths=1.0)

    x_train, y_train = panel["x_train"], panel["y_train"]
    certified = panel["train_certified"].astype(bool)
    for k in range(n_classes):
        sel = (y_train == k) & certified
        ax.scatter(x_train[sel, 0], x_train[sel, 1], s=1.5, color=CLASS_COLORS[k % len(CLASS_COLORS)],
                   linewidths=0, rasterized=True)
    ax.scatter(x_train[~certified, 0], x_train[~certified, 1], s=2.5, color=NOT_CERTIFIED_COLOR, linewidths=0,
               rasterized=True)

    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "edgecolor": "none"}
    ax.text(0.03, 0.96, f"CRA {display_accuracy(float(meta['cra']), 2)}%", transform=ax.transAxes, ha="left",
            va="top", bbox=box)
    k_hf = float(meta["K_hf"])
    ax.text(0.97, 0.04, f"K(h∘f) {display_significant(k_hf, 3)}" if math.isfinite(k_hf) else "K(h∘f) n/a",
            transform=ax.transAxes, ha="right", va="bottom", bbox=box)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("auto")  # the panel is sized to the data's aspect (plot_panels)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, pad=2)


def _legend(n_classes: int) -> tuple[list, list[str]]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=BOUNDARY_COLOR, linewidth=1.0),
               Line2D([], [], color=MARGIN_COLOR, linewidth=0.6),
               Patch(facecolor=BAND_COLOR, alpha=BAND_ALPHA, edgecolor="none")]
    labels = ["decision boundary", "margin: certified radius = ε", "band: radius ≤ ε, not certified"]
    for k in range(n_classes):
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=3, markeredgewidth=0,
                              color=CLASS_COLORS[k % len(CLASS_COLORS)]))
        labels.append(f"training point, class {k}")
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=3, markeredgewidth=0,
                          color=NOT_CERTIFIED_COLOR))
    labels.append("training point misclassified or not certified at ε")
    return handles, labels


def caption(panels: Sequence[dict]) -> str:
    """What the corners and the background of the panels show, and which set the CRA is measured on."""
    n_test = {p["meta"].get("n_test") for p in panels}
    n_train = {p["meta"].get("n_train") for p in panels}
    test = f"{n_test.pop()} test points" if len(n_test) == 1 and None not in n_test else "the test set"
    train = f" ({n_train.pop()} points)" if len(n_train) == 1 and None not in n_train else ""
    return (f"Top-left corner: certified robust accuracy (CRA, eq. (18)) at the panel's ε on {test}, rounded down; "
            f"bottom-right: the calibrated constant K(h∘f). Background: predicted class. Points: the training set"
            f"{train}. One panel per run (seed as trained).")


def plot_panels(npz_paths: Sequence[str | Path], out_png: str | Path, out_pdf: str | Path, ncols: int,
                titles: Sequence[str] | None = None, scale: str | None = None) -> tuple[Path, Path]:
    """Draw one decision-boundary panel per grid file (Fig. 4 / Fig. D2 layout) and save PNG and PDF.

    Panels fill ``ncols`` columns row by row in the order of ``npz_paths``.  ``titles`` (one per file)
    default to "<method>, 2ε = <2 eps>" (plus the printed p for constant slack). At most :data:`MAX_COLUMNS`
    columns fit the paper width (more panels wrap). Under the panels: a legend of every mark, the :func:`caption`
    and, at any ``scale`` but "paper" (None: "paper"), the scale caveat; the scale is stamped top right. Both
    files are written atomically; returns their paths.
    """
    paths = [Path(p) for p in npz_paths]
    if not paths:
        raise ValueError("npz_paths is empty; expected at least one grid file")
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if titles is not None and len(titles) != len(paths):
        raise ValueError(f"titles has {len(titles)} entries for {len(paths)} grid files; expected one per file")
    panels = [load_panel(p) for p in paths]

    with paper_style():
        fig = draw_figure(panels, ncols, titles, scale)
        return save_figure(fig, out_png, out_pdf)


def draw_figure(panels: Sequence[dict], ncols: int, titles: Sequence[str] | None = None, scale: str | None = None):
    """The figure of :func:`plot_panels` from loaded panels (:func:`load_panel`), not saved; draw it inside
    :func:`lipcert.reporting.figure_style.paper_style`."""
    from matplotlib.figure import Figure

    ncols = min(int(ncols), len(panels), MAX_COLUMNS)
    nrows = math.ceil(len(panels) / ncols)
    spans = [(p["xs"][-1] - p["xs"][0], p["ys"][-1] - p["ys"][0]) for p in panels]
    aspect = max(h / w for w, h in spans)
    gaps = (0.05, LINE_IN + 0.05)  # a title line above every panel
    panel_width = (PAPER_WIDTH_IN - 0.04 - (ncols - 1) * gaps[0]) / ncols
    fig = Figure(figsize=(PAPER_WIDTH_IN, panel_width * aspect * nrows + gaps[1] * (nrows - 1)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        if index >= len(panels):
            ax.set_axis_off()
            continue
        panel = panels[index]
        _draw_panel(ax, panel, titles[index] if titles is not None else _default_title(panel["meta"]))
    n_classes = max(p["logits"].shape[-1] for p in panels)
    finish_figure(fig, scale=scale or "paper", caption=caption(panels), legend=_legend(n_classes), legend_cols=2,
                  grid_gaps_in=gaps)
    return fig


def main(argv: list[str] | None = None) -> int:
    """``python -m lipcert.reporting.two_moons_figures --npz a.npz ... --out-png F.png --out-pdf F.pdf --ncols 4``."""
    parser = argparse.ArgumentParser(prog="python -m lipcert.reporting.two_moons_figures", description=main.__doc__)
    parser.add_argument("--npz", nargs="+", required=True, help="grid files, one panel each, row by row")
    parser.add_argument("--out-png", required=True)
    parser.add_argument("--out-pdf", required=True)
    parser.add_argument("--ncols", type=int, default=4)
    parser.add_argument("--titles", nargs="+", default=None, help="one title per grid file")
    parser.add_argument("--scale", default=None, help="scale the runs were built at (captioned unless 'paper')")
    args = parser.parse_args(argv)
    try:
        png, pdf = plot_panels(args.npz, args.out_png, args.out_pdf, args.ncols, args.titles, args.scale)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {png} and {pdf} ({len(args.npz)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
