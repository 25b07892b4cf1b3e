"""Run tracking: a ``metrics.json`` per job (the source of truth) and an optional MLflow mirror.

Every training/evaluation job writes its numbers with :func:`write_metrics`; tables and figures are
computed from those files. MLflow is only a viewer: :class:`RunTracker` mirrors parameters, per-epoch
curves and final numbers into a tracking store (by default the SQLite file ``<results_dir>/mlflow.db``).

The layout of the mirror (one experiment per params family, e.g. ``two_moons``):

* one **parent run per configuration** (dataset, model, method, eps, p, variant: a workflow run directory's
  wildcards less the seed, :func:`configuration_key`), named by :func:`parent_run_name` (``cll two_moons
  eps0.15 pdefault base``) and tagged ``group`` = the key, ``lipcert.role`` = ``group_parent`` and the
  configuration's fields; its metrics are the means over its finished seeds (:func:`update_group_means`,
  ``n_seeds`` counts them);
* one **child run per seed** (``... seed1``, :func:`child_run_name`) holding the per-epoch curves, ``final/<key>``,
  and, logged later into the same run (:func:`log_stage`, found through the run directory's
  :data:`RUN_ID_FILE`), ``certify/<key>`` and ``tightness/<key>``. Keys are the run record's
  (:mod:`lipcert.run_record`): ``clean``, ``cra_<eps>`` per radius, ``K_f``, ... and ``cra`` (:data:`CRA_KEY`)
  at the run's headline radius (:func:`lipcert.run_record.headline_radius`, logged as the param ``cra_radius``), one column for
  runs certified at different radii; tags carry the git commit, the source, the scale, the data label.

MLflow is imported lazily inside the functions that need it (the import takes seconds; the GPU machines
have no MLflow, and nothing here imports it unless tracking is enabled). A fresh SQLite store is created
under an exclusive ``fcntl.flock`` on ``<db>.lock``: two processes creating the schema at once crash inside
MLflow's migrations ("duplicate column name: step") and leave a broken database. The same lock serialises
experiment creation, the find-or-create of a configuration's parent run and the update of its means.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import platform
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from lipcert.io_utils import atomic_write_json, read_json
from lipcert.run_record import (CRA_KEY, cra_key, metrics_record, param_value, path_number, string_keyed,
                                training_eps_of)  # the layout lives in the run record

GROUP_TAG = "group"
"""Run tag shared by all seeds of one experiment configuration."""

ROLE_TAG = "lipcert.role"
"""Run tag marking the parent run that groups the seeds (value ``group_parent``)."""

GROUP_PARENT_ROLE = "group_parent"

CONFIG_FIELDS = ("dataset", "model", "method", "eps", "p", "variant")
"""The axes of one configuration: a workflow run directory's wildcards less the seed (:data:`lipcert.plan.RUN_DIR`)."""

SCALE_TAG = "scale"
"""Run tag: the workflow scale (paper, quick, ci) the run was made at."""

GIT_COMMIT_TAG = "mlflow.source.git.commit"
"""MLflow's tag for the source commit (shown in the run's overview); ``unknown`` outside a git checkout."""

SOURCE_NAME_TAG = "mlflow.source.name"
"""MLflow's tag for what made the run (here the command, e.g. ``python -m lipcert train``)."""

SOURCE_TYPE_TAG = "mlflow.source.type"
"""MLflow's tag for the kind of source (``LOCAL``: a command on this machine)."""

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""MLflow 3's experiment tag choosing its page's layout; :data:`MODEL_TRAINING_KIND` opens the runs table."""

MODEL_TRAINING_KIND = "custom_model_development"
"""Value of :data:`EXPERIMENT_KIND_TAG` for classical training runs (the UI's "Machine learning" type)."""

CRA_RADIUS_PARAM = "cra_radius"
"""Param of a seed run: the radius its ``cra`` metric (:data:`lipcert.run_record.CRA_KEY`) is the CRA at."""

SEED_COUNT_KEY = "n_seeds"
"""Metric of a parent run: how many of its seed runs are finished (its other metrics are their means)."""

STAGES = ("certify", "tightness")
"""The stages that log into a finished seed run after training (metric prefix ``<stage>/``)."""

RUN_ID_FILE = "mlflow_run.json"
"""File in a run directory naming its MLflow run (``tracking_uri``, ``run_id``, ``parent_run_id``, ``group``),
written by ``python -m lipcert train`` so that certification and tightness log into the same run."""

_LOGGER = logging.getLogger(__name__)
_SQLITE_PREFIX = "sqlite:///"
_MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch call
_MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for metrics in one log_batch call


# ----------------------------------------------------------------------------------------------------
# metrics.json


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_versions() -> dict[str, str]:
    """Versions of python, torch, numpy and lipcert recorded with every result (reproducibility)."""
    import lipcert

    return {
        "python": platform.python_version(),
        "torch": _package_version("torch"),
        "numpy": _package_version("numpy"),
        "lipcert": lipcert.__version__,
    }


def utc_timestamp() -> str:
    """Current UTC time as ISO 8601 with seconds, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _as_plain_mapping(value: Any, name: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return string_keyed(value, f"{name} (a dict or dataclass instance)")


def write_metrics(
    path: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    wall_time_s: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one job's ``metrics.json`` atomically and return the written record.

    The record holds ``metrics`` (e.g. clean accuracy, CRA at the paper's radii, K(f); paper section 4),
    the ``params`` the job ran with, its ``seed`` and ``wall_time_s``, ``extra`` (free-form, ``{}`` when
    None), ``versions`` (python, torch, numpy, lipcert), ``hostname``, ``timestamp_utc`` and
    ``schema_version``. Keys are sorted and NaN/infinity is rejected with an error naming the key, so a
    diverged run cannot silently produce a table entry.
    """
    record = metrics_record(_as_plain_mapping(metrics, "metrics"), _as_plain_mapping(params, "params"), seed,
                            wall_time_s, _as_plain_mapping(extra if extra is not None else {}, "extra"),
                            versions=environment_versions(), hostname=socket.gethostname(),
                            timestamp_utc=utc_timestamp())
    atomic_write_json(path, record)
    return record


# ----------------------------------------------------------------------------------------------------
# MLflow store set-up


def _import_mlflow() -> Any:
    """Import mlflow with telemetry disabled (the machines running the pipeline are offline)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def default_tracking_uri(results_dir: str | os.PathLike[str]) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<absolute results_dir>/mlflow.db``."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if from_env:
        return from_env
    return _SQLITE_PREFIX + str(Path(results_dir).resolve() / "mlflow.db")


def sqlite_database_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (absolute), or None for other URIs."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    location = uri[len(_SQLITE_PREFIX) :].split("?", 1)[0]
    if not location or location == ":memory:":
        return None
    return Path(location).resolve()


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive flock on ``<db>.lock`` for a SQLite URI (no lock for other stores)."""
    database = sqlite_database_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    lock_path = database.with_name(database.name + ".lock")
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _check_uri(uri: str) -> None:
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"tracking URI must be a non-empty string, got {uri!r}")
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r} is a file store, which MLflow >= 3.13 rejects; "
            "use sqlite:///<dir>/mlflow.db (see default_tracking_uri) or an http(s):// server"
        )


def _create_schema(uri: str) -> Any:
    """Open a client on ``uri``; the first query creates the tables of a fresh store (caller holds the lock)."""
    mlflow = _import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)
    return client


def init_tracking(uri: str) -> str:
    """Create the MLflow store at ``uri`` once, serially, and return the URI.

    For a SQLite URI the parent directory is created and the schema is built while holding an exclusive
    ``flock`` on ``<db>.lock``, so concurrent first-time calls from several jobs are safe; later calls
    find the tables and return quickly. Sets ``MLFLOW_DISABLE_TELEMETRY=true`` unless already set.
    """
    _check_uri(uri)
    with _store_lock(uri):
        _create_schema(uri)
    return uri


def _artifact_location(uri: str) -> str | None:
    database = sqlite_database_path(uri)
    if database is None:
        return None
    return (database.parent / "mlflow_artifacts").as_uri()


def _get_or_create_experiment(client: Any, uri: str, name: str) -> str:
    """The id of experiment ``name`` (created if missing, tagged to open in MLflow 3's runs view)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted in {uri}; restore it or choose another name")
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # a store made before the tag: set it once
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(uri),
                                    tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})


def _get_or_create_group_parent(client: Any, experiment_id: str, group: str, name: str,
                                tags: Mapping[str, str]) -> str:
    """The id of the parent run of ``group`` (found by its tags; created once, named ``name``; caller holds the
    store lock, so concurrent seeds of one configuration find one parent)."""
    filter_string = f"tags.`{ROLE_TAG}` = '{GROUP_PARENT_ROLE}' and tags.`{GROUP_TAG}` = '{group}'"
    existing = client.search_runs([experiment_id], filter_string=filter_string, max_results=2)
    if existing:
        return existing[0].info.run_id
    parent = client.create_run(experiment_id, run_name=name,
                               tags={**tags, GROUP_TAG: group, ROLE_TAG: GROUP_PARENT_ROLE})
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


def _finished_children(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    filter_string = f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'"
    children, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        children.extend(page)
        token = page.token
        if not token:
            return children


def group_means(children_metrics: list[Mapping[str, float]]) -> dict[str, float]:
    """The metrics of a parent run from its finished seeds' latest metrics: for every key, the mean over the seeds
    that have it (certification may be logged for some seeds only), plus :data:`SEED_COUNT_KEY`."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metrics in children_metrics:
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value)
            counts[key] = counts.get(key, 0) + 1
    means = {key: sums[key] / counts[key] for key in sorted(sums)}
    means[SEED_COUNT_KEY] = float(len(children_metrics))
    return means


def _log_metric_batches(client: Any, run_id: str, values: Mapping[str, float], step: int) -> None:
    """Log ``values`` into a run at ``step`` with one timestamp, in batches of MLflow's size limit."""
    from mlflow.entities import Metric

    timestamp_ms = int(time.time() * 1000)
    batch = [Metric(key, value, timestamp_ms, step) for key, value in values.items()]
    for start in range(0, len(batch), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=batch[start : start + _MAX_METRICS_PER_BATCH])


def update_group_means(client: Any, uri: str, parent_run_id: str) -> dict[str, float]:
    """Set the parent run's metrics to the means over its finished seed runs (:func:`group_means`); returns them.

    Runs under the store lock, reading the children's latest metrics through MLflow: every writer updates the
    parent after its own metrics are stored, so the last update sees them all, whatever the order. Each update is
    logged at the next step (one more than :data:`SEED_COUNT_KEY`'s last), so the latest value is the newest
    update even when two land in the same millisecond.
    """
    with _store_lock(uri):
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        children = _finished_children(client, experiment_id, parent_run_id)
        means = group_means([child.data.metrics for child in children])
        history = client.get_metric_history(parent_run_id, SEED_COUNT_KEY)
        _log_metric_batches(client, parent_run_id, means, max((metric.step for metric in history), default=-1) + 1)
    return means


# ----------------------------------------------------------------------------------------------------
# Names, keys and tags of the mirror


def configuration_key(fields: Mapping[str, Any]) -> str:
    """The key shared by all seeds of one configuration: ``<dataset>/<model>/<method>/eps<eps>_p<p>/<variant>``,
    a workflow run directory below ``runs/`` less ``/seed<seed>`` (:data:`lipcert.plan.RUN_DIR`; a test pins the
    two together). ``fields`` holds :data:`CONFIG_FIELDS`, numbers spelled as in run paths."""
    missing = [name for name in CONFIG_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"a configuration needs {list(CONFIG_FIELDS)}; missing {missing}")
    values = {name: str(fields[name]) for name in CONFIG_FIELDS}
    bad = [name for name, value in values.items() if not value or any(char in value for char in "/'\"`\\")]
    if bad:
        raise ValueError(f"configuration fields {bad} must be non-empty, without slashes or quotes: {values}")
    return "{dataset}/{model}/{method}/eps{eps}_p{p}/{variant}".format(**values)


def parent_run_name(fields: Mapping[str, Any]) -> str:
    """The display name of a configuration's parent run: ``<method> <model> eps<eps> p<p> <variant>``."""
    configuration_key(fields)  # validates
    return "{method} {model} eps{eps} p{p} {variant}".format(**{name: fields[name] for name in CONFIG_FIELDS})


def child_run_name(fields: Mapping[str, Any], seed: int) -> str:
    """The display name of one seed's run: its parent's name, then ``seed<seed>``."""
    return f"{parent_run_name(fields)} seed{int(seed)}"


def config_fields(params: Mapping[str, Any], *, dataset: str, method: str, variant: str = "base") -> dict[str, str]:
    """The :data:`CONFIG_FIELDS` of a run config (``RunConfig.to_dict()``) for a run made outside the workflow:
    the model, the training eps (``0`` when the loss has none, as the workflow's plan spells it) and the loss's p
    (``default`` when it has none), numbers spelled as in run paths (:func:`lipcert.run_record.path_number`)."""
    try:
        eps = path_number(training_eps_of(params, "run config"))
    except ValueError:
        eps = "0"
    loss = params.get("loss") if isinstance(params.get("loss"), Mapping) else {}
    try:
        p = path_number(param_value(params, "loss.p", "run config")) if "p" in loss else "default"
    except ValueError:  # a p schedule: no single number
        p = "default"
    return {"dataset": dataset, "model": str(params["model"]), "method": method, "eps": eps, "p": p,
            "variant": variant}


def with_headline_cra(metrics: Mapping[str, Any], radius: float | None, prefix: str = "") -> dict[str, Any]:
    """``metrics`` plus ``<prefix>cra`` = its ``<prefix>cra_<radius>`` when it has that key (else unchanged)."""
    out = dict(metrics)
    if radius is not None and cra_key(radius, prefix) in out:
        out[prefix + CRA_KEY] = out[cra_key(radius, prefix)]
    return out


def git_commit(directory: str | os.PathLike[str] | None = None) -> str:
    """The commit checked out at ``directory`` (default: this package's source), or ``unknown`` when it is not
    in a git checkout or git is missing (``git rev-parse HEAD``; never raises)."""
    where = Path(directory) if directory is not None else Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit) else "unknown"


def mlflow_available() -> bool:
    """Whether MLflow can be imported here (the GPU machines run without it); imports it when it can."""
    try:
        _import_mlflow()
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------
# Run tracker


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested dicts (and dataclass instances) into ``{"a.b.c": "value"}`` with string values."""
    flat: dict[str, str] = {}
    items = _as_plain_mapping(params, prefix or "params")
    for key, value in items.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            nested = flatten_params(value, name)
        else:
            nested = {name: str(value)}
        clashes = sorted(set(nested) & set(flat))
        if clashes:
            raise ValueError(f"params flatten to duplicate keys {clashes}; rename one of them")
        flat.update(nested)
    return flat


def _metric_values(metrics: Mapping[str, Any], what: str) -> dict[str, float]:
    values = {}
    for key, value in _as_plain_mapping(metrics, what).items():
        if isinstance(value, (str, bytes)):
            raise ValueError(f"{what}[{key!r}] must be a number, got {value!r}")
        try:
            values[key] = float(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{what}[{key!r}] must be a number, got {value!r}") from error
    return values


class RunTracker:
    """Mirror one job (one seed) into MLflow; use as a context manager.

    ``enabled`` must be passed explicitly: ``enabled=False`` validates every call but logs nothing (for
    tests and offline use). When enabled, entering creates the store if needed (:func:`init_tracking`),
    the experiment ``experiment`` if missing, and a run named ``run_name`` tagged with ``tags`` and
    ``group``. With ``group`` set and ``nest_in_group=True``, the run is nested under a parent run
    (found by its ``group`` tag, created once, named ``parent_name`` or else ``group``, tagged with
    ``parent_tags``), so the seeds of one configuration appear together; when the run finishes, the
    parent's metrics become the means over its finished seeds (:func:`update_group_means`).

    ``cra_radius`` (:func:`lipcert.run_record.headline_radius`) adds the stable key ``cra`` beside ``cra_<radius>`` to the
    logged epochs and final metrics, and the param ``cra_radius``. ``resume_run_id`` (from the run
    directory's :data:`RUN_ID_FILE`, see :func:`recorded_run`) continues that run when it is in this
    store, experiment and group (a resumed training job), instead of creating a second one.
    If the ``with`` block raises, the run is marked FAILED and the exception propagates; otherwise it
    is marked FINISHED.
    """

    def __init__(
        self,
        experiment: str,
        run_name: str,
        *,
        enabled: bool,
        tracking_uri: str | None = None,
        group: str | None = None,
        nest_in_group: bool = True,
        tags: Mapping[str, Any] | None = None,
        parent_name: str | None = None,
        parent_tags: Mapping[str, Any] | None = None,
        cra_radius: float | None = None,
        resume_run_id: str | None = None,
    ) -> None:
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled must be True or False, got {enabled!r}")
        for name, value in (("experiment", experiment), ("run_name", run_name)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        for name, value in (("group", group), ("parent_name", parent_name), ("resume_run_id", resume_run_id)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be None or a non-empty string, got {value!r}")
        if group is not None and any(char in group for char in "'\"`\\"):
            raise ValueError(f"group must not contain quotes, backticks or backslashes, got {group!r}")
        if cra_radius is not None:
            cra_radius = float(cra_radius)
        if enabled:
            if tracking_uri is None:
                raise ValueError("an enabled RunTracker needs tracking_uri; use default_tracking_uri(results_dir)")
            _check_uri(tracking_uri)
        self.enabled = enabled
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri
        self.group = group
        self.nest_in_group = nest_in_group
        self.tags = {key: str(value) for key, value in _as_plain_mapping(tags or {}, "tags").items()}
        self.parent_name = parent_name or group
        self.parent_tags = {key: str(value) for key, value in
                            _as_plain_mapping(parent_tags or {}, "parent_tags").items()}
        self.cra_radius = cra_radius
        self.resume_run_id = resume_run_id
        self.run_id: str | None = None
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None
        self.resumed = False
        self._client: Any = None
        self._active = False
        self._used = False
        self._last_step = 0

    def __enter__(self) -> RunTracker:
        if self._used:
            raise RuntimeError("a RunTracker can be entered only once; create a new one per run")
        self._used = True
        self._active = True
        if not self.enabled:
            _LOGGER.info("MLflow tracking disabled (enabled=False) for run %r", self.run_name)
            return self
        uri = self.tracking_uri
        assert uri is not None  # checked in __init__
        with _store_lock(uri):
            client = _create_schema(uri)
            experiment_id = _get_or_create_experiment(client, uri, self.experiment)
            if self.group is not None and self.nest_in_group:
                assert self.parent_name is not None  # defaults to the group
                self.parent_run_id = _get_or_create_group_parent(client, experiment_id, self.group,
                                                                 self.parent_name, self.parent_tags)
        tags = {"lipcert.version": environment_versions()["lipcert"], **self.tags}
        if self.group is not None:
            tags[GROUP_TAG] = self.group
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        self._client = client
        self.experiment_id = experiment_id
        resumable = self._resumable_run(client, experiment_id)
        if resumable is not None:
            from mlflow.entities import RunTag

            client.update_run(resumable, status="RUNNING", name=self.run_name)
            client.log_batch(resumable, tags=[RunTag(key, value) for key, value in sorted(tags.items())])
            self.run_id, self.resumed = resumable, True
        else:
            self.run_id = client.create_run(experiment_id, run_name=self.run_name, tags=tags).info.run_id
        if self.cra_radius is not None:
            client.log_param(self.run_id, CRA_RADIUS_PARAM, f"{self.cra_radius:.6g}")
        return self

    def _resumable_run(self, client: Any, experiment_id: str) -> str | None:
        """``resume_run_id`` when that run exists, is not deleted and belongs to this experiment and group."""
        if self.resume_run_id is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(self.resume_run_id)
        except MlflowException:
            return None
        same = (run.info.lifecycle_stage == "active" and run.info.experiment_id == experiment_id
                and run.data.tags.get(GROUP_TAG) == self.group)
        return run.info.run_id if same else None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._active = False
        if self.enabled and self.run_id is not None:
            self._client.set_terminated(self.run_id, "FAILED" if exc_type is not None else "FINISHED")
            if self.parent_run_id is not None:
                assert self.tracking_uri is not None
                update_group_means(self._client, self.tracking_uri, self.parent_run_id)
        return False

    def record(self, run_dir: str | os.PathLike[str]) -> Path | None:
        """Write the run directory's :data:`RUN_ID_FILE` (atomically) naming this run, so that later stages log
        into it (:func:`log_stage`) and a resumed job continues it; returns the file (None when disabled)."""
        self._require_active("record")
        if not self.enabled:
            return None
        path = Path(run_dir) / RUN_ID_FILE
        atomic_write_json(path, {"tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id,
                                 "run_id": self.run_id, "parent_run_id": self.parent_run_id, "group": self.group})
        return path

    def _require_active(self, method: str) -> None:
        if not self._active:
            raise RuntimeError(f"RunTracker.{method} called outside its `with` block")

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the job's parameters once, nested keys flattened with dots; returns the flat dict.

        A resumed run logs only the params it lacks (MLflow params cannot change; a resumed job may differ in
        what its result does not depend on, e.g. ``threads``)."""
        self._require_active("log_params")
        flat = flatten_params(params)
        if self.enabled and flat:
            from mlflow.entities import Param

            logged = self._client.get_run(self.run_id).data.params if self.resumed else {}
            changed = sorted(key for key in flat if key in logged and logged[key] != flat[key])
            if changed:
                _LOGGER.warning("resumed MLflow run %s keeps its first values of params %s", self.run_id, changed)
            items = sorted((key, value) for key, value in flat.items() if key not in logged)
            for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
                batch = [Param(key, value) for key, value in items[start : start + _MAX_PARAMS_PER_BATCH]]
                self._client.log_batch(self.run_id, params=batch)
        return flat

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Log one epoch's metrics (step = ``epoch``) with a single MLflow ``log_batch`` call."""
        self._require_active("log_epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        values = with_headline_cra(_metric_values(metrics, "epoch metrics"), self.cra_radius)
        if len(values) > _MAX_METRICS_PER_BATCH:
            raise ValueError(
                f"{len(values)} metrics in one epoch exceed MLflow's batch limit of {_MAX_METRICS_PER_BATCH}"
            )
        self._last_step = epoch
        if self.enabled and values:
            self._log_metrics(values, epoch)

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        """Log the final numbers as metrics ``final/<key>`` at the last logged epoch (with ``final/cra`` when the
        tracker has a ``cra_radius``)."""
        self._require_active("log_final")
        values = with_headline_cra(_metric_values(metrics, "final metrics"), self.cra_radius)
        if self.enabled and values:
            self._log_metrics({f"final/{key}": value for key, value in values.items()}, self._last_step)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Attach a small file (e.g. metrics.json, a plot) to the run; checkpoints stay out of MLflow."""
        self._require_active("log_artifact")
        local = Path(path)
        if not local.is_file():
            raise FileNotFoundError(f"artifact to log does not exist or is not a file: {str(local)!r}")
        if self.enabled:
            self._client.log_artifact(self.run_id, str(local), artifact_path)

    def _log_metrics(self, values: Mapping[str, float], step: int) -> None:
        _log_metric_batches(self._client, self.run_id, values, step)


# ----------------------------------------------------------------------------------------------------
# Later stages (certification, tightness) logging into a seed's run


def recorded_run(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The MLflow run named by a run directory's :data:`RUN_ID_FILE` (``run_id``, ``tracking_uri``, ...), or None
    when the directory has none (trained with ``--no-mlflow``) or it names no run id."""
    path = Path(run_dir) / RUN_ID_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, Mapping) or not isinstance(record.get("run_id"), str) or not record["run_id"]:
        return None
    return dict(record)


def log_stage(run_dir: str | os.PathLike[str], stage: str, metrics: Mapping[str, Any], *, enabled: bool,
              tracking_uri: str | None, tags: Mapping[str, Any] | None = None) -> str | None:
    """Log a later stage's numbers into the seed run that trained ``run_dir`` and refresh its parent's means.

    The run is the one :data:`RUN_ID_FILE` names, looked up in ``tracking_uri`` (the store of this job, so a
    results directory moved elsewhere still finds its runs); its metrics become ``<stage>/<key>`` (step 0) and
    ``tags`` its tags (mutable, so a re-run may change them). Returns the run id, or None (after a warning) when
    ``enabled`` is False, the directory names no run, or the store does not hold it: a stage never fails for
    the mirror's sake. ``stage`` is one of :data:`STAGES`.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    values = _metric_values(metrics, f"{stage} metrics")
    tag_values = {key: str(value) for key, value in _as_plain_mapping(tags or {}, "tags").items()}
    if not enabled:
        return None
    if tracking_uri is None:
        raise ValueError("log_stage with enabled=True needs tracking_uri; use default_tracking_uri(results_dir)")
    _check_uri(tracking_uri)
    record = recorded_run(run_dir)
    if record is None:
        _LOGGER.warning("%s names no MLflow run (trained with --no-mlflow?): %s not logged to MLflow",
                        Path(run_dir) / RUN_ID_FILE, stage)
        return None
    mlflow = _import_mlflow()
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(record["run_id"])
    except MlflowException:
        _LOGGER.warning("MLflow run %s of %s is not in %s (recorded for %s): %s not logged to MLflow",
                        record["run_id"], run_dir, tracking_uri, record.get("tracking_uri"), stage)
        return None
    _log_metric_batches(client, run.info.run_id, {f"{stage}/{key}": value for key, value in values.items()}, 0)
    if tag_values:
        client.log_batch(run.info.run_id, tags=[RunTag(key, value) for key, value in sorted(tag_values.items())])
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        update_group_means(client, tracking_uri, parent)
    return run.info.run_id
