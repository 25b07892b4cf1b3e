"""The MLflow mirror's layout (lipcert.tracking): configuration keys and run names, stable metric keys, tags,
later stages logged into the training run, resumed runs, concurrent writers, and the commands without MLflow
installed.

Hand-checked values throughout; the MLflow tests share one SQLite store per module (the import and the schema
take seconds).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lipcert import plan, tracking
from lipcert.io_utils import read_json
from lipcert.run_record import CRA_KEY, cra_key, headline_radius
from lipcert.tracking import (RUN_ID_FILE, RunTracker, child_run_name, config_fields, configuration_key,
                              git_commit, group_means, log_stage, parent_run_name, with_headline_cra)

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"dataset": "two_moons", "model": "two_moons", "method": "cll", "eps": "0.15", "p": "0.075",
          "variant": "base"}


@pytest.fixture(autouse=True)
def _keep_mlflow_defaults_out_of_the_repo(tmp_path: Path, monkeypatch) -> None:
    """Each test in its tmp dir, without a tracking URI from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# ----------------------------------------------------------------------------------------------------
# names and keys (no MLflow import)


def test_configuration_key_is_the_run_directory_less_its_seed() -> None:
    key = configuration_key(FIELDS)
    assert key == "two_moons/two_moons/cll/eps0.15_p0.075/base"
    assert f"runs/{key}/seed3" == plan.RUN_DIR.format(**FIELDS, seed=3)  # pinned to the workflow's layout
    assert parent_run_name(FIELDS) == "cll two_moons eps0.15 p0.075 base"
    assert child_run_name(FIELDS, 1) == "cll two_moons eps0.15 p0.075 base seed1"
    with pytest.raises(ValueError, match=r"missing \['variant'\]"):
        configuration_key({k: v for k, v in FIELDS.items() if k != "variant"})
    with pytest.raises(ValueError, match=r"\['method'\] must be non-empty, without slashes"):
        configuration_key({**FIELDS, "method": "a/b"})


def test_config_fields_of_a_standalone_run() -> None:
    from lipcert.params import run_config_from_params

    params = run_config_from_params(str(ROOT / "params/two_moons.yaml"), "cll", ["loss.eps=0.2"], seed=4).to_dict()
    # two-moons CLL: a constant eps set to 0.2, a p schedule (no single number): p "default"
    assert config_fields(params, dataset="two_moons", method="cll") == {
        "dataset": "two_moons", "model": "two_moons", "method": "cll", "eps": "0.2", "p": "default",
        "variant": "base"}
    params = run_config_from_params(str(ROOT / "params/two_moons.yaml"), "cll", ["loss.p=0.0750"]).to_dict()
    assert config_fields(params, dataset="two_moons", method="cll", variant="set-x")["p"] == "0.075"
    no_eps = {"model": "SLL-S", "loss": {"name": "sll_ce"}, "eval_eps": [36 / 255]}
    assert config_fields(no_eps, dataset="cifar10", method="sll") == {
        "dataset": "cifar10", "model": "SLL-S", "method": "sll", "eps": "0", "p": "default", "variant": "base"}


def test_headline_radius_and_the_stable_cra_key() -> None:
    paper = [36 / 255, 72 / 255, 108 / 255]
    assert headline_radius({"loss": {"eps": 0.15}, "eval_eps": [*paper, 0.15]}) == 0.15  # certified at its eps
    assert headline_radius({"loss": {"eps": 0.15}, "eval_eps": paper}) == 36 / 255  # not: the first radius
    assert headline_radius({"loss": {"name": "sll"}, "eval_eps": paper}) == 36 / 255  # no training eps
    schedule = {"kind": "linear", "start": 0.0, "end": 0.25}
    assert headline_radius({"loss": {"eps": schedule}, "eval_eps": [0.25]}) == 0.25  # a schedule's end value
    with pytest.raises(ValueError, match="no eval_eps"):
        headline_radius({"loss": {"eps": 0.1}, "eval_eps": []})
    assert CRA_KEY == "cra" and cra_key(36 / 255) == "cra_0.141176"
    metrics = {"clean": 90.0, "cra_0.141176": 61.5, "cra_0.15": 58.0}
    assert with_headline_cra(metrics, 36 / 255) == {**metrics, "cra": 61.5}
    assert with_headline_cra({"train_cra_0.15": 70.0}, 0.15, "train_") == {"train_cra_0.15": 70.0, "train_cra": 70.0}
    assert with_headline_cra(metrics, 0.5) == metrics and with_headline_cra(metrics, None) == metrics


def test_group_means_are_per_key_over_the_seeds_that_have_it() -> None:
    means = group_means([{"cra": 60.0, "certify/cra": 59.0}, {"cra": 64.0}, {"cra": 62.0, "certify/cra": 61.0}])
    assert means == {"certify/cra": 60.0, "cra": 62.0, "n_seeds": 3.0}
    assert group_means([]) == {"n_seeds": 0.0}


def test_git_commit_reads_the_checkout_and_never_fails(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert git_commit(repo) == head and len(head) == 40
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no enclosing checkout above the tmp dir
    assert git_commit(plain) == "unknown"
    assert git_commit(tmp_path / "missing") == "unknown"
    monkeypatch.setenv("PATH", "")  # git not found
    assert git_commit(repo) == "unknown"


def _train_args(tmp_path: Path, *extra: str):
    from lipcert.__main__ import build_parser

    return build_parser().parse_args(["train", "--params", str(ROOT / "params/two_moons.yaml"), "--experiment",
                                      "cll", "--seed", "2", "--out", str(tmp_path / "run"), "--no-mlflow", *extra])


def _train_config(args):
    from lipcert.params import run_config_from_params

    return run_config_from_params(args.params, args.experiment, args.set, seed=args.seed)


def test_cli_tracker_of_a_workflow_run(tmp_path: Path) -> None:
    from lipcert.__main__ import _train_tracker

    key = "two_moons/two_moons/cll/eps0.15_pdefault/base"
    args = _train_args(tmp_path, "--set", "loss.eps=0.15", "--set", "eval_eps=[0.15]", "--group", key,
                       "--tag", "scale=ci", "--tag", "dataset=two_moons", "--tag", "model=two_moons",
                       "--tag", "method=cll", "--tag", "eps=0.15", "--tag", "p=default", "--tag", "variant=base")
    tracker = _train_tracker(args, _train_config(args), "two-moons", tmp_path / "run")
    assert not tracker.enabled and tracker.group == key
    assert tracker.parent_name == "cll two_moons eps0.15 pdefault base"
    assert tracker.run_name == "cll two_moons eps0.15 pdefault base seed2"
    assert tracker.cra_radius == 0.15
    assert tracker.parent_tags == {"scale": "ci", "dataset": "two_moons", "model": "two_moons", "method": "cll",
                                   "eps": "0.15", "p": "default", "variant": "base"}
    tags = tracker.tags
    assert {k: tags[k] for k in ("scale", "seed", "loss", "data", "variant", "mlflow.source.type")} == {
        "scale": "ci", "seed": "2", "loss": "cll", "data": "two-moons", "variant": "base",
        "mlflow.source.type": "LOCAL"}
    assert tags["mlflow.source.name"] == "python -m lipcert train" and tags["run_dir"] == str(tmp_path / "run")
    assert tags["mlflow.source.git.commit"] == git_commit(ROOT)


def test_cli_tracker_of_a_standalone_run(tmp_path: Path) -> None:
    from dataclasses import replace

    from lipcert.__main__ import _train_tracker

    args = _train_args(tmp_path)
    tracker = _train_tracker(args, _train_config(args), "two-moons", tmp_path / "run")
    assert tracker.group == "two_moons/two_moons/cll/eps0.15_pdefault/base"  # params/two_moons.yaml: eps 0.15
    assert tracker.run_name == "cll two_moons eps0.15 pdefault base seed2"
    args = _train_args(tmp_path, "--set", "epochs=7")
    cfg = _train_config(args)
    variant = f"set-{replace(cfg, seed=0).fingerprint()[:8]}"  # one parent for every seed of this config
    assert _train_tracker(args, cfg, "", tmp_path).group == f"two_moons/two_moons/cll/eps0.15_pdefault/{variant}"
    args = _train_args(tmp_path, "--group", "my-sweep")
    tracker = _train_tracker(args, _train_config(args), "", tmp_path)
    assert tracker.group == tracker.parent_name == "my-sweep"
    with pytest.raises(ValueError, match="--tag expects KEY=VALUE"):
        _train_tracker(_train_args(tmp_path, "--tag", "scale"), cfg, "", tmp_path)


# ----------------------------------------------------------------------------------------------------
# MLflow store


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow_layout") / "mlflow.db")


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _seed_run(uri: str, run_dir: Path, seed: int, final: dict, group: str = "moons/m/cll/eps0.1_pdefault/base"):
    with RunTracker("layout", f"cll seed{seed}", enabled=True, tracking_uri=uri, group=group,
                    parent_name="cll m eps0.1 pdefault base", parent_tags={"scale": "ci"}, tags={"seed": seed},
                    cra_radius=0.1) as tracker:
        tracker.record(run_dir)
        tracker.log_params({"lr": 0.1})
        tracker.log_epoch(1, {"cra_0.1": final["cra_0.1"] - 5, "loss": 1.0})
        tracker.log_final(final)
    return tracker


def test_training_certify_and_tightness_share_one_run_and_the_parent_averages(store_uri, tmp_path: Path) -> None:
    first = _seed_run(store_uri, tmp_path / "s1", 1, {"clean": 90.0, "cra_0.1": 60.0, "cra_0.2": 40.0})
    record = read_json(tmp_path / "s1" / RUN_ID_FILE)
    assert record == {"tracking_uri": store_uri, "experiment_id": first.experiment_id, "run_id": first.run_id,
                      "parent_run_id": first.parent_run_id, "group": "moons/m/cll/eps0.1_pdefault/base"}
    second = _seed_run(store_uri, tmp_path / "s2", 2, {"clean": 80.0, "cra_0.1": 50.0, "cra_0.2": 30.0})
    assert second.parent_run_id == first.parent_run_id
    assert log_stage(tmp_path / "s1", "certify", {"clean": 91.0, "cra_0.1": 61.0, "cra": 61.0}, enabled=True,
                     tracking_uri=store_uri, tags={"certify.tol": 1e-9}) == first.run_id
    assert log_stage(tmp_path / "s1", "tightness", {"tightness": 40.0, "K_lobo": 2.0}, enabled=True,
                     tracking_uri=store_uri) == first.run_id

    client = _client(store_uri)
    run = client.get_run(first.run_id)
    assert run.info.run_name == "cll seed1" and run.data.params == {"lr": "0.1", "cra_radius": "0.1"}
    metrics = run.data.metrics
    assert metrics["final/cra"] == 60.0 and metrics["final/cra_0.2"] == 40.0  # final/cra: final/cra_0.1
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "cra")] == [(1, 55.0)]  # the curve
    assert metrics["certify/cra"] == 61.0 and metrics["certify/clean"] == 91.0
    assert metrics["tightness/tightness"] == 40.0 and metrics["tightness/K_lobo"] == 2.0
    assert run.data.tags["certify.tol"] == "1e-09"
    parent = client.get_run(first.parent_run_id)
    assert parent.info.run_name == "cll m eps0.1 pdefault base" and parent.data.tags["scale"] == "ci"
    means = parent.data.metrics
    assert means["n_seeds"] == 2.0 and means["final/cra"] == 55.0 and means["cra"] == 50.0
    assert means["final/clean"] == 85.0 and means["certify/cra"] == 61.0  # certified: seed 1 only so far
    log_stage(tmp_path / "s2", "certify", {"clean": 79.0, "cra": 51.0}, enabled=True, tracking_uri=store_uri)
    assert _client(store_uri).get_run(first.parent_run_id).data.metrics["certify/cra"] == 56.0


def test_log_stage_skips_what_it_cannot_find(store_uri, tmp_path: Path, caplog) -> None:
    with pytest.raises(ValueError, match="stage must be one of"):
        log_stage(tmp_path, "train", {}, enabled=False, tracking_uri=None)
    assert log_stage(tmp_path, "certify", {"clean": 1.0}, enabled=False, tracking_uri=None) is None
    with caplog.at_level(logging.WARNING, logger="lipcert.tracking"):
        assert log_stage(tmp_path, "certify", {"clean": 1.0}, enabled=True, tracking_uri=store_uri) is None
        (tmp_path / RUN_ID_FILE).write_text('{"run_id": "0123456789abcdef0123456789abcdef"}')
        assert log_stage(tmp_path, "certify", {"clean": 1.0}, enabled=True, tracking_uri=store_uri) is None
    assert "names no MLflow run" in caplog.text and "is not in" in caplog.text


def test_a_resumed_job_continues_its_recorded_run(store_uri, tmp_path: Path, caplog) -> None:
    group = "moons/m/gloro/eps0.1_pdefault/base"
    with pytest.raises(KeyboardInterrupt):
        with RunTracker("layout", "gloro seed0", enabled=True, tracking_uri=store_uri, group=group) as first:
            first.record(tmp_path)
            first.log_params({"lr": 0.1, "threads": 1})
            first.log_epoch(1, {"loss": 2.0})
            raise KeyboardInterrupt
    previous = tracking.recorded_run(tmp_path)["run_id"]
    with caplog.at_level(logging.WARNING, logger="lipcert.tracking"):
        with RunTracker("layout", "gloro seed0", enabled=True, tracking_uri=store_uri, group=group,
                        resume_run_id=previous) as resumed:
            resumed.log_params({"lr": 0.1, "threads": 4, "epochs": 3})  # threads differ: kept, with a warning
            resumed.log_epoch(2, {"loss": 1.0})
    assert resumed.run_id == previous and resumed.resumed and "keeps its first values" in caplog.text
    run = _client(store_uri).get_run(previous)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1", "threads": "1", "epochs": "3"}
    assert [m.step for m in _client(store_uri).get_metric_history(previous, "loss")] == [1, 2]
    with RunTracker("layout", "gloro seed0", enabled=True, tracking_uri=store_uri, group="other/group",
                    resume_run_id=previous) as elsewhere:  # another group: a new run
        pass
    assert elsewhere.run_id != previous and not elsewhere.resumed
    experiment = _client(store_uri).get_experiment_by_name("layout")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens in the runs view


# ----------------------------------------------------------------------------------------------------
# Concurrent writers into one store: six writers, the seeds of three configurations, each a training-style run
# followed by a certification logged into it, all started at once. No run may be lost or doubled, and every parent
# must end with the means over its seeds. The writers are threads of this process (fast: the module's store and one
# MLflow import; each thread opens the lock file itself, and flock locks of separate opens exclude each other
# within a process too) and, marked slow, spawned processes on a fresh store, as the workflow's jobs are (six
# MLflow imports: about 40 s on two cores).


CONFIGS = ("moons/m/cll/eps0.1_pdefault/base", "moons/m/cll/eps0.2_pdefault/base",
           "moons/m/gloro/eps0.1_pdefault/base")
SEEDS = (1, 2)


def _numbers(config: int, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """The final and certification metrics the worker of (config, seed) logs (distinct per worker)."""
    final = {"clean": 50.0 + config + 2 * seed, "cra_0.1": 10.0 * config + seed + 0.5}
    certify = {"clean": 60.0 + config + 3 * seed, "cra": 20.0 * config + seed}
    return final, certify


def _writer(uri: str, run_dir: str, config: int, seed: int, barrier, results) -> None:
    """Spawned worker: after the barrier, one seed's training run (parent find-or-create, epochs, final metrics,
    the parent's means), then its certification logged into the same run (the parent's means again)."""
    try:
        import mlflow  # noqa: F401  (imported before the barrier: the writers then start together)

        from lipcert.tracking import RunTracker, log_stage

        final, certify = _numbers(config, seed)
        barrier.wait(timeout=120)
        with RunTracker("concurrent", f"c{config} seed{seed}", enabled=True, tracking_uri=uri,
                        group=CONFIGS[config], parent_name=f"c{config}", tags={"seed": seed},
                        cra_radius=0.1) as tracker:
            tracker.record(run_dir)
            tracker.log_params({"config": config, "seed": seed})
            for epoch in range(1, 4):
                tracker.log_epoch(epoch, {"loss": 1.0 / epoch, "cra_0.1": final["cra_0.1"] - 3 + epoch})
            tracker.log_final(final)
        log_stage(run_dir, "certify", certify, enabled=True, tracking_uri=uri)
        results.put("ok")
    except BaseException as error:  # report every failure to the test
        results.put(f"{type(error).__name__}: {error}")


def _start_writers(uri: str, tmp_path: Path, kind: str) -> list[str]:
    """Run the six writers (``kind``: ``thread`` or ``process``) behind one barrier; their outcomes."""
    jobs = [(config, seed) for config in range(len(CONFIGS)) for seed in SEEDS]
    if kind == "thread":
        barrier, results = threading.Barrier(len(jobs)), queue.Queue()
        workers = [threading.Thread(target=_writer, args=(uri, str(tmp_path / f"c{c}s{s}"), c, s, barrier, results))
                   for c, s in jobs]
    else:
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(len(jobs)), context.Queue()
        workers = [context.Process(target=_writer, args=(uri, str(tmp_path / f"c{c}s{s}"), c, s, barrier, results))
                   for c, s in jobs]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    if kind == "process":
        assert [worker.exitcode for worker in workers] == [0] * len(jobs)
    return outcomes


def _check_store(uri: str) -> None:
    """Every seed run exists once under the one parent of its configuration, which holds the seeds' means."""
    import mlflow

    jobs = [(config, seed) for config in range(len(CONFIGS)) for seed in SEEDS]
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name("concurrent").experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = {run.data.tags["group"]: run for run in runs if run.data.tags.get("lipcert.role") == "group_parent"}
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(runs) == len(parents) + len(children)  # nothing outside the layout
    assert sorted(parents) == sorted(CONFIGS)  # each parent exactly once (a dict would hide a duplicate:)
    assert len([run for run in runs if run.data.tags.get("lipcert.role") == "group_parent"]) == len(CONFIGS)
    assert sorted(run.info.run_name for run in children) == sorted(f"c{c} seed{s}" for c, s in jobs)
    for config, group in enumerate(CONFIGS):
        parent = parents[group]
        assert parent.info.run_name == f"c{config}"
        seeds = [run for run in children if run.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert sorted(run.info.run_name for run in seeds) == [f"c{config} seed{s}" for s in SEEDS]
        assert all(run.info.status == "FINISHED" for run in seeds)
        means = parent.data.metrics
        assert means["n_seeds"] == len(SEEDS)
        keys = set().union(*(run.data.metrics for run in seeds))
        assert keys == {"loss", "cra_0.1", "cra", "final/clean", "final/cra_0.1", "final/cra", "certify/clean",
                        "certify/cra"}
        for key in keys:
            assert means[key] == pytest.approx(sum(run.data.metrics[key] for run in seeds) / len(seeds)), key
        assert means["certify/cra"] == pytest.approx(20.0 * config + 1.5)  # hand-checked: (20 c + 1 + 20 c + 2) / 2
        assert means["final/clean"] == pytest.approx(53.0 + config)  # (50 + c + 2 + 50 + c + 4) / 2


def test_parallel_writer_threads_lose_no_run_and_parents_hold_the_seed_means(store_uri, tmp_path: Path) -> None:
    assert _start_writers(store_uri, tmp_path, "thread") == ["ok"] * 6
    _check_store(store_uri)


@pytest.mark.slow
def test_parallel_writer_processes_lose_no_run_and_parents_hold_the_seed_means(tmp_path: Path) -> None:
    uri = "sqlite:///" + str(tmp_path / "store" / "mlflow.db")
    assert _start_writers(uri, tmp_path, "process") == ["ok"] * 6
    _check_store(uri)


# ----------------------------------------------------------------------------------------------------
# without MLflow installed (the GPU machines)


def test_commands_run_without_mlflow_installed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.modules["mlflow"] = None  # import mlflow raises ImportError, as where it is not installed
        import argparse, lipcert, lipcert.tracking, lipcert.run_record
        from lipcert.__main__ import _mlflow_enabled, main
        assert main(["mlflow-init", "--results-dir", {str(tmp_path)!r}, "--marker", {str(tmp_path / 'ready')!r}]) == 0
        assert not _mlflow_enabled(argparse.Namespace(no_mlflow=False))
        assert not _mlflow_enabled(argparse.Namespace(no_mlflow=True))
        assert lipcert.tracking.log_stage({str(tmp_path)!r}, "certify", {{"clean": 1.0}}, enabled=False,
                                          tracking_uri=None) is None
        with lipcert.tracking.RunTracker("e", "r", enabled=False) as tracker:
            tracker.log_epoch(1, {{"loss": 1.0}})
        assert "mlflow" not in [name for name, module in sys.modules.items() if module is not None]
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("mlflow is not installed here") == 2  # mlflow-init, then the enabled command
    assert read_json(tmp_path / "ready") == {"tracking_uri": None, "note": "mlflow not installed"}
    assert not (tmp_path / "mlflow.db").exists()
