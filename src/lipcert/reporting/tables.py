"""Paper tables next to our results: CLL paper Tables 1 and 2 and the per-seed Tables D6-D8.

This module only reads result files. A run manifest (written by the workflow) lists, per table row
(dataset, method, model, variant), the run directories of the finished seeds. Each run directory holds
``metrics.json`` (clean accuracy and CRA in percent, K(f), K(h∘f); paper section 4) and optionally
``tightness.json`` (supplement C, eq. (20); stored as a fraction, reported in percent like the paper).

Our value of a metric is the mean over seeds with the sample standard deviation (n - 1), as in the
paper's Tables D6-D8. Every output states the scale the runs were built at; at any scale but
``paper`` it also carries the caveat that the numbers are not comparable with the paper as they are.
A paper row without finished runs keeps the paper's numbers and is marked "paper value, not
reproduced"; no number is ever filled in for it.

Public API: :func:`read_manifest`, :func:`read_run_metrics`, :func:`aggregate_seeds`,
:func:`read_paper_table`, :func:`write_table`, :func:`per_seed_table`, :func:`main` (command line:
``python -m lipcert.reporting.tables table|per-seed ...``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..io_utils import atomic_write_json, atomic_write_text, read_json
from ..run_record import PAPER_RADII, cra_key

__all__ = [
    "KEY_COLUMNS",
    "METRICS",
    "SCALES",
    "ManifestRow",
    "RunMetrics",
    "SeedSummary",
    "aggregate_seeds",
    "main",
    "per_seed_table",
    "read_manifest",
    "read_paper_table",
    "read_run_metrics",
    "scale_caveat",
    "write_table",
]

KEY_COLUMNS = ("dataset", "method", "model", "variant")
"""Join key between the manifest and the paper tables (see params/paper_tables/README.md)."""

METRICS = ("clean", "cra_36", "cra_72", "cra_108", "K_f", "K_hf", "tightness")
"""Metric columns of Tables 1 and 2: accuracies, CRA and tightness in %, K(f) and K(h∘f)."""

CRA_RADII = dict(zip(("cra_36", "cra_72", "cra_108"), PAPER_RADII))
"""ℓ2 certification radii of the CRA columns (paper section 4)."""

SCALES = ("paper", "quick", "ci")
"""Scales a table can be built at: the paper's settings, a shortened run, the CI smoke run."""

METRIC_LABELS = {
    "clean": "Clean",
    "cra_36": "CRA 36/255",
    "cra_72": "CRA 72/255",
    "cra_108": "CRA 108/255",
    "K_f": "K(f)",
    "K_hf": "K(h∘f)",
    "tightness": "Tightness",
}
_LATEX_METRIC_LABELS = {
    "clean": "Clean",
    "cra_36": "CRA $\\frac{36}{255}$",
    "cra_72": "CRA $\\frac{72}{255}$",
    "cra_108": "CRA $\\frac{108}{255}$",
    "K_f": "$K(f)$",
    "K_hf": "$K(h\\circ f)$",
    "tightness": "Tightness",
}
_KEY_LABELS = {"dataset": "Dataset", "method": "Method", "model": "Model", "variant": "Variant"}

STATUS_REPRODUCED = "reproduced"
STATUS_NOT_REPRODUCED = "paper value, not reproduced"
STATUS_OURS_ONLY = "ours only"

_PAPER_SEED_SUMMARY_ROWS = ("avg", "std")
_D_TABLE_DATASETS = {"tabled6": "CIFAR-10", "tabled7": "CIFAR-100", "tabled8": "Tiny-ImageNet"}
_TIGHTNESS_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------------
# scale


def _check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def scale_caveat(scale: str) -> str | None:
    """The caveat line for results built at ``scale`` (None for the paper's own scale)."""
    _check_scale(scale)
    if scale == "paper":
        return None
    return f"built at scale '{scale}': not comparable with the paper without caveat"


def _scale_sentence(scale: str) -> str:
    if scale == "paper":
        return "Scale: 'paper' (the paper's training settings)."
    return f"Scale: '{scale}'. Caveat: {scale_caveat(scale)}."


# ----------------------------------------------------------------------------------------------------
# manifest


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


def _string_field(row: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
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
        dataset = _string_field(raw, "dataset", where)
        method = _string_field(raw, "method", where)
        model = _string_field(raw, "model", where)
        variant = _string_field(raw, "variant", where, default="")
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


# ----------------------------------------------------------------------------------------------------
# one run's result files


@dataclass(frozen=True)
class RunMetrics:
    """The table metrics of one finished run (percentages for accuracies and tightness)."""

    run_dir: Path
    seed: int
    values: Mapping[str, float]
    data_label: str = ""


def _number(value: Any, where: str) -> float:
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
            values[name] = _number(metrics[key], f"{metrics_path}: metrics[{key!r}]")
    tightness_path = root / "tightness.json"
    if tightness_path.exists():
        tight = read_json(tightness_path)
        if not isinstance(tight, Mapping) or "tightness" not in tight:
            raise ValueError(f"{tightness_path}: expected an object with key 'tightness'")
        fraction = _number(tight["tightness"], f"{tightness_path}: 'tightness'")
        if not -_TIGHTNESS_TOLERANCE <= fraction <= 1.0 + _TIGHTNESS_TOLERANCE:
            raise ValueError(
                f"{tightness_path}: 'tightness' = {fraction!r} is outside [0, 1]; it is the fraction "
                "K_lobo / K(f) (a value above 1 means the lower bound exceeds the certified bound)"
            )
        values["tightness"] = 100.0 * fraction
    # training records the data label under "extra" (lipcert.tracking.write_metrics)
    extra = record.get("extra")
    label = extra.get("data", "") if isinstance(extra, Mapping) else ""
    return RunMetrics(root, seed, values, label if isinstance(label, str) else "")


def _run_data_label(rows: Sequence[ManifestRow]) -> str | None:
    """The data label(s) the runs recorded (e.g. "CIFAR-10 (JPEG export)"), or None when none did."""
    labels = sorted({run.data_label for row in rows for run in _read_runs(row.runs) if run.data_label})
    return "; ".join(labels) or None


def _read_runs(run_dirs: Iterable[str | os.PathLike[str]]) -> list[RunMetrics]:
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


def _summarise(values: Sequence[float]) -> SeedSummary:
    n = len(values)
    if n == 0:
        return SeedSummary(math.nan, math.nan, 0)
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if n > 1 else math.nan
    return SeedSummary(float(np.mean(array)), std, n)


def _summarise_runs(runs: Sequence[RunMetrics], metrics: Sequence[str] = METRICS) -> dict[str, SeedSummary]:
    return {m: _summarise([r.values[m] for r in runs if m in r.values]) for m in metrics}


def aggregate_seeds(run_dirs: Iterable[str | os.PathLike[str]]) -> dict[str, SeedSummary]:
    """Mean, sample std (n - 1) and n over the seeds of one row, per metric (as Tables D6-D8 report).

    Returns ``{metric: (mean, std, n)}`` for every metric in :data:`METRICS`; std is NaN for one
    seed, mean and std are NaN when no run recorded the metric. No run directories raises ValueError.
    """
    runs = _read_runs(run_dirs)
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run directory, got none")
    return _summarise_runs(runs)


# ----------------------------------------------------------------------------------------------------
# paper tables


def _read_csv_strings(path: str | os.PathLike[str]) -> pd.DataFrame:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"paper table not found: {str(source)!r}")
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def _numeric_column(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
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
    frame = _read_csv_strings(path)
    missing = [c for c in (*KEY_COLUMNS, *METRICS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(KEY_COLUMNS) + list(METRICS)}")
    out = pd.DataFrame({c: frame[c].str.strip() for c in KEY_COLUMNS})
    for metric in METRICS:
        out[metric] = _numeric_column(frame, metric, str(path))
    duplicated = out.duplicated(subset=list(KEY_COLUMNS), keep=False)
    if duplicated.any():
        keys = sorted({tuple(r) for r in out.loc[duplicated, list(KEY_COLUMNS)].itertuples(index=False)})
        raise ValueError(f"{path}: rows with the same key {keys}")
    return out


# ----------------------------------------------------------------------------------------------------
# formatting helpers


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: float, decimals: int = 1) -> str:
    return "–" if _is_missing(value) else f"{value:.{decimals}f}"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _latex_escape(text: str) -> str:
    replacements = {
        "\\": "\\textbackslash{}",
        "&": "\\&",
        "%": "\\%",
        "$": "\\$",
        "#": "\\#",
        "_": "\\_",
        "{": "\\{",
        "}": "\\}",
        "~": "\\textasciitilde{}",
        "^": "\\textasciicircum{}",
        "–": "--",
        "±": "$\\pm$",
        "∘": "$\\circ$",
    }
    return "".join(replacements.get(ch, ch) for ch in text)


def _ours_paper_cell(mean: float, std: float, n: int, paper: float, pm: str) -> str:
    """``ours ± std (paper)``; ours is "–" without runs, std is left out for one seed."""
    if n == 0 and _is_missing(paper):
        return "–"
    if n == 0:
        ours = "–"
    elif n == 1 or _is_missing(std):
        ours = _fmt(mean)
    else:
        ours = f"{_fmt(mean)}{pm}{_fmt(std)}"
    return f"{ours} ({_fmt(paper)})"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    lines = ["| " + " | ".join(_markdown_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if right else "---" for right in right_aligned) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_markdown_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _latex_comments(what: str, scale: str, data_label: str | None) -> list[str]:
    """Leading ``%`` comment lines of a LaTeX table: what it is, its scale (and caveat), the data label."""
    comments = [f"% lipcert: {what}; scale: {scale}"]
    caveat = scale_caveat(scale)
    if caveat:
        comments.append(f"% {caveat}")
    if data_label:
        comments.append(f"% data: {data_label}")
    comments.append("% needs \\usepackage{booktabs}")
    return comments


def _latex_tabular(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right_aligned: Sequence[bool],
    notes: Sequence[str],
    rule_before: Sequence[bool],
) -> str:
    """A booktabs tabular (needs ``\\usepackage{booktabs}``); cells must already be LaTeX."""
    spec = "".join("r" if right else "l" for right in right_aligned)
    width = len(header)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule"]
    for row, rule in zip(rows, rule_before):
        if rule:
            lines.append("\\midrule")
        lines.append(" & ".join(row) + " \\\\")
    lines.append("\\bottomrule")
    for note in notes:
        lines.append(f"\\multicolumn{{{width}}}{{l}}{{\\footnotesize {note}}} \\\\")
    lines.append("\\end{tabular}")
    return "\n".join(lines)


def _header_lines(scale: str, data_label: str | None) -> list[str]:
    lines = [_scale_sentence(scale)]
    if data_label:
        lines.append(f"Data: {data_label}.")
    return lines


def _write_outputs(out_stem: str | os.PathLike[str], frame: pd.DataFrame, markdown: str, latex: str) -> None:
    stem = Path(out_stem)
    atomic_write_text(stem.with_name(stem.name + ".csv"), frame.to_csv(index=False, float_format="%.7g"))
    atomic_write_text(stem.with_name(stem.name + ".md"), markdown)
    atomic_write_text(stem.with_name(stem.name + ".tex"), latex)


# ----------------------------------------------------------------------------------------------------
# Tables 1 and 2


def _row_status(in_paper: bool, row: ManifestRow | None, n_runs: int) -> str:
    if n_runs == 0:
        return STATUS_NOT_REPRODUCED if in_paper else f"{STATUS_OURS_ONLY}, no finished runs"
    planned = row.planned_runs if row is not None and row.planned_runs is not None else n_runs
    base = STATUS_REPRODUCED if in_paper else STATUS_OURS_ONLY
    if n_runs < planned:
        partial = f"partial: {n_runs} of {planned} seeds"
        return partial if in_paper else f"{STATUS_OURS_ONLY}; {partial}"
    return base


def _comparison_frame(
    rows: Sequence[ManifestRow], paper: pd.DataFrame, scale: str, data_label: str | None
) -> pd.DataFrame:
    by_key = {row.key: row for row in rows}
    paper_keys = [tuple(k) for k in paper[list(KEY_COLUMNS)].itertuples(index=False)]
    paper_values = {key: paper.iloc[i] for i, key in enumerate(paper_keys)}
    ordered = paper_keys + [row.key for row in rows if row.key not in paper_values]
    records = []
    for key in ordered:
        row = by_key.get(key)
        runs = _read_runs(row.runs) if row is not None else []
        summary = _summarise_runs(runs)
        in_paper = key in paper_values
        record: dict[str, Any] = dict(zip(KEY_COLUMNS, key))
        record["status"] = _row_status(in_paper, row, len(runs))
        record["scale"] = scale
        record["data_label"] = data_label or ""
        record["seeds"] = ",".join(str(r.seed) for r in runs)
        for metric in METRICS:
            paper_value = float(paper_values[key][metric]) if in_paper else math.nan
            mean, std, n = summary[metric]
            record[f"{metric}_paper"] = paper_value
            record[f"{metric}_ours"] = mean
            record[f"{metric}_std"] = std
            record[f"{metric}_n"] = n
            record[f"{metric}_diff"] = mean - paper_value if n > 0 and not math.isnan(paper_value) else math.nan
        records.append(record)
    return pd.DataFrame.from_records(records)


def _comparison_markdown(frame: pd.DataFrame, title: str, scale: str, data_label: str | None) -> str:
    header = [*(_KEY_LABELS[c] for c in KEY_COLUMNS), *(METRIC_LABELS[m] for m in METRICS), "Status"]
    rows = []
    for rec in frame.to_dict("records"):
        cells = [rec[c] or "–" for c in KEY_COLUMNS]
        cells += [
            _ours_paper_cell(rec[f"{m}_ours"], rec[f"{m}_std"], rec[f"{m}_n"], rec[f"{m}_paper"], " ± ")
            for m in METRICS
        ]
        rows.append([*cells, rec["status"]])
    aligned = [False] * len(KEY_COLUMNS) + [True] * len(METRICS) + [False]
    lines = [f"## {title}: paper vs ours", *_header_lines(scale, data_label)]
    lines.append(
        "Cells: ours as mean ± sample std (n - 1) over seeds (paper value); – = no value. Clean accuracy, "
        "CRA at ℓ2 radius 36/255, 72/255, 108/255 and tightness in %. Differences (ours - paper) and "
        "seed counts are in the CSV."
    )
    return "\n\n".join([*lines, _markdown_table(header, rows, aligned)]) + "\n"


def _comparison_latex(frame: pd.DataFrame, title: str, scale: str, data_label: str | None) -> str:
    header = [*(_KEY_LABELS[c] for c in KEY_COLUMNS), *(_LATEX_METRIC_LABELS[m] for m in METRICS), "Status"]
    rows, rules = [], []
    previous_dataset = None
    for rec in frame.to_dict("records"):
        cells = [_latex_escape(rec[c] or "–") for c in KEY_COLUMNS]
        cells += [
            _latex_escape(
                _ours_paper_cell(rec[f"{m}_ours"], rec[f"{m}_std"], rec[f"{m}_n"], rec[f"{m}_paper"], " ± ")
            )
            for m in METRICS
        ]
        rows.append([*cells, _latex_escape(rec["status"])])
        rules.append(previous_dataset is not None and rec["dataset"] != previous_dataset)
        previous_dataset = rec["dataset"]
    aligned = [False] * len(KEY_COLUMNS) + [True] * len(METRICS) + [False]
    notes = [_latex_escape(line) for line in _header_lines(scale, data_label)]
    notes.append(_latex_escape("Cells: ours as mean ± sample std over seeds (paper value); – = no value."))
    comments = _latex_comments(f"{title}, paper vs ours", scale, data_label)
    return "\n".join([*comments, _latex_tabular(header, rows, aligned, notes, rules)]) + "\n"


def write_table(
    manifest: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    paper_csv: str | os.PathLike[str],
    scale: str,
    out_stem: str | os.PathLike[str],
    data_label: str | None = None,
    *,
    title: str | None = None,
) -> pd.DataFrame:
    """Write a paper table (CLL Table 1 or 2) next to our results as out_stem.csv, .md and .tex.

    Every paper row is kept in the paper's order; manifest rows that are not in the paper table are
    appended with status "ours only". Per metric of :data:`METRICS` the CSV has ``<m>_paper``,
    ``<m>_ours`` (mean over seeds), ``<m>_std`` (sample std, empty for one seed), ``<m>_n`` (seeds that
    recorded it) and ``<m>_diff`` (ours - paper); plus ``status`` ("reproduced", "paper value, not
    reproduced", "partial: k of n seeds"), ``scale``, ``data_label`` and ``seeds``. The Markdown and
    LaTeX show "ours ± std (paper)" cells, the scale, the data label and, at a scale other than
    ``paper``, the caveat that the numbers are not comparable with the paper. Returns the CSV's frame.
    """
    _check_scale(scale)
    rows = read_manifest(manifest)
    paper = read_paper_table(paper_csv)
    title = title or Path(paper_csv).stem
    data_label = data_label or _run_data_label(rows)
    frame = _comparison_frame(rows, paper, scale, data_label)
    markdown = _comparison_markdown(frame, title, scale, data_label)
    latex = _comparison_latex(frame, title, scale, data_label)
    _write_outputs(out_stem, frame, markdown, latex)
    return frame


# ----------------------------------------------------------------------------------------------------
# Tables D6-D8 (per seed)


def _read_paper_seeds(path: str | os.PathLike[str]) -> pd.DataFrame:
    frame = _read_csv_strings(path)
    required = ["model", "variant", "metric", "seed", "value"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the long format {required}")
    out = pd.DataFrame({c: frame[c].str.strip() for c in ("model", "variant", "metric", "seed")})
    out["value"] = _numeric_column(frame, "value", str(path))
    unknown = sorted(set(out["metric"]) - set(METRICS))
    if unknown:
        raise ValueError(f"{path}: unknown metrics {unknown}; expected a subset of {list(METRICS)}")
    seeds = out["seed"]
    bad_seeds = sorted({s for s in seeds if s not in _PAPER_SEED_SUMMARY_ROWS and not s.isdigit()})
    if bad_seeds:
        raise ValueError(f"{path}: seed column must hold seed numbers, 'avg' or 'std', got {bad_seeds}")
    if out.duplicated(subset=["model", "variant", "metric", "seed"]).any():
        raise ValueError(f"{path}: a (model, variant, metric, seed) appears twice")
    return out


def _dataset_for_seed_table(path: str | os.PathLike[str]) -> str | None:
    stem = Path(path).stem.lower()
    for prefix, dataset in _D_TABLE_DATASETS.items():
        if stem.startswith(prefix):
            return dataset
    return None


def _per_seed_frame(
    rows: Sequence[ManifestRow], paper: pd.DataFrame, scale: str, data_label: str | None, metrics: Sequence[str]
) -> pd.DataFrame:
    blocks = list(dict.fromkeys(zip(paper["model"], paper["variant"])))
    by_block = {(r.model, r.variant): r for r in rows}
    blocks += [key for key in by_block if key not in blocks]
    records = []
    for model, variant in blocks:
        sub = paper[(paper["model"] == model) & (paper["variant"] == variant)]
        in_paper = not sub.empty
        row = by_block.get((model, variant))
        runs = _read_runs(row.runs) if row is not None else []
        status = _row_status(in_paper, row, len(runs))
        paper_seeds = sorted({int(s) for s in sub["seed"] if s.isdigit()})
        lookup = {(m, s): v for m, s, v in zip(sub["metric"], sub["seed"], sub["value"])}
        base = {"model": model, "variant": variant, "status": status, "scale": scale, "data_label": data_label or ""}
        for position in range(max(len(paper_seeds), len(runs))):
            paper_seed = paper_seeds[position] if position < len(paper_seeds) else None
            run = runs[position] if position < len(runs) else None
            record = {**base, "row": str(position + 1),
                      "seed_paper": paper_seed, "seed_ours": run.seed if run is not None else None}
            for metric in metrics:
                record[f"{metric}_paper"] = lookup.get((metric, str(paper_seed)), math.nan)
                record[f"{metric}_ours"] = run.values.get(metric, math.nan) if run is not None else math.nan
            records.append(record)
        summary = _summarise_runs(runs, metrics)
        for label in ("avg", "std", "diff"):
            record = {**base, "row": label, "seed_paper": None, "seed_ours": None}
            for metric in metrics:
                paper_avg = lookup.get((metric, "avg"), math.nan)
                if label == "avg":
                    record[f"{metric}_paper"], record[f"{metric}_ours"] = paper_avg, summary[metric].mean
                elif label == "std":
                    record[f"{metric}_paper"] = lookup.get((metric, "std"), math.nan)
                    record[f"{metric}_ours"] = summary[metric].std
                else:
                    record[f"{metric}_paper"] = math.nan
                    record[f"{metric}_ours"] = summary[metric].mean - paper_avg
            records.append(record)
    frame = pd.DataFrame.from_records(records)
    for column in ("seed_paper", "seed_ours"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _seed_row_label(rec: Mapping[str, Any]) -> str:
    if rec["row"] == "diff":
        return "avg diff (ours - paper)"
    if rec["row"] in ("avg", "std"):
        return rec["row"]
    paper = "–" if pd.isna(rec["seed_paper"]) else str(rec["seed_paper"])
    ours = "–" if pd.isna(rec["seed_ours"]) else str(rec["seed_ours"])
    return f"{rec['row']} (paper seed {paper}, our seed {ours})"


def _seed_cell(rec: Mapping[str, Any], metric: str) -> str:
    ours, paper = rec[f"{metric}_ours"], rec[f"{metric}_paper"]
    if rec["row"] == "diff":
        return "–" if _is_missing(ours) else f"{ours:+.1f}"
    if _is_missing(ours) and _is_missing(paper):
        return "–"
    return f"{_fmt(ours)} ({_fmt(paper)})"


def _per_seed_outputs(frame: pd.DataFrame, title: str, scale: str, data_label: str | None,
                      metrics: Sequence[str]) -> tuple[str, str]:
    header = ["Model", "Variant", "Row", *(METRIC_LABELS[m] for m in metrics), "Status"]
    rows, rules = [], []
    previous = None
    for rec in frame.to_dict("records"):
        rows.append([rec["model"], rec["variant"] or "–", _seed_row_label(rec),
                     *(_seed_cell(rec, m) for m in metrics), rec["status"]])
        block = (rec["model"], rec["variant"])
        rules.append(previous is not None and block != previous)
        previous = block
    aligned = [False, False, False] + [True] * len(metrics) + [False]
    explanation = ("Cells: ours (paper). Row k holds the paper's k-th seed and our k-th seed (sorted by seed "
                   "number); avg and std are the mean and sample std (n - 1) over seeds. Accuracies and "
                   "tightness in %.")
    lines = [f"## {title}: per seed, paper vs ours", *_header_lines(scale, data_label), explanation]
    markdown = "\n\n".join([*lines, _markdown_table(header, rows, aligned)]) + "\n"

    latex_header = ["Model", "Variant", "Row", *(_LATEX_METRIC_LABELS[m] for m in metrics), "Status"]
    latex_rows = [[_latex_escape(c) for c in row] for row in rows]
    notes = [_latex_escape(line) for line in [*_header_lines(scale, data_label), "Cells: ours (paper)."]]
    comments = _latex_comments(f"{title}, per seed, paper vs ours", scale, data_label)
    latex = "\n".join([*comments, _latex_tabular(latex_header, latex_rows, aligned, notes, rules)]) + "\n"
    return markdown, latex


def per_seed_table(
    manifest: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    paper_seeds_csv: str | os.PathLike[str],
    scale: str,
    out_stem: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    method: str = "CLL",
    data_label: str | None = None,
    title: str | None = None,
) -> pd.DataFrame:
    """Write a per-seed table (CLL supplement Tables D6, D7, D8) next to our runs: .csv, .md, .tex.

    ``paper_seeds_csv`` is the long format (model, variant, metric, seed, value) with seeds 1-9 and
    the printed ``avg`` / ``std``. Our rows are the manifest rows of ``method`` and ``dataset``
    (``dataset`` is taken from the file name tableD6/D7/D8 when not given), matched on (model,
    variant). The output has, per (model, variant), one row per seed position k (the paper's k-th seed
    next to our k-th seed, sorted by seed number), then ``avg`` and ``std`` (the paper's printed values;
    ours: mean and sample std) and ``diff`` (our avg - the paper's avg). Columns ``<m>_paper`` and
    ``<m>_ours`` per metric of the file, ``status``, ``scale``, ``data_label``. Returns the CSV's frame.
    """
    _check_scale(scale)
    paper = _read_paper_seeds(paper_seeds_csv)
    dataset = dataset or _dataset_for_seed_table(paper_seeds_csv)
    chosen = [r for r in read_manifest(manifest) if r.method == method and (dataset is None or r.dataset == dataset)]
    blocks: dict[tuple[str, str], ManifestRow] = {}
    for row in chosen:
        if (row.model, row.variant) in blocks:
            raise ValueError(
                f"manifest rows {blocks[(row.model, row.variant)].key} and {row.key} both match "
                f"(model, variant) = {(row.model, row.variant)} of {paper_seeds_csv}; pass dataset= to choose"
            )
        blocks[(row.model, row.variant)] = row
    metrics = [m for m in METRICS if m in set(paper["metric"])]
    title = title or Path(paper_seeds_csv).stem
    data_label = data_label or _run_data_label(list(blocks.values()))
    frame = _per_seed_frame(list(blocks.values()), paper, scale, data_label, metrics)
    markdown, latex = _per_seed_outputs(frame, title, scale, data_label, metrics)
    _write_outputs(out_stem, frame, markdown, latex)
    return frame


# ----------------------------------------------------------------------------------------------------
# command line


def _write_manifest(text: str, out: str) -> int:
    """Parse, validate (:func:`read_manifest`) and atomically write a manifest given as JSON text."""
    rows = json.loads(text)
    read_manifest(rows)  # validates before anything is written
    atomic_write_json(out, rows)
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m lipcert.reporting.tables table|per-seed --manifest M --paper CSV
    --scale S --out STEM [--data-label L] [--dataset D]`` (writes STEM.csv, STEM.md, STEM.tex)."""
    parser = argparse.ArgumentParser(prog="python -m lipcert.reporting.tables",
                                     description="Paper tables (CLL Tables 1, 2, D6-D8) next to our run results.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("table", "Table 1 or 2: one row per (dataset, method, model, variant)"),
                            ("per-seed", "Table D6, D7 or D8: per-seed values, avg and std")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--manifest", required=True, help="run manifest JSON written by the workflow")
        sub.add_argument("--paper", required=True, help="paper table CSV from params/paper_tables")
        sub.add_argument("--scale", required=True, choices=SCALES)
        sub.add_argument("--out", required=True, help="output stem; writes STEM.csv, STEM.md, STEM.tex")
        sub.add_argument("--data-label", default=None,
                         help='e.g. "CIFAR-10 (JPEG export)" (default: the labels the runs recorded)')
        sub.add_argument("--title", default=None)
        if name == "per-seed":
            sub.add_argument("--dataset", default=None,
                             help="dataset of the manifest rows (default: from the file name tableD6/D7/D8)")
            sub.add_argument("--method", default="CLL")
    manifest = commands.add_parser("write-manifest", help="validate a manifest given as JSON text and write it")
    manifest.add_argument("--json", required=True, help="the manifest rows as a JSON list")
    manifest.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "write-manifest":
        return _write_manifest(args.json, args.out)
    if args.command == "table":
        frame = write_table(args.manifest, args.paper, args.scale, args.out, args.data_label, title=args.title)
    else:
        frame = per_seed_table(args.manifest, args.paper, args.scale, args.out, dataset=args.dataset,
                               method=args.method, data_label=args.data_label, title=args.title)
    print(f"wrote {args.out}.csv/.md/.tex ({len(frame)} rows, scale {args.scale!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
