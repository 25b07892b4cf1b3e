"""Reading and aggregating results for the tables (CLL Tables 1, 2, D6-D8 and the sweeps): the run manifest, a
run's ``metrics.json`` / ``tightness.json``, seed summaries (mean and sample std, n - 1) and the paper's CSVs.

Reads result files only (issue 13, item 4: reporting split into read/aggregate, render and draw).
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
from ..run_record import PAPER_RADII, cra_key

__all__ = ["CRA_RADII", "KEY_COLUMNS", "METRICS", "SCALES", "STATUS_NOT_REPRODUCED", "STATUS_OURS_ONLY",
           "STATUS_REPRODUCED", "TIGHTNESS_TOLERANCE", "ManifestRow", "RunMetrics", "SeedSummary", "aggregate_seeds",
           "check_scale", "finite_number", "is_missing", "numeric_column", "read_csv_strings", "read_manifest",
           "read_paper_table", "read_run_metrics", "read_runs", "run_data_label", "scale_caveat", "string_field",
           "summarise", "summarise_runs"]


KEY_COLUMNS = ("dataset", "method", "model", "variant")
"""Join key between the manifest and the paper tables (see params/paper_tables/README.md)."""


METRICS = ("clean", "cra_36", "cra_72", "cra_108", "K_f", "K_hf", "tightness")
"""Metric columns of Tables 1 and 2: accuracies, CRA and tightness in %, K(f) and K(h∘f)."""


CRA_RADII = dict(zip(("cra_36", "cra_72", "cra_108"), PAPER_RADII))
"""ℓ2 certification radii of the CRA columns (paper section 4)."""


SCALES = ("paper", "quick", "ci")
"""Scales a table can be built at: the paper's settings, a shortened run, the CI smoke run."""


STATUS_REPRODUCED = "reproduced"


STATUS_NOT_REPRODUCED = "paper value, not reproduced"


STATUS_OURS_ONLY = "ours only"


TIGHTNESS_TOLERANCE = 1e-9


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


@dataclass(frozen=True)
class RunMetrics:
    """The table metrics of one finished run (percentages for accuracies and tightness)."""

    run_dir: Path
    seed: int
    values: Mapping[str, float]
    data_label: str = ""


def finite_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return number


def read_run_metrics(run_dir: str | os.PathLike[str]) -> RunMetrics:
    """Read one run's ``metrics.json`` (and ``tightness.json`` when present) as table metrics.

    ``clean`` and ``cra_36/72/108`` (keys ``cra_{eps:.6g}`` for eps = 36/255, 72/255, 108/255; paper
    section 4) are percentages already; ``K_f`` and ``K_hf`` are copied; ``tightness`` (supplement C,
    eq. (20)) is stored as a fraction in [0, 1] and returned in percent. A metric the run did not
    record is left out. A missing ``metrics.json`` raises FileNotFoundError naming the file.
    """
    root = Path(run_dir)
    metrics_path = root / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(
            f"run directory {str(root)!r} is listed in the manifest but {str(metrics_path)!r} does not exist "
            "(the manifest must list finished runs only)"
        )
    record = read_json(metrics_path)
    if not isinstance(record, Mapping) or not isinstance(record.get("metrics"), Mapping):
        raise ValueError(f"{metrics_path}: expected an object with a 'metrics' object")
    seed = record.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{metrics_path}: 'seed' must be an int, got {seed!r}")
    metrics = record["metrics"]
    source_keys = {"clean": "clean", "K_f": "K_f", "K_hf": "K_hf"}
    source_keys.update({name: cra_key(eps) for name, eps in CRA_RADII.items()})
    values: dict[str, float] = {}
    for name, key in source_keys.items():
        if key in metrics:
            values[name] = finite_number(metrics[key], f"{metrics_path}: metrics[{key!r}]")
    tightness_path = root / "tightness.json"
    if tightness_path.exists():
        tight = read_json(tightness_path)
        if not isinstance(tight, Mapping) or "tightness" not in tight:
            raise ValueError(f"{tightness_path}: expected an object with key 'tightness'")
        fraction = finite_number(tight["tightness"], f"{tightness_path}: 'tightness'")
        if not -TIGHTNESS_TOLERANCE <= fraction <= 1.0 + TIGHTNESS_TOLERANCE:
            raise ValueError(
                f"{tightness_path}: 'tightness' = {fraction!r} is outside [0, 1]; it is the fraction "
                "K_lobo / K(f) (a value above 1 means the lower bound exceeds the certified bound)"
            )
        values["tightness"] = 100.0 * fraction
    # training records the data label under "extra" (lipcert.tracking.write_metrics)
    extra = record.get("extra")
    label = extra.get("data", "") if isinstance(extra, Mapping) else ""
    return RunMetrics(root, seed, values, label if isinstance(label, str) else "")


def run_data_label(rows: Sequence[ManifestRow]) -> str | None:
    """The data label(s) the runs recorded (e.g. "CIFAR-10 (JPEG export)"), or None when none did."""
    labels = sorted({run.data_label for row in rows for run in read_runs(row.runs) if run.data_label})
    return "; ".join(labels) or None


def read_runs(run_dirs: Iterable[str | os.PathLike[str]]) -> list[RunMetrics]:
    """All runs of one table row, sorted by seed; a seed used twice raises ValueError."""
    runs = [read_run_metrics(d) for d in run_dirs]
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


def read_csv_strings(path: str | os.PathLike[str]) -> pd.DataFrame:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"paper table not found: {str(source)!r}")
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def numeric_column(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    text = frame[column].str.strip()
    numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce")
    bad = text[(text != "") & numbers.isna()]
    if not bad.empty:
        raise ValueError(f"{source}: column {column!r} has non-numeric values {sorted(set(bad))!r}")
    return numbers.astype(np.float64)


def read_paper_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a paper table CSV (params/paper_tables/table1.csv or table2.csv: CLL Tables 1 and 2).

    Returns the key columns as strings (empty variant = "") and the seven metric columns as floats
    (NaN where the paper prints "-" or nothing). A missing column or a key that appears twice raises
    ValueError.
    """
    frame = read_csv_strings(path)
    missing = [c for c in (*KEY_COLUMNS, *METRICS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(KEY_COLUMNS) + list(METRICS)}")
    out = pd.DataFrame({c: frame[c].str.strip() for c in KEY_COLUMNS})
    for metric in METRICS:
        out[metric] = numeric_column(frame, metric, str(path))
    duplicated = out.duplicated(subset=list(KEY_COLUMNS), keep=False)
    if duplicated.any():
        keys = sorted({tuple(r) for r in out.loc[duplicated, list(KEY_COLUMNS)].itertuples(index=False)})
        raise ValueError(f"{path}: rows with the same key {keys}")
    return out


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

