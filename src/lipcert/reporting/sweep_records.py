"""Reading and grouping the runs of the sweep reports (CLL Fig. 5, Table D5, Fig. D1, Fig. D4).

A sweep run is a finished run directory read through :mod:`lipcert.run_record`: the run config, seed and flags from
training's ``metrics.json``; clean accuracy, CRA at any certified radius and K(f) from the certification stage's
``certify.json`` (the source of the certified numbers, as in the paper tables); tightness from ``tightness.json``.
Fig. D1 (CRA over epochs, read from ``history.json``) is the one report that reads runs without certification
(``certified=False``). Runs that share a sweep point are grouped and sorted by seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..run_record import (RunFiles, collapse_of, param_value, read_certify, read_metrics, retry_of,
                          training_eps_of)
from .records import SeedSummary, finite_number, read_run_metrics, summarise

__all__ = ["METHOD_LABELS", "SweepRun", "close", "group_runs", "metric_of", "model_of", "only_methods",
           "optional_summary", "point_key", "read_sweep_run", "read_sweep_runs", "run_param", "seeds_text",
           "training_eps", "uniform", "use_log_x"]

METHOD_LABELS = {"cll": "CLL", "gloro": "GloRo", "ce": "CE"}
"""Display names of the loss names stored in a run config (``params.loss.name``)."""

MATCH_REL_TOL = 1e-6
MATCH_ABS_TOL = 1e-9


@dataclass(frozen=True)
class SweepRun:
    """One finished run: its directory, seed, method label, run config, certified metrics and flags.

    ``metrics``: the certified numbers of certify.json in metrics.json's key space (``clean``, ``cra_<eps:.6g>``
    in %, ``K_f``; empty for a run read with ``certified=False``); ``values``: the table metrics of
    :func:`lipcert.reporting.records.read_run_metrics` (clean, cra_36/72/108, K_f, K_hf, tightness in %).
    """

    run_dir: Path
    seed: int
    method: str
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    values: Mapping[str, float]
    collapse: Mapping[str, Any] | None = None
    retry: Mapping[str, Any] | None = None

    @property
    def metrics_path(self) -> Path:
        return RunFiles(self.run_dir).metrics

    @property
    def certify_path(self) -> Path:
        return RunFiles(self.run_dir).certify


def read_sweep_run(run_dir: str | os.PathLike[str], *, certified: bool = True) -> SweepRun:
    """Read one run directory: metrics.json with its ``params``; certify.json (and tightness.json when present)
    unless ``certified`` is False.

    The method is ``params.loss.name`` (cll, gloro, ce; shown as CLL, GloRo, CE). A missing metrics.json or
    certify.json raises FileNotFoundError naming it; a missing or malformed ``params`` raises ValueError.
    """
    root = Path(run_dir)
    record = read_metrics(root)
    path = RunFiles(root).metrics
    params = record.get("params")
    if not isinstance(params, Mapping):
        raise ValueError(f"{path}: expected a 'params' object (the run config), got {params!r}")
    loss = params.get("loss")
    if not isinstance(loss, Mapping) or not isinstance(loss.get("name"), str):
        raise ValueError(f"{path}: params.loss must be an object with a string 'name', got {loss!r}")
    name = loss["name"].lower()
    if name not in METHOD_LABELS:
        raise ValueError(f"{path}: unknown loss name {loss['name']!r}; expected one of {list(METHOD_LABELS)}")
    metrics, values = ({}, {})
    if certified:
        values = read_run_metrics(root).values
        metrics = read_certify(root)
    return SweepRun(root, record["seed"], METHOD_LABELS[name], params, metrics, values, collapse_of(record),
                    retry_of(record))


def read_sweep_runs(run_dirs: Iterable[str | os.PathLike[str]], *, certified: bool = True) -> list[SweepRun]:
    """All runs of one report; none, or a directory given twice, raises ValueError."""
    runs = [read_sweep_run(d, certified=certified) for d in run_dirs]
    if not runs:
        raise ValueError("no run directories given; expected at least one")
    directories = [r.run_dir for r in runs]
    if len(set(directories)) != len(directories):
        raise ValueError(f"a run directory is given twice in {[str(d) for d in directories]}")
    return runs


def metric_of(run: SweepRun, key: str) -> float:
    """A certified number of the run (``clean``, ``cra_<eps:.6g>``, ``K_f``); ValueError naming certify.json when
    the certification stage did not record it (e.g. a radius it was not asked for)."""
    if key not in run.metrics:
        available = sorted(k for k in run.metrics if k.startswith("cra_") or k in ("clean", "K_f"))
        raise ValueError(f"{run.certify_path}: has no key {key!r} (recorded: {available})")
    return finite_number(run.metrics[key], f"{run.certify_path}: {key!r}")


def run_param(run: SweepRun, dotted: str) -> float:
    """The number at the dotted path ``dotted`` of the run config (:func:`lipcert.run_record.param_value`)."""
    return param_value(run.params, dotted, str(run.metrics_path))


def training_eps(run: SweepRun) -> float:
    """The run's training margin ε (``params.loss.eps``): a constant's value, a schedule's end value."""
    return training_eps_of(run.params, str(run.metrics_path))


def point_key(value: float) -> float:
    """A float rounded to 12 significant digits, so that equal config values group together."""
    return float(f"{value:.12g}")


def close(a: float, b: float) -> bool:
    """Whether two sweep coordinates (ε, p) are the same point (relative 1e-6, absolute 1e-9)."""
    return math.isclose(a, b, rel_tol=MATCH_REL_TOL, abs_tol=MATCH_ABS_TOL)


def group_runs(runs: Sequence[SweepRun], key: Callable[[SweepRun], Hashable], what: str) -> dict[Any, list[SweepRun]]:
    """Runs grouped by ``key`` (insertion order), each group sorted by seed; a seed twice raises."""
    groups: dict[Any, list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    for group_key, members in groups.items():
        seen: dict[int, Path] = {}
        for run in members:
            if run.seed in seen:
                raise ValueError(f"seed {run.seed} appears twice at {what} {group_key}: "
                                 f"{str(seen[run.seed])!r} and {str(run.run_dir)!r}")
            seen[run.seed] = run.run_dir
        members.sort(key=lambda r: r.seed)
    return groups


def uniform(runs: Sequence[SweepRun], get: Callable[[SweepRun], Any], what: str) -> Any:
    """The one value of ``get`` over the runs; ValueError listing the runs when they differ."""
    values: dict[Any, list[str]] = {}
    for run in runs:
        values.setdefault(get(run), []).append(str(run.run_dir))
    if len(values) > 1:
        raise ValueError(f"runs differ in {what} ({values}); a sweep varies one setting only")
    return next(iter(values))


def model_of(run: SweepRun) -> str:
    return str(run.params.get("model", ""))


def only_methods(runs: Sequence[SweepRun], allowed: Sequence[str], command: str) -> None:
    for run in runs:
        if run.method not in allowed:
            raise ValueError(f"{run.metrics_path}: method {run.method!r} does not belong in {command} "
                             f"(expected {list(allowed)})")


def seeds_text(runs: Sequence[SweepRun]) -> str:
    return ",".join(str(r.seed) for r in runs)


def optional_summary(runs: Sequence[SweepRun], name: str) -> SeedSummary:
    """Mean / std / n of a table metric over the runs that recorded it."""
    return summarise([r.values[name] for r in runs if name in r.values])


def use_log_x(values: Iterable[float]) -> bool:
    """Log x-axis when every value is > 0 and they span more than two decades (max / min > 100)."""
    array = np.asarray(list(values), dtype=np.float64)
    return bool(array.size > 0 and np.all(array > 0) and array.max() / array.min() > 100.0)
