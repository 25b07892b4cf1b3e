"""Paper tables next to our results: CLL paper Tables 1 and 2 and the per-seed Tables D6-D8.

This module only reads result files. A run manifest (written by the workflow) lists, per table row
(dataset, method, model, variant), the run directories of the finished seeds. Each run directory holds
``certify.json`` (the certification stage: clean accuracy, CRA at 36/255, 72/255, 108/255 and K(f); paper
section 4; the source of these columns), ``metrics.json`` (training: K(h∘f), seed, data label, collapse / retry
flags) and optionally ``tightness.json`` (supplement C, eq. (20); stored as a fraction, reported in percent).
A run without certify.json is an error naming the file: the tables never fall back to training's numbers.

Our value of a metric is the mean over seeds with the sample standard deviation (n - 1), as in the
paper's Tables D6-D8. Every output states the scale the runs were built at; at any scale but
``paper`` it also carries the caveat that the numbers are not comparable with the paper as they are.
A paper row without finished runs keeps the paper's numbers and is marked "paper value, not
reproduced"; no number is ever filled in for it.

Public API: :func:`write_table`, :func:`per_seed_table`, :func:`main` (command line:
``python -m lipcert.reporting.tables table|per-seed|write-manifest ...``). Reading lives in
:mod:`lipcert.reporting.records` (re-exported here: :func:`read_manifest`, :func:`read_run_metrics`,
:func:`aggregate_seeds`, :func:`read_paper_table`), aggregation in :mod:`lipcert.reporting.table_frames` and cell
rendering, the collapse mark and the paper-source sentence in :mod:`lipcert.reporting.render`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..io_utils import atomic_write_json
from ..display import is_accuracy
from .paper_tables import paper_source
from .records import (  # re-exported: the public API of the tables stays importable from here
    CRA_RADII,
    KEY_COLUMNS,
    METRICS,
    RADIUS_METRICS,
    TABLE_METRICS,
    ManifestRow,
    RunMetrics,
    SCALES,
    SeedFlags,
    SeedSummary,
    aggregate_seeds,
    check_metrics,
    check_scale,
    is_missing,
    read_manifest,
    read_paper_table,
    read_run_metrics,
    run_data_label,
    scale_caveat,
)
from .render import (
    KEY_LABELS,
    LATEX_METRIC_LABELS,
    METRIC_LABELS,
    flag_mark,
    format_value,
    header_lines,
    latex_comments,
    latex_escape,
    latex_tabular,
    markdown_table,
    ours_paper_cell,
    row_notes,
    source_sentence,
    write_outputs,
)
from .table_frames import comparison_frame, dataset_for_seed_table, per_seed_frame, read_paper_seeds

__all__ = [
    "CRA_RADII",
    "KEY_COLUMNS",
    "METRICS",
    "SCALES",
    "TABLE_METRICS",
    "ManifestRow",
    "RunMetrics",
    "SeedSummary",
    "aggregate_seeds",
    "main",
    "per_seed_table",
    "radius_label",
    "read_manifest",
    "read_paper_table",
    "read_run_metrics",
    "scale_caveat",
    "write_table",
]


# ----------------------------------------------------------------------------------------------------
# Tables 1 and 2 (and seed 004's table 2)

_CLL_EXPLANATION = (
    "Clean accuracy, CRA at ℓ2 radius 36/255, 72/255, 108/255 and tightness in %. Ours: clean, CRA and K(f) from the "
    "certification stage (certify.json), K(h∘f) from training (metrics.json), tightness from tightness.json.")

_METRIC_EXPLANATIONS = {
    "clean": "Clean: accuracy in % (certify.json).",
    "pgd": "PGD: accuracy in % under the ℓ2 PGD-100 attack at the row's radius (training's final evaluation, "
           "metrics.json).",
    "cra": "Certified: certified robust accuracy in % at the row's radius (certify.json).",
    "s_epoch": "s/epoch: seconds of training per epoch, the mean of the history's train_s (history.json); the "
               "paper's times were measured on its own hardware (see the source), ours on the machine that ran the "
               "workflow, so the two are not comparable as they are.",
}
"""How each metric of a table other than CLL Tables 1 and 2 is measured (its Markdown and LaTeX notes)."""


def _explanation(metrics: Sequence[str]) -> str:
    if tuple(metrics) == METRICS:
        return _CLL_EXPLANATION
    return " ".join(_METRIC_EXPLANATIONS.get(m, f"{METRIC_LABELS[m]}: as in CLL Tables 1 and 2.") for m in metrics)


def radius_label(radius: float) -> str:
    """A certification radius as the papers print it: ``36/255`` for a multiple of 1/255, else ``1.58``."""
    if is_missing(radius):
        return "–"
    steps = radius * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-3 else f"{radius:g}"


def _columns(metrics: Sequence[str]) -> tuple[list[str], list[bool]]:
    radius = ["Radius"] if any(m in RADIUS_METRICS for m in metrics) else []
    header = [*(KEY_LABELS[c] for c in KEY_COLUMNS), *radius]
    return header, [False] * len(header) + [True] * len(metrics) + [False]


def _comparison_cells(frame: pd.DataFrame, flags: Sequence[SeedFlags], metrics: Sequence[str] = METRICS
                      ) -> list[list[str]]:
    rows = []
    for rec, row_flags in zip(frame.to_dict("records"), flags):
        cells = [rec[c] or "–" for c in KEY_COLUMNS]
        if "radius" in rec:
            cells.append(radius_label(rec["radius"]))
        cells += [ours_paper_cell(rec[f"{m}_ours"], rec[f"{m}_std"], rec[f"{m}_n"], rec[f"{m}_paper"], " ± ",
                                  flag_mark(row_flags), accuracy=is_accuracy(m)) for m in metrics]
        rows.append([*cells, rec["status"]])
    return rows


def _comparison_notes(frame: pd.DataFrame, flags: Sequence[SeedFlags], source: str) -> list[str]:
    labels = [" ".join(rec[c] for c in KEY_COLUMNS if rec[c]) for rec in frame.to_dict("records")]
    return [source, *row_notes(labels, flags)]


def _comparison_markdown(frame: pd.DataFrame, flags: Sequence[SeedFlags], title: str, scale: str,
                         data_label: str | None, source: str, metrics: Sequence[str] = METRICS) -> str:
    keys, aligned = _columns(metrics)
    header = [*keys, *(METRIC_LABELS[m] for m in metrics), "Status"]
    lines = [f"## {title}: paper vs ours", *header_lines(scale, data_label)]
    lines.append(
        f"Cells: ours as mean ± sample std (n - 1) over seeds (paper value); – = no value. {_explanation(metrics)} "
        "Differences (ours - paper) and seed counts are in the CSV."
    )
    lines += _comparison_notes(frame, flags, source)
    return "\n\n".join([*lines, markdown_table(header, _comparison_cells(frame, flags, metrics), aligned)]) + "\n"


def _comparison_latex(frame: pd.DataFrame, flags: Sequence[SeedFlags], title: str, scale: str,
                      data_label: str | None, source: str, metrics: Sequence[str] = METRICS) -> str:
    keys, aligned = _columns(metrics)
    header = [*keys, *(LATEX_METRIC_LABELS[m] for m in metrics), "Status"]
    rows = [[latex_escape(cell) for cell in row] for row in _comparison_cells(frame, flags, metrics)]
    datasets = list(frame["dataset"])
    rules = [i > 0 and datasets[i] != datasets[i - 1] for i in range(len(datasets))]
    explained = [] if tuple(metrics) == METRICS else [_explanation(metrics)]
    notes = [*header_lines(scale, data_label), "Cells: ours as mean ± sample std over seeds (paper value); – = no value.",
             *explained, *_comparison_notes(frame, flags, source)]
    comments = latex_comments(f"{title}, paper vs ours", scale, data_label)
    return "\n".join([*comments, latex_tabular(header, rows, aligned, [latex_escape(n) for n in notes], rules)]) + "\n"


def write_table(
    manifest: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    paper_csv: str | os.PathLike[str],
    scale: str,
    out_stem: str | os.PathLike[str],
    data_label: str | None = None,
    *,
    title: str | None = None,
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """Write a paper table (CLL Table 1 or 2) next to our results as out_stem.csv, .md and .tex.

    Every paper row is kept in the paper's order; manifest rows that are not in the paper table are
    appended with status "ours only". Per metric of :data:`METRICS` the CSV has ``<m>_paper``,
    ``<m>_ours`` (mean over seeds), ``<m>_std`` (sample std, empty for one seed), ``<m>_n`` (seeds that
    recorded it) and ``<m>_diff`` (ours - paper); plus ``status`` ("reproduced", "paper value, not
    reproduced", "partial: k of n seeds"), ``scale``, ``data_label``, ``seeds`` and the collapse / retry columns
    (``n_collapsed``, ``collapsed_seeds``, ``collapse_reasons``, ``retried_seeds``). Ours: clean, CRA and K(f) from
    each run's certify.json, K(h∘f) from its metrics.json (:func:`lipcert.reporting.records.read_run_metrics`). The
    Markdown and LaTeX show "ours ± std (paper)" cells (marked † where a seed collapsed, with a footnote), the
    scale, the data label, the paper source (params/paper_tables/sources.yaml) and, at a scale other than
    ``paper``, the caveat that the numbers are not comparable with the paper. Returns the CSV's frame.

    ``metrics`` (default :data:`METRICS`, CLL Tables 1 and 2) chooses other columns of
    :data:`~lipcert.reporting.records.TABLE_METRICS`: seed 004's table 2 has clean, ``pgd`` and ``cra`` at the row's
    radius (the paper CSV's ``radius``; a ``radius`` column in the outputs) and ``s_epoch`` (mean of history.json's
    ``train_s``).
    """
    check_scale(scale)
    metrics = check_metrics(metrics)
    rows = read_manifest(manifest)
    paper = read_paper_table(paper_csv, metrics)
    source = source_sentence(paper_source(paper_csv))
    title = title or Path(paper_csv).stem
    data_label = data_label or run_data_label(rows)
    frame, flags = comparison_frame(rows, paper, scale, data_label, metrics)
    markdown = _comparison_markdown(frame, flags, title, scale, data_label, source, metrics)
    latex = _comparison_latex(frame, flags, title, scale, data_label, source, metrics)
    write_outputs(out_stem, frame, markdown, latex)
    return frame


# ----------------------------------------------------------------------------------------------------
# Tables D6-D8 (per seed)


def _seed_row_label(rec: Mapping[str, Any]) -> str:
    if rec["row"] == "diff":
        return "avg diff (ours - paper)"
    if rec["row"] in ("avg", "std"):
        return rec["row"]
    paper = "–" if pd.isna(rec["seed_paper"]) else str(rec["seed_paper"])
    ours = "–" if pd.isna(rec["seed_ours"]) else str(rec["seed_ours"])
    return f"{rec['row']} (paper seed {paper}, our seed {ours})"


def _seed_cell(rec: Mapping[str, Any], metric: str, mark: str) -> str:
    ours, paper = rec[f"{metric}_ours"], rec[f"{metric}_paper"]
    if rec["row"] == "diff":
        return "–" if is_missing(ours) else f"{'+' if ours >= 0 else ''}{format_value(ours)}{mark}"
    if is_missing(ours) and is_missing(paper):
        return "–"
    accuracy = is_accuracy(metric) and rec["row"] != "std"  # a std is rounded to nearest
    return (f"{format_value(ours, accuracy=accuracy)}{'' if is_missing(ours) else mark} "
            f"({format_value(paper, accuracy=accuracy)})")


def _per_seed_outputs(frame: pd.DataFrame, flags: Sequence[SeedFlags], title: str, scale: str,
                      data_label: str | None, metrics: Sequence[str], source: str) -> tuple[str, str]:
    header = ["Model", "Variant", "Row", *(METRIC_LABELS[m] for m in metrics), "Status"]
    rows, rules, labels = [], [], []
    previous = None
    for rec, row_flags in zip(frame.to_dict("records"), flags):
        mark = flag_mark(row_flags)
        rows.append([rec["model"], rec["variant"] or "–", _seed_row_label(rec),
                     *(_seed_cell(rec, m, mark) for m in metrics), rec["status"]])
        labels.append(" ".join(part for part in (rec["model"], rec["variant"]) if part))
        block = (rec["model"], rec["variant"])
        rules.append(previous is not None and block != previous)
        previous = block
    aligned = [False, False, False] + [True] * len(metrics) + [False]
    explanation = ("Cells: ours (paper). Row k holds the paper's k-th seed and our k-th seed (sorted by seed "
                   "number); avg and std are the mean and sample std (n - 1) over seeds. Accuracies and "
                   "tightness in %; ours: clean, CRA and K(f) from certify.json.")
    block_rows = [i for i, row in enumerate(frame["row"]) if row == "avg"]  # one footnote per block
    notes = [source, *row_notes([labels[i] for i in block_rows], [flags[i] for i in block_rows])]
    lines = [f"## {title}: per seed, paper vs ours", *header_lines(scale, data_label), explanation, *notes]
    markdown = "\n\n".join([*lines, markdown_table(header, rows, aligned)]) + "\n"

    latex_header = ["Model", "Variant", "Row", *(LATEX_METRIC_LABELS[m] for m in metrics), "Status"]
    latex_rows = [[latex_escape(c) for c in row] for row in rows]
    latex_notes = [latex_escape(line) for line in [*header_lines(scale, data_label), "Cells: ours (paper).", *notes]]
    comments = latex_comments(f"{title}, per seed, paper vs ours", scale, data_label)
    latex = "\n".join([*comments, latex_tabular(latex_header, latex_rows, aligned, latex_notes, rules)]) + "\n"
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
    ``<m>_ours`` per metric of the file, ``status``, ``scale``, ``data_label`` and the collapse / retry columns;
    a collapsed seed's cells (and its block's avg / std / diff) are marked †. Returns the CSV's frame.
    """
    check_scale(scale)
    paper = read_paper_seeds(paper_seeds_csv)
    source = source_sentence(paper_source(paper_seeds_csv))
    dataset = dataset or dataset_for_seed_table(paper_seeds_csv)
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
    frame, flags = per_seed_frame(list(blocks.values()), paper, scale, data_label, metrics)
    markdown, latex = _per_seed_outputs(frame, flags, title, scale, data_label, metrics, source)
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
        if name == "table":
            sub.add_argument("--metrics", nargs="+", default=list(METRICS), choices=TABLE_METRICS,
                             help="the metric columns (default: CLL Tables 1 and 2's)")
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
        frame = write_table(args.manifest, args.paper, args.scale, args.out, args.data_label, title=args.title,
                            metrics=args.metrics)
    else:
        frame = per_seed_table(args.manifest, args.paper, args.scale, args.out, dataset=args.dataset,
                               method=args.method, data_label=args.data_label, title=args.title)
    print(f"wrote {args.out}.csv/.md/.tex ({len(frame)} rows, scale {args.scale!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
