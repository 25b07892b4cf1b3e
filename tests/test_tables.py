"""Tests for the paper-vs-ours tables (lipcert.reporting.tables): CLL Tables 1, 2 and D6-D8."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lipcert.reporting.tables import (
    METRICS,
    aggregate_seeds,
    main,
    per_seed_table,
    read_manifest,
    read_paper_table,
    read_run_metrics,
    write_table,
)
from lipcert.tracking import write_metrics
from run_dirs import write_run

PAPER_TABLES = Path(__file__).resolve().parents[1] / "params" / "paper_tables"
TABLE1 = PAPER_TABLES / "table1.csv"
TABLE2 = PAPER_TABLES / "table2.csv"
TABLE_D6 = PAPER_TABLES / "tableD6_cifar10_seeds.csv"
KEYS = ["dataset", "method", "model", "variant"]


def make_run(
    run_dir: Path,
    seed: int,
    clean: float,
    cra: tuple[float, float, float],
    k_f: float,
    k_hf: float | None = None,
    tightness: float | None = None,
    **flags,
) -> str:
    """A finished run whose certification gives these numbers (training's copies differ: tests/run_dirs.py)."""
    # cra keys spelled out by hand: f"cra_{eps:.6g}" for 36/255, 72/255, 108/255
    values = {"clean": clean, "cra_0.141176": cra[0], "cra_0.282353": cra[1], "cra_0.423529": cra[2], "K_f": k_f}
    if k_hf is not None:
        values["K_hf"] = k_hf
    return write_run(run_dir, seed, values, tightness=tightness, **flags)


def three_seed_runs(root: Path) -> list[str]:
    return [
        make_run(root / "s1", 1, 77.0, (61.0, 44.0, 29.0), 70.0, 11.6, tightness=0.80),
        make_run(root / "s2", 2, 78.0, (62.0, 45.0, 30.5), 72.0, 11.6, tightness=0.70),
        make_run(root / "s3", 3, 80.0, (60.0, 43.0, 28.0), 77.0, 11.6),
    ]


# ----------------------------------------------------------------------------------------------------
# one run and seed aggregation


def test_read_run_metrics_maps_cra_radii_and_tightness_to_percent(tmp_path: Path) -> None:
    run = read_run_metrics(make_run(tmp_path / "r", 4, 77.1, (61.2, 44.0, 29.3), 950.2, 11.56, tightness=0.78))
    assert run.seed == 4
    assert run.values == pytest.approx(
        {"clean": 77.1, "cra_36": 61.2, "cra_72": 44.0, "cra_108": 29.3, "K_f": 950.2, "K_hf": 11.56, "tightness": 78.0}
    )


def test_aggregate_seeds_matches_hand_computed_mean_and_sample_std(tmp_path: Path) -> None:
    stats = aggregate_seeds(three_seed_runs(tmp_path))
    assert set(stats) == set(METRICS)
    # clean: 77, 78, 80 -> mean 235/3; squared deviations sum to 18413 - 235**2/3 = 14/3, / (n-1) = 7/3
    mean, std, n = stats["clean"]
    assert n == 3
    assert mean == pytest.approx(235 / 3, abs=1e-12)
    assert std == pytest.approx(math.sqrt(7 / 3), abs=1e-12)
    # K_f: 70, 72, 77 -> mean 73; deviations -3, -1, 4 -> (9 + 1 + 16) / 2 = 13
    assert stats["K_f"].mean == pytest.approx(73.0) and stats["K_f"].std == pytest.approx(math.sqrt(13.0))
    # K_hf identical on all seeds: std exactly 0
    assert stats["K_hf"] == (pytest.approx(11.6), 0.0, 3)
    # tightness only on two seeds: 80 %, 70 % -> mean 75, sample std 5 * sqrt(2) (not the population std 5)
    assert stats["tightness"].n == 2
    assert stats["tightness"].mean == pytest.approx(75.0)
    assert stats["tightness"].std == pytest.approx(5.0 * math.sqrt(2.0))


def test_aggregate_one_seed_has_empty_std_and_missing_metric_has_n_zero(tmp_path: Path) -> None:
    stats = aggregate_seeds([make_run(tmp_path / "r", 1, 50.0, (40.0, 30.0, 20.0), 9.0)])
    assert stats["clean"].mean == 50.0 and stats["clean"].n == 1 and math.isnan(stats["clean"].std)
    assert stats["K_hf"].n == 0 and math.isnan(stats["K_hf"].mean)
    assert stats["tightness"].n == 0


def test_missing_metrics_json_names_the_file(tmp_path: Path) -> None:
    runs = three_seed_runs(tmp_path)
    (Path(runs[1]) / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"s2/metrics\.json"):
        aggregate_seeds(runs)
    manifest = [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": runs}]
    with pytest.raises(FileNotFoundError, match=r"s2/metrics\.json"):
        write_table(manifest, TABLE2, "quick", tmp_path / "out" / "table2")
    assert not (tmp_path / "out" / "table2.csv").exists()


def test_certified_columns_come_from_certify_json_and_k_hf_from_training(tmp_path: Path) -> None:
    run = Path(make_run(tmp_path / "r", 1, 70.0, (50.0, 40.0, 30.0), 12.0, 9.5))
    training = json.loads((run / "metrics.json").read_text())["metrics"]
    assert training["cra_0.141176"] == 57.0 and training["K_f"] == 36.0  # the copies training made differ
    assert read_run_metrics(run).values == pytest.approx(
        {"clean": 70.0, "cra_36": 50.0, "cra_72": 40.0, "cra_108": 30.0, "K_f": 12.0, "K_hf": 9.5})


def test_missing_certify_json_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    runs = three_seed_runs(tmp_path)
    (Path(runs[2]) / "certify.json").unlink()
    manifest = [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": runs}]
    with pytest.raises(FileNotFoundError, match=r"s3/certify\.json' does not exist: the certification stage"):
        write_table(manifest, TABLE2, "quick", tmp_path / "out" / "table2")
    assert not (tmp_path / "out" / "table2.csv").exists()


def test_clean_accuracy_disagreement_names_both_files(tmp_path: Path) -> None:
    run = Path(make_run(tmp_path / "r", 1, 70.0, (50.0, 40.0, 30.0), 12.0))
    record = json.loads((run / "certify.json").read_text())
    record["clean_accuracy"] = 0.697  # 0.55 points below training's 70.25: beyond the 0.5-point tolerance
    (run / "certify.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"r/metrics\.json records clean accuracy 70\.25 % but .*r/certify\.json 69\.7 %"):
        read_run_metrics(run)
    record["clean_accuracy"] = 0.698  # 0.45 points: the same model, a few flipped predictions
    (run / "certify.json").write_text(json.dumps(record))
    assert read_run_metrics(run).values["clean"] == pytest.approx(69.8)


def test_bad_run_files_raise_clear_errors(tmp_path: Path) -> None:
    same_seed = [make_run(tmp_path / "a", 1, 70.0, (1.0, 1.0, 1.0), 1.0),
                 make_run(tmp_path / "b", 1, 71.0, (1.0, 1.0, 1.0), 1.0)]
    with pytest.raises(ValueError, match="seed 1 appears in two runs"):
        aggregate_seeds(same_seed)
    percent = make_run(tmp_path / "c", 2, 70.0, (1.0, 1.0, 1.0), 1.0, tightness=0.5)
    (Path(percent) / "tightness.json").write_text(json.dumps({"tightness": 78.0}))
    with pytest.raises(ValueError, match=r"tightness\.json.*outside \[0, 1\]"):
        read_run_metrics(percent)
    text_value = Path(make_run(tmp_path / "d", 3, 77.1, (1.0, 1.0, 1.0), 1.0))
    (text_value / "metrics.json").write_text(json.dumps({"metrics": {"clean": "77.1"}, "seed": 1}))
    with pytest.raises(ValueError, match=r"d/metrics\.json: metrics\['clean'\] must be a number"):
        read_run_metrics(text_value)
    (text_value / "certify.json").write_text(json.dumps({"clean_accuracy": 0.771, "n_samples": 10}))
    with pytest.raises(ValueError, match=r"d/certify\.json: missing key 'certified_accuracy'"):
        read_run_metrics(text_value)
    with pytest.raises(ValueError, match="at least one run directory"):
        aggregate_seeds([])


def test_manifest_validation_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row 0: missing key 'runs'"):
        read_manifest([{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F"}])
    row = {"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": []}
    with pytest.raises(ValueError, match="row 1: key .* already appears in row 0"):
        read_manifest([row, dict(row)])
    with pytest.raises(ValueError, match="'runs' must be a list"):
        read_manifest([{**row, "runs": "results/run1"}])
    with pytest.raises(ValueError, match="scale must be one of"):
        write_table([row], TABLE2, "full", tmp_path / "t")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps([{k: v for k, v in row.items() if k != "variant"}]))
    assert read_manifest(path)[0].variant == ""


# ----------------------------------------------------------------------------------------------------
# Tables 1 and 2


def test_write_table_keeps_every_paper_row_and_marks_not_reproduced(tmp_path: Path) -> None:
    runs = three_seed_runs(tmp_path / "cll")
    manifest = [
        {"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": runs},
        {"dataset": "CIFAR-10", "method": "SOC", "model": "LipConv-20", "variant": "", "runs": []},
        {"dataset": "CIFAR-10", "method": "CE", "model": "4C3F", "variant": "",
         "runs": [make_run(tmp_path / "ce", 5, 81.0, (0.0, 0.0, 0.0), 1234.5)]},
    ]
    frame = write_table(manifest, TABLE2, "quick", tmp_path / "out" / "table2")
    paper = pd.read_csv(TABLE2, dtype=str, keep_default_na=False)
    assert len(paper) == 17
    assert len(frame) == 18
    # every paper row, in the paper's order, then the ours-only row
    assert [tuple(r) for r in frame[KEYS].iloc[:17].itertuples(index=False)] == [
        tuple(r) for r in paper[KEYS].itertuples(index=False)
    ]
    assert tuple(frame.iloc[17][KEYS]) == ("CIFAR-10", "CE", "4C3F", "")
    assert frame.iloc[17]["status"] == "ours only"
    assert frame.iloc[17]["clean_ours"] == 81.0 and math.isnan(frame.iloc[17]["clean_paper"])

    by_key = frame.set_index(KEYS)
    cll = by_key.loc[("CIFAR-10", "CLL", "4C3F", "")]
    assert cll["status"] == "reproduced"
    assert cll["clean_paper"] == 77.6 and cll["clean_ours"] == pytest.approx(235 / 3)
    assert cll["clean_std"] == pytest.approx(math.sqrt(7 / 3)) and cll["clean_n"] == 3
    assert cll["clean_diff"] == pytest.approx(235 / 3 - 77.6)
    assert cll["tightness_ours"] == pytest.approx(75.0) and cll["tightness_n"] == 2
    assert cll["tightness_diff"] == pytest.approx(75.0 - 80.0)
    assert cll["seeds"] == "1,2,3"

    # not implemented (empty runs) and not in the manifest at all: the paper's numbers, nothing invented
    for key in [("CIFAR-10", "SOC", "LipConv-20", ""), ("CIFAR-100", "CLL", "XL", "SLL-XL")]:
        row = by_key.loc[key]
        assert row["status"] == "paper value, not reproduced"
        for metric in METRICS:
            assert row[f"{metric}_n"] == 0
            assert math.isnan(row[f"{metric}_ours"]) and math.isnan(row[f"{metric}_diff"])
            paper_row = paper.set_index(KEYS).loc[key]
            expected = float(paper_row[metric]) if paper_row[metric] else math.nan
            assert row[f"{metric}_paper"] == pytest.approx(expected, nan_ok=True)
    assert by_key.loc[("CIFAR-10", "SOC", "LipConv-20", "")]["clean_paper"] == 76.3
    assert (frame["scale"] == "quick").all()


def test_csv_round_trip_keeps_numbers_and_leaves_single_seed_std_empty(tmp_path: Path) -> None:
    manifest = [
        {"dataset": "CIFAR-10", "method": "GloRo", "model": "4C3F", "variant": "reproduced", "planned_runs": 3,
         "runs": [make_run(tmp_path / "g", 7, 76.5, (59.0, 40.0, 24.0), 7.3, 7.3)]},
    ]
    write_table(manifest, TABLE2, "ci", tmp_path / "table2")
    on_disk = pd.read_csv(tmp_path / "table2.csv", keep_default_na=False, na_values=[""])
    assert len(on_disk) == 17
    row = on_disk[(on_disk["method"] == "GloRo") & (on_disk["model"] == "4C3F")].iloc[0]
    assert row["status"] == "partial: 1 of 3 seeds"
    assert row["clean_ours"] == 76.5 and math.isnan(row["clean_std"]) and row["clean_n"] == 1
    assert row["clean_diff"] == pytest.approx(76.5 - 77.4)
    assert row["K_hf_paper"] == 7.4 and math.isnan(row["K_f_paper"])
    cpl = on_disk[(on_disk["method"] == "CPL") & (on_disk["dataset"] == "CIFAR-10")].iloc[0]
    assert cpl["K_f_paper"] == pytest.approx(1.414214, abs=1e-9)  # sqrt(2) as stored, no precision lost
    assert set(on_disk["scale"]) == {"ci"}


def test_outputs_state_scale_caveat_and_data_label(tmp_path: Path) -> None:
    runs = three_seed_runs(tmp_path / "cll")
    manifest = [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": runs}]
    label = "CIFAR-10 (JPEG export) & 5% subset"
    write_table(manifest, TABLE2, "quick", tmp_path / "q" / "table2", data_label=label)
    caveat = "built at scale 'quick': not comparable with the paper without caveat"
    md = (tmp_path / "q" / "table2.md").read_text()
    tex = (tmp_path / "q" / "table2.tex").read_text()
    csv = pd.read_csv(tmp_path / "q" / "table2.csv", keep_default_na=False)
    assert caveat in md and caveat in tex
    assert label in md and "CIFAR-10 (JPEG export) \\& 5\\% subset" in tex
    assert set(csv["scale"]) == {"quick"} and set(csv["data_label"]) == {label}
    # Markdown "ours ± std (paper)" cell: clean mean 78.333, std 1.528, paper 77.6
    assert "| 78.3 ± 1.5 (77.6) |" in md
    assert "| – (76.3) |" in md  # SOC LipConv-20 clean: paper value only
    assert md.count("\n| CIFAR-") == 17

    write_table(manifest, TABLE2, "paper", tmp_path / "p" / "table2")
    md_paper = (tmp_path / "p" / "table2.md").read_text()
    tex_paper = (tmp_path / "p" / "table2.tex").read_text()
    assert "Scale: 'paper'" in md_paper and "Scale: 'paper'" in tex_paper
    assert "not comparable" not in md_paper and "not comparable" not in tex_paper


def test_latex_is_a_booktabs_tabular_with_a_full_row_per_entry_and_no_jinja2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # any import of jinja2 (pandas' to_latex) now fails
    runs = three_seed_runs(tmp_path / "cll")
    manifest = [{"dataset": "Tiny-ImageNet", "method": "CLL", "model": "8C2F", "variant": "eps=0.5,p=0.01",
                 "runs": runs}]
    frame = write_table(manifest, TABLE1, "ci", tmp_path / "table1")
    assert len(frame) == 10 and frame.iloc[3]["status"] == "reproduced"
    tex = (tmp_path / "table1.tex").read_text()
    body = tex[tex.index("\\begin{tabular}"):]
    assert body.startswith("\\begin{tabular}{llllrrrrrrrl}")
    assert [body.count(rule) for rule in ("\\toprule", "\\bottomrule", "\\end{tabular}")] == [1, 1, 1]
    rows = body[body.index("\\midrule"):body.index("\\bottomrule")].splitlines()
    data_rows = [r for r in rows if r.endswith("\\\\")]
    assert len(data_rows) == 10
    for line in data_rows:
        assert line.replace("\\&", "").count("&") == 11  # 12 columns
    assert "78.3 $\\pm$ 1.5 (39.8)" in tex
    assert "±" not in tex and "∘" not in tex


def test_cli_writes_the_three_files(tmp_path: Path) -> None:
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(
        [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": three_seed_runs(tmp_path)}]
    ))
    out = tmp_path / "tables" / "table2"
    assert main(["table", "--manifest", str(manifest_path), "--paper", str(TABLE2), "--scale", "quick",
                 "--out", str(out), "--data-label", "CIFAR-10 (JPEG export)"]) == 0
    for suffix in (".csv", ".md", ".tex"):
        assert "CIFAR-10 (JPEG export)" in out.with_name("table2" + suffix).read_text()


def test_read_paper_table_rejects_duplicate_keys(tmp_path: Path) -> None:
    text = TABLE2.read_text().splitlines()
    (tmp_path / "dup.csv").write_text("\n".join([*text, text[1]]) + "\n")
    with pytest.raises(ValueError, match="rows with the same key"):
        read_paper_table(tmp_path / "dup.csv")
    assert len(read_paper_table(TABLE2)) == 17


def test_reporting_does_not_import_training_code() -> None:
    code = ("import sys, lipcert.reporting.tables; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'lipcert.training', 'lipcert.models')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------------------
# Tables D6-D8 (per seed)


def test_per_seed_table_d6_puts_our_seeds_next_to_the_papers(tmp_path: Path) -> None:
    runs = three_seed_runs(tmp_path / "cll")
    manifest = [
        {"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": runs},
        {"dataset": "CIFAR-10", "method": "GloRo", "model": "4C3F", "variant": "reproduced",
         "runs": [make_run(tmp_path / "g", 1, 1.0, (1.0, 1.0, 1.0), 1.0)]},
        {"dataset": "CIFAR-100", "method": "CLL", "model": "LipConv-20", "variant": "",
         "runs": [make_run(tmp_path / "c100", 1, 2.0, (2.0, 2.0, 2.0), 2.0)]},
    ]
    frame = per_seed_table(manifest, TABLE_D6, "quick", tmp_path / "d6")
    d6 = pd.read_csv(TABLE_D6, dtype=str, keep_default_na=False)
    blocks = list(dict.fromkeys(zip(d6["model"], d6["variant"])))
    assert blocks == [("4C3F", ""), ("6C2F", ""), ("LipConv-20", ""), ("XL", "CPL-XL"), ("XL", "SLL-XL")]
    assert list(dict.fromkeys(zip(frame["model"], frame["variant"]))) == blocks  # GloRo / CIFAR-100 rows left out
    assert len(frame) == 5 * (9 + 3)

    c4 = frame[frame["model"] == "4C3F"].set_index("row")
    assert list(c4.index) == [str(k) for k in range(1, 10)] + ["avg", "std", "diff"]
    assert (c4["status"] == "reproduced").all()
    assert c4.loc["1", "clean_paper"] == 77.3 and c4.loc["1", "clean_ours"] == 77.0
    assert c4.loc["3", "cra_108_ours"] == pytest.approx(28.0) and c4.loc["3", "cra_108_paper"] == 29.0
    assert c4.loc["2", "tightness_ours"] == pytest.approx(70.0)
    assert math.isnan(c4.loc["3", "tightness_ours"])  # seed 3 has no tightness.json
    assert math.isnan(c4.loc["4", "clean_ours"]) and c4.loc["4", "clean_paper"] == 77.3
    assert [c4.loc[str(k), "seed_ours"] for k in (1, 2, 3)] == [1, 2, 3] and pd.isna(c4.loc["4", "seed_ours"])
    # avg/std rows: the paper's printed values next to our mean and sample std
    assert c4.loc["avg", "cra_36_paper"] == 61.0 and c4.loc["std", "cra_36_paper"] == 0.2
    assert c4.loc["avg", "clean_ours"] == pytest.approx(235 / 3)
    assert c4.loc["std", "clean_ours"] == pytest.approx(math.sqrt(7 / 3))
    assert c4.loc["diff", "clean_ours"] == pytest.approx(235 / 3 - 77.3)
    assert "K_hf_paper" not in frame.columns  # D tables report K(f) only

    c6 = frame[frame["model"] == "6C2F"].set_index("row")
    assert (c6["status"] == "paper value, not reproduced").all()
    assert c6["clean_ours"].isna().all() and c6.loc["5", "K_f_paper"] == 722.5

    md = (tmp_path / "d6.md").read_text()
    tex = (tmp_path / "d6.tex").read_text()
    caveat = "built at scale 'quick': not comparable with the paper without caveat"
    assert caveat in md and caveat in tex
    assert "| 4C3F | – | 1 (paper seed 1, our seed 1) | 77.0 (77.3) |" in md
    assert set(pd.read_csv(tmp_path / "d6.csv")["scale"]) == {"quick"}


def test_per_seed_table_appends_our_rows_missing_from_the_paper_and_flags_ambiguity(tmp_path: Path) -> None:
    extra = {"dataset": "CIFAR-10", "method": "CLL", "model": "8C2F", "variant": "",
             "runs": [make_run(tmp_path / "x", 3, 50.0, (1.0, 1.0, 1.0), 5.0, tightness=0.5)]}
    frame = per_seed_table([extra], TABLE_D6, "ci", tmp_path / "d6")
    ours_only = frame[frame["model"] == "8C2F"].set_index("row")
    assert list(ours_only.index) == ["1", "avg", "std", "diff"]
    assert (ours_only["status"] == "ours only").all()
    assert ours_only.loc["1", "tightness_ours"] == pytest.approx(50.0)
    assert math.isnan(ours_only.loc["avg", "clean_paper"]) and math.isnan(ours_only.loc["diff", "clean_ours"])

    other = tmp_path / "paper" / "seeds.csv"  # a file name that says nothing about the dataset
    other.parent.mkdir()
    other.write_text(TABLE_D6.read_text())
    (other.parent / "sources.yaml").write_text(  # its own index: every paper CSV needs a source entry
        "papers: {cll: CLL paper}\nquotes: {}\n"
        "tables:\n  seeds.csv: {paper: cll, table: Table D6, units: '%', extra_data: false}\n")
    two = [{**extra, "model": "4C3F"}, {**extra, "model": "4C3F", "dataset": "CIFAR-100"}]
    with pytest.raises(ValueError, match="both match"):
        per_seed_table(two, other, "ci", tmp_path / "o")
    frame = per_seed_table(two, other, "ci", tmp_path / "o", dataset="CIFAR-100")
    assert frame[frame["model"] == "4C3F"].set_index("row").loc["1", "clean_ours"] == 50.0


def test_data_label_defaults_to_the_labels_the_runs_recorded(tmp_path: Path) -> None:
    runs = three_seed_runs(tmp_path / "cll")
    for run in runs:  # rewritten by the writer training uses: the label goes to "extra"
        path = Path(run) / "metrics.json"
        record = json.loads(path.read_text())
        write_metrics(path, record["metrics"], record.get("params", {}), record["seed"], 1.0,
                      extra={"fingerprint": "f", "data": "CIFAR-10 (JPEG export)"})
    manifest = [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": runs}]
    frame = write_table(manifest, TABLE2, "quick", tmp_path / "q" / "table2")
    assert set(frame["data_label"]) == {"CIFAR-10 (JPEG export)"}
    assert "Data: CIFAR-10 (JPEG export)." in (tmp_path / "q" / "table2.md").read_text()
    # an explicit label wins; runs without a label give none
    assert set(write_table(manifest, TABLE2, "quick", tmp_path / "x" / "t", data_label="mine")["data_label"]) == {"mine"}
    bare = three_seed_runs(tmp_path / "bare")
    frame = write_table([{**manifest[0], "runs": bare}], TABLE2, "quick", tmp_path / "b" / "table2")
    assert set(frame["data_label"]) == {""}


def test_csv_is_exact_and_the_shown_accuracies_are_rounded_down(tmp_path: Path) -> None:
    """Issue 14, item 7: a measured 99.995 % is 99.995 in the CSV and 99.9 (never 100.0) in the .md and .tex."""
    manifest = [{"dataset": "CIFAR-10", "method": "GloRo", "model": "4C3F", "variant": "reproduced",
                 "runs": [make_run(tmp_path / "g", 1, 99.995, (99.95, 40.0, 24.0), 1234.5678901, 7.3)]}]
    write_table(manifest, TABLE2, "ci", tmp_path / "table2")
    on_disk = pd.read_csv(tmp_path / "table2.csv", keep_default_na=False, na_values=[""])
    row = on_disk[(on_disk["method"] == "GloRo") & (on_disk["model"] == "4C3F")].iloc[0]
    assert row["clean_ours"] == pytest.approx(99.995, abs=1e-12) and row["K_f_ours"] == 1234.5678901
    md_row = next(line for line in (tmp_path / "table2.md").read_text().splitlines()
                  if line.startswith("| CIFAR-10 | GloRo | 4C3F |"))
    assert "| 99.9 (77.4) | 99.9 (59.6) |" in md_row  # clean 99.995 and CRA 99.95 floored, the paper's as printed
    assert "| 1234.6 (–) |" in md_row  # K(f) is not an accuracy: rounded to nearest
    assert "99.9 (77.4) & 99.9 (59.6)" in (tmp_path / "table2.tex").read_text()
