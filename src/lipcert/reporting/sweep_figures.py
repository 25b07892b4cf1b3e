"""Drawing the sweep figures (CLL Fig. 5, Fig. D1, Fig. D4) from the frames :mod:`lipcert.reporting.sweeps` builds.

Every figure carries the scale line (in red with the caveat at any scale but ``paper``) and is written as STEM.png
and STEM.pdf, atomically. Matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..io_utils import atomic_write_bytes
from .records import SeedSummary, scale_caveat
from .sweep_records import use_log_x

__all__ = ["METHOD_COLORS", "draw_curves", "draw_eps_sweep", "draw_param_sweep", "draw_slack_sweep"]

METHOD_COLORS = {"CLL": "tab:blue", "GloRo": "tab:orange", "CE": "tab:gray"}


def _new_figure(ncols: int, width: float = 4.0, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save_figure(fig, out_stem: str | os.PathLike[str], scale: str, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    caveat = scale_caveat(scale)
    fig.tight_layout(rect=(0, 0.06 if caveat else 0, 1, 1))
    fig.text(0.5, 0.005, caveat or "scale 'paper'", ha="center", va="bottom", fontsize=8,
             color="firebrick" if caveat else "black")
    stem = Path(out_stem)
    for fmt in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150)
        atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buffer.getvalue())


def _errorbar(ax, xs: Sequence[float], summaries: Sequence[SeedSummary], **style: Any) -> None:
    points = [(x, s.mean, 0.0 if math.isnan(s.std) else s.std) for x, s in zip(xs, summaries) if s.n > 0]
    if points:
        x, y, err = zip(*points)
        ax.errorbar(x, y, yerr=err, capsize=2, **style)


def _summaries(frame: pd.DataFrame, mean: str, std: str, n: str | None = None) -> list[SeedSummary]:
    counts = frame[n] if n is not None else [0 if math.isnan(m) else 1 for m in frame[mean]]
    return [SeedSummary(m, s, c) for m, s, c in zip(frame[mean], frame[std], counts)]


def draw_eps_sweep(frame: pd.DataFrame, methods: Sequence[str], out_stem, scale: str, title: str) -> None:
    """Fig. 5: CRA (ours and the paper's), K(f) on a log axis and tightness over ε, one line per method."""
    fig, axes = _new_figure(3)
    xs = frame["eps"].tolist()
    for method in methods:
        prefix, color = method.lower(), METHOD_COLORS[method]
        for ax, mean, std, label in ((axes[0], f"{prefix}_cra_ours", f"{prefix}_cra_std", "CRA (%)"),
                                     (axes[1], f"{prefix}_K_f", f"{prefix}_K_f_std", "K(f)"),
                                     (axes[2], f"{prefix}_tightness", f"{prefix}_tightness_std", "tightness (%)")):
            _errorbar(ax, xs, _summaries(frame, mean, std), marker="o", color=color, label=f"{method} (ours)")
            ax.set(xlabel="ε (train = test)", ylabel=label)
        axes[0].plot(frame["eps"], frame[f"{prefix}_cra_paper"], linestyle="--", marker="x", color=color,
                     label=f"{method} (paper)")
    axes[1].set_yscale("log")
    for ax in axes[1:]:
        ax.set_xlim(axes[0].get_xlim())
    axes[0].legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)


def draw_slack_sweep(frame: pd.DataFrame, eps: float, out_stem, scale: str, title: str) -> None:
    """Fig. 5 (left): clean accuracy and CRA over the printed p on a log axis."""
    fig, axes = _new_figure(1, width=4.6)
    ax = axes[0]
    xs = frame["p_printed"].tolist()
    _errorbar(ax, xs, _summaries(frame, "clean", "clean_std", "n"), marker="o", color="tab:green", label="clean")
    _errorbar(ax, xs, _summaries(frame, "cra", "cra_std", "n"), marker="s", color="tab:blue", label=f"CRA ε={eps:.4g}")
    ax.set(xscale="log", xlabel="p (printed = 2 × eq. (5) p)", ylabel="accuracy (%)")
    ax.legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)


def draw_curves(frame: pd.DataFrame, methods: Sequence[str], eps: float, out_stem, scale: str, title: str) -> None:
    """Fig. D1: CRA over epochs per method, mean ± std band."""
    fig, axes = _new_figure(1, width=5.0)
    ax = axes[0]
    for method in methods:
        sub = frame[frame["method"] == method]
        color = METHOD_COLORS.get(method)
        ax.plot(sub["epoch"], sub["cra"], color=color, label=method)
        std = sub["cra_std"].fillna(0.0)
        ax.fill_between(sub["epoch"], sub["cra"] - std, sub["cra"] + std, color=color, alpha=0.2, linewidth=0)
    ax.set(xlabel="epoch", ylabel=f"CRA ε={eps:.4g} (%)")
    ax.legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)


def draw_param_sweep(frame: pd.DataFrame, param: str, out_stem, scale: str, title: str) -> None:
    """Fig. D4: CRA and clean accuracy (left axis) and K(f) (log right axis) over a run parameter."""
    fig, axes = _new_figure(1, width=5.0)
    ax = axes[0]
    k_axis = ax.twinx() if frame["K_f"].notna().any() else None
    for method in dict.fromkeys(frame["method"]):
        sub = frame[frame["method"] == method]
        color = METHOD_COLORS.get(method)
        xs = sub["value"].tolist()
        _errorbar(ax, xs, _summaries(sub, "cra", "cra_std", "n"), marker="o", color=color, label=f"{method} CRA")
        _errorbar(ax, xs, _summaries(sub, "clean", "clean_std", "n"), marker="s", linestyle="--", color=color,
                  label=f"{method} clean")
        if k_axis is not None:
            k_axis.plot(sub["value"], sub["K_f"], marker="^", linestyle=":", color=color, label=f"{method} K(f)")
    if use_log_x(frame["value"]):
        ax.set_xscale("log")
    ax.set(xlabel=param, ylabel="accuracy (%)")
    if k_axis is not None:
        k_axis.set(yscale="log", ylabel="K(f) (dotted)")
    ax.legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)
