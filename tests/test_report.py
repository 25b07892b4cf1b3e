"""`snakemake <target> --report` (issue 14, item 5): the report holds the target's figures, tables and notebook,
each with its caption (workflow/report/*.rst), filed under the target. The report of a built fig4 is checked by
tests/test_workflow.py (after its ci-scale build) with :func:`check_fig4_report`."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT_DIR = ROOT / "workflow" / "report"


def test_every_report_caption_named_by_the_rules_exists():
    """Each `caption="../report/<x>.rst"` of the rules is a file, and the Snakefile's global description too."""
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    captions = set(re.findall(r'caption="\.\./report/([\w.]+\.rst)"', rules))
    assert {"two_moons_figure.rst", "figure_pdf.rst", "run_summary.rst", "paper_table.rst", "notebook.rst",
            "fig5_eps_sweep.rst", "figD1.rst", "figD4.rst", "tableD5.rst"} <= captions
    for name in captions | {"workflow.rst"}:
        assert (REPORT_DIR / name).read_text().strip(), name
    assert 'report: "../report/workflow.rst"' in rules


def check_fig4_report(report_zip: Path) -> None:
    """The report of a built fig4 (tests/test_workflow.py builds fig4 at ci scale, then `snakemake fig4 --report`):
    the figure, its PDF, the table and the rendered notebook, each with its caption, the scale stated."""
    with zipfile.ZipFile(report_zip) as archive:
        names = archive.namelist()
        html = next(archive.read(n).decode() for n in names if n.endswith("report.html"))
        for wanted in ("fig4.png", "fig4.pdf", "fig4.csv", "fig4.html"):
            assert any(n.endswith(wanted) for n in names), (wanted, names)
        rendered = archive.read(next(n for n in names if n.endswith("fig4.html"))).decode()
    # the captions (rendered from workflow/report/*.rst with the target and the scale) and the category
    assert "one decision-boundary panel" in html and "fonts embedded as TrueType" in html
    assert "the paper&#x27;s claims" in html or "the paper's claims" in html or "every claim the paper makes" in html
    assert "scale <strong>ci</strong>" in html and "fig4" in html
    assert "checked against our numbers" in rendered and "Training curves" in rendered
