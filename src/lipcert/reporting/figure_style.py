"""The look of every figure of the reports (issue 14, item 7): paper width, font sizes, embedded TrueType fonts,
a caption under the panels, the scale stamped in the top-right corner, atomic PNG + PDF output.

Width: the text width of a GCPR / LNCS page (12.2 cm = :data:`PAPER_WIDTH_IN` inches), so a figure goes into a
paper at 100 % and its :data:`FONT_PT` text stays legible. PDFs embed TrueType (Type 42) fonts, never Type 3
(``pdf.fonttype: 42``). Matplotlib is imported only when a figure is drawn; every figure is drawn inside
:func:`paper_style` so that its text sizes and its saved fonts follow :data:`STYLE`.
"""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..io_utils import atomic_write_bytes
from .records import scale_caveat

__all__ = ["CAPTION_CHARS", "FONT_PT", "PAPER_WIDTH_IN", "STYLE", "caption_lines", "finish_figure", "paper_style",
           "LINE_IN", "save_figure", "scale_stamp"]

PAPER_WIDTH_IN = 4.8
"""Text width of an LNCS (GCPR) page: 12.2 cm."""

FONT_PT = 7.0
"""Size of all figure text (titles, labels, ticks, legends, captions): the smallest legible size in print."""

STYLE = {
    "pdf.fonttype": 42, "ps.fonttype": 42, "font.size": FONT_PT, "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT, "xtick.labelsize": FONT_PT, "ytick.labelsize": FONT_PT,
    "legend.fontsize": FONT_PT, "figure.titlesize": FONT_PT + 1, "axes.linewidth": 0.6, "lines.linewidth": 1.0,
    "lines.markersize": 3.0, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "legend.frameon": False,
    "savefig.dpi": 300,
}
"""Matplotlib rc settings of every report figure."""

CAPTION_CHARS = 96
"""Characters per caption line at :data:`FONT_PT` over :data:`PAPER_WIDTH_IN` (DejaVu Sans averages ~0.55 em)."""

LINE_IN = FONT_PT * 1.3 / 72.0
"""Height of one line of figure text in inches."""


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Draw and save inside this context: :data:`STYLE` applies to the figure's text and its PDF fonts."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def scale_stamp(scale: str) -> str:
    """The corner stamp of a figure: "scale: <scale>"."""
    return f"scale: {scale}"


def caption_lines(caption: str, scale: str) -> list[str]:
    """The caption wrapped to :data:`CAPTION_CHARS`, followed at any scale but ``paper`` by the scale caveat."""
    lines = textwrap.wrap(caption, CAPTION_CHARS) if caption else []
    caveat = scale_caveat(scale)
    return lines + ([caveat[0].upper() + caveat[1:] + "."] if caveat else [])


def finish_figure(fig, *, scale: str, caption: str, title: str | None = None,
                  legend: tuple[Sequence, Sequence[str]] | None = None, legend_cols: int = 3,
                  grid_gaps_in: tuple[float, float] | None = None) -> None:
    """Lay out a figure drawn at :data:`PAPER_WIDTH_IN`: ``title`` on top, the scale stamp in the top-right
    corner (red at any scale but ``paper``), ``legend`` (handles, labels) under the panels, then the caption
    (and the scale caveat). Grows the figure's height by what it adds, so the panels keep their size.

    The panels are laid out by ``tight_layout`` (axes with labels), or, with ``grid_gaps_in`` = (horizontal,
    vertical) gaps in inches, edge to edge on their grid with those gaps (image panels sized to their data)."""
    width, height = fig.get_size_inches()
    lines = caption_lines(caption, scale)
    legend_rows = 0 if legend is None else -(-len(legend[1]) // legend_cols)
    bottom_in = 0.06 + LINE_IN * len(lines) + (LINE_IN * legend_rows + 0.08 if legend_rows else 0.0)
    top_in = LINE_IN + 0.06 + (LINE_IN * 1.2 if title else 0.0) + (grid_gaps_in[1] if grid_gaps_in else 0.0)
    total = height + bottom_in + top_in
    fig.set_size_inches(width, total)
    if grid_gaps_in is None:
        fig.tight_layout(pad=0.3, rect=(0.0, bottom_in / total, 1.0, 1.0 - top_in / total))
    else:
        nrows, ncols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
        edge = 0.02
        panel_w = (width - 2 * edge - (ncols - 1) * grid_gaps_in[0]) / ncols
        panel_h = (height - (nrows - 1) * grid_gaps_in[1]) / nrows
        fig.subplots_adjust(left=edge / width, right=1 - edge / width, bottom=bottom_in / total,
                            top=1 - top_in / total, wspace=grid_gaps_in[0] / panel_w,
                            hspace=grid_gaps_in[1] / panel_h)
    caveat = scale_caveat(scale)
    fig.text(0.995, 1.0 - 0.03 / total, scale_stamp(scale), ha="right", va="top", fontsize=FONT_PT,
             color="firebrick" if caveat else "black")
    if title:
        fig.text(0.5, 1.0 - (LINE_IN + 0.03) / total, title, ha="center", va="top", fontsize=FONT_PT + 1,
                 weight="bold")
    if legend_rows:
        fig.legend(*legend, loc="lower center", ncol=legend_cols, frameon=False, handlelength=1.6,
                   columnspacing=1.2, borderaxespad=0.0,
                   bbox_to_anchor=(0.5, (0.04 + LINE_IN * len(lines)) / total))
    for index, line in enumerate(lines):
        is_caveat = caveat is not None and index == len(lines) - 1
        fig.text(0.01, (0.04 + LINE_IN * (len(lines) - 1 - index)) / total, line, ha="left", va="bottom",
                 fontsize=FONT_PT, color="firebrick" if is_caveat else "black")


def save_figure(fig, out_png: str | os.PathLike[str], out_pdf: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``fig`` as PNG (300 dpi) and PDF (TrueType fonts), each atomically; call inside :func:`paper_style`."""
    written = []
    for out, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt)
        written.append(atomic_write_bytes(out, buffer.getvalue()))
    return written[0], written[1]
