"""Rendering table cells and tables for the reports: number format, "ours ± std (paper)" cells, Markdown and LaTeX
tables with the scale sentence and caveat, atomic CSV / Markdown / LaTeX outputs (issue 13, item 4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..io_utils import atomic_write_text

from .records import is_missing, scale_caveat

__all__ = ["KEY_LABELS", "LATEX_METRIC_LABELS", "METRIC_LABELS", "format_value", "header_lines", "latex_comments",
           "latex_escape", "latex_tabular", "markdown_cell", "markdown_table", "ours_paper_cell", "scale_sentence",
           "write_outputs"]


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
    }
    return "".join(replacements.get(ch, ch) for ch in text)


def ours_paper_cell(mean: float, std: float, n: int, paper: float, pm: str) -> str:
    """``ours ± std (paper)``; ours is "–" without runs, std is left out for one seed."""
    if n == 0 and is_missing(paper):
        return "–"
    if n == 0:
        ours = "–"
    elif n == 1 or is_missing(std):
        ours = format_value(mean)
    else:
        ours = f"{format_value(mean)}{pm}{format_value(std)}"
    return f"{ours} ({format_value(paper)})"


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


def write_outputs(out_stem: str | os.PathLike[str], frame: pd.DataFrame, markdown: str, latex: str) -> None:
    stem = Path(out_stem)
    atomic_write_text(stem.with_name(stem.name + ".csv"), frame.to_csv(index=False, float_format="%.7g"))
    atomic_write_text(stem.with_name(stem.name + ".md"), markdown)
    atomic_write_text(stem.with_name(stem.name + ".tex"), latex)

