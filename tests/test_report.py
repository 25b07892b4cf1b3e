"""`snakemake <target> --report` (issue 14, item 5): the report holds the target's figures, tables and notebook,
each with its caption (workflow/report/*.rst), filed under the target."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPORT_DIR = ROOT / "workflow" / "report"


def _snakemake(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def test_every_report_caption_named_by_the_rules_exists():
    """Each `caption="../report/<x>.rst"` of the rules is a file, and the Snakefile's global description too."""
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    captions = set(re.findall(r'caption="\.\./report/([\w.]+\.rst)"', rules))
    assert {"two_moons_figure.rst", "figure_pdf.rst", "run_summary.rst", "paper_table.rst", "notebook.rst",
            "fig5_eps_sweep.rst", "figD1.rst", "figD4.rst", "tableD5.rst"} <= captions
    for name in captions | {"workflow.rst"}:
        assert (REPORT_DIR / name).read_text().strip(), name
    assert 'report: "../report/workflow.rst"' in rules


@pytest.mark.slow
def test_fig4_report_holds_the_figures_tables_and_notebook(tmp_path):
    """Build fig4 at ci scale in a copy of the project, then `snakemake fig4 --report report.zip`."""
    proj = tmp_path / "lipcert"
    shutil.copytree(ROOT, proj, ignore=shutil.ignore_patterns(".venv", "results", ".snakemake", "__pycache__", ".git",
                                                              "*.egg-info", ".dvc"))
    results = tmp_path / "results"
    config = ["--config", "scale=ci", f"results={results}"]
    _snakemake("fig4", "--cores", "2", "--resources", "gpu=1", *config, cwd=proj)
    _snakemake("fig4", "--report", str(tmp_path / "report.zip"), *config, cwd=proj)
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        html = next(archive.read(n).decode() for n in names if n.endswith("report.html"))
    for wanted in ("fig4.png", "fig4.pdf", "fig4.csv", "fig4.html"):
        assert any(n.endswith(wanted) for n in names), (wanted, names)
    # the captions (rendered from workflow/report/*.rst with the target and the scale) and the category
    assert "one decision-boundary panel" in html and "fonts embedded as TrueType" in html
    assert "the paper&#x27;s claims" in html or "the paper's claims" in html or "every claim the paper makes" in html
    assert "scale <strong>ci</strong>" in html and "fig4" in html
    notebook = next(archive_name for archive_name in names if archive_name.endswith("fig4.html"))
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        rendered = archive.read(notebook).decode()
    assert "checked against our numbers" in rendered and "Training curves" in rendered
