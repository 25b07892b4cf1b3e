"""Planning helpers the Snakefile calls (issue 13, item 3, first step): names derived from the params files, not
kept by hand in the workflow.

* :func:`wildcard_patterns`: the regexes of the ``dataset``, ``model`` and ``method`` wildcards: every dataset
  the data config knows, every architecture of ``params/architectures.yaml`` and every experiment of the params
  files.  A new method's params block is then enough for the workflow to accept its runs.
* :func:`check_table_rows`: every paper-table row names a dataset with a params file and one of its experiments
  (the error names the table and the row).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = ["check_table_rows", "experiments_by_dataset", "wildcard_patterns"]

# params files that hold no experiments
_NOT_EXPERIMENT_FILES = ("architectures", "workflow")


def experiments_by_dataset(params_dir: str | Path = "params") -> dict[str, list[str]]:
    """``{dataset: [experiment, ...]}`` from ``params/<dataset>.yaml`` (sorted)."""
    out = {}
    for path in sorted(Path(params_dir).glob("*.yaml")):
        if path.stem in _NOT_EXPERIMENT_FILES:
            continue
        data = yaml.safe_load(path.read_text()) or {}
        out[path.stem] = sorted((data.get("experiments") or {}).keys())
    return out


def _alternation(names) -> str:
    # longest first, so that a name that is a prefix of another never wins a partial match
    return "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))


def wildcard_patterns(params_dir: str | Path = "params") -> dict[str, str]:
    """Regexes for the ``dataset``, ``model`` and ``method`` wildcards (see the module docstring)."""
    from .run_config import DATASET_NAMES

    params_dir = Path(params_dir)
    architectures = yaml.safe_load((params_dir / "architectures.yaml").read_text()) or {}
    methods = [m for names in experiments_by_dataset(params_dir).values() for m in names]
    return {"dataset": _alternation(DATASET_NAMES), "model": _alternation(architectures),
            "method": _alternation(methods)}


def check_table_rows(paper_tables: Mapping, params_dir: str | Path = "params") -> None:
    """Raise ValueError naming the table and row whose ``data`` has no params file or whose ``loss`` is not one of
    its experiments."""
    experiments = experiments_by_dataset(params_dir)
    for table, spec in paper_tables.items():
        for i, row in enumerate(spec.get("rows", [])):
            data, loss = row.get("data"), row.get("loss")
            if data not in experiments:
                raise ValueError(f"paper_tables.{table}.rows[{i}]: data {data!r} has no params/{data}.yaml "
                                 f"(have: {sorted(experiments)})")
            if loss not in experiments[data]:
                raise ValueError(f"paper_tables.{table}.rows[{i}]: loss {loss!r} is not an experiment of "
                                 f"params/{data}.yaml (have: {experiments[data]})")
