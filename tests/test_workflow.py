"""The Snakemake workflow: DAG job counts at paper scale, the profile, lint/format, `--sdm conda`, the data-root
check, an end-to-end ci-scale fig4 run (idempotent), and `dvc repro fig4` from a fresh clone of a temporary git
repository, rerunning training after an edit of training code."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
ENV.pop("MLFLOW_TRACKING_URI", None)
# the image targets' DAGs check at build time that their data folders exist (lipcert.plan.check_data_root)
_DATA_ROOT = Path(tempfile.mkdtemp(prefix="lipcert-dry-data-"))
for _name in ("cifar10", "cifar100", "tiny_imagenet", "mnist"):
    (_DATA_ROOT / _name).mkdir()
ENV["LIPCERT_DATA_ROOT"] = str(_DATA_ROOT)


def _run(cmd, cwd=ROOT, timeout=1200):
    res = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


def _dry_run(target, *extra, results="/nonexistent/lipcert-dry-run"):
    """`snakemake -n TARGET` at paper scale against an empty results folder (nothing is built)."""
    return _run([str(BIN / "snakemake"), target, "-n", "--cores", "8", "--resources", "gpu=4",
                 "--config", f"results={results}", *extra])


def _job_counts(target, *extra):
    out = _dry_run(target, *extra)
    stats = out[out.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}


def test_fig4_dag_at_paper_scale():
    counts = _job_counts("fig4")
    # 2 methods x 4 eps x 1 seed (Fig. 4), each trained, certified, attacked and drawn once
    assert counts["train"] == 8 and counts["certify"] == 8 and counts["tightness"] == 8
    assert counts["decision_grid"] == 8
    assert counts["mlflow_init"] == 1 and counts["prepare_data"] == 1
    assert counts["two_moons_figure"] == 1 and counts["run_summary_table"] == 1 and counts["render_notebook"] == 1


def test_table2_dag_at_paper_scale():
    out = _dry_run("table2")
    trains = re.findall(r"rule train:.*?wildcards: ([^\n]+)", out, flags=re.S)
    rows = {}
    for w in trains:
        key = dict(kv.split("=") for kv in w.split(", "))
        rows.setdefault((key["model"], key["method"]), set()).add(key["seed"])
    # table B4 rows built here, 9 seeds each (tables D6): CLL 4C3F = 9 training jobs
    assert rows[("4C3F", "cll")] == {str(s) for s in range(1, 10)}
    one_lipschitz = {("LipConv-20", "soc"), ("LipConv-20", "cll_lipconv"), ("CPL-XL", "cpl"), ("CPL-XL", "cll_cpl"),
                     ("SLL-XL", "sll"), ("SLL-XL", "cll_sll")}
    assert set(rows) == {("4C3F", "cll"), ("6C2F", "cll"), ("4C3F", "gloro"), ("6C2F", "gloro"),
                         ("6C2F_clipped_maxmin", "local_lip_b_maxmin"), *one_lipschitz,
                         *((f"{model}_cifar100", method) for model, method in one_lipschitz)}
    assert all(len(seeds) == 9 for seeds in rows.values())
    counts = _job_counts("table2")
    # CIFAR-10: 4 rows on 4C3F/6C2F + Local-Lip-B (6C2F MaxMin) + 6 rows on the 1-Lipschitz architectures (SOC,
    # CPL, SLL and CLL on each); CIFAR-100: the same 6 rows on the 100-class variants; 9 seeds each
    assert counts["train"] == 99 + 54 and counts["tightness"] == 153 and counts["certify"] == 153
    assert counts["prepare_data"] == 2 and counts["paper_table"] == 1 and counts["render_table_notebook"] == 1


def test_table1_and_per_seed_dags_at_paper_scale():
    # GloRo+TRADES, Local-Lip-B (8C2F MaxMin) and two CLL 8C2F settings + SOC LipConv-10/20, CLL LipConv-20, SLL-XL,
    # LBDN Sandwich; 9 seeds
    assert _job_counts("table1")["train"] == 81
    assert _job_counts("tableD6")["train"] == 153  # reuses table 2's runs (both datasets: one manifest)
    assert _job_counts("tableD8")["train"] == 81  # reuses table 1's runs
    counts = _job_counts("tableD7")  # CIFAR-100: table 2's lower half
    assert counts["per_seed_table"] == 1 and counts["train"] == 153


def test_locallip_table2_dag_at_paper_scale():
    # seed 004 table 2: 2 MNIST rows + 5 CIFAR-10 rows, 9 seeds each; MNIST and CIFAR-10 data prepared once each
    counts = _job_counts("locallip_table2")
    assert counts["train"] == 63 and counts["certify"] == 63 and counts["prepare_data"] == 2
    assert counts["paper_table"] == 1 and counts["render_table_notebook"] == 1
    shell = _dry_run("locallip_table2", "--printshellcmds")
    assert "--metrics clean pgd cra s_epoch" in shell and "model=4C3F_mnist_relu_theta" in shell


def test_sweep_dags_at_paper_scale():
    # Fig. 5: 2 methods x 6 eps + 10 slack values, one run shared (CLL at eps 0.15, p = 0.15 = printed 0.3 / 2)
    assert _job_counts("fig5")["train"] == 12 + 10 - 1
    assert _job_counts("tableD5")["train"] == 25  # 5 eps x 5 printed p, seed 1
    assert _job_counts("figD1")["train"] == 18  # CLL and GloRo (fixed eps), 9 seeds
    assert _job_counts("figD4")["train"] == 6 + 5 + 4  # lambda, margin offset delta, GloRo temperature; seed 1
    shell = _dry_run("figD4", "--printshellcmds")  # each sweep value reaches its training command
    for override in ("loss.lam=1e-10", "loss.delta=0.3", "loss.output_scale=10", "--experiment gloro_fixed"):
        assert override in shell, override


def test_figD2_and_all_dag_at_paper_scale():
    assert _job_counts("figD2")["train"] == 7  # printed p in {0.75, 0.5, 0.25, 0.1, 0.01, 1e-3, 1e-4}
    # fig4, figD2, table2 (= D6, D7; 99 CIFAR-10 + 54 CIFAR-100), table1 (= D8), locallip_table2 (its MaxMin row is
    # table 2's Local-Lip-B); shared runs are trained once: tableD5's (0.5, p 0.01) cell is table 1's seed 1, fig5's
    # CLL and GloRo at eps 0.15 are table 2's seed 1, figD1's CLL runs are table 2's
    assert _job_counts("all")["train"] == 8 + 7 + 153 + 81 + (63 - 9) + (25 - 1) + (21 - 2) + (18 - 9) + 15


def test_bad_config_is_rejected_by_the_schema():
    res = subprocess.run([str(BIN / "snakemake"), "fig4", "-n", "--cores", "1", "--config", "scale=huge"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert res.returncode != 0 and "huge" in (res.stdout + res.stderr)


def test_the_workflow_profile_is_loaded_without_any_flag():
    """profiles/default/ sets cores, the gpu resource and show-failed-logs: a plain `snakemake fig4 -n` runs."""
    res = subprocess.run([str(BIN / "snakemake"), "fig4", "-n", "--config", "results=/nonexistent/lipcert-dry-run"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Using workflow specific profile profiles/default" in out


_FAKE_CONDA = """#!/bin/sh
# conda for a dry run on a machine without it: Snakemake only asks for the version, the installation and a setting
case "$*" in
  --version) echo "conda 24.7.1" ;;
  "info --json") echo '%s' ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
  *) echo "fake conda cannot: $*" >&2; exit 1 ;;
esac
""" % ('{"conda_version": "24.7.1", "conda_prefix": "/nonexistent/conda", "root_prefix": "/nonexistent/conda", '
       '"envs_dirs": ["/nonexistent/conda/envs"], "platform": "linux-64", "channels": []}')


def test_sdm_conda_runs_the_environments_python(tmp_path, monkeypatch):
    """Under --sdm conda every rule runs the `python` of its environment, never an absolute interpreter."""
    (tmp_path / "conda").write_text(_FAKE_CONDA)
    (tmp_path / "conda").chmod(0o755)
    monkeypatch.setitem(ENV, "PATH", f"{tmp_path}{os.pathsep}{ENV['PATH']}")
    out = _dry_run("fig4", "--printshellcmds", "--sdm", "conda", "--conda-frontend", "conda")
    assert "Conda environment workflow/envs/lipcert.yaml will be created" in out
    commands = re.findall(r"(\S*python\S*) -m lipcert", out)
    assert commands and set(commands) == {"python"}, sorted(set(commands))
    assert sys.executable not in out


def test_an_image_target_without_a_data_folder_fails_while_the_dag_is_built(tmp_path):
    env = {**ENV, "LIPCERT_DATA_ROOT": ""}
    res = subprocess.run([str(BIN / "snakemake"), "table2", "-n", "--config", f"results={tmp_path}"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "params/cifar10.yaml" in out and "LIPCERT_DATA_ROOT" in out and "data.root" in out
    env["LIPCERT_DATA_ROOT"] = str(tmp_path / "empty")
    res = subprocess.run([str(BIN / "snakemake"), "table2", "-n", "--config", f"results={tmp_path}"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert res.returncode != 0 and f"{tmp_path}/empty/cifar10" in res.stdout + res.stderr


def test_lint_and_format():
    assert "good condition" in _run([str(BIN / "snakemake"), "--lint"])
    _run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/"])


def _copy_project(dst: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv", "results", ".snakemake", "__pycache__", ".git", "*.egg-info", "cache",
                                    "tmp", "data_cache")
    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


def _set_scale(proj: Path, scale: str) -> None:
    cfg = proj / "params" / "build.yaml"
    text, n = re.subn(r"^scale: paper$", f"scale: {scale}", cfg.read_text(), flags=re.M)
    assert n == 1
    cfg.write_text(text)


@pytest.fixture(scope="module")
def ci_project(tmp_path_factory):
    """A copy of the project configured for the tiny ci scale."""
    proj = _copy_project(tmp_path_factory.mktemp("proj") / "lipcert")
    _set_scale(proj, "ci")
    return proj


@pytest.mark.slow
def test_fig4_end_to_end_at_ci_scale_is_idempotent(ci_project):
    snake = [str(BIN / "snakemake"), "fig4", "--cores", "2", "--resources", "gpu=1"]
    _run(snake, cwd=ci_project)
    out = ci_project / "results" / "ci"
    for rel in ("figures/fig4.png", "figures/fig4.pdf", "tables/fig4.csv", "tables/fig4.md", "notebooks/fig4.html",
                "notebooks/fig4.ipynb", "tables/fig4_metrics.json"):
        assert (out / rel).stat().st_size > 0, rel
    assert (out / "figures" / "fig4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "tables" / "fig4.csv").read_text().splitlines()
    assert len(table) == 1 + 8 and table[0].endswith("scale") and all(r.endswith(",ci") for r in table[1:])
    assert "scale 'ci'" in (out / "tables" / "fig4.md").read_text()
    assert "fig4" in (out / "notebooks" / "fig4.html").read_text()
    # benchmark and log files of the heavy rules
    assert list((out / "benchmarks" / "train").rglob("*.tsv")) and list((out / "logs" / "train").rglob("*.log"))
    again = _run([*snake, "-n"], cwd=ci_project)
    assert "Nothing to be done" in again
    # progress lines in a training log (plain lines, one per N epochs; here every epoch)
    log = next((out / "logs" / "train").rglob("*.log")).read_text()
    assert "training 3 epochs; a progress line every epoch" in log and "epoch 3/3" in log and "\r" not in log
    # the report of the built target (the rest of it: tests/test_report.py)
    from test_report import check_fig4_report

    _run([str(BIN / "snakemake"), "fig4", "--report", str(ci_project / "report.zip")], cwd=ci_project)
    check_fig4_report(ci_project / "report.zip")


def _git(*args, cwd):
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd)


@pytest.mark.slow
def test_dvc_repro_from_a_fresh_clone_reruns_training_after_a_training_code_edit(tmp_path):
    """A fresh clone (with the committed .dvc/) runs `dvc repro fig4` at ci scale; an edit of training code shows
    in `dvc status` as the runs stage's change and `dvc repro` retrains; a reporting edit changes only reports."""
    origin = _copy_project(tmp_path / "origin")
    assert (origin / ".dvc" / "config").is_file(), ".dvc/ must be committed"
    _set_scale(origin, "ci")
    _git("init", "-q", cwd=origin)
    _git("add", "-A", cwd=origin)
    _git("commit", "-qm", "init", cwd=origin)
    clone = tmp_path / "clone"
    _git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    env_before = dict(ENV)
    # the clone's own code runs (not the checkout the venv has installed), as it would for its user
    ENV.update(PATH=f"{BIN}{os.pathsep}{ENV['PATH']}", PYTHONPATH=str(clone / "src"))
    dvc = str(BIN / "dvc")
    try:
        first = _run([dvc, "repro", "fig4"], cwd=clone)
        assert "rule train" in first and (clone / "results" / "ci" / "figures" / "fig4.png").exists()
        shown = _run([dvc, "metrics", "show"], cwd=clone)
        assert "cll.two_moons/two_moons/eps0.15_pdefault/base.mean.cra" in shown.replace(" ", "") or "mean.cra" in shown
        assert "Nothing to be done" in _run([str(BIN / "snakemake"), "fig4", "-n"], cwd=clone)

        training = clone / "src" / "lipcert" / "training.py"
        training.write_text(training.read_text() + "\n_EDITED_FOR_A_TEST = True\n")
        status = _run([dvc, "status"], cwd=clone)
        assert "fig4_runs:" in status and "src/lipcert/training.py" in status
        second = _run([dvc, "repro", "fig4"], cwd=clone)
        assert re.search(r"^train\s+8$", second, flags=re.M), second[-3000:]  # every run retrained
        run = clone / "results" / "ci" / "runs" / "two_moons" / "two_moons" / "cll" / "eps0.15_pdefault" / "base" / "seed0"
        assert (run / "checkpoint.stale.pt").exists()  # from scratch: the old code's checkpoint was not resumed

        figures = clone / "src" / "lipcert" / "reporting" / "two_moons_figures.py"
        figures.write_text(figures.read_text() + "\n_EDITED_FOR_A_TEST = True\n")
        status = _run([dvc, "status"], cwd=clone)
        assert "fig4:" in status and "fig4_runs:" not in status
        third = _run([dvc, "repro", "fig4"], cwd=clone)
        assert "rule two_moons_figure" in third and "rule train" not in third
    finally:
        ENV.clear()
        ENV.update(env_before)


@pytest.mark.slow
def test_image_targets_end_to_end_at_ci_scale_on_generated_cifar(ci_project, tmp_path):
    """A miniature CIFAR-10 in the official pickle layout, found through LIPCERT_DATA_ROOT."""
    from test_image_data import _cifar, write_cifar_pickle

    write_cifar_pickle(tmp_path / "data" / "cifar10", *_cifar(10, train_per_class=4, test_per_class=4))
    env_before = ENV.get("LIPCERT_DATA_ROOT")
    ENV["LIPCERT_DATA_ROOT"] = str(tmp_path / "data")
    try:
        _run([str(BIN / "snakemake"), "table2", "tableD6", "fig5", "figD1", "figD4", "--cores", "2", "--resources",
              "gpu=2"], cwd=ci_project)
    finally:
        if env_before is None:
            ENV.pop("LIPCERT_DATA_ROOT")
        else:
            ENV["LIPCERT_DATA_ROOT"] = env_before
    out = ci_project / "results" / "ci" / "tables"
    import pandas as pd

    table = pd.read_csv(out / "table2.csv", keep_default_na=False)
    assert len(table) == 17  # every row of the paper's table 2
    built = table[table["status"] != "paper value, not reproduced"]
    assert sorted(zip(built["method"], built["model"])) == [("CLL", "4C3F"), ("CLL", "6C2F"), ("GloRo", "4C3F"),
                                                            ("GloRo", "6C2F"), ("Local-Lip-B", "6C2F")]
    assert (table["scale"] == "ci").all()
    assert set(table["data_label"]) == {"CIFAR-10"}  # recorded by the runs (pickle batches), read by the table
    not_built = table[table["status"] == "paper value, not reproduced"]
    assert set(not_built["method"]) >= {"SOC", "CPL", "SLL"} and "Local-Lip-B" not in set(not_built["method"])
    assert "scale 'ci'" in (out / "table2.md").read_text()
    assert (out / "tableD6.csv").exists() and (ci_project / "results" / "ci" / "notebooks" / "table2.html").exists()
    figures = ci_project / "results" / "ci" / "figures"
    for stem in ("fig5_eps_sweep", "fig5_slack_sweep", "figD1", "figD4_lambda", "figD4_delta", "figD4_temperature"):
        assert (figures / f"{stem}.png").read_bytes()[:4] == b"\x89PNG", stem
        assert "scale 'ci'" in (figures / f"{stem}.md").read_text(), stem
        assert (ci_project / "results" / "ci" / "notebooks" / f"{stem}.html").stat().st_size > 0, stem


@pytest.mark.slow
def test_locallip_table2_end_to_end_at_ci_scale_on_generated_mnist_and_cifar(ci_project, tmp_path):
    """Seed 004's table 2 at ci scale: a miniature MNIST as IDX files and a miniature CIFAR-10 as pickle batches, found
    through LIPCERT_DATA_ROOT; all 7 rows trained (1 epoch, 4 images per class), certified with PGD-100 and the local
    bound, and tabled with clean / PGD / certified at each row's radius and s/epoch."""
    from test_image_data import _cifar, write_cifar_pickle
    from test_mnist_data import _mnist, write_mnist

    write_cifar_pickle(tmp_path / "data" / "cifar10", *_cifar(10, train_per_class=4, test_per_class=4))
    write_mnist(tmp_path / "data" / "mnist", *_mnist(train_per_class=4, test_per_class=4))
    env_before = ENV.get("LIPCERT_DATA_ROOT")
    ENV["LIPCERT_DATA_ROOT"] = str(tmp_path / "data")
    try:
        _run([str(BIN / "snakemake"), "locallip_table2", "--cores", "2", "--resources", "gpu=2"], cwd=ci_project)
    finally:
        if env_before is None:
            ENV.pop("LIPCERT_DATA_ROOT")
        else:
            ENV["LIPCERT_DATA_ROOT"] = env_before
    import pandas as pd

    out = ci_project / "results" / "ci"
    table = pd.read_csv(out / "tables" / "locallip_table2.csv", keep_default_na=False, na_values=[""])
    assert len(table) == 7 and (table["status"] == "reproduced").all() and (table["scale"] == "ci").all()
    for metric in ("clean", "pgd", "cra"):
        assert table[f"{metric}_ours"].between(0, 100).all(), metric
    assert (table["cra_ours"] <= table["pgd_ours"] + 1e-9).all()  # certified samples survive the attack
    assert (table["s_epoch_ours"] > 0).all()
    assert sorted(set(table["radius"].round(6))) == [0.141176, 1.58]
    md = (out / "tables" / "locallip_table2.md").read_text()
    assert "scale 'ci'" in md and "| Radius |" in md and "V100" in md
    assert (out / "notebooks" / "locallip_table2.html").stat().st_size > 0
