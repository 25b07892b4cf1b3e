"""Finished run directories for the reporting tests, written the way the pipeline writes them.

``metrics.json`` through :func:`lipcert.run_record.metrics_record` (training's layout) and ``certify.json`` in the
layout of ``python -m lipcert certify`` (fractions, ``global_lipschitz``). The certified numbers are the ones the
test passes; training's copies of the certified metrics are deliberately different (CRA + :data:`TRAINING_CRA_SHIFT`
points, K(f) x :data:`TRAINING_K_F_FACTOR`, clean + :data:`TRAINING_CLEAN_SHIFT`, within the agreement tolerance),
so a table that took them from metrics.json instead of certify.json fails its test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lipcert.run_record import CLEAN_KEY, K_F_KEY, metrics_record

TRAINING_CRA_SHIFT = 7.0
TRAINING_K_F_FACTOR = 3.0
TRAINING_CLEAN_SHIFT = 0.25


def certify_record(values: Mapping[str, float], n_samples: int = 10000) -> dict:
    """certify.json for certified ``values`` in metrics.json's key space (``clean`` and ``cra_<eps>`` in %, K_f)."""
    return {
        "n_samples": n_samples,
        "clean_accuracy": values[CLEAN_KEY] / 100.0,
        "certified_accuracy": {key[len("cra_"):]: v / 100.0 for key, v in values.items() if key.startswith("cra_")},
        "global_lipschitz": values.get(K_F_KEY, 1.0),
        "radius_quantiles": {}, "radius_histogram_counts": [], "radius_histogram_edges": [],
        "k_body": 1.0, "converge_iterations": 10, "converge_tol": 1e-6, "converged": True, "data": "test data",
    }


def training_metrics(values: Mapping[str, float]) -> dict:
    """What training records for a run whose certification gives ``values`` (see the module docstring)."""
    metrics = {"epoch": 10, "iteration": 100}
    for key, value in values.items():
        if key.startswith("cra_"):
            value = value + TRAINING_CRA_SHIFT
        elif key == K_F_KEY:
            value = value * TRAINING_K_F_FACTOR
        elif key == CLEAN_KEY:
            value = value + TRAINING_CLEAN_SHIFT
        metrics[key] = value
    return metrics


def write_run(run_dir: Path, seed: int, values: Mapping[str, float], *, params: Mapping | None = None,
              extra: Mapping | None = None, tightness: float | None = None, history: list | None = None,
              certified: bool = True) -> str:
    """Write a finished run: metrics.json, certify.json (unless ``certified`` is False), tightness.json (a
    fraction) and history.json when given. ``values``: the certified numbers plus K_hf and any training-only keys."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = metrics_record(training_metrics(values), params or {"lr": 1e-3}, seed, 1.0, extra,
                            versions={"python": "3"}, hostname="test", timestamp_utc="2026-01-01T00:00:00Z")
    (run_dir / "metrics.json").write_text(json.dumps(record))
    if certified:
        (run_dir / "certify.json").write_text(json.dumps(certify_record(values)))
    if tightness is not None:
        (run_dir / "tightness.json").write_text(
            json.dumps({"tightness": tightness, "lower_bound": 1.0, "global_lipschitz": 1.0 / tightness}))
    if history is not None:
        (run_dir / "history.json").write_text(json.dumps(history))
    return str(run_dir)
