"""The run record: where a run's files live and how its metrics are named (torch-free; issue 13, first step).

One definition of each convention that training, certification, tightness, the decision grid and reporting share:

* :data:`PAPER_RADII`: the ℓ2 radii the paper reports CRA at (Tables 1 and 2: 36/255, 72/255, 108/255);
* :func:`cra_key`: the ``metrics.json`` key of the CRA at a radius (``cra_<eps:.6g>``, e.g. ``cra_0.141176``;
  ``train_`` prefixed for the training set);
* :class:`RunFiles`: the files of one run directory.

Importing this module imports neither torch nor the training engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["PAPER_RADII", "RunFiles", "cra_key", "final_metrics_path"]

PAPER_RADII: tuple[float, ...] = (36 / 255, 72 / 255, 108 / 255)
"""ℓ2 certification radii of the paper's CRA columns (CLL section 4, Tables 1 and 2)."""


def cra_key(eps: float, prefix: str = "") -> str:
    """The metrics key of the CRA (in %) at ℓ2 radius ``eps``: ``<prefix>cra_<eps:.6g>``."""
    return f"{prefix}cra_{float(eps):.6g}"


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def failed(self) -> Path:
        return self.root / "failed.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def tightness(self) -> Path:
        return self.root / "tightness.json"

    @property
    def certify(self) -> Path:
        return self.root / "certify.json"


def final_metrics_path(run_dir: str | Path) -> Path:
    """Where a finished run's ``metrics.json`` lives."""
    return RunFiles(Path(run_dir)).metrics
