"""Aggregation for the paper tables: CLL Tables 1 and 2 (one row per (dataset, method, model, variant)) and the
per-seed Tables D6-D8, as data frames that :mod:`lipcert.reporting.tables` renders.

Our value of a metric is the mean over seeds with the sample standard deviation (n - 1), as in Tables D6-D8; the
runs are read by :func:`lipcert.reporting.records.read_runs` (certified numbers from certify.json). Every row carries
its collapse / retry flags (:class:`lipcert.reporting.records.SeedFlags`) as CSV columns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import paper_tables
from .records import (KEY_COLUMNS, METRICS, RADIUS_METRICS, TIMING_METRICS, ManifestRow, SeedFlags, check_metrics,
                      read_runs, row_status, summarise_runs)

__all__ = ["D_TABLE_DATASETS", "comparison_frame", "dataset_for_seed_table", "per_seed_frame", "read_paper_seeds"]

D_TABLE_DATASETS = {"tabled6": "CIFAR-10", "tabled7": "CIFAR-100", "tabled8": "Tiny-ImageNet"}
"""The dataset of each per-seed table, by the start of its file name."""


def read_paper_seeds(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Tables D6-D8 in the long format (model, variant, metric, seed, value) with metrics from :data:`METRICS`."""
    return paper_tables.read_paper_seeds(path, METRICS)


def dataset_for_seed_table(path: str | os.PathLike[str]) -> str | None:
    stem = Path(path).stem.lower()
    return next((dataset for prefix, dataset in D_TABLE_DATASETS.items() if stem.startswith(prefix)), None)


def comparison_frame(rows: Sequence[ManifestRow], paper: pd.DataFrame, scale: str, data_label: str | None,
                     metrics: Sequence[str] = METRICS) -> tuple[pd.DataFrame, list[SeedFlags]]:
    """Tables 1 / 2 (or seed 004's table 2 with its ``metrics``): every paper row in the paper's order, then manifest
    rows not in the paper ("ours only"); with the flags of each row's runs (one per frame row). With
    :data:`~lipcert.reporting.records.RADIUS_METRICS` each row is read at the paper's ``radius`` of that row (a
    ``radius`` column; an "ours only" row has none and no such values)."""
    metrics = check_metrics(metrics)
    at_radius = any(m in RADIUS_METRICS for m in metrics)
    timing = any(m in TIMING_METRICS for m in metrics)
    by_key = {row.key: row for row in rows}
    paper_keys = [tuple(k) for k in paper[list(KEY_COLUMNS)].itertuples(index=False)]
    paper_values = {key: paper.iloc[i] for i, key in enumerate(paper_keys)}
    ordered = paper_keys + [row.key for row in rows if row.key not in paper_values]
    records, flags = [], []
    for key in ordered:
        row = by_key.get(key)
        in_paper = key in paper_values
        radius = float(paper_values[key]["radius"]) if at_radius and in_paper else None
        runs = read_runs(row.runs, radius, timing) if row is not None else []
        summary = summarise_runs(runs, metrics)
        record: dict[str, Any] = dict(zip(KEY_COLUMNS, key))
        if at_radius:
            record["radius"] = math.nan if radius is None else radius
        record["status"] = row_status(in_paper, row.planned_runs if row is not None else None, len(runs))
        record["scale"] = scale
        record["data_label"] = data_label or ""
        record["seeds"] = ",".join(str(r.seed) for r in runs)
        flags.append(SeedFlags.of(runs))
        record.update(flags[-1].columns())
        for metric in metrics:
            paper_value = float(paper_values[key][metric]) if in_paper else math.nan
            mean, std, n = summary[metric]
            record[f"{metric}_paper"] = paper_value
            record[f"{metric}_ours"] = mean
            record[f"{metric}_std"] = std
            record[f"{metric}_n"] = n
            record[f"{metric}_diff"] = mean - paper_value if n > 0 and not math.isnan(paper_value) else math.nan
        records.append(record)
    return pd.DataFrame.from_records(records), flags


def per_seed_frame(rows: Sequence[ManifestRow], paper: pd.DataFrame, scale: str, data_label: str | None,
                   metrics: Sequence[str]) -> tuple[pd.DataFrame, list[SeedFlags]]:
    """Tables D6-D8: per (model, variant) one row per seed position k, then ``avg``, ``std`` and ``diff``.

    Returns the frame and one :class:`SeedFlags` per frame row: a seed row has those of its own run, the avg / std /
    diff rows those of all the block's runs.
    """
    blocks = list(dict.fromkeys(zip(paper["model"], paper["variant"])))
    by_block = {(r.model, r.variant): r for r in rows}
    blocks += [key for key in by_block if key not in blocks]
    records, flags = [], []
    for model, variant in blocks:
        sub = paper[(paper["model"] == model) & (paper["variant"] == variant)]
        row = by_block.get((model, variant))
        runs = read_runs(row.runs) if row is not None else []
        status = row_status(not sub.empty, row.planned_runs if row is not None else None, len(runs))
        paper_seeds = sorted({int(s) for s in sub["seed"] if s.isdigit()})
        lookup = {(m, s): v for m, s, v in zip(sub["metric"], sub["seed"], sub["value"])}
        base = {"model": model, "variant": variant, "status": status, "scale": scale, "data_label": data_label or ""}
        for position in range(max(len(paper_seeds), len(runs))):
            paper_seed = paper_seeds[position] if position < len(paper_seeds) else None
            run = runs[position] if position < len(runs) else None
            flags.append(SeedFlags.of([run] if run is not None else []))
            record = {**base, "row": str(position + 1),
                      "seed_paper": paper_seed, "seed_ours": run.seed if run is not None else None,
                      **flags[-1].columns()}
            for metric in metrics:
                record[f"{metric}_paper"] = lookup.get((metric, str(paper_seed)), math.nan)
                record[f"{metric}_ours"] = run.values.get(metric, math.nan) if run is not None else math.nan
            records.append(record)
        summary = summarise_runs(runs, metrics)
        block_flags = SeedFlags.of(runs)
        for label in ("avg", "std", "diff"):
            flags.append(block_flags)
            record = {**base, "row": label, "seed_paper": None, "seed_ours": None, **block_flags.columns()}
            for metric in metrics:
                paper_avg = lookup.get((metric, "avg"), math.nan)
                if label == "avg":
                    record[f"{metric}_paper"], record[f"{metric}_ours"] = paper_avg, summary[metric].mean
                elif label == "std":
                    record[f"{metric}_paper"] = lookup.get((metric, "std"), math.nan)
                    record[f"{metric}_ours"] = summary[metric].std
                else:
                    record[f"{metric}_paper"] = math.nan
                    record[f"{metric}_ours"] = summary[metric].mean - paper_avg
            records.append(record)
    frame = pd.DataFrame.from_records(records)
    for column in ("seed_paper", "seed_ours"):
        frame[column] = frame[column].astype("Int64")
    return frame, flags
