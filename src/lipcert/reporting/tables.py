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

Public API: :func:`write_table`, :func:`per_seed_table`, :func:`main` (command line:
``python -m lipcert.reporting.tables table|per-seed ...``); reading and aggregation live in
:mod:`lipcert.reporting.records` and cell / table rendering in :mod:`lipcert.reporting.render` (re-exported here:
:func:`read_manifest`, :func:`read_run_metrics`, :func:`aggregate_seeds`, :func:`read_paper_table`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..io_utils import atomic_write_json
from .records import (  # re-exported: the public API of the tables stays importable from here
    CRA_RADII,
    KEY_COLUMNS,
    METRICS,
    ManifestRow,
    RunMetrics,
    SCALES,
    STATUS_NOT_REPRODUCED,
    STATUS_OURS_ONLY,
    STATUS_REPRODUCED,
    SeedSummary,
    aggregate_seeds,
    check_scale,
    is_missing,
    numeric_column,
    read_csv_strings,
    read_manifest,
    read_paper_table,
    read_run_metrics,
    read_runs,
    run_data_label,
    scale_caveat,
    summarise_runs,
)
from .render import (
    KEY_LABELS,
    LATEX_METRIC_LABELS,
    METRIC_LABELS,
    format_value,
    header_lines,
    latex_comments,
    latex_escape,
    latex_tabular,
    markdown_table,
    ours_paper_cell,
    write_outputs,
)

__all__ = [
    "CRA_RADII",
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


_PAPER_SEED_SUMMARY_ROWS = ("avg", "std")
_D_TABLE_DATASETS = {"tabled6": "CIFAR-10", "tabled7": "CIFAR-100", "tabled8": "Tiny-ImageNet"}


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
        runs = read_runs(row.runs) if row is not None else []
        summary = summarise_runs(runs)
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
    header = [*(KEY_LABELS[c] for c in KEY_COLUMNS), *(METRIC_LABELS[m] for m in METRICS), "Status"]
    rows = []
    for rec in frame.to_dict("records"):
        cells = [rec[c] or "–" for c in KEY_COLUMNS]
        cells += [
            ours_paper_cell(rec[f"{m}_ours"], rec[f"{m}_std"], rec[f"{m}_n"], rec[f"{m}_paper"], " ± ")
            for m in METRICS
        ]
        rows.append([*cells, rec["status"]])
    aligned = [False] * len(KEY_COLUMNS) + [True] * len(METRICS) + [False]
    lines = [f"## {title}: paper vs ours", *header_lines(scale, data_label)]
    lines.append(
        "Cells: ours as mean ± sample std (n - 1) over seeds (paper value); – = no value. Clean accuracy, "
        "CRA at ℓ2 radius 36/255, 72/255, 108/255 and tightness in %. Differences (ours - paper) and "
        "seed counts are in the CSV."
    )
    return "\n\n".join([*lines, markdown_table(header, rows, aligned)]) + "\n"


def _comparison_latex(frame: pd.DataFrame, title: str, scale: str, data_label: str | None) -> str:
    header = [*(KEY_LABELS[c] for c in KEY_COLUMNS), *(LATEX_METRIC_LABELS[m] for m in METRICS), "Status"]
    rows, rules = [], []
    previous_dataset = None
    for rec in frame.to_dict("records"):
        cells = [latex_escape(rec[c] or "–") for c in KEY_COLUMNS]
        cells += [
            latex_escape(
                ours_paper_cell(rec[f"{m}_ours"], rec[f"{m}_std"], rec[f"{m}_n"], rec[f"{m}_paper"], " ± ")
            )
            for m in METRICS
        ]
        rows.append([*cells, latex_escape(rec["status"])])
        rules.append(previous_dataset is not None and rec["dataset"] != previous_dataset)
        previous_dataset = rec["dataset"]
    aligned = [False] * len(KEY_COLUMNS) + [True] * len(METRICS) + [False]
    notes = [latex_escape(line) for line in header_lines(scale, data_label)]
    notes.append(latex_escape("Cells: ours as mean ± sample std over seeds (paper value); – = no value."))
    comments = latex_comments(f"{title}, paper vs ours", scale, data_label)
    return "\n".join([*comments, latex_tabular(header, rows, aligned, notes, rules)]) + "\n"


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
    check_scale(scale)
    rows = read_manifest(manifest)
    paper = read_paper_table(paper_csv)
    title = title or Path(paper_csv).stem
    data_label = data_label or run_data_label(rows)
    frame = _comparison_frame(rows, paper, scale, data_label)
    markdown = _comparison_markdown(frame, title, scale, data_label)
    latex = _comparison_latex(frame, title, scale, data_label)
    write_outputs(out_stem, frame, markdown, latex)
    return frame


# ----------------------------------------------------------------------------------------------------
# Tables D6-D8 (per seed)


def _read_paper_seeds(path: str | os.PathLike[str]) -> pd.DataFrame:
    frame = read_csv_strings(path)
    required = ["model", "variant", "metric", "seed", "value"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the long format {required}")
    out = pd.DataFrame({c: frame[c].str.strip() for c in ("model", "variant", "metric", "seed")})
    out["value"] = numeric_column(frame, "value", str(path))
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
        runs = read_runs(row.runs) if row is not None else []
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
        summary = summarise_runs(runs, metrics)
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
        return "–" if is_missing(ours) else f"{ours:+.1f}"
    if is_missing(ours) and is_missing(paper):
        return "–"
    return f"{format_value(ours)} ({format_value(paper)})"


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
    lines = [f"## {title}: per seed, paper vs ours", *header_lines(scale, data_label), explanation]
    markdown = "\n\n".join([*lines, markdown_table(header, rows, aligned)]) + "\n"

    latex_header = ["Model", "Variant", "Row", *(LATEX_METRIC_LABELS[m] for m in metrics), "Status"]
    latex_rows = [[latex_escape(c) for c in row] for row in rows]
    notes = [latex_escape(line) for line in [*header_lines(scale, data_label), "Cells: ours (paper)."]]
    comments = latex_comments(f"{title}, per seed, paper vs ours", scale, data_label)
    latex = "\n".join([*comments, latex_tabular(latex_header, latex_rows, aligned, notes, rules)]) + "\n"
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
    check_scale(scale)
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
    data_label = data_label or run_data_label(list(blocks.values()))
    frame = _per_seed_frame(list(blocks.values()), paper, scale, data_label, metrics)
    markdown, latex = _per_seed_outputs(frame, title, scale, data_label, metrics)
    write_outputs(out_stem, frame, markdown, latex)
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
