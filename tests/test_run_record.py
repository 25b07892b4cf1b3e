"""The run record (issue 13, item 2 first step): one definition of the paper radii, the CRA key and the run files."""

import subprocess
import sys

import pytest

from lipcert.certification import DEFAULT_EPS_LIST
from lipcert.reporting.tables import CRA_RADII
from lipcert.run_config import RunConfig
from lipcert.run_record import PAPER_RADII, RunFiles, cra_key


def test_paper_radii_and_cra_key():
    assert PAPER_RADII == (36 / 255, 72 / 255, 108 / 255)
    assert cra_key(36 / 255) == "cra_0.141176" and cra_key(0.15, "train_") == "train_cra_0.15"
    assert cra_key(1) == cra_key(1.0) == "cra_1"  # one spelling per radius
    # the modules that used their own copies now share these
    assert DEFAULT_EPS_LIST is PAPER_RADII and tuple(CRA_RADII.values()) == PAPER_RADII
    assert RunConfig.__dataclass_fields__["eval_eps"].default is PAPER_RADII


def test_run_files(tmp_path):
    files = RunFiles(tmp_path)
    assert files.metrics == tmp_path / "metrics.json" and files.certify == tmp_path / "certify.json"
    assert files.tightness == tmp_path / "tightness.json" and files.model == tmp_path / "model.pt"


@pytest.mark.parametrize("module,absent", [("lipcert.run_record", "torch"),
                                           ("lipcert.trained_run", "lipcert.training")])
def test_light_imports(module, absent):
    code = f"import sys, {module}; assert {absent!r} not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_printed_p_conversion_is_one_function():
    from lipcert import losses
    from lipcert.run_record import p_from_printed, printed_p

    assert losses.p_from_printed is p_from_printed  # re-exported, not re-implemented
    assert p_from_printed(0.01) == 0.005 and printed_p(0.005) == 0.01
    assert printed_p(p_from_printed(0.3)) == 0.3
    with pytest.raises(ValueError, match=r"printed p must lie in \(0, 1\)"):
        p_from_printed(1.2)
    with pytest.raises(ValueError, match=r"eq. \(5\) p must lie in \(0, 0.5\)"):
        printed_p(0.6)


def test_path_number_spells_each_value_once():
    from lipcert.run_record import path_number

    assert path_number(1) == path_number(1.0) == path_number("1.0") == "1"  # eps1 and eps1.0 were two runs
    assert path_number(0.15) == "0.15" and path_number(1e-5) == "1e-05" and path_number("default") == "default"
    with pytest.raises(ValueError):
        path_number("one")


def test_reporting_modules_import_no_private_names_from_each_other():
    """Issue 13 item 4: reading/aggregation (records), rendering (render) and the reports share public names only."""
    import ast
    from pathlib import Path

    reporting = Path(__file__).resolve().parents[1] / "src" / "lipcert" / "reporting"
    private = []
    for path in reporting.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not private
