"""Numbers quoted from papers: the CSVs of params/paper_tables and their index ``sources.yaml`` (issue 13, item 5).

``sources.yaml`` is the one file that says, for every quoted-number CSV and every quoted sentence shown beside our
results, which paper it comes from (``citation``), which table or figure (``table``), in which ``units`` and whether
the quoted result used data beyond the benchmark's training set (``extra_data``). The readers here check the index
against the directory (every CSV listed, every listed CSV present, every field set) and read the paper CSVs of
Tables 1, 2, D5-D8 and Fig. 5. This module reads files only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

__all__ = ["PAPER_TABLES_DIR", "PER_SEED_SUMMARY_ROWS", "SOURCE_FIELDS", "PaperSource", "numeric_column",
           "paper_quote", "paper_source", "read_csv_strings", "read_fig5_paper", "read_grid_paper",
           "read_paper_seeds", "read_paper_table", "read_sources"]

PAPER_TABLES_DIR = Path(__file__).resolve().parents[3] / "params" / "paper_tables"
"""Where the quoted numbers live (the repository's params/paper_tables)."""

SOURCES_FILE = "sources.yaml"

SOURCE_FIELDS = ("paper", "table", "units", "extra_data")
"""Fields every entry of sources.yaml must set (quotes also ``text``)."""

PER_SEED_SUMMARY_ROWS = ("avg", "std")
"""Rows of Tables D6-D8 besides the seed numbers: the printed mean and sample std."""


@dataclass(frozen=True)
class PaperSource:
    """Where quoted numbers come from: citation, table/figure, units, extra data; ``text`` for a quoted sentence."""

    key: str
    citation: str
    table: str
    units: str
    extra_data: bool
    text: str = ""


def _entry(raw, key: str, where: str, papers: Mapping[str, str], needs_text: bool) -> PaperSource:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: entry {key!r} must be a mapping with {list(SOURCE_FIELDS)}, got {raw!r}")
    fields = [*SOURCE_FIELDS, "text"] if needs_text else list(SOURCE_FIELDS)
    missing = [f for f in fields if f not in raw]
    if missing:
        raise ValueError(f"{where}: entry {key!r} is missing {missing}")
    if raw["paper"] not in papers:
        raise ValueError(f"{where}: entry {key!r} names paper {raw['paper']!r}, not one of {sorted(papers)}")
    if not isinstance(raw["extra_data"], bool):
        raise ValueError(f"{where}: entry {key!r}: extra_data must be true or false, got {raw['extra_data']!r}")
    for name in ("table", "units", *(("text",) if needs_text else ())):
        if not isinstance(raw[name], str) or not raw[name].strip():
            raise ValueError(f"{where}: entry {key!r}: {name} must be a non-empty string, got {raw[name]!r}")
    return PaperSource(key, papers[raw["paper"]], raw["table"], raw["units"], raw["extra_data"],
                       raw.get("text", "") if needs_text else "")


def read_sources(directory: str | os.PathLike[str] = PAPER_TABLES_DIR) -> dict[str, PaperSource]:
    """Read and check ``<directory>/sources.yaml``: ``{CSV file name or quote key: PaperSource}``.

    The file has ``papers`` (key -> citation), ``tables`` (one entry per CSV of the directory) and ``quotes``
    (sentences with numbers, each with ``text``). A CSV of the directory not listed, a listed CSV that does not
    exist, an unknown paper or a missing field raises ValueError naming the file and the key.
    """
    folder = Path(directory)
    path = folder / SOURCES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist (the index of the quoted paper numbers)")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping) or not all(isinstance(data.get(k), Mapping) for k in ("papers", "tables", "quotes")):
        raise ValueError(f"{path}: expected mappings 'papers', 'tables' and 'quotes'")
    papers = data["papers"]
    bad = [k for k, v in papers.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{path}: papers {bad} need a citation string")
    on_disk = {p.name for p in folder.glob("*.csv")}
    unlisted = sorted(on_disk - set(data["tables"]))
    if unlisted:
        raise ValueError(f"{path}: CSV files {unlisted} are not listed under 'tables'")
    absent = sorted(set(data["tables"]) - on_disk)
    if absent:
        raise ValueError(f"{path}: 'tables' lists {absent}, which do not exist in {str(folder)!r}")
    sources = {name: _entry(raw, name, str(path), papers, False) for name, raw in data["tables"].items()}
    for key, raw in data["quotes"].items():
        if key in sources:
            raise ValueError(f"{path}: quote key {key!r} is also a table file name")
        sources[key] = _entry(raw, key, str(path), papers, True)
    return sources


def paper_source(csv_path: str | os.PathLike[str]) -> PaperSource:
    """The source entry of a paper CSV, from the ``sources.yaml`` next to it (ValueError naming an unlisted file)."""
    path = Path(csv_path)
    sources = read_sources(path.parent)
    if path.name not in sources:
        raise ValueError(f"{path}: not listed in {str(path.parent / SOURCES_FILE)!r}")
    return sources[path.name]


def paper_quote(key: str, directory: str | os.PathLike[str] = PAPER_TABLES_DIR) -> PaperSource:
    """A quoted sentence of ``sources.yaml`` (``quotes``) by key; an unknown key raises KeyError naming it."""
    sources = read_sources(directory)
    if key not in sources or not sources[key].text:
        known = sorted(k for k, s in sources.items() if s.text)
        raise KeyError(f"{str(Path(directory) / SOURCES_FILE)!r} has no quote {key!r} (quotes: {known})")
    return sources[key]


# ----------------------------------------------------------------------------------------------------
# the paper CSVs


def read_csv_strings(path: str | os.PathLike[str]) -> pd.DataFrame:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"paper table not found: {str(source)!r}")
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def numeric_column(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    text = frame[column].str.strip()
    numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce")
    bad = text[(text != "") & numbers.isna()]
    if not bad.empty:
        raise ValueError(f"{source}: column {column!r} has non-numeric values {sorted(set(bad))!r}")
    return numbers.astype(np.float64)


def _require_columns(frame: pd.DataFrame, required: Sequence[str], path) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(required)}")


def read_paper_table(path: str | os.PathLike[str], key_columns: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Read a paper table CSV (params/paper_tables/table1.csv or table2.csv: CLL Tables 1 and 2).

    Returns the key columns as strings (empty variant = "") and the metric columns as floats (NaN where the paper
    prints "-" or nothing). A missing column or a key that appears twice raises ValueError.
    """
    frame = read_csv_strings(path)
    _require_columns(frame, [*key_columns, *metrics], path)
    out = pd.DataFrame({c: frame[c].str.strip() for c in key_columns})
    for metric in metrics:
        out[metric] = numeric_column(frame, metric, str(path))
    duplicated = out.duplicated(subset=list(key_columns), keep=False)
    if duplicated.any():
        keys = sorted({tuple(r) for r in out.loc[duplicated, list(key_columns)].itertuples(index=False)})
        raise ValueError(f"{path}: rows with the same key {keys}")
    return out


def read_paper_seeds(path: str | os.PathLike[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Read a per-seed paper table (Tables D6-D8) in the long format (model, variant, metric, seed, value)."""
    frame = read_csv_strings(path)
    required = ["model", "variant", "metric", "seed", "value"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the long format {required}")
    out = pd.DataFrame({c: frame[c].str.strip() for c in ("model", "variant", "metric", "seed")})
    out["value"] = numeric_column(frame, "value", str(path))
    unknown = sorted(set(out["metric"]) - set(metrics))
    if unknown:
        raise ValueError(f"{path}: unknown metrics {unknown}; expected a subset of {list(metrics)}")
    bad_seeds = sorted({s for s in out["seed"] if s not in PER_SEED_SUMMARY_ROWS and not s.isdigit()})
    if bad_seeds:
        raise ValueError(f"{path}: seed column must hold seed numbers, 'avg' or 'std', got {bad_seeds}")
    if out.duplicated(subset=["model", "variant", "metric", "seed"]).any():
        raise ValueError(f"{path}: a (model, variant, metric, seed) appears twice")
    return out


def read_fig5_paper(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The table inside Fig. 5: GloRo and CLL CRA per ε and the printed relative gain."""
    frame = read_csv_strings(path)
    required = ["eps", "gloro_cra", "cll_cra", "printed_rel_gain_pct"]
    _require_columns(frame, required, path)
    return pd.DataFrame({c: numeric_column(frame, c, str(path)) for c in required})


def read_grid_paper(path: str | os.PathLike[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Table D5: the printed p × ε_train grid with the ``metrics`` columns."""
    frame = read_csv_strings(path)
    required = ["p", "eps_train", *metrics]
    _require_columns(frame, required, path)
    out = pd.DataFrame({c: numeric_column(frame, c, str(path)) for c in required})
    if out[["p", "eps_train"]].isna().any().any():
        raise ValueError(f"{path}: every row needs p and eps_train")
    return out
