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


def test_write_metrics_writes_the_run_record_layout(tmp_path):
    from lipcert.run_record import METRICS_SCHEMA_VERSION, metrics_record, read_metrics
    from lipcert.tracking import write_metrics

    written = write_metrics(tmp_path / "metrics.json", {"clean": 50.0}, {"lr": 1e-3}, 3, 2.0, extra={"data": "d"})
    layout = metrics_record({"clean": 50.0}, {"lr": 1e-3}, 3, 2.0, {"data": "d"}, versions={}, hostname="h",
                            timestamp_utc="t")
    assert set(written) == set(layout) and written["schema_version"] == METRICS_SCHEMA_VERSION
    assert read_metrics(tmp_path) == read_metrics(tmp_path / "metrics.json") == written
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        metrics_record({}, {}, -1, 1.0, None, versions={}, hostname="h", timestamp_utc="t")


def test_read_metrics_names_the_file_and_the_bad_key(tmp_path):
    import json

    from lipcert.run_record import read_metrics

    with pytest.raises(FileNotFoundError, match=r"metrics\.json' does not exist"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {}, "seed": "1"}))
    with pytest.raises(ValueError, match=r"metrics\.json: 'seed' must be an int, got '1'"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {}, "seed": 1, "params": [1]}))
    with pytest.raises(ValueError, match=r"metrics\.json: 'params' must be an object"):
        read_metrics(tmp_path)


def test_read_certify_gives_percent_in_the_metrics_key_space(tmp_path):
    import json

    from lipcert.run_record import read_certify

    record = {"n_samples": 200, "clean_accuracy": 0.755, "certified_accuracy": {"0.141176": 0.6, "0.15": 0.5},
              "global_lipschitz": 12.5}
    (tmp_path / "certify.json").write_text(json.dumps(record))
    assert read_certify(tmp_path) == pytest.approx(
        {"clean": 75.5, cra_key(36 / 255): 60.0, cra_key(0.15): 50.0, "K_f": 12.5, "n_samples": 200})
    (tmp_path / "certify.json").write_text(json.dumps({**record, "global_lipschitz": None}))
    with pytest.raises(ValueError, match=r"certify\.json: 'global_lipschitz' must be a number, got None"):
        read_certify(tmp_path)


def test_certify_record_is_the_layout_read_certify_reads(tmp_path):
    import json

    from lipcert.run_record import certify_record, read_certify

    summary = {"n_samples": 4, "clean_accuracy": 0.75, "certified_accuracy": {"0.15": 0.25}, "global_lipschitz": 3.0,
               "radius_quantiles": {"0.5": 0.1}}
    record = certify_record(summary, bound="global", certificate="l2_margin", k_body=2.0, converge_iterations=7,
                            converge_tol=1e-9, converged=True, data_label="generated", numerics={"device": "cpu"})
    assert record["bound"] == "global" and record["certificate"] == "l2_margin" and record["radius_quantiles"]
    assert (record["k_body"], record["converge_iterations"], record["converged"], record["data"]) == (
        2.0, 7, True, "generated")
    (tmp_path / "certify.json").write_text(json.dumps(record))
    assert read_certify(tmp_path) == pytest.approx({"clean": 75.0, cra_key(0.15): 25.0, "K_f": 3.0, "n_samples": 4})
    with pytest.raises(ValueError, match=r"lacks \['global_lipschitz'\]"):
        certify_record({k: v for k, v in summary.items() if k != "global_lipschitz"}, bound="global",
                       certificate="l2_margin", k_body=2.0, converge_iterations=7, converge_tol=1e-9, converged=True,
                       data_label="", numerics={})
    with pytest.raises(ValueError, match="k_body must be finite"):
        certify_record(summary, bound="global", certificate="l2_margin", k_body=float("nan"), converge_iterations=7,
                       converge_tol=1e-9, converged=True, data_label="", numerics={})


def test_retry_of_and_collapse_of_are_tolerant_of_absence_and_strict_on_shape():
    from lipcert.run_record import collapse_of, retry_of

    assert retry_of({}) is None and retry_of({"extra": {"retry": None}}) is None and collapse_of({"extra": {}}) is None
    note = {"requested_seed": 1, "trained_seed": 1001, "collapsed": {"reason": "chance"}}
    assert retry_of({"extra": {"retry": note}}) == note
    with pytest.raises(ValueError, match="extra.retry must be null or a mapping with int 'requested_seed'"):
        retry_of({"extra": {"retry": {"requested_seed": 1}}})


def test_param_value_and_training_eps_read_the_run_config():
    from lipcert.run_record import param_value, training_eps_of

    params = {"loss": {"p": {"kind": "constant", "start": 0.01}, "eps": {"kind": "linear", "start": 0.0, "end": 0.5}}}
    assert param_value(params, "loss.p", "m.json") == 0.01 and training_eps_of(params, "m.json") == 0.5
    with pytest.raises(ValueError, match=r"m\.json: params\.loss\.eps is a 'linear' schedule"):
        param_value(params, "loss.eps", "m.json")
    with pytest.raises(ValueError, match=r"m\.json: params has no 'loss\.lam'"):
        param_value(params, "loss.lam", "m.json")
