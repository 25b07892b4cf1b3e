"""Reporting (issue 13, items 4 and 5): certified numbers from certify.json, collapse / retry marks in every table,
paper quotes in one checked file (params/paper_tables/sources.yaml), modules split by job."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from run_dirs import write_run

from lipcert.reporting.paper_tables import PAPER_TABLES_DIR, paper_quote, paper_source, read_sources
from lipcert.reporting.run_summary import summarise_runs, write_summary
from lipcert.reporting.sweeps import slack_sweep
from lipcert.reporting.tables import per_seed_table, write_table

REPORTING = Path(__file__).resolve().parents[1] / "src" / "lipcert" / "reporting"
TABLE2 = PAPER_TABLES_DIR / "table2.csv"
TABLE_D6 = PAPER_TABLES_DIR / "tableD6_cifar10_seeds.csv"
CHANCE = {"reason": "clean accuracy 10.0 % is at chance level (10 classes)"}
FOOTNOTE = ("† CIFAR-10 CLL 4C3F: 1 of 3 seeds collapsed (seed 2: clean accuracy 10.0 % is at chance level "
            "(10 classes)); included in the mean.")


def cifar_run(root: Path, seed: int, clean: float, **extra) -> str:
    values = {"clean": clean, "cra_0.141176": clean - 10, "cra_0.282353": clean - 20, "cra_0.423529": clean - 30,
              "K_f": 10.0, "K_hf": 5.0}
    return write_run(root / f"s{seed}", seed, values, extra=extra)


def three_runs(root: Path) -> list[str]:
    return [cifar_run(root, 1001, 70.0, retry={"requested_seed": 1, "trained_seed": 1001, "collapsed": CHANCE}),
            cifar_run(root, 2, 10.0, collapse=CHANCE), cifar_run(root, 3, 72.0)]


# ----------------------------------------------------------------------------------------------------
# collapse and retry marks


def test_table2_marks_the_row_with_a_collapsed_seed_and_notes_the_retry(tmp_path):
    manifest = [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": three_runs(tmp_path)},
                {"dataset": "CIFAR-10", "method": "CLL", "model": "6C2F", "variant": "",
                 "runs": [cifar_run(tmp_path / "b", 5, 71.0)]}]
    frame = write_table(manifest, TABLE2, "ci", tmp_path / "t2")
    frame = frame[frame["method"] == "CLL"].set_index("model")
    assert frame.loc["4C3F", "n_collapsed"] == 1 and frame.loc["4C3F", "collapsed_seeds"] == "2"
    assert frame.loc["4C3F", "retried_seeds"] == "1->1001" and frame.loc["6C2F", "n_collapsed"] == 0
    assert frame.loc["4C3F", "clean_ours"] == pytest.approx(152 / 3)  # the collapsed seed stays in the mean
    md = (tmp_path / "t2.md").read_text()
    assert FOOTNOTE in md and "CIFAR-10 CLL 4C3F: seed 1 retrained as seed 1001 after collapse." in md
    row_4c3f = next(line for line in md.splitlines() if line.startswith("| CIFAR-10 | CLL | 4C3F |"))
    row_6c2f = next(line for line in md.splitlines() if line.startswith("| CIFAR-10 | CLL | 6C2F |"))
    assert row_4c3f.count("†") == 6 and "50.6 ± 35.2† (77.6)" in row_4c3f  # every metric with runs; not tightness
    # 152 / 3 = 50.67 shows rounded down (an accuracy), its std 35.2 to nearest
    assert "†" not in row_6c2f
    tex = (tmp_path / "t2.tex").read_text()
    assert "50.6 $\\pm$ 35.2\\textdagger{} (77.6)" in tex and "\\textdagger{} CIFAR-10 CLL 4C3F: 1 of 3 seeds" in tex


def test_per_seed_table_marks_the_collapsed_seed_and_its_block_summary(tmp_path):
    manifest = [{"dataset": "CIFAR-10", "method": "CLL", "model": "4C3F", "variant": "", "runs": three_runs(tmp_path)}]
    frame = per_seed_table(manifest, TABLE_D6, "ci", tmp_path / "d6")
    block = frame[frame["model"] == "4C3F"].set_index("row")
    assert block.loc["1", "seed_ours"] == 2 and block.loc["1", "n_collapsed"] == 1  # sorted by seed: 2, 3, 1001
    assert block.loc["2", "n_collapsed"] == 0 and block.loc["avg", "n_collapsed"] == 1
    lines = (tmp_path / "d6.md").read_text().splitlines()
    seed_row = {k: next(line for line in lines if f"| {k} (paper seed {k}, our seed" in line) for k in (1, 2)}
    assert "10.0† (77.3)" in seed_row[1] and "†" not in seed_row[2]
    assert "†" in next(line for line in lines if line.startswith("| 4C3F | – | avg |"))
    footnote = FOOTNOTE.replace("CIFAR-10 CLL 4C3F", "4C3F")
    assert sum(footnote in line for line in lines) == 1  # once per block, not once per row
    assert sum("seeds collapsed" in line for line in lines) == 1


def test_sweep_points_with_a_collapsed_run_are_marked(tmp_path):
    def run(name, seed, p, clean, **extra):
        params = {"model": "4C3F", "loss": {"name": "cll", "eps": 0.15, "p": {"kind": "constant", "start": p}}}
        return write_run(tmp_path / name, seed, {"clean": clean, "cra_0.141176": clean / 2, "K_f": 3.0},
                         params=params, extra=extra)

    runs = [run("a", 1, 0.1, 70.0), run("b", 2, 0.1, 10.0, collapse=CHANCE), run("c", 1, 0.2, 72.0)]
    frame = slack_sweep(runs, "ci", tmp_path / "slack")
    assert frame["n_collapsed"].tolist() == [1, 0]
    md = (tmp_path / "slack.md").read_text()
    assert "40.0 ± 42.4†" in md and "72.0 |" in md and "72.0†" not in md
    assert "† printed p = 0.2: 1 of 2 seeds collapsed (seed 2: clean accuracy 10.0 % is at chance level" in md
    assert "Paper (Fig. 5 (left)" in md and "CRA peaks at 61.9 %" in md  # the quote comes from sources.yaml


def test_run_summary_reads_certify_json_and_marks_collapse(tmp_path):
    params = {"loss": {"name": "cll", "p": {"kind": "constant", "start": 0.01}}, "eval_eps": [0.15]}
    good = write_run(tmp_path / "a", 1, {"clean": 99.0, "cra_0.15": 95.0, "K_f": 4.0, "K_hf": 8.0}, params=params)
    bad = write_run(tmp_path / "b", 2, {"clean": 50.0, "cra_0.15": 0.0, "K_f": 4.0, "K_hf": 8.0}, params=params,
                    extra={"collapse": {"reason": "loss back at its first-epoch value (4.2, then 4.1)"}})
    rows = summarise_runs([Path(good) / "metrics.json", Path(bad) / "metrics.json"])
    assert (rows[0]["clean"], rows[0]["cra"], rows[0]["K_f"], rows[0]["K_hf"]) == pytest.approx((99.0, 95.0, 4.0, 8.0))
    assert rows[0]["collapse"] == "" and rows[1]["collapse"] == "loss back at its first-epoch value (4.2, then 4.1)"
    write_summary(rows, "ci", "t", tmp_path / "s.csv", tmp_path / "s.md")
    csv = pd.read_csv(tmp_path / "s.csv")  # the reason's comma is quoted (the notebooks read this CSV)
    assert csv["collapse"].tolist()[1] == rows[1]["collapse"] and csv["scale"].tolist() == ["ci", "ci"]
    md = (tmp_path / "s.md").read_text()
    assert "| cll | 0.15 | 0.3 | 0.01 | 2 | 50.00† | 0.00† |" in md  # accuracies by the display rule (2 places)
    assert "† cll 2ε=0.3 p=0.01 seed 2: 1 of 1 seeds collapsed (seed 2: loss back at its first-epoch value (4.2, then 4.1))" in md
    exact = write_run(tmp_path / "c", 3, {"clean": 100.0, "cra_0.15": 99.995, "K_f": 1234.5678901, "K_hf": 8.0},
                      params=params)
    rows = summarise_runs([Path(exact) / "metrics.json"])
    write_summary(rows, "ci", "t", tmp_path / "e.csv", tmp_path / "e.md")
    on_disk = pd.read_csv(tmp_path / "e.csv")
    assert on_disk["cra"].iloc[0] == 99.995 and on_disk["K_f"].iloc[0] == 1234.5678901  # exact, not .4g ("100")
    assert "99.995," in (tmp_path / "e.csv").read_text()
    assert "| cll | 0.15 | 0.3 | 0.01 | 3 | 100.00 | 99.99 |" in (tmp_path / "e.md").read_text()  # floored, not 100
    (Path(bad) / "certify.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"b/certify\.json' does not exist"):
        summarise_runs([Path(bad) / "metrics.json"])


# ----------------------------------------------------------------------------------------------------
# paper quotes: one checked index


def test_every_paper_csv_has_a_source_and_the_tables_print_it(tmp_path):
    sources = read_sources()
    assert {p.name for p in PAPER_TABLES_DIR.glob("*.csv")} <= set(sources)
    assert paper_source(TABLE2).table == "Table 2 (CIFAR-10, CIFAR-100)" and paper_source(TABLE2).extra_data is False
    assert "δ = 0.2 gives CRA 62.0 %" in paper_quote("figD4_delta").text
    with pytest.raises(KeyError, match="no quote 'table2.csv'"):
        paper_quote("table2.csv")
    write_table([], TABLE2, "ci", tmp_path / "t2")
    sentence = ("Paper values: Losch, Stutz, Schiele, Fritz: Certified Robust Models with Slack Control and Large "
                "Lipschitz Constants, GCPR 2023, Table 2 (CIFAR-10, CIFAR-100); units: clean, CRA, tightness in %; "
                "K(f), K(h∘f) unitless; no extra training data.")
    assert sentence in (tmp_path / "t2.md").read_text()


@pytest.mark.parametrize("edit,message", [
    (lambda text: text.replace("  table2.csv:\n", "  table9.csv:\n"), r"CSV files \['table2.csv'\] are not listed"),
    (lambda text: text + "  quote_x: {paper: cll, table: t, units: '%', extra_data: false}\n",
     r"entry 'quote_x' is missing \['text'\]"),
    (lambda text: text.replace("extra_data: false", "extra_data: maybe", 1),
     r"entry 'table1.csv': extra_data must be true or false"),
    (lambda text: text.replace("paper: cll", "paper: other", 1), r"entry 'table1.csv' names paper 'other'"),
])
def test_sources_index_is_checked_on_read(tmp_path, edit, message):
    folder = tmp_path / "paper_tables"
    shutil.copytree(PAPER_TABLES_DIR, folder)
    index = folder / "sources.yaml"
    index.write_text(edit(index.read_text()))
    with pytest.raises(ValueError, match=rf"sources\.yaml: {message}"):
        read_sources(folder)


def test_no_quoted_paper_number_left_in_the_reporting_code():
    """The quotes that used to live in sweeps.py and the notebooks are in sources.yaml only."""
    code = "\n".join(p.read_text() for p in [*REPORTING.glob("*.py"), *REPORTING.parents[2].glob("notebooks/*.py")])
    for quoted in ("61.9 %", "62.0 %", "76.2 %", "80 % to 68 %", "100 % CRA"):
        assert quoted not in code


# ----------------------------------------------------------------------------------------------------
# split by job


def test_reporting_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in REPORTING.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes


def test_reporting_reads_result_files_only_through_the_run_record():
    """No reporting module opens metrics.json / certify.json / tightness.json itself (read_json of a run file)."""
    offenders = []
    for path in REPORTING.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("read_json", "open"):
                text = ast.unparse(node)
                if any(name in text for name in ("metrics", "certify", "tightness")):
                    offenders.append(f"{path.name}: {text}")
    assert not offenders


def test_shared_helper_writes_training_copies_that_differ(tmp_path):
    run = Path(write_run(tmp_path / "r", 1, {"clean": 50.0, "cra_0.15": 40.0, "K_f": 2.0}))
    training = json.loads((run / "metrics.json").read_text())["metrics"]
    certified = json.loads((run / "certify.json").read_text())
    assert training["cra_0.15"] != 100 * certified["certified_accuracy"]["0.15"]
    assert training["K_f"] != certified["global_lipschitz"]
