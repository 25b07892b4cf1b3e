"""lipcert.reporting.run_metrics: a target's certified numbers nested by method and configuration (DVC metrics),
with the seed means computed by hand, and one history file per run (DVC plots)."""

import json

import pytest
from run_dirs import write_run

from lipcert.reporting.run_metrics import main, nested_run_metrics

PARAMS = {"loss": {"eps": 0.15}, "eval_eps": [0.141176, 0.15]}


def _run(root, method, eps_p, seed, clean, cra, k_f, history=None):
    path = root / "runs" / "cifar10" / "4C3F" / method / eps_p / "base" / f"seed{seed}"
    write_run(path, seed, {"clean": clean, "cra_0.141176": cra + 1, "cra_0.15": cra, "K_f": k_f, "K_hf": 2 * k_f},
              params=PARAMS, history=history or [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
    return path


def test_numbers_are_nested_by_method_and_configuration_with_seed_means(tmp_path):
    a = _run(tmp_path, "cll", "eps0.15_p0.15", 1, 80.0, 60.0, 10.0)
    b = _run(tmp_path, "cll", "eps0.15_p0.15", 2, 70.0, 50.0, 14.0)
    c = _run(tmp_path, "gloro", "eps0.15_pdefault", 1, 75.0, 55.0, 8.0)
    out = nested_run_metrics([a, b, c, a], "ci")  # a run two grids share is listed twice: it counts once
    assert out["scale"] == "ci" and set(out["runs"]) == {"cll", "gloro"}
    cll = out["runs"]["cll"]["cifar10/4C3F/eps0.15_p0.15/base"]
    assert set(cll["seeds"]) == {"seed1", "seed2"}
    # the headline cra is the CRA at the training eps 0.15 (certified there), not at the first radius
    assert cll["seeds"]["seed1"]["cra"] == pytest.approx(60.0) and cll["seeds"]["seed1"]["radius"] == 0.15
    assert cll["mean"]["clean"] == pytest.approx(75.0) and cll["mean"]["cra"] == pytest.approx(55.0)
    assert cll["mean"]["K_f"] == pytest.approx(12.0) and cll["mean"]["K_hf"] == pytest.approx(24.0)
    assert cll["mean"]["cra_0.141176"] == pytest.approx(56.0)
    assert out["runs"]["gloro"]["cifar10/4C3F/eps0.15_pdefault/base"]["mean"]["cra"] == pytest.approx(55.0)


def test_the_command_writes_the_metrics_and_one_history_per_run(tmp_path):
    a = _run(tmp_path, "cll", "eps0.15_p0.15", 1, 80.0, 60.0, 10.0)
    b = _run(tmp_path, "gloro", "eps0.15_pdefault", 1, 75.0, 55.0, 8.0)
    assert main(["--runs", str(a), str(b), "--scale", "ci", "--out", str(tmp_path / "m.json"),
                 "--history-dir", str(tmp_path / "h")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["runs"]["cll"]
    files = sorted(p.name for p in (tmp_path / "h").iterdir())
    assert files == ["cll__cifar10__4C3F__eps0.15_p0.15__base__seed1.json",
                     "gloro__cifar10__4C3F__eps0.15_pdefault__base__seed1.json"]
    assert json.loads((tmp_path / "h" / files[0]).read_text())[1] == {"epoch": 2, "loss": 0.25}


def test_a_directory_outside_the_run_layout_or_without_the_headline_radius_fails_naming_it(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        nested_run_metrics([tmp_path / "somewhere"], "ci")
    path = tmp_path / "runs" / "cifar10" / "4C3F" / "cll" / "eps0.15_p0.15" / "base" / "seed1"
    write_run(path, 1, {"clean": 80.0, "cra_0.141176": 60.0, "K_f": 10.0}, params=PARAMS)
    with pytest.raises(ValueError, match="headline radius 0.15"):
        nested_run_metrics([path], "ci")
