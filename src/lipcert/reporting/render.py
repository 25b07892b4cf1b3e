"""Rendering table cells and tables for the reports: number format (the display rule of
:mod:`lipcert.display`: accuracies rounded down; CSV at full precision), "ours ± std (paper)" cells,
Markdown and LaTeX tables with the scale sentence and caveat, the collapse mark and its footnote, the paper-source
sentence, atomic CSV / Markdown / LaTeX outputs (issue 13, items 4 and 5; issue 14, item 7). One definition of each:
every report renders through here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..io_utils import atomic_write_text

from ..display import MISSING, csv_float, display_accuracy, display_number, display_significant, is_accuracy
from .paper_tables import PaperSource
from .records import SeedFlags, SeedSummary, is_missing, scale_caveat

__all__ = ["COLLAPSE_MARK", "KEY_LABELS", "LATEX_METRIC_LABELS", "METRIC_LABELS", "csv_text", "display_frame",
           "flag_mark", "flag_notes", "format_value", "header_lines", "latex_comments", "latex_escape", "latex_tabular",
           "markdown_cell", "markdown_report", "markdown_table", "markdown_text", "mean_std_cell", "ours_paper_cell",
           "quote_sentence", "row_notes", "scale_sentence", "source_sentence", "write_outputs"]

COLLAPSE_MARK = "†"
"""Marks every cell that aggregates a collapsed run (:func:`flag_notes` gives the footnote)."""


METRIC_LABELS = {
    "clean": "Clean",
    "cra_36": "CRA 36/255",
    "cra_72": "CRA 72/255",
    "cra_108": "CRA 108/255",
    "K_f": "K(f)",
    "K_hf": "K(h∘f)",
    "tightness": "Tightness",
    "pgd": "PGD",
    "cra": "Certified",
    "s_epoch": "s/epoch",
}


LATEX_METRIC_LABELS = {
    "clean": "Clean",
    "cra_36": "CRA $\\frac{36}{255}$",
    "cra_72": "CRA $\\frac{72}{255}$",
    "cra_108": "CRA $\\frac{108}{255}$",
    "K_f": "$K(f)$",
    "K_hf": "$K(h\\circ f)$",
    "tightness": "Tightness",
    "pgd": "PGD",
    "cra": "Certified",
    "s_epoch": "s/epoch",
}


KEY_LABELS = {"dataset": "Dataset", "method": "Method", "model": "Model", "variant": "Variant"}


def scale_sentence(scale: str) -> str:
    if scale == "paper":
        return "Scale: 'paper' (the paper's training settings)."
    return f"Scale: '{scale}'. Caveat: {scale_caveat(scale)}."


def format_value(value: float, decimals: int = 1, *, accuracy: bool = False) -> str:
    """A table cell's number by the display rule of :mod:`lipcert.display`: rounded down when
    ``accuracy`` (a percentage bounded by 100), else to nearest; "–" when missing."""
    return (display_accuracy if accuracy else display_number)(value, decimals)


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_text(text: str) -> str:
    """Plain text for a Markdown paragraph: ``*``, ``_``, backticks and ``|`` escaped, so that "2*eps" or
    "eps_train" show as written instead of turning into emphasis."""
    return "".join("\\" + ch if ch in "*_`|\\" else ch for ch in text)


def latex_escape(text: str) -> str:
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
        COLLAPSE_MARK: "\\textdagger{}",
    }
    return "".join(replacements.get(ch, ch) for ch in text)


def ours_paper_cell(mean: float, std: float, n: int, paper: float, pm: str, mark: str = "", *,
                    accuracy: bool = False) -> str:
    """``ours ± std<mark> (paper)``; ours is "–" without runs, std is left out for one seed; ``mark`` is
    :func:`flag_mark` of the runs aggregated. ``accuracy``: the mean and the paper value are percentages bounded by
    100, shown rounded down (the std is rounded to nearest)."""
    if n == 0 and is_missing(paper):
        return MISSING
    if n == 0:
        ours = MISSING
    elif n == 1 or is_missing(std):
        ours = format_value(mean, accuracy=accuracy)
    else:
        ours = f"{format_value(mean, accuracy=accuracy)}{pm}{format_value(std)}"
    return f"{ours}{mark if n else ''} ({format_value(paper, accuracy=accuracy)})"


def mean_std_cell(summary: SeedSummary, decimals: int = 1, *, accuracy: bool = False) -> str:
    """``mean ± std`` over seeds; "–" without runs, the mean alone for one seed; ``accuracy`` as in
    :func:`ours_paper_cell`."""
    mean, std, n = summary
    if n == 0:
        return MISSING
    if n == 1 or is_missing(std):
        return format_value(mean, decimals, accuracy=accuracy)
    return f"{format_value(mean, decimals, accuracy=accuracy)} ± {format_value(std, decimals)}"


def flag_mark(flags: SeedFlags) -> str:
    """:data:`COLLAPSE_MARK` for a cell that aggregates a collapsed run, else ""."""
    return COLLAPSE_MARK if flags.collapsed else ""


def flag_notes(where: str, flags: SeedFlags) -> list[str]:
    """The footnotes of one row: its collapsed seeds (marked :data:`COLLAPSE_MARK`) and its retried seeds."""
    notes = []
    if flags.collapsed:
        reasons = "; ".join(f"seed {seed}: {reason}" for seed, reason in flags.collapsed)
        notes.append(f"{COLLAPSE_MARK} {where}: {len(flags.collapsed)} of {flags.n_runs} seeds collapsed "
                     f"({reasons}); included in the mean.")
    notes += [f"{where}: seed {requested} retrained as seed {trained} after collapse."
              for requested, trained in flags.retried]
    return notes


def row_notes(labels: Sequence[str], flags: Sequence[SeedFlags]) -> list[str]:
    """The :func:`flag_notes` of every row, each note once (the rows of one block share their flags)."""
    notes: list[str] = []
    for label, row_flags in zip(labels, flags):
        notes += [note for note in flag_notes(label, row_flags) if note not in notes]
    return notes


def source_sentence(source: PaperSource) -> str:
    """Where the paper numbers shown come from: citation, table, units and whether extra data was used."""
    extra = "used extra training data" if source.extra_data else "no extra training data"
    return f"Paper values: {source.citation}, {source.table}; units: {source.units}; {extra}."


def quote_sentence(quote: PaperSource) -> str:
    """A sentence quoted from a paper (``quotes`` of sources.yaml) with its passage, citation and extra data."""
    extra = "used extra training data" if quote.extra_data else "no extra training data"
    return f"Paper ({quote.table}): {quote.text} Source: {quote.citation}; {extra}."


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if right else "---" for right in right_aligned) + "|")
    for row in rows:
        lines.append("| " + " | ".join(markdown_cell(c) for c in row) + " |")
    return "\n".join(lines)


def latex_comments(what: str, scale: str, data_label: str | None) -> list[str]:
    """Leading ``%`` comment lines of a LaTeX table: what it is, its scale (and caveat), the data label."""
    comments = [f"% lipcert: {what}; scale: {scale}"]
    caveat = scale_caveat(scale)
    if caveat:
        comments.append(f"% {caveat}")
    if data_label:
        comments.append(f"% data: {data_label}")
    comments.append("% needs \\usepackage{booktabs}")
    return comments


def latex_tabular(
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


def header_lines(scale: str, data_label: str | None) -> list[str]:
    lines = [scale_sentence(scale)]
    if data_label:
        lines.append(f"Data: {data_label}.")
    return lines


def markdown_report(title: str, scale: str, notes: Sequence[str], header: Sequence[str],
                    rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    """A Markdown report: title, scale sentence, notes (one paragraph each), table."""
    parts = [f"## {title}", scale_sentence(scale), *notes, markdown_table(header, rows, right_aligned)]
    return "\n\n".join(parts) + "\n"


def display_frame(frame: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """A frame for a person to read (a notebook): accuracy columns rounded down to ``decimals``, other floats to 4
    significant digits (:mod:`lipcert.display`), missing values as "–"; other columns unchanged."""
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            accuracy = is_accuracy(str(column))
            shown[column] = [display_accuracy(v, decimals) if accuracy else display_significant(v, 4)
                             for v in shown[column]]
        else:
            shown[column] = [MISSING if is_missing(v) else v for v in shown[column]]
    return shown


def csv_text(frame: pd.DataFrame) -> str:
    """A frame as CSV at full precision: every float as its repr (:func:`lipcert.display.csv_float`)."""
    exact = frame.copy()
    for column in exact.columns:
        if pd.api.types.is_float_dtype(exact[column]):
            exact[column] = [csv_float(v) for v in exact[column]]
    return exact.to_csv(index=False)


def write_outputs(out_stem: str | os.PathLike[str], frame: pd.DataFrame, markdown: str, latex: str | None = None) -> None:
    """STEM.csv (full precision, :func:`csv_text`), STEM.md and (when given) STEM.tex, each written atomically."""
    stem = Path(out_stem)
    atomic_write_text(stem.with_name(stem.name + ".csv"), csv_text(frame))
    atomic_write_text(stem.with_name(stem.name + ".md"), markdown)
    if latex is not None:
        atomic_write_text(stem.with_name(stem.name + ".tex"), latex)

