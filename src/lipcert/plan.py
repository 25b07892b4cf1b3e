"""The workflow's plan: which runs each target needs, what each run overrides, and the names the wildcards accept.

Every target of ``params/workflow.yaml`` (``targets:``) is a grid spec, and :func:`target_runs` is the one function
that expands it (the Snakefile calls it, like a sample sheet in the snakemake-workflows catalog):

* ``grids: {group: grid | [grid, ...]}``: named groups of run grids (Fig. 5 has ``eps`` and ``slack``);
* ``rows: [grid, ...]``: the rows of a paper table, each a one-configuration grid with the row's ``label`` (the
  keys of the paper CSV: dataset, method, model, variant);
* ``runs_of: <target>``: a view of another target's runs (the per-seed tables D6-D8).

A grid has ``data`` (a params file ``params/<data>.yaml``), ``model`` (an architecture of
``params/architectures.yaml``), ``method`` (experiments of the params file), and the axes ``eps`` (training eps;
0 or absent: the method has none), ``p`` (eq. (5) p) or ``p_printed`` (the paper's printed p, halved by
:func:`lipcert.run_record.p_from_printed`), ``variants`` (``{loss key: [values]}``: one-parameter sweeps) and
``seeds`` (default: the scale's seeds). Every axis takes a value or a list; runs are the product, in the order
method x eps x p x variant x seed.  A scale's ``substitute`` map replaces an architecture by another, or skips
its runs (null).

How a run's axes become ``--set`` overrides of its params file is derived from the experiment itself
(:func:`run_overrides`): eps sets ``loss.eps`` (``loss.eps.end`` when the experiment ramps eps with a schedule),
p sets ``loss.p``, a variant sets its loss key; the params file's ``certify_at_training_eps`` (append / replace /
off) says whether the training eps joins the certification radii.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


from .io_utils import read_yaml
from .run_config import DATA_ROOT_ENV, data_root
from .run_record import p_from_printed, path_number

__all__ = ["PlannedRun", "RUN_DIR", "check_data_root", "check_targets", "experiments_by_dataset", "run_overrides",
           "scale_overrides", "set_job_environment", "table_manifest", "target_kind", "target_outputs", "target_runs",
           "wildcard_patterns"]

RUN_DIR = "runs/{dataset}/{model}/{method}/eps{eps}_p{p}/{variant}/seed{seed}"
"""A run directory below a scale's results directory (the Snakefile's ``RUN`` wildcard pattern)."""

VARIANT = re.compile(r"([a-z_]+)([0-9][0-9.e+-]*)")
"""A one-parameter variant's directory name: the loss key, then the value (``lam1e-05``, ``output_scale2``)."""

# params files that hold no experiments
_NOT_EXPERIMENT_FILES = ("architectures", "build", "workflow")
_EVAL_MODES = ("append", "replace", "off")


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan; numbers are spelled as in its path (:func:`lipcert.run_record.path_number`)."""

    dataset: str
    model: str
    method: str
    eps: str
    p: str
    seed: int
    variant: str = "base"

    def path(self, root: str, name: str | None = None) -> str:
        """The run directory below ``root`` (a scale's results directory), or its file ``name``."""
        run_dir = f"{root}/" + RUN_DIR.format(**vars(self))
        return run_dir if name is None else f"{run_dir}/{name}"


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _variants(spec: Mapping | None) -> list[str]:
    if not spec:
        return ["base"]
    return [f"{key}{path_number(v)}" for key, values in spec.items() for v in _as_list(values)]


def _grid_runs(grid: Mapping, seeds: Sequence[int], substitute: Mapping) -> list[PlannedRun]:
    model = substitute.get(grid["model"], grid["model"])
    if model is None:  # the scale does not train this architecture
        return []
    if "p" in grid and "p_printed" in grid:
        raise ValueError(f"grid {dict(grid)}: give p (eq. (5)) or p_printed, not both")
    if "p_printed" in grid:
        ps = [path_number(p_from_printed(p)) for p in _as_list(grid["p_printed"])]
    else:
        ps = [path_number(p) for p in _as_list(grid.get("p", "default"))]
    axes = itertools.product(_as_list(grid["method"]), [path_number(e) for e in _as_list(grid.get("eps", 0))], ps,
                             _variants(grid.get("variants")), _as_list(grid.get("seeds", list(seeds))))
    return [PlannedRun(grid["data"], model, m, e, p, int(s), v) for m, e, p, v, s in axes]


def _grids(spec: Mapping, group: str | None) -> list[Mapping]:
    if "rows" in spec:
        return list(spec["rows"])
    groups = spec.get("grids", {})
    if group is not None:
        if group not in groups:
            raise ValueError(f"no run group {group!r}; the target has {sorted(groups)}")
        return _as_list(groups[group])
    return [g for name in groups for g in _as_list(groups[name])]


def target_runs(targets: Mapping, target: str, scale: Mapping, group: str | None = None) -> list[PlannedRun]:
    """The runs of ``target`` (of one ``group`` of its grids, or all) at a scale (``params/workflow.yaml``
    ``scales.<scale>``: ``seeds``, optional ``substitute``), in grid order."""
    if target not in targets:
        raise ValueError(f"unknown target {target!r}; params/workflow.yaml has {sorted(targets)}")
    spec = targets[target]
    if "runs_of" in spec:
        return target_runs(targets, spec["runs_of"], scale, group)
    substitute = scale.get("substitute") or {}
    return [run for grid in _grids(spec, group) for run in _grid_runs(grid, scale["seeds"], substitute)]


def _figure_files(stem: str) -> tuple[str, ...]:
    """A sweep figure's files: its data (CSV, Markdown), the figure (PNG, PDF) and its rendered notebook."""
    return (*(f"figures/{stem}{ext}" for ext in (".csv", ".md", ".png", ".pdf")), f"notebooks/{stem}.html")


_KIND_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "two_moons": ("figures/{t}.png", "figures/{t}.pdf", "tables/{t}.csv", "tables/{t}.md", "tables/{t}_metrics.json",
                  "notebooks/{t}.html"),
    "paper_table": ("tables/{t}.csv", "tables/{t}.md", "tables/{t}.tex", "notebooks/{t}.html"),
}
_SWEEP_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "fig5": _figure_files("fig5_eps_sweep") + _figure_files("fig5_slack_sweep"),
    "figD1": _figure_files("figD1"),
    "figD4": sum((_figure_files(f"figD4_{s}") for s in ("lambda", "delta", "temperature")), ()),
    "tableD5": ("tables/tableD5.csv", "tables/tableD5.md", "notebooks/tableD5.html"),
}
"""The outputs of the targets drawn by their own rules (the sweeps of ``workflow/rules/figures.smk`` and Table D5)."""


def target_kind(targets: Mapping, target: str) -> str:
    """How a target is reported: ``two_moons`` (a panel figure and a run summary: the spec has ``columns``),
    ``paper_table`` (rows of a paper table, or a per-seed view of one: ``rows`` / ``runs_of``), or ``sweep`` (its own
    figure rule: Fig. 5, Fig. D1, Fig. D4, Table D5)."""
    if target not in targets:
        raise ValueError(f"unknown target {target!r}; params/workflow.yaml has {sorted(targets)}")
    spec = targets[target]
    if "columns" in spec:
        return "two_moons"
    if "rows" in spec or "runs_of" in spec:
        return "paper_table"
    if target in _SWEEP_OUTPUTS:
        return "sweep"
    raise ValueError(f"target {target!r} has neither `columns`, `rows` nor `runs_of`, and no figure rule of its own "
                     f"(lipcert.plan._SWEEP_OUTPUTS has {sorted(_SWEEP_OUTPUTS)})")


def target_outputs(targets: Mapping, target: str) -> list[str]:
    """The files a target builds, relative to a scale's results directory (the Snakefile's target rules and the
    ``outs`` of its DVC stage)."""
    kind = target_kind(targets, target)
    files = _SWEEP_OUTPUTS[target] if kind == "sweep" else _KIND_OUTPUTS[kind]
    return [f.format(t=target) for f in files]


def table_manifest(targets: Mapping, table: str, scale: Mapping, root: str) -> list[dict]:
    """The rows of a paper table with their labels, run directories and planned run count (None: not trained at
    this scale), as ``lipcert.reporting.tables`` reads them."""
    out = []
    for i, row in enumerate(targets[table]["rows"]):
        runs = target_runs({table: {"rows": [row]}}, table, scale)
        out.append({**{k: row["label"][k] for k in ("dataset", "method", "model", "variant")},
                    "runs": [run.path(root) for run in runs], "planned_runs": len(runs) or None})
    return out


def set_job_environment(environ: dict, interpreter: str, mlflow_uri: str = "") -> None:
    """The environment every job inherits (the Snakefile applies it to ``os.environ`` when it is parsed, locally
    and inside each cluster job).

    The rules call plain ``python``. Under ``--sdm conda`` the rule's environment is activated in front of PATH and
    its python wins; otherwise the directory of ``interpreter`` (the python running Snakemake: the project's venv,
    even when Snakemake was started as ``.venv/bin/snakemake`` without activating it) goes first on PATH.
    ``mlflow_uri`` (config key, params/build.yaml) becomes ``MLFLOW_TRACKING_URI`` unless that is already set.
    """
    environ["PATH"] = os.pathsep.join([os.path.dirname(interpreter), environ.get("PATH", "")])
    if mlflow_uri and not environ.get("MLFLOW_TRACKING_URI"):
        environ["MLFLOW_TRACKING_URI"] = mlflow_uri


def check_data_root(params_dir: str | Path, dataset: str, overrides: Sequence[str] = ()) -> None:
    """Fail while the DAG is built, not hours into a run, when a params family reads image data that has no folder:
    ``data.root`` unset and ``$LIPCERT_DATA_ROOT`` unset (ValueError naming both), or the folder they name missing
    (FileNotFoundError naming it and where it came from). Generated data (two-moons) needs nothing."""
    from .params import load_params_file, run_config_from_params

    path = Path(params_dir) / f"{dataset}.yaml"
    experiment = next(iter(load_params_file(path)["experiments"]))
    data = run_config_from_params(path, experiment, list(overrides)).data
    if data.name == "two_moons":
        return
    try:
        root = data_root(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if not root.is_dir():
        source = "data.root" if data.root is not None else f"${DATA_ROOT_ENV}/{data.name}"
        raise FileNotFoundError(f"{path}: the {data.name} data folder {root} ({source}) does not exist; put the "
                                f"dataset there (README, 'Image data') or point {DATA_ROOT_ENV} / data.root at it")


def scale_overrides(scale: Mapping, dataset: str) -> list[str]:
    """A scale's ``key=value`` overrides of a params family (``scales.<scale>.<dataset>``; none when absent)."""
    return [f"{k}={v}" for k, v in (scale.get(dataset) or {}).items()]


def _params(params_dir: str | Path, dataset: str) -> dict:
    path = Path(params_dir) / f"{dataset}.yaml"
    if not path.is_file():
        raise ValueError(f"dataset {dataset!r} has no params file {path}")
    return read_yaml(path) or {}


def _experiment_loss(params: Mapping, dataset: str, method: str) -> dict:
    experiments = params.get("experiments") or {}
    if method not in experiments:
        raise ValueError(f"method {method!r} is not an experiment of params/{dataset}.yaml "
                         f"(have: {sorted(experiments)})")
    loss = dict((params.get("defaults") or {}).get("loss") or {})
    loss.update((experiments[method] or {}).get("loss") or {})
    return loss


def run_overrides(params_dir: str | Path, dataset: str, model: str, method: str, eps: str, p: str,
                  variant: str = "base") -> list[str]:
    """The ``key=value`` overrides that turn experiment ``method`` of ``params/<dataset>.yaml`` into one planned
    run (see the module docstring); errors name the run's axis that the experiment cannot take."""
    params = _params(params_dir, dataset)
    loss = _experiment_loss(params, dataset, method)
    mode = params.get("certify_at_training_eps", "append")
    if mode not in _EVAL_MODES:
        raise ValueError(f"params/{dataset}.yaml: certify_at_training_eps must be one of {list(_EVAL_MODES)}, "
                         f"got {mode!r}")
    where = f"run {dataset}/{model}/{method}/eps{eps}_p{p}/{variant}"
    sets = [f"model={model}"]
    if float(eps) != 0:
        if "eps" in loss:
            sets.append(f"loss.eps.end={eps}" if isinstance(loss["eps"], Mapping) else f"loss.eps={eps}")
        if mode != "off":
            sets.append(f"eval_eps{'+' if mode == 'append' else ''}=[{eps}]")
    elif "eps" in loss:
        raise ValueError(f"{where}: method {method!r} trains with an eps (loss.eps); give the grid's eps")
    if p != "default":
        if "p" not in loss:
            raise ValueError(f"{where}: method {method!r} has no loss.p in params/{dataset}.yaml")
        sets.append(f"loss.p={p}")
    if variant != "base":
        match = VARIANT.fullmatch(variant)
        if match is None:
            raise ValueError(f"{where}: variant {variant!r} is not 'base' or <loss key><number>")
        sets.append(f"loss.{match[1]}={match[2]}")
    return sets


def experiments_by_dataset(params_dir: str | Path = "params") -> dict[str, list[str]]:
    """``{dataset: [experiment, ...]}`` from ``params/<dataset>.yaml`` (sorted)."""
    out = {}
    for path in sorted(Path(params_dir).glob("*.yaml")):
        if path.stem in _NOT_EXPERIMENT_FILES:
            continue
        data = read_yaml(path) or {}
        out[path.stem] = sorted((data.get("experiments") or {}).keys())
    return out


def _alternation(names) -> str:
    # longest first, so that a name that is a prefix of another never wins a partial match
    return "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))


def wildcard_patterns(params_dir: str | Path = "params") -> dict[str, str]:
    """Regexes for the ``dataset``, ``model``, ``method`` and ``variant`` wildcards: every dataset the data config
    knows, every architecture of ``params/architectures.yaml``, every experiment of the params files."""
    from .run_config import DATASET_NAMES

    params_dir = Path(params_dir)
    architectures = read_yaml(params_dir / "architectures.yaml") or {}
    methods = [m for names in experiments_by_dataset(params_dir).values() for m in names]
    return {"dataset": _alternation(DATASET_NAMES), "model": _alternation(architectures),
            "method": _alternation(methods), "variant": f"base|{VARIANT.pattern}"}


def check_targets(targets: Mapping, scales: Mapping, params_dir: str | Path = "params") -> None:
    """Expand every target at every scale and check each run's overrides (:func:`run_overrides`), so a bad grid
    fails when the workflow is parsed, naming the target: an unknown data/method, an eps or p the method cannot
    take, a ``runs_of`` that names no table."""
    for name, spec in targets.items():
        if "runs_of" in spec and "rows" not in targets.get(spec["runs_of"], {}):
            raise ValueError(f"targets.{name}.runs_of: {spec['runs_of']!r} is not a paper table with rows")
        seen = set()
        for scale in scales.values():
            for run in target_runs(targets, name, scale):
                key = (run.dataset, run.model, run.method, run.eps, run.p, run.variant)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    run_overrides(params_dir, *key)
                except ValueError as err:
                    raise ValueError(f"targets.{name}: {err}") from None
