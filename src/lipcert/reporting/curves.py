"""Training curves drawn from runs' ``history.json``: one run's small figure for MLflow (:func:`plot_history`) and
the curves of a target's runs in its notebook (:func:`history_frame`, :func:`history_png`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..run_record import read_history

__all__ = ["history_frame", "history_png", "plot_history", "run_label"]


def plot_history(history_json: str | Path, out_png: str | Path) -> Path:
    """Plot loss, clean accuracy / CRA and K(f) over epochs (a small figure for MLflow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_history(history_json)
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    axes[0].plot(epochs, [h["loss"] for h in history])
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log" if min(h["loss"] for h in history) > 0 else "linear")
    evald = [h for h in history if "clean" in h]
    axes[1].plot([h["epoch"] for h in evald], [h["clean"] for h in evald], label="clean")
    for key in sorted(k for k in history[-1] if k.startswith("cra_")):
        axes[1].plot([h["epoch"] for h in evald], [h[key] for h in evald], label=key.replace("cra_", "CRA@"))
    axes[1].set(xlabel="epoch", ylabel="test accuracy (%)")
    axes[1].legend(fontsize=7)
    axes[2].plot(epochs, [h["K_f"] for h in history])
    axes[2].set(xlabel="epoch", ylabel="K(f)", yscale="log")
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run_label(run_dir: str | Path) -> str:
    """A short name of a run directory: its method, ε/p, variant and seed folders (``cll eps0.1_pdefault base
    seed0``)."""
    return " ".join(Path(run_dir).parts[-4:])


def history_frame(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The per-epoch records of every run (``history.json`` through :func:`lipcert.run_record.read_history`) as one
    long frame: ``run`` (:func:`run_label`), ``epoch``, ``loss``, ``clean`` and ``cra`` (the first ``cra_<eps>`` key;
    NaN on epochs that were not evaluated)."""
    rows = []
    for run_dir in run_dirs:
        history = read_history(run_dir)
        cra_keys = sorted({k for h in history for k in h if str(k).startswith("cra_")})
        for entry in history:
            rows.append({"run": run_label(run_dir), "epoch": entry["epoch"], "loss": entry.get("loss", math.nan),
                         "clean": entry.get("clean", math.nan),
                         "cra": entry.get(cra_keys[0], math.nan) if cra_keys else math.nan,
                         "cra_key": cra_keys[0] if cra_keys else ""})
    return pd.DataFrame.from_records(rows, columns=["run", "epoch", "loss", "clean", "cra", "cra_key"])


def history_png(frame: pd.DataFrame, scale: str) -> bytes:
    """Training curves of :func:`history_frame` as PNG: loss (log axis when positive) and test CRA over epochs, one
    line per run, at paper width with the scale stamped (:mod:`lipcert.reporting.figure_style`)."""
    import io

    from matplotlib.figure import Figure

    from .figure_style import PAPER_WIDTH_IN, finish_figure, paper_style

    with paper_style():
        fig = Figure(figsize=(PAPER_WIDTH_IN, 1.9))
        loss_ax, cra_ax = fig.subplots(1, 2)
        for run, sub in frame.groupby("run", sort=False):
            loss_ax.plot(sub["epoch"], sub["loss"], label=run)
            evaluated = sub[sub["cra"].notna()]
            cra_ax.plot(evaluated["epoch"], evaluated["cra"], marker="o", label=run)
        if (frame["loss"] > 0).all():
            loss_ax.set_yscale("log")
        loss_ax.set(xlabel="epoch", ylabel="training loss")
        cra_ax.set(xlabel="epoch", ylabel="test CRA at the run's ε (%)")
        handles, labels = loss_ax.get_legend_handles_labels()
        finish_figure(fig, scale=scale, caption="Per-epoch records of training (history.json): training loss and "
                      "the CRA on the test set at the run's certification radius on evaluated epochs.",
                      legend=(handles, labels), legend_cols=2)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    return buffer.getvalue()
