"""Rendering table cells and tables for the reports: number format, "ours ± std (paper)" cells, Markdown and LaTeX
tables with the scale sentence and caveat, the collapse mark and its footnote, the paper-source sentence, atomic
CSV / Markdown / LaTeX outputs (issue 13, items 4 and 5). One definition of each: every report renders through here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..io_utils import atomic_write_text

from .paper_tables import PaperSource
from .records import SeedFlags, SeedSummary, is_missing, scale_caveat

__all__ = ["COLLAPSE_MARK", "KEY_LABELS", "LATEX_METRIC_LABELS", "METRIC_LABELS", "flag_mark", "flag_notes",
           "format_value", "header_lines", "latex_comments", "latex_escape", "latex_tabular", "markdown_cell",
           "markdown_report", "markdown_table", "mean_std_cell", "ours_paper_cell", "quote_sentence", "row_notes",
           "scale_sentence",
           "source_sentence", "write_outputs"]

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
}


LATEX_METRIC_LABELS = {
    "clean": "Clean",
    "cra_36": "CRA $\\frac{36}{255}$",
    "cra_72": "CRA $\\frac{72}{255}$",
    "cra_108": "CRA $\\frac{108}{255}$",
    "K_f": "$K(f)$",
    "K_hf": "$K(h\\circ f)$",
    "tightness": "Tightness",
}


KEY_LABELS = {"dataset": "Dataset", "method": "Method", "model": "Model", "variant": "Variant"}


def scale_sentence(scale: str) -> str:
    if scale == "paper":
        return "Scale: 'paper' (the paper's training settings)."
    return f"Scale: '{scale}'. Caveat: {scale_caveat(scale)}."


def format_value(value: float, decimals: int = 1) -> str:
    return "–" if is_missing(value) else f"{value:.{decimals}f}"


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


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


def ours_paper_cell(mean: float, std: float, n: int, paper: float, pm: str, mark: str = "") -> str:
    """``ours ± std<mark> (paper)``; ours is "–" without runs, std is left out for one seed; ``mark`` is
    :func:`flag_mark` of the runs aggregated."""
    if n == 0 and is_missing(paper):
        return "–"
    if n == 0:
        ours = "–"
    elif n == 1 or is_missing(std):
        ours = format_value(mean)
    else:
        ours = f"{format_value(mean)}{pm}{format_value(std)}"
    return f"{ours}{mark if n else ''} ({format_value(paper)})"


def mean_std_cell(summary: SeedSummary, decimals: int = 1) -> str:
    """``mean ± std`` over seeds; "–" without runs, the mean alone for one seed."""
    mean, std, n = summary
    if n == 0:
        return "–"
    if n == 1 or is_missing(std):
        return format_value(mean, decimals)
    return f"{format_value(mean, decimals)} ± {format_value(std, decimals)}"


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


def write_outputs(out_stem: str | os.PathLike[str], frame: pd.DataFrame, markdown: str, latex: str | None = None) -> None:
    """STEM.csv, STEM.md and (when given) STEM.tex, each written atomically."""
    stem = Path(out_stem)
    atomic_write_text(stem.with_name(stem.name + ".csv"), frame.to_csv(index=False, float_format="%.7g"))
    atomic_write_text(stem.with_name(stem.name + ".md"), markdown)
    if latex is not None:
        atomic_write_text(stem.with_name(stem.name + ".tex"), latex)

