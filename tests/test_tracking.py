"""Tests for metrics.json writing and the MLflow run tracker (lipcert.tracking).

MLflow is slow to import and to create a schema, so the in-process tests share one SQLite store per
module; only the concurrency test builds a second, fresh store from two spawned processes.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import multiprocessing
import os
import re
import socket
from pathlib import Path

import pytest

import lipcert
from lipcert import tracking
from lipcert.io_utils import read_json
from lipcert.tracking import (
    RunTracker,
    default_tracking_uri,
    flatten_params,
    init_tracking,
    sqlite_database_path,
    write_metrics,
)


@pytest.fixture(autouse=True)
def _keep_mlflow_defaults_out_of_the_repo(tmp_path: Path, monkeypatch) -> None:
    """Run every test in its tmp dir so an MLflow default (./mlflow.db, ./mlruns) cannot land in the repo."""
    monkeypatch.chdir(tmp_path)


# ----------------------------------------------------------------------------------------------------
# metrics.json and helpers (no MLflow import)


def test_write_metrics_record(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.json"
    record = write_metrics(
        path,
        metrics={"clean_acc": 0.75, "cra": {"0.141": 0.5}},
        params={"lr": 1e-3, "epochs": 2},
        seed=3,
        wall_time_s=12,
        extra={"note": "x"},
    )
    on_disk = read_json(path)
    assert on_disk == record
    assert on_disk["metrics"] == {"clean_acc": 0.75, "cra": {"0.141": 0.5}}
    assert on_disk["params"] == {"lr": 1e-3, "epochs": 2}
    assert on_disk["seed"] == 3 and on_disk["wall_time_s"] == 12.0
    assert on_disk["extra"] == {"note": "x"}
    assert set(on_disk["versions"]) == {"python", "torch", "numpy", "lipcert"}
    assert on_disk["versions"]["lipcert"] == lipcert.__version__
    assert on_disk["hostname"] == socket.gethostname()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", on_disk["timestamp_utc"])
    assert list(json.loads(path.read_text())) == sorted(on_disk)  # keys sorted on disk
    assert write_metrics(tmp_path / "m2.json", {}, {}, seed=0, wall_time_s=0.0)["extra"] == {}


def test_write_metrics_accepts_a_params_dataclass(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Params:
        lr: float = 0.1
        widths: tuple[int, ...] = (1, 2)

    record = write_metrics(tmp_path / "m.json", {"a": 1}, Params(), seed=0, wall_time_s=1.0)
    assert read_json(tmp_path / "m.json")["params"] == {"lr": 0.1, "widths": [1, 2]}
    assert record["params"]["lr"] == 0.1


def test_write_metrics_rejects_bad_input_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_metrics(path, {"loss": 1.0}, {}, seed=0, wall_time_s=1.0)
    with pytest.raises(ValueError, match="'metrics/loss'"):
        write_metrics(path, {"loss": float("nan")}, {}, seed=0, wall_time_s=1.0)
    assert read_json(path)["metrics"] == {"loss": 1.0}
    with pytest.raises(ValueError, match="seed"):
        write_metrics(path, {}, {}, seed=-1, wall_time_s=1.0)
    with pytest.raises(ValueError, match="wall_time_s"):
        write_metrics(path, {}, {}, seed=0, wall_time_s=float("inf"))
    with pytest.raises(ValueError, match=r"metrics \(a dict or dataclass instance\) must be a mapping"):
        write_metrics(path, [1, 2], {}, seed=0, wall_time_s=1.0)  # type: ignore[arg-type]


def test_default_tracking_uri_and_database_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = default_tracking_uri(tmp_path / "results")
    assert uri == f"sqlite:///{tmp_path.resolve()}/results/mlflow.db"
    assert sqlite_database_path(uri) == tmp_path.resolve() / "results" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert sqlite_database_path("http://127.0.0.1:5000") is None
    assert sqlite_database_path("sqlite:///:memory:") is None
    monkeypatch.chdir(tmp_path)
    assert sqlite_database_path("sqlite:///rel/x.db") == tmp_path.resolve() / "rel" / "x.db"


def test_file_store_uris_are_rejected() -> None:
    for uri in ("file:./mlruns", "./mlruns", ""):
        with pytest.raises(ValueError, match="tracking URI"):
            init_tracking(uri)


def test_flatten_params() -> None:
    @dataclasses.dataclass
    class Optim:
        lr: float = 1e-3

    flat = flatten_params({"train": {"optim": Optim(), "epochs": 5}, "widths": [10, 20], "name": None})
    assert flat == {"train.optim.lr": "0.001", "train.epochs": "5", "widths": "[10, 20]", "name": "None"}
    with pytest.raises(ValueError, match=r"duplicate keys \['a.b'\]"):
        flatten_params({"a.b": 1, "a": {"b": 2}})


def test_disabled_tracker_is_explicit_validates_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError):
        RunTracker("exp", "run")  # type: ignore[call-arg]  # enabled has no default
    with pytest.raises(ValueError, match="enabled must be True or False"):
        RunTracker("exp", "run", enabled=1)  # type: ignore[arg-type]
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    tracker = RunTracker("exp", "run", enabled=False, group="g")
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        tracker.log_epoch(0, {"loss": 1.0})
    with tracker:
        assert tracker.log_params({"a": {"b": 1}}) == {"a.b": "1"}
        tracker.log_epoch(0, {"loss": 1.0})
        tracker.log_final({"acc": 0.5})
        tracker.log_artifact(artifact)
        with pytest.raises(ValueError, match=r"epoch metrics\['loss'\] must be a number"):
            tracker.log_epoch(1, {"loss": "high"})
        with pytest.raises(ValueError, match="epoch must be a non-negative int"):
            tracker.log_epoch(-1, {})
        with pytest.raises(FileNotFoundError, match="missing.txt"):
            tracker.log_artifact(tmp_path / "missing.txt")
    assert tracker.run_id is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(RuntimeError, match="only once"):
        tracker.__enter__()


def test_enabled_tracker_needs_a_uri_and_a_safe_group() -> None:
    with pytest.raises(ValueError, match="tracking_uri"):
        RunTracker("exp", "run", enabled=True)
    with pytest.raises(ValueError, match="quotes"):
        RunTracker("exp", "run", enabled=False, group="it's")


# ----------------------------------------------------------------------------------------------------
# MLflow store (shared by the tests below)


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("mlflow_store")
    return "sqlite:///" + str(directory / "mlflow.db")


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def test_init_holds_the_lock_while_creating_the_schema_and_can_run_twice(store_uri, monkeypatch) -> None:
    lock_path = Path(str(sqlite_database_path(store_uri)) + ".lock")
    original = tracking._create_schema
    seen = []

    def checking_create_schema(uri: str):
        with open(lock_path, "a+b") as other_handle:  # a second open file description: flock conflicts
            with pytest.raises(BlockingIOError):
                fcntl.flock(other_handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        seen.append(uri)
        return original(uri)

    monkeypatch.setattr(tracking, "_create_schema", checking_create_schema)
    assert init_tracking(store_uri) == store_uri
    assert init_tracking(store_uri) == store_uri
    assert seen == [store_uri, store_uri]
    assert sqlite_database_path(store_uri).is_file()
    with open(lock_path, "a+b") as handle:  # released afterwards
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert not (Path.cwd() / "mlflow.db").exists() and not (Path.cwd() / "mlruns").exists()


def test_run_logs_params_epochs_final_and_artifact(store_uri, tmp_path: Path, monkeypatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    calls = []
    original_log_batch = MlflowClient.log_batch

    def counting_log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        calls.append((len(metrics), len(params)))
        return original_log_batch(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", counting_log_batch)
    artifact = tmp_path / "metrics.json"
    write_metrics(artifact, {"acc": 0.9}, {}, seed=0, wall_time_s=1.0)

    with RunTracker(
        "moons-cll", "moons-cll-seed0", enabled=True, tracking_uri=store_uri, tags={"seed": 0, "dataset": "moons"}
    ) as tracker:
        tracker.log_params({"train": {"lr": 0.001, "epochs": 3}, "loss": "cll"})
        for epoch in range(3):
            tracker.log_epoch(epoch, {"train/loss": 1.0 / (epoch + 1), "train/acc": 0.5 + 0.1 * epoch})
        tracker.log_final({"cra": 0.8, "K": 12.5})
        tracker.log_artifact(artifact)
        run_id = tracker.run_id
    assert calls == [(0, 3), (2, 0), (2, 0), (2, 0), (2, 0)]  # params once, one batch per epoch, final once

    client = _client(store_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "moons-cll-seed0"
    assert run.data.params == {"train.lr": "0.001", "train.epochs": "3", "loss": "cll"}
    assert run.data.tags["seed"] == "0" and run.data.tags["dataset"] == "moons"
    assert "mlflow.parentRunId" not in run.data.tags  # no group: not nested
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert run.data.metrics["final/cra"] == 0.8 and run.data.metrics["final/K"] == 12.5
    assert [m.step for m in client.get_metric_history(run_id, "final/cra")] == [2]
    assert [item.path for item in client.list_artifacts(run_id)] == ["metrics.json"]
    assert run.info.artifact_uri.startswith(Path(sqlite_database_path(store_uri)).parent.as_uri())

    experiment = client.get_experiment_by_name("moons-cll")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)  # the fluent API reads the global URI
    frame = mlflow.search_runs([experiment.experiment_id], filter_string="tags.dataset = 'moons'")
    assert list(frame["run_id"]) == [run_id]


def test_failing_block_marks_run_failed_and_reraises(store_uri) -> None:
    with pytest.raises(ZeroDivisionError):
        with RunTracker("moons-cll", "crashing", enabled=True, tracking_uri=store_uri) as tracker:
            tracker.log_epoch(0, {"loss": 2.0})
            1 / 0  # noqa: B018
    run = _client(store_uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"loss": 2.0}


def test_seeds_share_group_tag_and_parent_run(store_uri) -> None:
    run_ids = []
    for seed in (0, 1):
        with RunTracker(
            "moons-gloro", f"moons-gloro-seed{seed}", enabled=True, tracking_uri=store_uri, group="moons-gloro-eps0.15"
        ) as tracker:
            tracker.log_final({"seed_metric": float(seed)})
            run_ids.append((tracker.run_id, tracker.parent_run_id))
    with RunTracker(
        "moons-gloro", "other-seed0", enabled=True, tracking_uri=store_uri, group="moons-gloro-eps0.3"
    ) as other:
        other_parent = other.parent_run_id

    client = _client(store_uri)
    (first, parent_a), (second, parent_b) = run_ids
    assert parent_a == parent_b is not None and other_parent not in (None, parent_a)
    for run_id in (first, second):
        tags = client.get_run(run_id).data.tags
        assert tags["group"] == "moons-gloro-eps0.15" and tags["mlflow.parentRunId"] == parent_a
    parent = client.get_run(parent_a)
    assert parent.info.run_name == "moons-gloro-eps0.15"
    assert parent.data.tags[tracking.ROLE_TAG] == tracking.GROUP_PARENT_ROLE
    experiment_id = client.get_experiment_by_name("moons-gloro").experiment_id
    parents = client.search_runs([experiment_id], filter_string="tags.`lipcert.role` = 'group_parent'")
    assert sorted(run.info.run_name for run in parents) == ["moons-gloro-eps0.15", "moons-gloro-eps0.3"]
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_a}'")
    assert sorted(run.info.run_id for run in children) == sorted([first, second])


# ----------------------------------------------------------------------------------------------------
# Concurrent first-time creation of a store


def _init_after_barrier(uri: str, barrier, results) -> None:
    """Spawned worker: import MLflow fully, wait for the sibling, then initialise the same fresh store."""
    try:
        import mlflow  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        barrier.wait(timeout=60)
        init_tracking(uri)
        results.put("ok")
    except BaseException as error:  # report every failure to the parent
        results.put(f"{type(error).__name__}: {error}")


def test_concurrent_first_init_from_two_processes(tmp_path: Path) -> None:
    uri = "sqlite:///" + str(tmp_path / "fresh" / "mlflow.db")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=_init_after_barrier, args=(uri, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok", "ok"]
    assert [worker.exitcode for worker in workers] == [0, 0]
    experiments = _client(uri).search_experiments()
    assert [experiment.name for experiment in experiments] == ["Default"]
