"""Training curves of one run, drawn from its ``history.json``."""

from __future__ import annotations

from pathlib import Path

from ..run_record import read_history

__all__ = ["plot_history"]


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
