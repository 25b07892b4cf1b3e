"""Run tracking: a ``metrics.json`` per job (the source of truth) and an optional MLflow mirror.

Every training/evaluation job writes its numbers with :func:`write_metrics`; tables and figures are
computed from those files. MLflow is only a viewer: :class:`RunTracker` mirrors parameters, per-epoch
curves and final numbers into a tracking store (by default the SQLite file ``<results_dir>/mlflow.db``).

MLflow is imported lazily inside the functions that need it (the import takes seconds). A fresh SQLite
store is created under an exclusive ``fcntl.flock`` on ``<db>.lock``: two processes creating the schema
at once crash inside MLflow's migrations ("duplicate column name: step") and leave a broken database.
The same lock serialises experiment creation and the find-or-create of a group's parent run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import platform
import socket
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from lipcert.io_utils import atomic_write_json
from lipcert.run_record import metrics_record, string_keyed  # the layout lives in the run record

GROUP_TAG = "group"
"""Run tag shared by all seeds of one experiment configuration."""

ROLE_TAG = "lipcert.role"
"""Run tag marking the parent run that groups the seeds (value ``group_parent``)."""

GROUP_PARENT_ROLE = "group_parent"

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
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted in {uri}; restore it or choose another name")
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(uri))


def _get_or_create_group_parent(client: Any, experiment_id: str, group: str) -> str:
    filter_string = f"tags.`{ROLE_TAG}` = '{GROUP_PARENT_ROLE}' and tags.`{GROUP_TAG}` = '{group}'"
    existing = client.search_runs([experiment_id], filter_string=filter_string, max_results=2)
    if existing:
        return existing[0].info.run_id
    parent = client.create_run(experiment_id, run_name=group, tags={GROUP_TAG: group, ROLE_TAG: GROUP_PARENT_ROLE})
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


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
    ``group``. With ``group`` set and ``nest_in_group=True``, the run is nested under a parent run named
    ``group`` (found by tag search, created once), so the seeds of one configuration appear together.
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
    ) -> None:
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled must be True or False, got {enabled!r}")
        for name, value in (("experiment", experiment), ("run_name", run_name)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            raise ValueError(f"group must be None or a non-empty string, got {group!r}")
        if group is not None and any(char in group for char in "'\"`\\"):
            raise ValueError(f"group must not contain quotes, backticks or backslashes, got {group!r}")
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
        self.run_id: str | None = None
        self.parent_run_id: str | None = None
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
                self.parent_run_id = _get_or_create_group_parent(client, experiment_id, self.group)
        tags = {"lipcert.version": environment_versions()["lipcert"], **self.tags}
        if self.group is not None:
            tags[GROUP_TAG] = self.group
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self._client = client
        self.run_id = run.info.run_id
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._active = False
        if self.enabled and self.run_id is not None:
            self._client.set_terminated(self.run_id, "FAILED" if exc_type is not None else "FINISHED")
        return False

    def _require_active(self, method: str) -> None:
        if not self._active:
            raise RuntimeError(f"RunTracker.{method} called outside its `with` block")

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log the job's parameters once, nested keys flattened with dots; returns the flat dict."""
        self._require_active("log_params")
        flat = flatten_params(params)
        if self.enabled and flat:
            from mlflow.entities import Param

            items = sorted(flat.items())
            for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
                batch = [Param(key, value) for key, value in items[start : start + _MAX_PARAMS_PER_BATCH]]
                self._client.log_batch(self.run_id, params=batch)
        return flat

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Log one epoch's metrics (step = ``epoch``) with a single MLflow ``log_batch`` call."""
        self._require_active("log_epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        values = _metric_values(metrics, "epoch metrics")
        if len(values) > _MAX_METRICS_PER_BATCH:
            raise ValueError(
                f"{len(values)} metrics in one epoch exceed MLflow's batch limit of {_MAX_METRICS_PER_BATCH}"
            )
        self._last_step = epoch
        if self.enabled and values:
            self._log_metrics(values, epoch)

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        """Log the final numbers as metrics ``final/<key>`` at the last logged epoch."""
        self._require_active("log_final")
        values = _metric_values(metrics, "final metrics")
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
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        batch = [Metric(key, value, timestamp_ms, step) for key, value in values.items()]
        self._client.log_batch(self.run_id, metrics=batch)
