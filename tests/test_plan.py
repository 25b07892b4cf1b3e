"""lipcert.plan: the one expansion of the workflow's grid specs, the derived run overrides and the wildcard names."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from lipcert.params import run_config_from_params
from lipcert.plan import (PlannedRun, check_targets, experiments_by_dataset, run_overrides, table_manifest,
                          target_runs, wildcard_patterns)

PARAMS = Path(__file__).resolve().parents[1] / "params"
WORKFLOW = yaml.safe_load((PARAMS / "workflow.yaml").read_text())
SCALE = {"seeds": [1, 2, 3]}


def _full(pattern: str, text: str) -> bool:
    return re.fullmatch(f"(?:{pattern})", text) is not None


def test_patterns_cover_every_architecture_and_experiment_and_nothing_else():
    names = wildcard_patterns(PARAMS)
    for arch in yaml.safe_load((PARAMS / "architectures.yaml").read_text()):
        assert _full(names["model"], arch), arch
    for dataset, experiments in experiments_by_dataset(PARAMS).items():
        assert _full(names["dataset"], dataset)
        for experiment in experiments:
            assert _full(names["method"], experiment), experiment
    for bad in ("LipConv-30", "4C3", "cll_", "xcll"):
        assert not _full(names["model"], bad) and not _full(names["method"], bad)
    assert "|" in names["method"] and r"LipConv\-10_64" in names["model"]  # escaped, longest names first
    for good in ("base", "lam1e-05", "delta0", "output_scale10"):
        assert _full(names["variant"], good)
    for bad in ("lam", "Lam1", "lam-1", "1e-5"):
        assert not _full(names["variant"], bad)


def test_a_new_params_experiment_is_a_new_method(tmp_path):
    params = tmp_path / "params"
    shutil.copytree(PARAMS, params, ignore=shutil.ignore_patterns("paper_tables"))
    data = yaml.safe_load((params / "two_moons.yaml").read_text())
    data["experiments"]["toy_method"] = {"loss": {"name": "ce"}}
    (params / "two_moons.yaml").write_text(yaml.safe_dump(data))
    assert _full(wildcard_patterns(params)["method"], "toy_method")
    assert not _full(wildcard_patterns(PARAMS)["method"], "toy_method")


def test_a_grid_expands_to_the_product_of_its_axes_in_order():
    targets = {"t": {"grids": {"a": {"data": "cifar10", "model": "4C3F", "method": ["cll", "gloro"],
                                     "eps": [0.5, 1], "p_printed": 0.01, "seeds": [7]},
                               "b": [{"data": "cifar10", "model": "4C3F", "method": "cll", "eps": 0.15,
                                      "variants": {"lam": [1e-5, 0.001]}}]}}}
    runs = target_runs(targets, "t", SCALE, "a")
    assert [(r.method, r.eps, r.p, r.seed) for r in runs] == [
        ("cll", "0.5", "0.005", 7), ("cll", "1", "0.005", 7), ("gloro", "0.5", "0.005", 7), ("gloro", "1", "0.005", 7)]
    b = target_runs(targets, "t", SCALE, "b")  # the scale's seeds when the grid names none
    assert [(r.variant, r.seed, r.p) for r in b] == [(v, s, "default") for v in ("lam1e-05", "lam0.001")
                                                     for s in (1, 2, 3)]
    assert target_runs(targets, "t", SCALE) == runs + b
    assert b[0].path("results/ci", "metrics.json") == \
        "results/ci/runs/cifar10/4C3F/cll/eps0.15_pdefault/lam1e-05/seed1/metrics.json"
    with pytest.raises(ValueError, match="no run group 'c'"):
        target_runs(targets, "t", SCALE, "c")
    with pytest.raises(ValueError, match="unknown target 'u'"):
        target_runs(targets, "u", SCALE)
    with pytest.raises(ValueError, match="p .eq. .5.. or p_printed, not both"):
        target_runs({"t": {"rows": [{"data": "cifar10", "model": "4C3F", "method": "cll", "p": 0.1,
                                     "p_printed": 0.2}]}}, "t", SCALE)


def test_one_spelling_per_number_and_substitution():
    rows = {"t": {"rows": [{"label": {"dataset": "D", "method": "M", "model": "XL", "variant": ""},
                            "data": "cifar10", "model": "CPL-XL", "method": "cpl"},
                           {"label": {"dataset": "D", "method": "C", "model": "4C3F", "variant": "v"},
                            "data": "cifar10", "model": "4C3F", "method": "cll", "eps": 1.0, "p": 0.15}]},
            "view": {"runs_of": "t"}}
    scale = {"seeds": [1], "substitute": {"CPL-XL": None}}
    assert target_runs(rows, "t", scale) == [PlannedRun("cifar10", "4C3F", "cll", "1", "0.15", 1)]
    assert target_runs(rows, "view", scale) == target_runs(rows, "t", scale)
    assert target_runs(rows, "t", {"seeds": [1], "substitute": {"CPL-XL": "CPL-S"}})[0].model == "CPL-S"
    manifest = table_manifest(rows, "t", scale, "R")
    assert manifest == [{"dataset": "D", "method": "M", "model": "XL", "variant": "", "runs": [], "planned_runs": None},
                        {"dataset": "D", "method": "C", "model": "4C3F", "variant": "v",
                         "runs": ["R/runs/cifar10/4C3F/cll/eps1_p0.15/base/seed1"], "planned_runs": 1}]


def test_overrides_are_derived_from_the_experiment():
    assert run_overrides(PARAMS, "cifar10", "6C2F", "cll", "0.5", "0.005") == [
        "model=6C2F", "loss.eps=0.5", "eval_eps+=[0.5]", "loss.p=0.005"]
    # GloRo ramps eps with a schedule: the axis is the end of the ramp
    assert run_overrides(PARAMS, "cifar10", "4C3F", "gloro", "0.25", "default") == [
        "model=4C3F", "loss.eps.end=0.25", "eval_eps+=[0.25]"]
    # two-moons certifies at the training eps only; cross-entropy has no training eps
    assert run_overrides(PARAMS, "two_moons", "two_moons", "ce", "0.2", "default") == [
        "model=two_moons", "eval_eps=[0.2]"]
    assert run_overrides(PARAMS, "cifar10", "4C3F", "cll", "0.15", "0.15", "lam1e-05")[-1] == "loss.lam=1e-05"
    assert run_overrides(PARAMS, "cifar10", "LipConv-20", "soc", "0", "default") == ["model=LipConv-20"]
    with pytest.raises(ValueError, match="method 'soc' has no loss.p"):
        run_overrides(PARAMS, "cifar10", "LipConv-20", "soc", "0", "0.1")
    with pytest.raises(ValueError, match="method 'cll' trains with an eps"):
        run_overrides(PARAMS, "cifar10", "4C3F", "cll", "0", "0.1")
    with pytest.raises(ValueError, match="'clll' is not an experiment of params/cifar10.yaml"):
        run_overrides(PARAMS, "cifar10", "4C3F", "clll", "0.1", "default")
    with pytest.raises(ValueError, match="variant 'lam' is not"):
        run_overrides(PARAMS, "cifar10", "4C3F", "cll", "0.15", "0.15", "lam")
    with pytest.raises(ValueError, match="no params file"):
        run_overrides(PARAMS, "svhn", "4C3F", "cll", "0.15", "0.15")


def test_appended_radius_keeps_the_paper_radii_defined_once():
    sets = run_overrides(PARAMS, "cifar10", "4C3F", "gloro", "0.5", "default")
    cfg = run_config_from_params(PARAMS / "cifar10.yaml", "gloro", sets)
    assert cfg.eval_eps == (36 / 255, 72 / 255, 108 / 255, 0.5)
    eps = cfg.to_dict()["loss"]["eps"]
    assert eps["end"] == 0.5 and eps["start"] == 0.0 and eps["kind"] == "polynomial"


def test_committed_targets_are_consistent_and_bad_grids_name_their_target():
    check_targets(WORKFLOW["targets"], WORKFLOW["scales"], PARAMS)
    bad = {"fig9": {"grids": {"runs": {"data": "cifar10", "model": "4C3F", "method": "soc", "p": 0.1}}}}
    with pytest.raises(ValueError, match=r"targets.fig9: .*method 'soc' has no loss.p"):
        check_targets(bad, {"ci": SCALE}, PARAMS)
    with pytest.raises(ValueError, match=r"targets.d9.runs_of: 'fig4' is not a paper table"):
        check_targets({"d9": {"runs_of": "fig4"}, "fig4": WORKFLOW["targets"]["fig4"]}, {"ci": SCALE}, PARAMS)
