"""Tests for the sweep reports (lipcert.reporting.sweeps): CLL Fig. 5, Table D5, Fig. D1, Fig. D4."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from run_dirs import write_run

from lipcert.reporting.sweeps import (
    cra_key,
    curves,
    eps_sweep,
    grid_table,
    main,
    param_sweep,
    read_sweep_run,
    run_param,
    slack_sweep,
    use_log_x,
)

PAPER_TABLES = Path(__file__).resolve().parents[1] / "params" / "paper_tables"
FIG5 = PAPER_TABLES / "fig5_eps_sweep.csv"
TABLE_D5 = PAPER_TABLES / "tableD5_eps_p_grid.csv"
CAVEAT = "built at scale 'ci': not comparable with the paper without caveat"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def constant(value: float) -> dict:
    """A constant schedule as RunConfig.to_dict writes it (end left null)."""
    return {"kind": "constant", "start": value, "end": None, "power": 1.0, "until": None}


def make_run(run_dir: Path, seed: int, *, loss: str = "cll", eps=0.15, p: float | None = 0.15, lam: float = 1e-6,
             delta: float | None = None, metrics: dict, tightness: float | None = None, model: str = "4C3F",
             history: list | None = None, **flags) -> str:
    """A finished run whose certification gives ``metrics`` (training's copies differ: tests/run_dirs.py)."""
    eps_spec = eps if isinstance(eps, dict) else constant(eps)
    params = {
        "model": model,
        "data": {"name": "cifar10"},
        "loss": {"name": loss, "eps": eps_spec, "p": None if p is None else constant(p), "lam": lam, "delta": delta},
        "eval_eps": [36 / 255, 72 / 255, 108 / 255],
        "seed": seed,
    }
    return write_run(run_dir, seed, metrics, params=params, tightness=tightness, history=history, **flags)


def assert_figure_files(stem: Path) -> None:
    assert stem.with_suffix(".png").read_bytes()[:8] == PNG_HEADER
    assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


# ----------------------------------------------------------------------------------------------------
# run reading


def test_cra_key_matches_the_training_spelling():
    assert cra_key(36 / 255) == "cra_0.141176"
    assert cra_key(0.15) == "cra_0.15"
    assert cra_key(1.0) == "cra_1"


def test_run_param_reads_numbers_and_constant_schedules(tmp_path):
    run = read_sweep_run(make_run(tmp_path / "r", 1, p=0.025, lam=1e-8, delta=0.3, metrics={"clean": 50.0}))
    assert run.method == "CLL" and run.seed == 1
    assert run_param(run, "loss.lam") == 1e-8
    assert run_param(run, "loss.delta") == 0.3
    assert run_param(run, "loss.p") == 0.025
    with pytest.raises(ValueError, match=r"metrics\.json.*no 'loss\.temperature'"):
        run_param(run, "loss.temperature")


def test_run_param_rejects_a_ramped_schedule_and_null(tmp_path):
    ramp = {"kind": "linear", "start": 0.0, "end": 0.15, "power": 1.0, "until": None}
    run = read_sweep_run(make_run(tmp_path / "r", 1, loss="gloro", eps=ramp, p=None, metrics={"clean": 50.0}))
    assert run.method == "GloRo"
    with pytest.raises(ValueError, match="'linear' schedule"):
        run_param(run, "loss.eps")
    with pytest.raises(ValueError, match="loss.p is null"):
        run_param(run, "loss.p")


def test_use_log_x_needs_positive_values_spanning_more_than_two_decades():
    assert use_log_x([1e-15, 1e-10, 1e-1])
    assert not use_log_x([1e-3, 1e-1])  # exactly two decades
    assert use_log_x([1e-3, 1.01e-1])
    assert not use_log_x([0.0, 1e-6, 1e-1])
    assert not use_log_x([0.1, 0.3, 0.5])
    assert not use_log_x([])


# ----------------------------------------------------------------------------------------------------
# Fig. 5: ε sweep


def eps_sweep_runs(root: Path) -> list[str]:
    ramp = {"kind": "linear", "start": 0.0, "end": 0.15, "power": 1.0, "until": None}
    return [
        make_run(root / "g1", 1, loss="gloro", eps=ramp, p=None,
                 metrics={"clean": 70.0, "cra_0.15": 50.0, "K_f": 4.0}, tightness=0.70),
        make_run(root / "g2", 2, loss="gloro", eps=ramp, p=None,
                 metrics={"clean": 71.0, "cra_0.15": 54.0, "K_f": 6.0}, tightness=0.80),
        make_run(root / "c1", 1, loss="cll", eps=0.15, metrics={"clean": 75.0, "cra_0.15": 55.0, "K_f": 900.0},
                 tightness=0.85),
        make_run(root / "c2", 2, loss="cll", eps=0.15, metrics={"clean": 76.0, "cra_0.15": 57.0, "K_f": 1100.0},
                 tightness=0.95),
        make_run(root / "c3", 1, loss="cll", eps=2.0, metrics={"clean": 40.0, "cra_2": 12.0, "K_f": 50.0}),
    ]


def test_eps_sweep_means_and_relative_gain_by_hand(tmp_path):
    stem = tmp_path / "out" / "fig5"
    frame = eps_sweep(eps_sweep_runs(tmp_path), FIG5, "ci", stem)
    paper = pd.read_csv(FIG5)
    # every paper ε in order, then our ε = 2.0
    assert frame["eps"].tolist() == [*paper["eps"].tolist(), 2.0]
    row = frame.iloc[0]
    assert row["gloro_cra_ours"] == pytest.approx(52.0)
    assert row["gloro_cra_std"] == pytest.approx(math.sqrt(8.0))  # sample std of 50, 54
    assert row["cll_cra_ours"] == pytest.approx(56.0)
    assert row["gloro_K_f"] == pytest.approx(5.0) and row["cll_K_f"] == pytest.approx(1000.0)
    assert row["gloro_tightness"] == pytest.approx(75.0) and row["cll_tightness"] == pytest.approx(90.0)
    assert row["rel_gain_ours_pct"] == pytest.approx(100 * 4 / 52)
    assert row["gloro_cra_paper"] == 58.8 and row["cll_cra_paper"] == 60.6
    assert row["rel_gain_paper_printed_pct"] == 3.0
    assert row["rel_gain_paper_computed_pct"] == pytest.approx(100 * 1.8 / 58.8)
    assert row["cll_cra_diff"] == pytest.approx(56.0 - 60.6)
    assert row["gloro_n"] == 2 and row["cll_seeds"] == "1,2"
    # a paper ε we did not run keeps the paper's numbers and no ours
    assert frame.iloc[1]["cll_n"] == 0 and math.isnan(frame.iloc[1]["cll_cra_ours"])
    assert frame.iloc[1]["cll_cra_paper"] == 51.6
    last = frame.iloc[-1]
    assert last["cll_cra_ours"] == 12.0 and last["gloro_n"] == 0 and math.isnan(last["rel_gain_ours_pct"])

    written = pd.read_csv(stem.with_suffix(".csv"))
    assert written["cll_cra_ours"].iloc[0] == pytest.approx(56.0)
    markdown = stem.with_suffix(".md").read_text()
    assert CAVEAT in markdown and "56.0 ± 1.4 (60.6)" in markdown and "7.69 (3.0)" in markdown
    assert_figure_files(stem)


def test_eps_sweep_missing_cra_key_names_the_run(tmp_path):
    runs = eps_sweep_runs(tmp_path)
    bad = make_run(tmp_path / "bad", 1, loss="cll", eps=0.25, metrics={"clean": 70.0, "cra_0.141176": 60.0})
    with pytest.raises(ValueError, match=r"bad/certify\.json: has no key 'cra_0\.25'"):
        eps_sweep([*runs, bad], FIG5, "ci", tmp_path / "fig5")
    assert not (tmp_path / "fig5.csv").exists()


def test_eps_sweep_rejects_other_methods_duplicate_seeds_and_mixed_models(tmp_path):
    runs = eps_sweep_runs(tmp_path)
    ce = make_run(tmp_path / "ce", 1, loss="ce", eps=0.15, p=None, metrics={"clean": 80.0, "cra_0.15": 0.0})
    with pytest.raises(ValueError, match="method 'CE' does not belong"):
        eps_sweep([*runs, ce], FIG5, "ci", tmp_path / "a")
    twin = make_run(tmp_path / "twin", 2, loss="cll", eps=0.15, metrics={"clean": 1.0, "cra_0.15": 1.0})
    with pytest.raises(ValueError, match="seed 2 appears twice"):
        eps_sweep([*runs, twin], FIG5, "ci", tmp_path / "b")
    other = make_run(tmp_path / "other", 5, loss="cll", eps=0.15, model="6C2F", metrics={"clean": 1.0, "cra_0.15": 1.0})
    with pytest.raises(ValueError, match="runs differ in model"):
        eps_sweep([*runs, other], FIG5, "ci", tmp_path / "c")


# ----------------------------------------------------------------------------------------------------
# Fig. 5 left: slack sweep


def test_slack_sweep_reports_eq5_and_printed_p(tmp_path):
    runs = [
        make_run(tmp_path / "a1", 1, p=0.2, metrics={"clean": 68.0, "cra_0.141176": 61.0, "K_hf": 5.0}),
        make_run(tmp_path / "a2", 2, p=0.2, metrics={"clean": 70.0, "cra_0.141176": 63.0, "K_hf": 7.0}),
        make_run(tmp_path / "b1", 1, p=0.005, metrics={"clean": 80.0, "cra_0.141176": 55.0}),
    ]
    stem = tmp_path / "slack"
    frame = slack_sweep(runs, "paper", stem)
    assert frame["p_eq5"].tolist() == [0.005, 0.2]
    assert frame["p_printed"].tolist() == pytest.approx([0.01, 0.4])
    assert frame["clean"].tolist() == pytest.approx([80.0, 69.0])
    assert frame["cra"].tolist() == pytest.approx([55.0, 62.0])
    assert frame["n"].tolist() == [1, 2]
    assert math.isnan(frame["K_hf"].iloc[0]) and frame["K_hf"].iloc[1] == pytest.approx(6.0)
    markdown = stem.with_suffix(".md").read_text()
    assert "Scale: 'paper'" in markdown and "not comparable" not in markdown
    assert_figure_files(stem)


def test_slack_sweep_needs_one_training_eps(tmp_path):
    runs = [make_run(tmp_path / "a", 1, eps=0.15, p=0.1, metrics={"clean": 1.0, "cra_0.141176": 1.0}),
            make_run(tmp_path / "b", 1, eps=0.5, p=0.2, metrics={"clean": 1.0, "cra_0.141176": 1.0})]
    with pytest.raises(ValueError, match="runs differ in training ε"):
        slack_sweep(runs, "ci", tmp_path / "s")


# ----------------------------------------------------------------------------------------------------
# Table D5


def test_grid_table_keeps_every_paper_cell_and_matches_printed_p(tmp_path):
    d5 = {"cra_0.141176": 0.0, "cra_0.423529": 0.0}
    runs = [
        # printed p = 0.05 <-> eq. (5) p = 0.025, ε = 0.5 (paper: 37.1, 25.7, 12.0, 7.4)
        make_run(tmp_path / "m1", 1, eps=0.5, p=0.025, model="8C2F",
                 metrics={**d5, "clean": 36.0, "cra_0.141176": 25.0, "cra_0.423529": 11.0, "K_hf": 7.3}),
        make_run(tmp_path / "m2", 2, eps=0.5, p=0.025, model="8C2F",
                 metrics={**d5, "clean": 38.0, "cra_0.141176": 26.0, "cra_0.423529": 12.0, "K_hf": 7.4}),
        # printed p = 0.001 written as a computed float
        make_run(tmp_path / "m3", 1, eps=0.75, p=0.001 / 2 * (1 + 1e-12), model="8C2F",
                 metrics={**d5, "clean": 38.0, "K_hf": 10.0}),
        # not in the paper's grid
        make_run(tmp_path / "m4", 1, eps=2.0, p=0.3, model="8C2F", metrics={**d5, "clean": 10.0, "K_hf": 1.0}),
    ]
    stem = tmp_path / "d5"
    frame = grid_table(runs, TABLE_D5, "ci", stem)
    paper = pd.read_csv(TABLE_D5)
    assert len(frame) == len(paper) + 1 == 26
    head = frame.iloc[: len(paper)]
    assert head["p_printed"].tolist() == paper["p"].tolist()
    assert head["eps_train"].tolist() == paper["eps_train"].tolist()
    for metric in ("clean", "cra_36", "cra_108", "K_hf"):
        assert head[f"{metric}_paper"].tolist() == paper[metric].tolist()
    matched = frame[(frame["p_printed"] == 0.05) & (frame["eps_train"] == 0.5)].iloc[0]
    assert matched["status"] == "reproduced" and matched["clean_n"] == 2
    assert matched["clean_ours"] == pytest.approx(37.0)
    assert matched["clean_diff"] == pytest.approx(37.0 - 37.1)
    assert matched["cra_36_ours"] == pytest.approx(25.5) and matched["cra_108_ours"] == pytest.approx(11.5)
    assert matched["K_hf_ours"] == pytest.approx(7.35) and matched["K_hf_paper"] == 7.4
    tolerant = frame[(frame["p_printed"] == 0.001) & (frame["eps_train"] == 0.75)].iloc[0]
    assert tolerant["status"] == "reproduced" and tolerant["K_hf_ours"] == 10.0
    untouched = frame[(frame["p_printed"] == 0.1) & (frame["eps_train"] == 0.15)].iloc[0]
    assert untouched["status"] == "paper value, not reproduced" and untouched["clean_n"] == 0
    assert math.isnan(untouched["clean_ours"]) and untouched["clean_paper"] == 43.7
    extra = frame.iloc[-1]
    assert extra["status"] == "ours only" and extra["p_printed"] == pytest.approx(0.6)
    assert math.isnan(extra["clean_paper"]) and extra["clean_ours"] == 10.0

    written = pd.read_csv(stem.with_suffix(".csv"))
    assert len(written) == 26 and written["cra_36_paper"].iloc[:25].tolist() == paper["cra_36"].tolist()
    markdown = stem.with_suffix(".md").read_text()
    assert CAVEAT in markdown and "37.0 ± 1.4 (37.1)" in markdown and "– (43.7)" in markdown
    assert markdown.count("paper value, not reproduced") == 23


def test_grid_table_needs_constant_p(tmp_path):
    run = make_run(tmp_path / "gl", 1, loss="gloro", eps=0.5, p=None, metrics={"clean": 30.0})
    with pytest.raises(ValueError, match="does not belong in the ε × p grid"):
        grid_table([run], TABLE_D5, "ci", tmp_path / "d5")


# ----------------------------------------------------------------------------------------------------
# Fig. D1


def history(points: dict[int, float], epochs: int = 4) -> list[dict]:
    """Per-epoch records; epochs in ``points`` are evaluated (clean and CRA at 36/255)."""
    out = []
    for epoch in range(1, epochs + 1):
        entry = {"epoch": epoch, "loss": 1.0 / epoch, "K_f": 10.0}
        if epoch in points:
            entry.update({"clean": points[epoch] + 20.0, "cra_0.141176": points[epoch]})
        out.append(entry)
    return out


def test_curves_average_seeds_per_epoch(tmp_path):
    runs = [
        make_run(tmp_path / "c1", 1, metrics={"clean": 1.0}, history=history({2: 40.0, 4: 50.0})),
        make_run(tmp_path / "c2", 2, metrics={"clean": 1.0}, history=history({2: 44.0, 4: 54.0})),
        make_run(tmp_path / "g1", 1, loss="gloro", p=None, metrics={"clean": 1.0}, history=history({2: 30.0, 4: 35.0})),
        make_run(tmp_path / "g2", 2, loss="gloro", p=None, metrics={"clean": 1.0}, history=history({4: 39.0})),
    ]
    stem = tmp_path / "d1"
    frame = curves(runs, "ci", stem)
    cll = frame[frame["method"] == "CLL"]
    assert cll["epoch"].tolist() == [2, 4]
    assert cll["cra"].tolist() == pytest.approx([42.0, 52.0])
    assert cll["clean"].tolist() == pytest.approx([62.0, 72.0])
    gloro = frame[frame["method"] == "GloRo"]
    assert gloro["n"].tolist() == [1, 2]
    assert gloro["cra"].tolist() == pytest.approx([30.0, 37.0])
    assert CAVEAT in stem.with_suffix(".md").read_text()
    assert_figure_files(stem)


def test_curves_missing_cra_on_an_evaluated_epoch_names_the_history(tmp_path):
    records = history({2: 40.0, 4: 45.0})
    del records[1]["cra_0.141176"]  # epoch 2 evaluated (clean present) without its CRA
    run = make_run(tmp_path / "c1", 1, metrics={"clean": 1.0}, history=records)
    with pytest.raises(ValueError, match=r"c1/history\.json: epoch 2 .*no key 'cra_0\.141176'"):
        curves([run], "ci", tmp_path / "d1")
    other = make_run(tmp_path / "c2", 2, metrics={"clean": 1.0}, history=history({2: 40.0}))
    with pytest.raises(ValueError, match=r"c2/history\.json: no epoch records 'cra_0\.5'"):
        curves([other], "ci", tmp_path / "d1", eps=0.5)
    with pytest.raises(FileNotFoundError, match=r"c3/history\.json"):
        curves([make_run(tmp_path / "c3", 1, metrics={"clean": 1.0})], "ci", tmp_path / "d1")


# ----------------------------------------------------------------------------------------------------
# Fig. D4


def test_param_sweep_over_lambda_and_delta(tmp_path):
    runs = [
        make_run(tmp_path / "l1", 1, lam=1e-10, delta=0.0,
                 metrics={"clean": 78.0, "cra_0.141176": 60.0, "K_f": 1e4, "K_hf": 11.0}),
        make_run(tmp_path / "l2", 2, lam=1e-10, delta=0.5,
                 metrics={"clean": 76.0, "cra_0.141176": 62.0, "K_f": 3e4, "K_hf": 13.0}),
        make_run(tmp_path / "l3", 1, lam=1e-2, delta=1.0, metrics={"clean": 60.0, "cra_0.141176": 40.0, "K_f": 10.0}),
    ]
    stem = tmp_path / "d4a"
    frame = param_sweep(runs, "loss.lam", "ci", stem)
    assert frame["value"].tolist() == [1e-10, 1e-2]
    assert frame["cra"].tolist() == pytest.approx([61.0, 40.0])
    assert frame["clean"].tolist() == pytest.approx([77.0, 60.0])
    assert frame["K_f"].tolist() == pytest.approx([2e4, 10.0])
    assert frame["K_hf"].tolist()[0] == pytest.approx(12.0) and math.isnan(frame["K_hf"].tolist()[1])  # Fig. D4c
    assert frame["n"].tolist() == [1 + 1, 1]
    assert CAVEAT in stem.with_suffix(".md").read_text()
    assert_figure_files(stem)
    delta = param_sweep(runs, "loss.delta", "ci", tmp_path / "d4b")
    assert delta["value"].tolist() == [0.0, 0.5, 1.0] and delta["n"].tolist() == [1, 1, 1]
    assert "δ = 0.2 gives CRA 62.0 %" in (tmp_path / "d4b.md").read_text()
    assert "δ = 0.2" not in stem.with_suffix(".md").read_text()
    with pytest.raises(ValueError, match=r"l1/metrics\.json: params has no 'loss\.temp'"):
        param_sweep(runs, "loss.temp", "ci", tmp_path / "d4c")


# ----------------------------------------------------------------------------------------------------
# command line


def test_cli_writes_outputs_and_reports_bad_input(tmp_path, capsys):
    runs = eps_sweep_runs(tmp_path)
    stem = tmp_path / "cli" / "fig5"
    assert main(["eps-sweep", "--runs", *runs, "--paper", str(FIG5), "--scale", "quick", "--out", str(stem)]) == 0
    assert "built at scale 'quick'" in stem.with_suffix(".md").read_text()
    assert_figure_files(stem)
    assert main(["slack-sweep", "--runs", runs[2], "--scale", "ci", "--out", str(tmp_path / "s"),
                 "--eps", "0.15"]) == 0
    assert pd.read_csv(tmp_path / "s.csv")["cra"].tolist() == [pytest.approx(55.0, abs=1e-12)]  # 100 x 0.55, exact
    assert main(["param-sweep", "--runs", *runs[2:4], "--param", "loss.nothing", "--scale", "ci",
                 "--out", str(tmp_path / "p")]) == 2
    assert "loss.nothing" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_module_runs_as_a_script_without_torch(tmp_path):
    code = ("import sys, runpy; sys.argv = ['sweeps', '--help']\n"
            "try:\n    runpy.run_module('lipcert.reporting.sweeps', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "assert not [m for m in sys.modules if m == 'torch' or m.startswith(('lipcert.training', "
            "'lipcert.models'))]\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("eps-sweep", "slack-sweep", "grid-table", "curves", "param-sweep"):
        assert command in result.stdout
