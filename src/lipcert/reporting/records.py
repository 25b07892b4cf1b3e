"""Reading and aggregating results for the tables (CLL Tables 1, 2, D6-D8 and the sweeps): the run manifest, a
run's table metrics, seed summaries (mean and sample std, n - 1), collapse / retry flags and the row status.

One source per column (issue 13, item 4): clean accuracy, CRA and K(f) come from the certification stage
(``certify.json``), K(h∘f), seed, data label and flags from training (``metrics.json``), tightness from the tightness
attack (``tightness.json``); every file is read through :mod:`lipcert.run_record`. Reads result files only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..io_utils import read_json
from ..run_record import (CLEAN_KEY, PAPER_RADII, SEED_KEY, RunFiles, collapse_of, cra_key, data_label_of, finite_number,
                          pgd_key, read_certify, read_history, read_metrics, read_tightness, retry_of)
from . import paper_tables

__all__ = ["CERTIFIED_METRICS", "CLEAN_AGREEMENT_TOLERANCE", "CRA_RADII", "KEY_COLUMNS", "METRICS", "SCALES",
           "STATUS_NOT_REPRODUCED", "STATUS_OURS_ONLY", "STATUS_REPRODUCED", "TRAINING_METRICS", "ManifestRow",
           "RADIUS_METRICS", "RunMetrics", "SeedFlags", "SeedSummary", "TABLE_METRICS", "TIMING_METRICS", "aggregate_seeds", "check_clean_agreement", "check_scale",
           "finite_number", "is_missing", "mean_epoch_seconds", "read_manifest", "read_paper_table", "read_run_metrics", "read_runs",
           "run_data_label", "row_status", "scale_caveat", "string_field", "summarise", "summarise_runs"]


KEY_COLUMNS = ("dataset", "method", "model", "variant")
"""Join key between the manifest and the paper tables (see params/paper_tables/README.md)."""


METRICS = ("clean", "cra_36", "cra_72", "cra_108", "K_f", "K_hf", "tightness")
"""Metric columns of Tables 1 and 2: accuracies, CRA and tightness in %, K(f) and K(h∘f)."""


RADIUS_METRICS = ("pgd", "cra")
"""Metrics at a table row's own radius (the paper CSV's ``radius`` column; seed 004 table 2: 1.58 on MNIST, 36/255 on
CIFAR-10): ``pgd`` the accuracy under PGD-100 (training's metrics.json, :func:`lipcert.run_record.pgd_key`), ``cra``
the certified accuracy (certify.json, :func:`lipcert.run_record.cra_key`); both in %."""


TIMING_METRICS = ("s_epoch",)
"""``s_epoch``: seconds of training per epoch, the mean of the history's ``train_s`` (history.json)."""


TABLE_METRICS = (*METRICS, *RADIUS_METRICS, *TIMING_METRICS)
"""Every metric a paper table can show (a target's ``metrics`` in params/workflow.yaml; default :data:`METRICS`)."""


CRA_RADII = dict(zip(("cra_36", "cra_72", "cra_108"), PAPER_RADII))
"""ℓ2 certification radii of the CRA columns (paper section 4)."""


SCALES = ("paper", "quick", "ci")
"""Scales a table can be built at: the paper's settings, a shortened run, the CI smoke run."""


STATUS_REPRODUCED = "reproduced"


STATUS_NOT_REPRODUCED = "paper value, not reproduced"


STATUS_OURS_ONLY = "ours only"


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def scale_caveat(scale: str) -> str | None:
    """The caveat line for results built at ``scale`` (None for the paper's own scale)."""
    check_scale(scale)
    if scale == "paper":
        return None
    return f"built at scale '{scale}': not comparable with the paper without caveat"


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row: a table row key and the run directories of its finished seeds.

    ``planned_runs`` is the number of seeds the workflow meant to run (None: as many as listed).
    """

    dataset: str
    method: str
    model: str
    variant: str
    runs: tuple[Path, ...]
    planned_runs: int | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.method, self.model, self.variant)


def string_field(row: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    if name not in row:
        if default is not None:
            return default
        raise ValueError(f"{where}: missing key {name!r} (expected keys {list(KEY_COLUMNS) + ['runs']})")
    value = row[name]
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{where}: {name!r} must be a string, got {value!r}")
    return value.strip()


def read_manifest(manifest: str | os.PathLike[str] | Sequence[Mapping[str, Any]]) -> list[ManifestRow]:
    """Read and check a run manifest (a JSON file or the already loaded list of rows).

    Each row is ``{"dataset", "method", "model", "variant", "runs": [run_dir, ...]}`` (the keys of
    Tables 1/2 of the paper); ``variant`` may be left out (= ""), ``planned_runs`` (int) is optional.
    Relative run directories are taken relative to the current working directory. A key that appears
    twice, a run listed twice or a malformed row raises ValueError naming the row.
    """
    source = "manifest"
    if isinstance(manifest, (str, os.PathLike)):
        source = str(manifest)
        manifest = read_json(manifest)
    if not isinstance(manifest, Sequence) or isinstance(manifest, (str, bytes)):
        raise ValueError(f"{source}: a manifest must be a list of rows, got {type(manifest).__name__}")
    rows: list[ManifestRow] = []
    seen: dict[tuple[str, ...], int] = {}
    for index, raw in enumerate(manifest):
        where = f"{source} row {index}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: a row must be a JSON object, got {raw!r}")
        dataset = string_field(raw, "dataset", where)
        method = string_field(raw, "method", where)
        model = string_field(raw, "model", where)
        variant = string_field(raw, "variant", where, default="")
        for name, value in (("dataset", dataset), ("method", method), ("model", model)):
            if not value:
                raise ValueError(f"{where}: {name!r} must not be empty")
        if "runs" not in raw:
            raise ValueError(f"{where}: missing key 'runs' (a list of run directories, empty when not run)")
        runs = raw["runs"]
        if not isinstance(runs, Sequence) or isinstance(runs, (str, bytes)):
            raise ValueError(f"{where}: 'runs' must be a list of run directories, got {runs!r}")
        bad = [r for r in runs if not isinstance(r, (str, os.PathLike)) or not str(r)]
        if bad:
            raise ValueError(f"{where}: 'runs' entries must be non-empty paths, got {bad!r}")
        run_paths = tuple(Path(r) for r in runs)
        if len(set(run_paths)) != len(run_paths):
            raise ValueError(f"{where}: a run directory is listed twice in {[str(r) for r in run_paths]}")
        planned = raw.get("planned_runs")
        if planned is not None:
            if isinstance(planned, bool) or not isinstance(planned, int) or planned < 1:
                raise ValueError(f"{where}: 'planned_runs' must be a positive int, got {planned!r}")
            if planned < len(run_paths):
                raise ValueError(f"{where}: 'planned_runs' = {planned} is less than the {len(run_paths)} runs listed")
        row = ManifestRow(dataset, method, model, variant, run_paths, planned)
        if row.key in seen:
            raise ValueError(f"{where}: key {row.key} already appears in row {seen[row.key]}")
        seen[row.key] = index
        rows.append(row)
    return rows


CLEAN_AGREEMENT_TOLERANCE = 0.5
"""Largest |clean accuracy of metrics.json - that of certify.json| in percentage points accepted as one model.

Both are measured on the same test set with the same trained weights, but possibly on another device (training on
the GPU, certification on the CPU) after the bound has converged, so a few borderline predictions may flip; 0.5
points (50 of 10,000 CIFAR test images) is far above such flips and far below what a wrong checkpoint, test set or
run directory gives."""

CERTIFIED_METRICS = ("clean", "cra_36", "cra_72", "cra_108", "K_f")
"""Table metrics taken from the certification stage's certify.json (clean accuracy and CRA in %, K(f))."""

TRAINING_METRICS = ("K_hf",)
"""Table metrics taken from training's metrics.json: K(h∘f), the calibrated constant at the end of training."""


@dataclass(frozen=True)
class RunMetrics:
    """The table metrics of one finished run (percentages for accuracies and tightness).

    ``values``: :data:`CERTIFIED_METRICS` from certify.json, :data:`TRAINING_METRICS` from metrics.json and
    ``tightness`` from tightness.json; ``collapse`` / ``retry``: the flags of metrics.json
    (:func:`lipcert.run_record.collapse_of`, :func:`lipcert.run_record.retry_of`).
    """

    run_dir: Path
    seed: int
    values: Mapping[str, float]
    data_label: str = ""
    collapse: Mapping[str, Any] | None = None
    retry: Mapping[str, Any] | None = None


def check_clean_agreement(record: Mapping[str, Any], certified: Mapping[str, float], run_dir: Path) -> None:
    """ValueError naming both files when training's and certification's clean accuracy differ by more than
    :data:`CLEAN_AGREEMENT_TOLERANCE` points (they measure the same model on the same test set)."""
    trained = record["metrics"].get(CLEAN_KEY)
    if trained is None:
        return
    trained = finite_number(trained, f"{RunFiles(run_dir).metrics}: metrics[{CLEAN_KEY!r}]")
    if abs(trained - certified[CLEAN_KEY]) > CLEAN_AGREEMENT_TOLERANCE:
        files = RunFiles(run_dir)
        raise ValueError(
            f"{files.metrics} records clean accuracy {trained:.4g} % but {files.certify} {certified[CLEAN_KEY]:.4g} %"
            f" (more than {CLEAN_AGREEMENT_TOLERANCE} points apart): the two files do not describe the same model "
            "and test set; re-run the certify stage for this run")


def mean_epoch_seconds(run_dir: str | os.PathLike[str]) -> float | None:
    """The mean of the ``train_s`` (seconds of training in that epoch) of a run's history.json; None when no entry
    records it."""
    seconds = [finite_number(entry["train_s"], f"{run_dir}/history.json: epoch {entry['epoch']} 'train_s'")
               for entry in read_history(run_dir) if entry.get("train_s") is not None]
    return float(np.mean(seconds)) if seconds else None


def read_run_metrics(run_dir: str | os.PathLike[str], radius: float | None = None, timing: bool = False) -> RunMetrics:
    """Read one finished run's table metrics: certification first, training for the rest (one source per column).

    ``clean``, ``cra_36/72/108`` (CRA at ℓ2 radius 36/255, 72/255, 108/255; paper section 4) and ``K_f`` come from
    the certification stage's ``certify.json``; ``K_hf``, the seed, the data label and the collapse / retry flags
    from training's ``metrics.json``; ``tightness`` (supplement C, eq. (20), stored as a fraction) from
    ``tightness.json`` when present, in percent. A metric a file does not hold is left out. A missing metrics.json
    or certify.json raises FileNotFoundError naming it (no fallback to training's numbers); clean accuracies that
    disagree (:func:`check_clean_agreement`) raise ValueError naming both files.

    With ``radius`` (a table row's certification radius) also :data:`RADIUS_METRICS`: ``cra`` from certify.json and
    ``pgd`` from metrics.json at that radius; with ``timing`` ``s_epoch`` (:func:`mean_epoch_seconds`).
    """
    root = Path(run_dir)
    if not RunFiles(root).metrics.is_file():
        raise FileNotFoundError(
            f"run directory {str(root)!r} is listed in the manifest but {str(RunFiles(root).metrics)!r} does not "
            "exist (the manifest must list finished runs only)")
    record = read_metrics(root)
    certified = read_certify(root)
    check_clean_agreement(record, certified, root)
    values: dict[str, float] = {}
    for name in CERTIFIED_METRICS:
        key = cra_key(CRA_RADII[name]) if name in CRA_RADII else name
        if key in certified:
            values[name] = certified[key]
    for name in TRAINING_METRICS:
        if name in record["metrics"]:
            values[name] = finite_number(record["metrics"][name], f"{RunFiles(root).metrics}: metrics[{name!r}]")
    tightness = read_tightness(root)
    if tightness is not None:
        values["tightness"] = tightness
    if radius is not None and not math.isnan(radius):
        if cra_key(radius) in certified:
            values["cra"] = certified[cra_key(radius)]
        if pgd_key(radius) in record["metrics"]:
            values["pgd"] = finite_number(record["metrics"][pgd_key(radius)],
                                          f"{RunFiles(root).metrics}: metrics[{pgd_key(radius)!r}]")
    if timing:
        seconds = mean_epoch_seconds(root)
        if seconds is not None:
            values["s_epoch"] = seconds
    return RunMetrics(root, record[SEED_KEY], values, data_label_of(record), collapse_of(record), retry_of(record))


@dataclass(frozen=True)
class SeedFlags:
    """The collapsed and retried seeds among the runs one table cell aggregates (issue 13, item 5)."""

    n_runs: int
    collapsed: tuple[tuple[int, str], ...] = ()
    retried: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, runs: Sequence[Any]) -> "SeedFlags":
        """From runs carrying ``seed``, ``collapse`` and ``retry`` (:class:`RunMetrics` or a sweep run)."""
        collapsed = tuple((r.seed, r.collapse["reason"]) for r in runs if r.collapse is not None)
        retried = tuple((r.retry["requested_seed"], r.retry["trained_seed"]) for r in runs if r.retry is not None)
        return cls(len(runs), collapsed, retried)

    def columns(self) -> dict[str, Any]:
        """CSV columns: ``n_collapsed``, ``collapsed_seeds`` ("2;5"), ``collapse_reasons`` and ``retried_seeds``
        ("1->1001")."""
        return {"n_collapsed": len(self.collapsed), "collapsed_seeds": ";".join(str(s) for s, _ in self.collapsed),
                "collapse_reasons": "; ".join(f"seed {s}: {why}" for s, why in self.collapsed),
                "retried_seeds": ";".join(f"{a}->{b}" for a, b in self.retried)}


def row_status(in_paper: bool, planned_runs: int | None, n_runs: int) -> str:
    """The status of a table row: reproduced, paper value not reproduced, ours only, partial k of n seeds."""
    if n_runs == 0:
        return STATUS_NOT_REPRODUCED if in_paper else f"{STATUS_OURS_ONLY}, no finished runs"
    planned = planned_runs if planned_runs is not None else n_runs
    if n_runs < planned:
        partial = f"partial: {n_runs} of {planned} seeds"
        return partial if in_paper else f"{STATUS_OURS_ONLY}; {partial}"
    return STATUS_REPRODUCED if in_paper else STATUS_OURS_ONLY


def run_data_label(rows: Sequence[ManifestRow]) -> str | None:
    """The data label(s) the runs recorded (e.g. "CIFAR-10 (JPEG export)"), or None when none did."""
    labels = sorted({run.data_label for row in rows for run in read_runs(row.runs) if run.data_label})
    return "; ".join(labels) or None


def read_runs(run_dirs: Iterable[str | os.PathLike[str]], radius: float | None = None,
              timing: bool = False) -> list[RunMetrics]:
    """All runs of one table row (:func:`read_run_metrics`), sorted by seed; a seed used twice raises ValueError."""
    runs = [read_run_metrics(d, radius, timing) for d in run_dirs]
    by_seed: dict[int, Path] = {}
    for run in runs:
        if run.seed in by_seed:
            raise ValueError(
                f"seed {run.seed} appears in two runs of the same row: {str(by_seed[run.seed])!r} and "
                f"{str(run.run_dir)!r}"
            )
        by_seed[run.seed] = run.run_dir
    return sorted(runs, key=lambda r: r.seed)


class SeedSummary(NamedTuple):
    """Mean and sample standard deviation (n - 1) over the n seeds that recorded a metric."""

    mean: float
    std: float
    n: int


def summarise(values: Sequence[float]) -> SeedSummary:
    n = len(values)
    if n == 0:
        return SeedSummary(math.nan, math.nan, 0)
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if n > 1 else math.nan
    return SeedSummary(float(np.mean(array)), std, n)


def summarise_runs(runs: Sequence[RunMetrics], metrics: Sequence[str] = METRICS) -> dict[str, SeedSummary]:
    return {m: summarise([r.values[m] for r in runs if m in r.values]) for m in metrics}


def aggregate_seeds(run_dirs: Iterable[str | os.PathLike[str]]) -> dict[str, SeedSummary]:
    """Mean, sample std (n - 1) and n over the seeds of one row, per metric (as Tables D6-D8 report).

    Returns ``{metric: (mean, std, n)}`` for every metric in :data:`METRICS`; std is NaN for one
    seed, mean and std are NaN when no run recorded the metric. No run directories raises ValueError.
    """
    runs = read_runs(run_dirs)
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run directory, got none")
    return summarise_runs(runs)


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """A table's metric columns, checked against :data:`TABLE_METRICS`."""
    unknown = [m for m in metrics if m not in TABLE_METRICS]
    if unknown or not metrics:
        raise ValueError(f"table metrics must be a non-empty subset of {list(TABLE_METRICS)}, got {list(metrics)}")
    return tuple(metrics)


def read_paper_table(path: str | os.PathLike[str], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Read a paper table (CLL Table 1 or 2: params/paper_tables/table1.csv, table2.csv; seed 004's table 2:
    locallip_table2.csv): the :data:`KEY_COLUMNS` as strings and the ``metrics`` as floats (NaN where the paper
    prints "-"); a table with :data:`RADIUS_METRICS` also needs the ``radius`` column (each row's ℓ2 radius). See
    :func:`lipcert.reporting.paper_tables.read_paper_table`."""
    metrics = check_metrics(metrics)
    radius = ("radius",) if any(m in RADIUS_METRICS for m in metrics) else ()
    return paper_tables.read_paper_table(path, KEY_COLUMNS, (*radius, *metrics))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

