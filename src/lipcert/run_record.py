"""The run record: where a run's files live and how its metrics are named (torch-free; issue 13, first step).

One definition of each convention that training, certification, tightness, the decision grid and reporting share:

* :data:`PAPER_RADII`: the ℓ2 radii the paper reports CRA at (Tables 1 and 2: 36/255, 72/255, 108/255);
* :func:`cra_key`: the ``metrics.json`` key of the CRA at a radius (``cra_<eps:.6g>``, e.g. ``cra_0.141176``;
  ``train_`` prefixed for the training set);
* :func:`p_from_printed` / :func:`printed_p`: eq. (5)'s p from a p printed in the paper's tables (the authors' code
  splits the printed value over both margin sides, so eq. (5)'s p is half of it) and back;
* :func:`path_number`: how a number is spelled in a run path (``eps0.15``, ``p0.005``, ``lam1e-05``), so that
  ``1`` and ``1.0`` name the same run;
* :class:`RunFiles`: the files of one run directory.

Importing this module imports neither torch nor the training engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["COLLAPSE_KEY", "PAPER_RADII", "RunFiles", "collapse_of", "cra_key", "final_metrics_path", "p_from_printed", "path_number", "printed_p"]

PAPER_RADII: tuple[float, ...] = (36 / 255, 72 / 255, 108 / 255)
"""ℓ2 certification radii of the paper's CRA columns (CLL section 4, Tables 1 and 2)."""


def cra_key(eps: float, prefix: str = "") -> str:
    """The metrics key of the CRA (in %) at ℓ2 radius ``eps``: ``<prefix>cra_<eps:.6g>``."""
    return f"{prefix}cra_{float(eps):.6g}"


def path_number(value: float | str) -> str:
    """A number as it appears in a run path: ``format(float(value), "g")`` (``1.0`` -> ``1``, ``1e-05``); the word
    ``default`` (no value set) passes unchanged."""
    if value == "default":
        return "default"
    return f"{float(value):g}"


def p_from_printed(p_printed: float) -> float:
    """Eq. (5) p from a p printed in Table 1, Table D5, Fig. D2 or Table B4 (authors' code convention): p_printed / 2.

    The authors' code uses the quantiles p/2 and 1 - p/2, i.e. it splits the printed value over the
    two margin sides. logit(1 - p_printed/2) / eps reproduces all 25 K(h o f) cells of Table D5 and
    the CLL K(h o f) of Tables 1 and 2 (see /work/shared/paper_tables/README.md, "How the K columns
    were assigned", point 5). Table B4's p = 0.15 for 4C3F/6C2F is already an eq. (5) p
    (inconsistency 9 there) and must not be halved.
    """
    p_printed = float(p_printed)
    if not (0.0 < p_printed < 1.0):
        raise ValueError(f"printed p must lie in (0, 1), got {p_printed!r}")
    return p_printed / 2.0


def printed_p(p: float) -> float:
    """The inverse of :func:`p_from_printed`: the paper's printed p for eq. (5)'s p (2 p)."""
    p = float(p)
    if not (0.0 < p < 0.5):
        raise ValueError(f"eq. (5) p must lie in (0, 0.5), got {p!r}")
    return 2.0 * p


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


COLLAPSE_KEY = "collapse"
"""Key under ``extra`` of ``metrics.json``: None for a run that learned, else a mapping with at least ``reason`` (a
short sentence: e.g. clean accuracy at chance level, or the training loss back at its first-epoch value) set by the
training stage; reporting marks every table cell such a run feeds (issue 13, item 5)."""


def collapse_of(record) -> dict | None:
    """The collapse flag of a ``metrics.json`` record (``extra.collapse``), or None when the run did not collapse
    (or was written before the flag existed)."""
    flag = (record.get("extra") or {}).get(COLLAPSE_KEY)
    if flag is None:
        return None
    if not isinstance(flag, dict) or not isinstance(flag.get("reason"), str):
        raise ValueError(f"metrics.json extra.{COLLAPSE_KEY} must be null or a mapping with a 'reason' string, "
                         f"got {flag!r}")
    return flag
