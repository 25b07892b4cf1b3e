"""Seed 004's table 2 (target locallip_table2): its plan (rows, runs, outputs) and its table of clean, PGD and
certified accuracy at each row's radius and seconds per epoch, from hand-made run directories."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lipcert.plan import table_manifest, target_outputs, target_runs
from lipcert.reporting.claims import check_claims
from lipcert.reporting.tables import main, radius_label, read_paper_table, write_table
from run_dirs import write_run

PARAMS = Path(__file__).resolve().parents[1] / "params"
WORKFLOW = yaml.safe_load((PARAMS / "workflow.yaml").read_text())
TARGETS = WORKFLOW["targets"]
PAPER = PARAMS / "paper_tables" / "locallip_table2.csv"
METRICS = ["clean", "pgd", "cra", "s_epoch"]


def test_the_target_plans_one_run_per_row_and_seed_with_the_rows_models():
    runs = target_runs(TARGETS, "locallip_table2", {"seeds": [1, 2]})
    configs = list(dict.fromkeys((r.dataset, r.model, r.method, r.eps) for r in runs))
    assert configs == [("mnist", "4C3F_mnist_relu_theta", "local_lip_g", "1.58"),
                       ("mnist", "4C3F_mnist_relu_theta", "local_lip_b", "1.58"),
                       ("cifar10", "4C3F_relu_theta", "local_lip_g", "0.1551"),
                       ("cifar10", "4C3F_relu_theta", "local_lip_b", "0.1551"),
                       ("cifar10", "6C2F_relu_theta", "local_lip_g", "0.1551"),
                       ("cifar10", "6C2F_relu_theta", "local_lip_b", "0.1551"),
                       ("cifar10", "6C2F_clipped_maxmin", "local_lip_b_maxmin", "0.1551")]
    assert len(runs) == 14 and {r.seed for r in runs} == {1, 2}
    assert target_outputs(TARGETS, "locallip_table2") == [
        "tables/locallip_table2.csv", "tables/locallip_table2.md", "tables/locallip_table2.tex",
        "notebooks/locallip_table2.html"]


def test_the_manifest_labels_match_the_paper_csv_at_every_scale():
    paper = read_paper_table(PAPER, METRICS)
    paper_keys = set(zip(paper["dataset"], paper["method"], paper["model"], paper["variant"]))
    for name, scale in WORKFLOW["scales"].items():
        rows = table_manifest(TARGETS, "locallip_table2", scale, "R")
        assert {(r["dataset"], r["method"], r["model"], r["variant"]) for r in rows} == paper_keys, name
        assert all(r["planned_runs"] == len(scale["seeds"]) for r in rows), name  # nothing substituted away
    assert set(paper["radius"]) == {1.58, 0.141176}


def test_table1_and_table2_train_their_local_lip_b_rows():
    for table, data, model, eps in (("table2", "cifar10", "6C2F_clipped_maxmin", "0.1551"),
                                    ("table1", "tiny_imagenet", "8C2F_clipped_maxmin", "0.16")):
        rows = table_manifest(TARGETS, table, WORKFLOW["scales"]["ci"], "R")
        row = next(r for r in rows if r["method"] == "Local-Lip-B")
        assert row["planned_runs"] == 1
        assert row["runs"] == [f"R/runs/{data}/{model}/local_lip_b_maxmin/eps{eps}_pdefault/base/seed1"]


def _run(root: Path, seed: int, radius_key: str, clean: float, pgd: float, cra: float, seconds: list[float]) -> str:
    return write_run(root / f"seed{seed}", seed, {"clean": clean, f"cra_{radius_key}": cra, f"pgd_{radius_key}": pgd,
                                                  "K_f": 3.0, "K_hf": 3.0},
                     history=[{"epoch": i + 1, "loss": 1.0, "train_s": s} for i, s in enumerate(seconds)])


def test_the_table_reads_pgd_and_cra_at_the_rows_radius_and_the_mean_epoch_time(tmp_path):
    mnist = [_run(tmp_path / "mnist", 1, "1.58", 96.0, 80.0, 50.0, [10.0, 20.0]),
             _run(tmp_path / "mnist", 2, "1.58", 94.0, 76.0, 52.0, [30.0])]
    # 36/255 spelled as cra_key spells it; a CRA at another radius must not be picked up
    cifar = [write_run(tmp_path / "cifar" / "seed1", 1, {"clean": 70.0, "cra_0.141176": 55.0, "cra_0.1551": 1.0,
                                                         "pgd_0.141176": 65.0, "pgd_0.1551": 2.0, "K_f": 3.0},
                       history=[{"epoch": 1, "loss": 1.0, "train_s": 5.0}, {"epoch": 2, "loss": 1.0}])]
    manifest = [{"dataset": "MNIST", "method": "Local-Lip-G", "model": "4C3F", "variant": "", "runs": mnist},
                {"dataset": "CIFAR-10", "method": "Local-Lip-B", "model": "4C3F", "variant": "", "runs": cifar},
                {"dataset": "CIFAR-10", "method": "Local-Lip-G", "model": "6C2F", "variant": "", "runs": [],
                 "planned_runs": 1}]
    frame = write_table(manifest, PAPER, "ci", tmp_path / "t", metrics=METRICS)
    assert len(frame) == 7  # every paper row
    g = frame[(frame["dataset"] == "MNIST") & (frame["method"] == "Local-Lip-G")].iloc[0]
    assert (g["clean_ours"], g["pgd_ours"], g["cra_ours"]) == pytest.approx((95.0, 78.0, 51.0))
    assert g["s_epoch_ours"] == pytest.approx((15.0 + 30.0) / 2)  # per run the mean of train_s, then over seeds
    assert g["cra_paper"] == 55.8 and g["s_epoch_paper"] == 45.5 and g["radius"] == 1.58
    assert g["pgd_n"] == 2 and g["status"] == "reproduced"
    b = frame[(frame["dataset"] == "CIFAR-10") & (frame["method"] == "Local-Lip-B") & (frame["model"] == "4C3F")].iloc[0]
    assert (b["pgd_ours"], b["cra_ours"], b["s_epoch_ours"]) == pytest.approx((65.0, 55.0, 5.0))
    assert b["cra_diff"] == pytest.approx(55.0 - 53.5)
    not_run = frame[(frame["method"] == "Local-Lip-G") & (frame["model"] == "6C2F")].iloc[0]
    assert not_run["status"] == "paper value, not reproduced" and math.isnan(not_run["cra_ours"])
    assert not any(c.startswith(("cra_36", "K_f", "tightness")) for c in frame.columns)
    md = (tmp_path / "t.md").read_text()
    assert "| Dataset | Method | Model | Variant | Radius | Clean | PGD | Certified | s/epoch | Status |" in md
    assert "| MNIST | Local-Lip-G | 4C3F | – | 1.58 | 95.0 ± 1.4 (96.3) | 78.0 ± 2.8 (78.2) | 51.0 ± 1.4 (55.8) |" in md
    assert "| CIFAR-10 | Local-Lip-B | 4C3F | – | 36/255 |" in md
    assert "V100" in md and "not comparable" in md and "Huang" in md  # the timing caveat and the paper source
    assert "s/epoch" in (tmp_path / "t.tex").read_text()
    claims = check_claims("locallip_table2", pd.read_csv(tmp_path / "t.csv", keep_default_na=False, na_values=[""]))
    assert len(claims) == 3 and all(c.passed is None for c in claims)  # each pair lacks one of its rows here
    frame.loc[(frame["dataset"] == "CIFAR-10") & (frame["method"] == "Local-Lip-G") & (frame["model"] == "4C3F"),
              "cra_ours"] = 50.0
    assert check_claims("locallip_table2", frame)[0].passed is True  # B 55 > G 50 on 4C3F


def test_the_command_line_takes_the_metrics(tmp_path):
    runs = [_run(tmp_path, 1, "1.58", 90.0, 70.0, 40.0, [2.0])]
    manifest = tmp_path / "m.json"
    manifest.write_text(pd.Series([{"dataset": "MNIST", "method": "Local-Lip-B", "model": "4C3F", "variant": "",
                                    "runs": runs}]).to_json(orient="values"))
    assert main(["table", "--manifest", str(manifest), "--paper", str(PAPER), "--scale", "ci", "--out",
                 str(tmp_path / "t"), "--metrics", *METRICS]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    assert table.loc[table["method"].eq("Local-Lip-B") & table["dataset"].eq("MNIST"), "cra_ours"].item() == 40.0


def test_radius_labels():
    assert radius_label(36 / 255) == "36/255" and radius_label(0.141176) == "36/255" and radius_label(1.58) == "1.58"
