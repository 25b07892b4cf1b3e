"""Drawing the sweep figures (CLL Fig. 5, Fig. D1, Fig. D4) from the frames :mod:`lipcert.reporting.sweeps` builds.

Every figure is laid out by :mod:`lipcert.reporting.figure_style` (paper width, TrueType PDF fonts): its title, the
scale stamped top right, a legend and a caption under the panels (what the markers, error bars and bands are, which
set the accuracies are from) and, at any scale but ``paper``, the caveat in red. Written as STEM.png and STEM.pdf,
atomically; each ``draw_*`` returns its figure. Matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..display import display_significant
from .figure_style import PAPER_WIDTH_IN, finish_figure, paper_style, save_figure
from .records import SeedSummary
from .sweep_records import use_log_x

__all__ = ["METHOD_COLORS", "draw_curves", "draw_eps_sweep", "draw_param_sweep", "draw_slack_sweep"]

METHOD_COLORS = {"CLL": "tab:blue", "GloRo": "tab:orange", "CE": "tab:gray"}

SEEDS_NOTE = "Markers: mean over seeds; error bars: sample std (none for one seed)."


def _new_figure(ncols: int, height: float = 1.9):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(PAPER_WIDTH_IN, height))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _legend_of(*axes) -> tuple[list, list[str]]:
    """The handles and labels of every axis, each label once (a twin axis's too)."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels


def _save_figure(fig, out_stem: str | os.PathLike[str], scale: str, title: str, caption: str,
                 legend: tuple[list, list[str]], legend_cols: int = 4) -> None:
    finish_figure(fig, scale=scale, caption=caption, title=title, legend=legend, legend_cols=legend_cols)
    stem = Path(out_stem)
    save_figure(fig, stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.pdf"))


def _errorbar(ax, xs: Sequence[float], summaries: Sequence[SeedSummary], **style: Any) -> None:
    points = [(x, s.mean, 0.0 if math.isnan(s.std) else s.std) for x, s in zip(xs, summaries) if s.n > 0]
    if points:
        x, y, err = zip(*points)
        ax.errorbar(x, y, yerr=err, capsize=2, **style)


def _summaries(frame: pd.DataFrame, mean: str, std: str, n: str | None = None) -> list[SeedSummary]:
    counts = frame[n] if n is not None else [0 if math.isnan(m) else 1 for m in frame[mean]]
    return [SeedSummary(m, s, c) for m, s, c in zip(frame[mean], frame[std], counts)]


def draw_eps_sweep(frame: pd.DataFrame, methods: Sequence[str], out_stem, scale: str, title: str) -> Any:
    """Fig. 5: CRA (ours and the paper's), K(f) on a log axis and tightness over ε, one line per method."""
    with paper_style():
        fig, axes = _new_figure(3)
        xs = frame["eps"].tolist()
        for method in methods:
            prefix, color = method.lower(), METHOD_COLORS[method]
            for ax, mean, std, label in ((axes[0], f"{prefix}_cra_ours", f"{prefix}_cra_std", "CRA (%)"),
                                         (axes[1], f"{prefix}_K_f", f"{prefix}_K_f_std", "K(f)"),
                                         (axes[2], f"{prefix}_tightness", f"{prefix}_tightness_std",
                                          "tightness (%)")):
                _errorbar(ax, xs, _summaries(frame, mean, std), marker="o", color=color, label=f"{method} (ours)")
                ax.set(xlabel="ε (train = test)", ylabel=label)
            axes[0].plot(frame["eps"], frame[f"{prefix}_cra_paper"], linestyle="--", marker="x", color=color,
                         label=f"{method} (paper)")
        if (frame[[f"{m.lower()}_K_f" for m in methods]] > 0).any().any():
            axes[1].set_yscale("log")
        for ax in axes[1:]:
            ax.set_xlim(axes[0].get_xlim())
        caption = ("Left: CRA on the test set at ε_train = ε_test (certify.json); dashed ×: the paper's table in "
                   "Fig. 5. Middle: K(f) (log axis). Right: tightness = empirical lower bound / K(f), in %. "
                   + SEEDS_NOTE)
        _save_figure(fig, out_stem, scale, title, caption, _legend_of(*axes))
    return fig


def draw_slack_sweep(frame: pd.DataFrame, eps: float, out_stem, scale: str, title: str) -> Any:
    """Fig. 5 (left): clean accuracy and CRA over the printed p on a log axis."""
    with paper_style():
        fig, axes = _new_figure(1, height=2.0)
        ax = axes[0]
        xs = frame["p_printed"].tolist()
        _errorbar(ax, xs, _summaries(frame, "clean", "clean_std", "n"), marker="o", color="tab:green",
                  label="clean")
        _errorbar(ax, xs, _summaries(frame, "cra", "cra_std", "n"), marker="s", color="tab:blue",
                  label=f"CRA ε = {display_significant(eps, 3)}")
        ax.set(xscale="log", xlabel="slack p (printed = 2 × eq. (5) p)", ylabel="accuracy (%)")
        caption = (f"Clean accuracy and CRA at ε = {display_significant(eps, 3)} on the test set (certify.json) of "
                   "CLL runs over the slack p (log axis). " + SEEDS_NOTE)
        _save_figure(fig, out_stem, scale, title, caption, _legend_of(ax))
    return fig


def draw_curves(frame: pd.DataFrame, methods: Sequence[str], eps: float, out_stem, scale: str, title: str) -> Any:
    """Fig. D1: CRA over epochs per method, mean ± std band."""
    with paper_style():
        fig, axes = _new_figure(1, height=2.0)
        ax = axes[0]
        for method in methods:
            sub = frame[frame["method"] == method]
            color = METHOD_COLORS.get(method)
            ax.plot(sub["epoch"], sub["cra"], color=color, label=f"{method} (mean)")
            std = sub["cra_std"].fillna(0.0)
            ax.fill_between(sub["epoch"], sub["cra"] - std, sub["cra"] + std, color=color, alpha=0.2, linewidth=0,
                            label=f"{method} ± std")
        ax.set(xlabel="epoch", ylabel=f"CRA ε = {display_significant(eps, 3)} (%)")
        caption = (f"CRA at ε = {display_significant(eps, 3)} on the test set over training epochs, from training's "
                   "per-epoch evaluation (history.json). Line: mean over seeds; band: ± sample std (none for one "
                   "seed).")
        _save_figure(fig, out_stem, scale, title, caption, _legend_of(ax))
    return fig


def draw_param_sweep(frame: pd.DataFrame, param: str, out_stem, scale: str, title: str) -> Any:
    """Fig. D4: CRA and clean accuracy (left axis) and K(f) (log right axis) over a run parameter."""
    with paper_style():
        fig, axes = _new_figure(1, height=2.0)
        ax = axes[0]
        k_axis = ax.twinx() if frame["K_f"].notna().any() else None
        for method in dict.fromkeys(frame["method"]):
            sub = frame[frame["method"] == method]
            color = METHOD_COLORS.get(method)
            xs = sub["value"].tolist()
            _errorbar(ax, xs, _summaries(sub, "cra", "cra_std", "n"), marker="o", color=color,
                      label=f"{method} CRA")
            _errorbar(ax, xs, _summaries(sub, "clean", "clean_std", "n"), marker="s", linestyle="--", color=color,
                      label=f"{method} clean")
            if k_axis is not None:
                k_axis.plot(sub["value"], sub["K_f"], marker="^", linestyle=":", color=color,
                            label=f"{method} K(f)")
        if use_log_x(frame["value"]):
            ax.set_xscale("log")
        ax.set(xlabel=param, ylabel="accuracy (%)")
        if k_axis is not None:
            k_axis.set(ylabel="K(f), dotted")
            if (frame["K_f"] > 0).all():
                k_axis.set_yscale("log")
        eps = display_significant(float(frame["eps_cert"].iloc[0]), 3) if "eps_cert" in frame else "ε"
        caption = (f"Solid line, circles: CRA at ε = {eps} on the test set; dashed, squares: clean accuracy (left "
                   "axis, %; certify.json); dotted, triangles: K(f) (right axis, log). " + SEEDS_NOTE)
        _save_figure(fig, out_stem, scale, title, caption, _legend_of(ax, *([k_axis] if k_axis else [])),
                     legend_cols=3)
    return fig
