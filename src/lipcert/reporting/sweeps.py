"""Sweep reports of the CLL paper: Fig. 5 (ε sweep and slack sweep), Table D5 (ε × p grid), Fig. D1
(CRA over epochs) and Fig. D4 (λ and margin-offset sweeps).

This module only reads result files. A run directory holds ``metrics.json`` ({"metrics": {...},
"params": run config, "seed": int}), optionally ``tightness.json`` (supplement C, eq. (20), a
fraction) and, for :func:`curves`, ``history.json`` (one dict per epoch). Runs that share a sweep
point are averaged over seeds (mean and sample std, n - 1, as in :mod:`lipcert.reporting.tables`).

p conventions: the run config stores eq. (5)'s p; the paper prints 2p (Fig. 5, Table D5, Table B4;
see params/paper_tables/README.md). Tables show both. Every output states the scale the runs were
built at and, at any scale but ``paper``, the caveat that the numbers are not comparable with the
paper as they are. Each command writes STEM.csv and STEM.md, figures also STEM.png and STEM.pdf, all
atomically.

Public API: :func:`read_sweep_run`, :func:`run_param`, :func:`training_eps`, :func:`cra_key`,
:func:`use_log_x`, :func:`eps_sweep`, :func:`slack_sweep`, :func:`grid_table`, :func:`curves`,
:func:`param_sweep`, :func:`main` (``python -m lipcert.reporting.sweeps <command> ...``).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io_utils import atomic_write_bytes, atomic_write_text, read_json
from ..run_record import PAPER_RADII, cra_key, p_from_printed, printed_p
from .records import (
    SCALES,
    STATUS_NOT_REPRODUCED,
    STATUS_OURS_ONLY,
    STATUS_REPRODUCED,
    SeedSummary,
    check_scale,
    finite_number,
    numeric_column,
    read_csv_strings,
    read_run_metrics,
    scale_caveat,
    summarise,
)
from .render import format_value, markdown_table, ours_paper_cell, scale_sentence

__all__ = [
    "DEFAULT_EPS",
    "GRID_METRICS",
    "SweepRun",
    "cra_key",
    "curves",
    "eps_sweep",
    "grid_table",
    "main",
    "param_sweep",
    "read_sweep_run",
    "run_param",
    "slack_sweep",
    "training_eps",
    "use_log_x",
]

DEFAULT_EPS = PAPER_RADII[0]
"""Certification radius of the slack, λ and margin-offset sweeps and of Fig. D1 (paper section 4)."""

GRID_METRICS = ("clean", "cra_36", "cra_108", "K_hf")
"""Metric columns of Table D5 (accuracies in %, K(h∘f))."""

METHOD_LABELS = {"cll": "CLL", "gloro": "GloRo", "ce": "CE"}
"""Display names of the loss names stored in a run config (``params.loss.name``)."""

_EPS_SWEEP_METHODS = ("GloRo", "CLL")
_MATCH_REL_TOL = 1e-6
_MATCH_ABS_TOL = 1e-9
_PAPER_PARAM_NOTES = {
    "loss.lam": "Paper (supplement D.1, Fig. D4a, 4C3F, λ from 1e-15 to 1e-1; no printed numbers): CRA is "
                "insensitive for 1e-10 ≤ λ ≤ 1e-4 and drops for λ ≥ 1e-3 or ≤ 1e-11; K(f) rises as λ falls.",
    "loss.delta": "Paper (supplement D.1, Fig. D4b, 11 values of δ in [0.1, 0.3]; canonical δ = ε): CRA rises "
                  "with δ while clean accuracy falls; δ = 0.2 gives CRA 62.0 % and clean 76.2 %.",
}
_COLORS = {"CLL": "tab:blue", "GloRo": "tab:orange", "CE": "tab:gray"}


# ----------------------------------------------------------------------------------------------------
# reading runs


@dataclass(frozen=True)
class SweepRun:
    """One finished run: its directory, seed, method label, run config and metrics.

    ``metrics`` is the raw ``metrics`` object of metrics.json (CRA keys ``cra_<eps:.6g>``);
    ``values`` are the table metrics of :func:`lipcert.reporting.tables.read_run_metrics` (clean,
    cra_36/72/108, K_f, K_hf and tightness in %, where recorded).
    """

    run_dir: Path
    seed: int
    method: str
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    values: Mapping[str, float]

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"


def read_sweep_run(run_dir: str | os.PathLike[str]) -> SweepRun:
    """Read one run directory (metrics.json with its ``params``, tightness.json when present).

    The method is ``params.loss.name`` (cll, gloro, ce; shown as CLL, GloRo, CE). A missing
    metrics.json raises FileNotFoundError naming it; a missing or malformed ``params`` raises ValueError.
    """
    table = read_run_metrics(run_dir)
    path = table.run_dir / "metrics.json"
    record = read_json(path)
    params = record.get("params")
    if not isinstance(params, Mapping):
        raise ValueError(f"{path}: expected a 'params' object (the run config), got {params!r}")
    loss = params.get("loss")
    if not isinstance(loss, Mapping) or not isinstance(loss.get("name"), str):
        raise ValueError(f"{path}: params.loss must be an object with a string 'name', got {loss!r}")
    name = loss["name"].lower()
    if name not in METHOD_LABELS:
        raise ValueError(f"{path}: unknown loss name {loss['name']!r}; expected one of {list(METHOD_LABELS)}")
    return SweepRun(table.run_dir, table.seed, METHOD_LABELS[name], params, record["metrics"], table.values)


def _read_all(run_dirs: Iterable[str | os.PathLike[str]]) -> list[SweepRun]:
    runs = [read_sweep_run(d) for d in run_dirs]
    if not runs:
        raise ValueError("no run directories given; expected at least one")
    directories = [r.run_dir for r in runs]
    if len(set(directories)) != len(directories):
        raise ValueError(f"a run directory is given twice in {[str(d) for d in directories]}")
    return runs


def _metric(run: SweepRun, key: str) -> float:
    if key not in run.metrics:
        available = sorted(k for k in run.metrics if k.startswith("cra_") or k in ("clean", "K_f", "K_hf"))
        raise ValueError(f"{run.metrics_path}: metrics has no key {key!r} (recorded: {available})")
    return finite_number(run.metrics[key], f"{run.metrics_path}: metrics[{key!r}]")


def run_param(run: SweepRun, dotted: str) -> float:
    """The number at the dotted path ``dotted`` of the run config (e.g. ``loss.lam``, ``loss.delta``).

    A schedule (a mapping with ``kind`` and ``start``) must be constant and gives its value; a
    missing key, a non-constant schedule or a non-number raises ValueError naming the file.
    """
    value: Any = run.params
    walked: list[str] = []
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            where = ".".join(walked) or "params"
            keys = sorted(value) if isinstance(value, Mapping) else f"a {type(value).__name__}"
            raise ValueError(f"{run.metrics_path}: params has no {'.'.join([*walked, part])!r} "
                             f"(looking up {dotted!r}; {where} holds {keys})")
        value = value[part]
        walked.append(part)
    if isinstance(value, Mapping) and "kind" in value and "start" in value:
        if value["kind"] != "constant":
            raise ValueError(f"{run.metrics_path}: params.{dotted} is a {value['kind']!r} schedule; "
                             "this sweep needs a constant value")
        value = value["start"]
    if value is None:
        raise ValueError(f"{run.metrics_path}: params.{dotted} is null; this sweep needs a number")
    return finite_number(value, f"{run.metrics_path}: params.{dotted}")


def training_eps(run: SweepRun) -> float:
    """The run's training margin ε (``params.loss.eps``): a constant's value, a schedule's end value."""
    loss = run.params["loss"]
    spec = loss.get("eps")
    if isinstance(spec, Mapping):
        value = spec.get("end") if spec.get("end") is not None else spec.get("start")
    else:
        value = spec
    if value is None:
        raise ValueError(f"{run.metrics_path}: params.loss.eps is not set; this sweep needs the training ε")
    return finite_number(value, f"{run.metrics_path}: params.loss.eps")


def _key(value: float) -> float:
    """A float rounded to 12 significant digits, so that equal config values group together."""
    return float(f"{value:.12g}")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_MATCH_REL_TOL, abs_tol=_MATCH_ABS_TOL)


def _group(runs: Sequence[SweepRun], key: Callable[[SweepRun], Hashable], what: str) -> dict[Any, list[SweepRun]]:
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


def _uniform(runs: Sequence[SweepRun], get: Callable[[SweepRun], Any], what: str) -> Any:
    values: dict[Any, list[str]] = {}
    for run in runs:
        values.setdefault(get(run), []).append(str(run.run_dir))
    if len(values) > 1:
        raise ValueError(f"runs differ in {what} ({values}); a sweep varies one setting only")
    return next(iter(values))


def _model(run: SweepRun) -> str:
    return str(run.params.get("model", ""))


def _only_methods(runs: Sequence[SweepRun], allowed: Sequence[str], command: str) -> None:
    for run in runs:
        if run.method not in allowed:
            raise ValueError(f"{run.metrics_path}: method {run.method!r} does not belong in {command} "
                             f"(expected {list(allowed)})")


def _seeds(runs: Sequence[SweepRun]) -> str:
    return ",".join(str(r.seed) for r in runs)


def _optional(runs: Sequence[SweepRun], name: str) -> SeedSummary:
    return summarise([r.values[name] for r in runs if name in r.values])


def use_log_x(values: Iterable[float]) -> bool:
    """Log x-axis when every value is > 0 and they span more than two decades (max / min > 100)."""
    array = np.asarray(list(values), dtype=np.float64)
    return bool(array.size > 0 and np.all(array > 0) and array.max() / array.min() > 100.0)


# ----------------------------------------------------------------------------------------------------
# output


def _ours_cell(summary: SeedSummary, decimals: int = 1) -> str:
    mean, std, n = summary
    if n == 0:
        return "–"
    if n == 1 or math.isnan(std):
        return format_value(mean, decimals)
    return f"{format_value(mean, decimals)} ± {format_value(std, decimals)}"


def _markdown(title: str, scale: str, notes: Sequence[str], header: Sequence[str], rows: Sequence[Sequence[str]],
              right_aligned: Sequence[bool]) -> str:
    parts = [f"## {title}", scale_sentence(scale), *notes, markdown_table(header, rows, right_aligned)]
    return "\n\n".join(parts) + "\n"


def _write_table_files(out_stem: str | os.PathLike[str], frame: pd.DataFrame, markdown: str) -> None:
    stem = Path(out_stem)
    atomic_write_text(stem.with_name(stem.name + ".csv"), frame.to_csv(index=False, float_format="%.7g"))
    atomic_write_text(stem.with_name(stem.name + ".md"), markdown)


def _new_figure(ncols: int, width: float = 4.0, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save_figure(fig, out_stem: str | os.PathLike[str], scale: str, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if scale_caveat(scale) else 0, 1, 1))
    caveat = scale_caveat(scale)
    fig.text(0.5, 0.005, caveat or "scale 'paper'", ha="center", va="bottom", fontsize=8,
             color="firebrick" if caveat else "black")
    stem = Path(out_stem)
    for fmt in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150)
        atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buffer.getvalue())


def _errorbar(ax, xs: Sequence[float], summaries: Sequence[SeedSummary], **style: Any) -> None:
    points = [(x, s.mean, 0.0 if math.isnan(s.std) else s.std) for x, s in zip(xs, summaries) if s.n > 0]
    if points:
        x, y, err = zip(*points)
        ax.errorbar(x, y, yerr=err, capsize=2, **style)


# ----------------------------------------------------------------------------------------------------
# Fig. 5 (middle/right): CLL vs GloRo over ε, trained and certified at the same ε


def _read_fig5_paper(path: str | os.PathLike[str]) -> pd.DataFrame:
    frame = read_csv_strings(path)
    required = ["eps", "gloro_cra", "cll_cra", "printed_rel_gain_pct"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {required}")
    return pd.DataFrame({c: numeric_column(frame, c, str(path)) for c in required})


def _rel_gain(cll: float, gloro: float) -> float:
    """Relative CRA gain of CLL over GloRo in % (the table inside Fig. 5): (CLL - GloRo) / GloRo."""
    if math.isnan(cll) or math.isnan(gloro) or gloro == 0.0:
        return math.nan
    return 100.0 * (cll - gloro) / gloro


def eps_sweep(run_dirs: Iterable[str | os.PathLike[str]], paper_csv: str | os.PathLike[str], scale: str,
              out_stem: str | os.PathLike[str], *, title: str | None = None) -> pd.DataFrame:
    """CLL vs GloRo trained and certified at the same ε (CLL Fig. 5, table and the two right panels).

    Each run (loss cll or gloro, one model) is placed at its training ε (a schedule's end value) and
    its CRA is read at ``cra_<ε:.6g>`` (ε_train = ε_test, sec. 4.3); a run without that key raises
    ValueError naming its metrics.json. One row per ε (the paper's ε first, matched with a float
    tolerance, then ε only we ran) with, per method (``gloro_``/``cll_``): CRA mean / std / n / seeds,
    K(f) and tightness (%) means and stds; the paper's CRAs, its printed relative gain and the gain
    recomputed from its CRAs; ``rel_gain_ours_pct`` = (CLL - GloRo) / GloRo in %. Writes .csv, .md and a
    3-panel figure (CRA, K(f) on a log axis, tightness over ε) as .png and .pdf. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = _read_all(run_dirs)
    _only_methods(runs, _EPS_SWEEP_METHODS, "the ε sweep (Fig. 5)")
    model = _uniform(runs, _model, "model")
    paper = _read_fig5_paper(paper_csv)
    groups = _group(runs, lambda r: (r.method, _key(training_eps(r))), "(method, training ε)")
    cra = {id(r): _metric(r, cra_key(training_eps(r))) for r in runs}

    eps_values = [float(e) for e in paper["eps"]]
    for _, eps in groups:
        if not any(_close(eps, e) for e in eps_values):
            eps_values.append(eps)
    records = []
    for eps in eps_values:
        paper_row = next((row for row in paper.itertuples(index=False) if _close(row.eps, eps)), None)
        record: dict[str, Any] = {"eps": eps, "model": model, "scale": scale}
        ours = {}
        for method in _EPS_SWEEP_METHODS:
            prefix = method.lower()
            members = next((g for (m, e), g in groups.items() if m == method and _close(e, eps)), [])
            summary = summarise([cra[id(r)] for r in members])
            ours[method] = summary.mean
            paper_cra = float(getattr(paper_row, f"{prefix}_cra")) if paper_row is not None else math.nan
            record.update({f"{prefix}_cra_ours": summary.mean, f"{prefix}_cra_std": summary.std,
                           f"{prefix}_n": summary.n, f"{prefix}_seeds": _seeds(members),
                           f"{prefix}_cra_paper": paper_cra, f"{prefix}_cra_diff": summary.mean - paper_cra})
            for name in ("K_f", "tightness"):
                extra = _optional(members, name)
                record[f"{prefix}_{name}"], record[f"{prefix}_{name}_std"] = extra.mean, extra.std
        record["rel_gain_ours_pct"] = _rel_gain(ours["CLL"], ours["GloRo"])
        record["rel_gain_paper_printed_pct"] = (float(paper_row.printed_rel_gain_pct) if paper_row is not None
                                                else math.nan)
        record["rel_gain_paper_computed_pct"] = (_rel_gain(float(paper_row.cll_cra), float(paper_row.gloro_cra))
                                                 if paper_row is not None else math.nan)
        records.append(record)
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. 5: CLL vs GloRo over ε on {model or 'the model'} (ε_train = ε_test)"
    header = ["ε", "GloRo CRA", "CLL CRA", "Rel. gain % (printed)", "GloRo K(f)", "CLL K(f)",
              "GloRo tightness", "CLL tightness"]
    rows = []
    for rec in records:
        cells = [f"{rec['eps']:.6g}"]
        for prefix in ("gloro", "cll"):
            cells.append(ours_paper_cell(rec[f"{prefix}_cra_ours"], rec[f"{prefix}_cra_std"], rec[f"{prefix}_n"],
                                          rec[f"{prefix}_cra_paper"], " ± "))
        gain = rec["rel_gain_ours_pct"]
        cells.append(f"{format_value(gain, 2)} ({format_value(rec['rel_gain_paper_printed_pct'])})")
        for name in ("K_f", "tightness"):
            for prefix in ("gloro", "cll"):
                cells.append(_ours_cell(SeedSummary(rec[f"{prefix}_{name}"], rec[f"{prefix}_{name}_std"],
                                                    rec[f"{prefix}_n"] if not math.isnan(rec[f"{prefix}_{name}"])
                                                    else 0)))
        rows.append(cells)
    notes = ["Cells: ours as mean ± sample std over seeds (paper value); – = no value. CRA certified at the "
             "training ε, accuracies and tightness in %. Relative gain = (CLL - GloRo) / GloRo; the paper "
             "prints no K(f) or tightness numbers for this figure."]
    _write_table_files(out_stem, frame, _markdown(title, scale, notes, header, rows, [True] * len(header)))

    fig, axes = _new_figure(3)
    for method in _EPS_SWEEP_METHODS:
        prefix, color = method.lower(), _COLORS[method]
        xs = frame["eps"].tolist()
        for ax, name, label in ((axes[0], "cra", "CRA (%)"), (axes[1], "K_f", "K(f)"),
                                (axes[2], "tightness", "tightness (%)")):
            mean_col = f"{prefix}_cra_ours" if name == "cra" else f"{prefix}_{name}"
            std_col = f"{prefix}_cra_std" if name == "cra" else f"{prefix}_{name}_std"
            summaries = [SeedSummary(m, s, 0 if math.isnan(m) else 1) for m, s in zip(frame[mean_col], frame[std_col])]
            _errorbar(ax, xs, summaries, marker="o", color=color, label=f"{method} (ours)")
            ax.set(xlabel="ε (train = test)", ylabel=label)
        axes[0].plot(frame["eps"], frame[f"{prefix}_cra_paper"], linestyle="--", marker="x", color=color,
                     label=f"{method} (paper)")
    axes[1].set_yscale("log")
    for ax in axes[1:]:
        ax.set_xlim(axes[0].get_xlim())
    axes[0].legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# Fig. 5 (left): slack sweep


def slack_sweep(run_dirs: Iterable[str | os.PathLike[str]], scale: str, out_stem: str | os.PathLike[str], *,
                eps: float = DEFAULT_EPS, title: str | None = None) -> pd.DataFrame:
    """Clean accuracy and CRA at ``eps`` over the slack p of CLL runs (CLL Fig. 5, left; sec. 4.3).

    Runs must be CLL with a constant p and share model and training ε. One row per p, sorted, with
    ``p_eq5`` (eq. (5)'s p, as configured) and ``p_printed`` = 2 p (the paper's axis), clean and CRA
    mean / std over seeds, n, seeds and K(h∘f) where recorded. Writes .csv, .md, and .png / .pdf with
    both curves over the printed p on a log x-axis. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = _read_all(run_dirs)
    _only_methods(runs, ("CLL",), "the slack sweep (Fig. 5 left)")
    model = _uniform(runs, _model, "model")
    eps_train = _uniform(runs, lambda r: _key(training_eps(r)), "training ε")
    groups = _group(runs, lambda r: _key(run_param(r, "loss.p")), "p")
    records = []
    for p in sorted(groups):
        members = groups[p]
        clean = summarise([_metric(r, "clean") for r in members])
        cra = summarise([_metric(r, cra_key(eps)) for r in members])
        k_hf = _optional(members, "K_hf")
        records.append({"p_eq5": p, "p_printed": printed_p(p), "eps_train": eps_train, "eps_cert": eps, "model": model,
                        "n": len(members), "seeds": _seeds(members), "clean": clean.mean, "clean_std": clean.std,
                        "cra": cra.mean, "cra_std": cra.std, "K_hf": k_hf.mean, "K_hf_std": k_hf.std,
                        "scale": scale})
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. 5 (left): slack p on {model or 'the model'}, ε_train = {eps_train:.6g}"
    header = ["p printed (= 2p)", "p eq. (5)", "Clean", f"CRA {eps:.4g}", "K(h∘f)", "Seeds"]
    rows = [[f"{r['p_printed']:.6g}", f"{r['p_eq5']:.6g}",
             _ours_cell(SeedSummary(r["clean"], r["clean_std"], r["n"])),
             _ours_cell(SeedSummary(r["cra"], r["cra_std"], r["n"])),
             _ours_cell(SeedSummary(r["K_hf"], r["K_hf_std"], 0 if math.isnan(r["K_hf"]) else 2), 2), r["seeds"]]
            for r in records]
    notes = ["Cells: mean ± sample std over seeds, accuracies in %. Paper (Fig. 5 left, text, printed p in "
             "[0.01, 0.8]): clean falls from 80 % to 68 %, CRA peaks at 61.9 % at printed p = 0.4."]
    _write_table_files(out_stem, frame, _markdown(title, scale, notes, header, rows, [True] * 5 + [False]))

    fig, axes = _new_figure(1, width=4.6)
    ax = axes[0]
    xs = frame["p_printed"].tolist()
    _errorbar(ax, xs, [SeedSummary(m, s, n) for m, s, n in zip(frame["clean"], frame["clean_std"], frame["n"])],
              marker="o", color="tab:green", label="clean")
    _errorbar(ax, xs, [SeedSummary(m, s, n) for m, s, n in zip(frame["cra"], frame["cra_std"], frame["n"])],
              marker="s", color="tab:blue", label=f"CRA ε={eps:.4g}")
    ax.set(xscale="log", xlabel="p (printed = 2 × eq. (5) p)", ylabel="accuracy (%)")
    ax.legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# Table D5: ε × p grid


def _read_d5_paper(path: str | os.PathLike[str]) -> pd.DataFrame:
    frame = read_csv_strings(path)
    required = ["p", "eps_train", *GRID_METRICS]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {required}")
    out = pd.DataFrame({c: numeric_column(frame, c, str(path)) for c in required})
    if out[["p", "eps_train"]].isna().any().any():
        raise ValueError(f"{path}: every row needs p and eps_train")
    return out


def grid_table(run_dirs: Iterable[str | os.PathLike[str]], paper_csv: str | os.PathLike[str], scale: str,
               out_stem: str | os.PathLike[str], *, title: str | None = None) -> pd.DataFrame:
    """The ε_train × p grid of CLL runs next to the paper's Table D5 (supplement D.1, ε-p ablation).

    Runs (CLL, constant p) are grouped by (training ε, p); the printed p of Table D5 is 2 × eq. (5)'s p,
    and rows are matched on printed p and ε_train with a float tolerance. Every paper row is kept in
    the paper's order (ours empty when not run, status "paper value, not reproduced"); our grid points
    not in the paper are appended ("ours only"). Per metric of :data:`GRID_METRICS` the CSV has
    ``<m>_paper``, ``<m>_ours`` (mean over seeds), ``<m>_std``, ``<m>_n`` and ``<m>_diff`` (ours - paper).
    Writes .csv and .md. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = _read_all(run_dirs)
    _only_methods(runs, ("CLL",), "the ε × p grid (Table D5)")
    model = _uniform(runs, _model, "model")
    paper = _read_d5_paper(paper_csv)
    groups = _group(runs, lambda r: (_key(training_eps(r)), _key(run_param(r, "loss.p"))), "(ε_train, eq. (5) p)")

    points = [(float(row.eps_train), float(row.p), row) for row in paper.itertuples(index=False)]
    matched: set[tuple[float, float]] = set()
    ordered: list[tuple[float, float, Any, list[SweepRun]]] = []
    for eps, p_printed, row in points:
        members: list[SweepRun] = []
        for (g_eps, g_p), group in groups.items():
            if _close(g_eps, eps) and _close(printed_p(g_p), p_printed):
                members = group
                matched.add((g_eps, g_p))
        ordered.append((eps, p_printed, row, members))
    for (g_eps, g_p), group in sorted(groups.items()):
        if (g_eps, g_p) not in matched:
            ordered.append((g_eps, 2 * g_p, None, group))

    records = []
    for eps, p_printed, row, members in ordered:
        status = STATUS_NOT_REPRODUCED if not members else (STATUS_REPRODUCED if row is not None else STATUS_OURS_ONLY)
        record: dict[str, Any] = {"p_printed": p_printed, "p_eq5": p_from_printed(p_printed), "eps_train": eps,
                                  "model": model, "status": status, "seeds": _seeds(members), "scale": scale}
        for metric in GRID_METRICS:
            summary = _optional(members, metric)
            paper_value = float(getattr(row, metric)) if row is not None else math.nan
            record.update({f"{metric}_paper": paper_value, f"{metric}_ours": summary.mean,
                           f"{metric}_std": summary.std, f"{metric}_n": summary.n,
                           f"{metric}_diff": summary.mean - paper_value})
        records.append(record)
    frame = pd.DataFrame.from_records(records)

    title = title or f"Table D5: ε_train × p grid (CLL, {model or 'the model'})"
    header = ["p printed (= 2p)", "p eq. (5)", "ε_train", "Clean", "CRA 36/255", "CRA 108/255", "K(h∘f)", "Status"]
    rows = [[f"{r['p_printed']:.6g}", f"{r['p_eq5']:.6g}", f"{r['eps_train']:.6g}",
             *(ours_paper_cell(r[f"{m}_ours"], r[f"{m}_std"], r[f"{m}_n"], r[f"{m}_paper"], " ± ")
               for m in GRID_METRICS), r["status"]] for r in records]
    notes = ["Cells: ours as mean ± sample std over seeds (paper value); – = no value. Accuracies in %. "
             "The paper's grid is 8C2F on Tiny-ImageNet, seed 1; differences (ours - paper) are in the CSV."]
    _write_table_files(out_stem, frame, _markdown(title, scale, notes, header, rows, [True] * 7 + [False]))
    return frame


# ----------------------------------------------------------------------------------------------------
# Fig. D1: CRA over epochs


def _read_history(run: SweepRun, key: str) -> dict[int, dict[str, float]]:
    path = run.run_dir / "history.json"
    history = read_json(path)
    if not isinstance(history, list) or not history:
        raise ValueError(f"{path}: expected a non-empty list of per-epoch objects")
    for index, entry in enumerate(history):
        if not isinstance(entry, Mapping) or "epoch" not in entry:
            raise ValueError(f"{path}: entry {index} must be an object with an 'epoch', got {entry!r}")
    if not any(key in entry for entry in history):
        recorded = sorted({k for entry in history for k in entry if str(k).startswith("cra_")})
        raise ValueError(f"{path}: no epoch records {key!r} (recorded CRA keys: {recorded})")
    points: dict[int, dict[str, float]] = {}
    for index, entry in enumerate(history):
        epoch = entry["epoch"]
        if key not in entry:
            if "clean" in entry:
                raise ValueError(f"{path}: epoch {epoch} was evaluated ('clean' present) but has no key {key!r}")
            continue
        points[int(finite_number(epoch, f"{path}: entry {index} 'epoch'"))] = {
            "cra": finite_number(entry[key], f"{path}: epoch {epoch} {key!r}"),
            "clean": finite_number(entry["clean"], f"{path}: epoch {epoch} 'clean'") if "clean" in entry else math.nan,
        }
    return points


def curves(run_dirs: Iterable[str | os.PathLike[str]], scale: str, out_stem: str | os.PathLike[str], *,
           eps: float = DEFAULT_EPS, title: str | None = None) -> pd.DataFrame:
    """CRA at ``eps`` over training epochs, one line per method, mean over seeds (CLL Fig. D1).

    Reads each run's history.json (key ``cra_<eps:.6g>`` on evaluated epochs; an evaluated epoch
    without it raises ValueError naming the file). Per (method, epoch) the CSV has CRA and clean
    accuracy mean / std over the seeds that evaluated that epoch, and n. Writes .csv, .md, .png, .pdf.
    Returns the CSV's frame.
    """
    check_scale(scale)
    runs = _read_all(run_dirs)
    model = _uniform(runs, _model, "model")
    key = cra_key(eps)
    groups = _group(runs, lambda r: r.method, "method")
    records = []
    for method, members in groups.items():
        histories = [_read_history(r, key) for r in members]
        for epoch in sorted(set().union(*histories)):
            present = [h[epoch] for h in histories if epoch in h]
            cra = summarise([p["cra"] for p in present])
            clean = summarise([p["clean"] for p in present if not math.isnan(p["clean"])])
            records.append({"method": method, "epoch": epoch, "cra": cra.mean, "cra_std": cra.std, "n": cra.n,
                            "clean": clean.mean, "clean_std": clean.std, "seeds": _seeds(members),
                            "eps_cert": eps, "model": model, "scale": scale})
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. D1: CRA (ε = {eps:.4g}) over epochs on {model or 'the model'}"
    last = frame.groupby("method", sort=False).tail(1)
    best = frame.loc[frame.groupby("method", sort=False)["cra"].idxmax()]
    header = ["Method", "Seeds", "Epochs evaluated", "Final epoch", "Final CRA", "Best CRA (epoch)"]
    rows = []
    for (_, fin), (_, top) in zip(last.iterrows(), best.iterrows()):
        count = int((frame["method"] == fin["method"]).sum())
        rows.append([fin["method"], fin["seeds"], str(count), str(fin["epoch"]),
                     _ours_cell(SeedSummary(fin["cra"], fin["cra_std"], fin["n"])),
                     f"{format_value(top['cra'])} ({top['epoch']})"])
    notes = ["CRA in %, mean ± sample std over seeds; the per-epoch curve is in the CSV. The paper prints no "
             "numbers for Fig. D1 (its GloRo run used a fixed ε schedule)."]
    _write_table_files(out_stem, frame, _markdown(title, scale, notes, header, rows, [False, False, *[True] * 4]))

    fig, axes = _new_figure(1, width=5.0)
    ax = axes[0]
    for method in groups:
        sub = frame[frame["method"] == method]
        color = _COLORS.get(method)
        ax.plot(sub["epoch"], sub["cra"], color=color, label=method)
        std = sub["cra_std"].fillna(0.0)
        ax.fill_between(sub["epoch"], sub["cra"] - std, sub["cra"] + std, color=color, alpha=0.2, linewidth=0)
    ax.set(xlabel="epoch", ylabel=f"CRA ε={eps:.4g} (%)")
    ax.legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# Fig. D4: λ and margin-offset sweeps


def param_sweep(run_dirs: Iterable[str | os.PathLike[str]], param: str, scale: str, out_stem: str | os.PathLike[str],
                *, eps: float = DEFAULT_EPS, title: str | None = None) -> pd.DataFrame:
    """Clean accuracy, CRA at ``eps`` and K(f) over a run parameter (CLL Fig. D4: λ, margin offset δ).

    ``param`` is a dotted path into the run config (``loss.lam`` for Fig. D4a, ``loss.delta`` for the
    margin offset δ of supplement D.1). One row per (method, value), sorted by value, with mean / std
    over seeds, n and seeds. Writes .csv, .md and .png / .pdf (accuracies on the left axis, K(f) on a
    log right axis); the x-axis is logarithmic when :func:`use_log_x` holds. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = _read_all(run_dirs)
    model = _uniform(runs, _model, "model")
    groups = _group(runs, lambda r: (r.method, _key(run_param(r, param))), f"(method, {param})")
    records = []
    for method, value in sorted(groups, key=lambda k: (k[0], k[1])):
        members = groups[(method, value)]
        clean = summarise([_metric(r, "clean") for r in members])
        cra = summarise([_metric(r, cra_key(eps)) for r in members])
        k_f = _optional(members, "K_f")
        records.append({"method": method, "param": param, "value": value, "n": len(members),
                        "seeds": _seeds(members), "clean": clean.mean, "clean_std": clean.std, "cra": cra.mean,
                        "cra_std": cra.std, "K_f": k_f.mean, "K_f_std": k_f.std, "eps_cert": eps, "model": model,
                        "scale": scale})
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. D4: {param} sweep on {model or 'the model'}"
    header = ["Method", param, "Clean", f"CRA {eps:.4g}", "K(f)", "Seeds"]
    rows = [[r["method"], f"{r['value']:.6g}", _ours_cell(SeedSummary(r["clean"], r["clean_std"], r["n"])),
             _ours_cell(SeedSummary(r["cra"], r["cra_std"], r["n"])),
             _ours_cell(SeedSummary(r["K_f"], r["K_f_std"], 0 if math.isnan(r["K_f"]) else 2)), r["seeds"]]
            for r in records]
    notes = ["Cells: mean ± sample std over seeds, accuracies in %."]
    if param in _PAPER_PARAM_NOTES:
        notes.append(_PAPER_PARAM_NOTES[param])
    _write_table_files(out_stem, frame, _markdown(title, scale, notes, header, rows,
                                                  [False, True, True, True, True, False]))

    fig, axes = _new_figure(1, width=5.0)
    ax = axes[0]
    k_axis = ax.twinx() if frame["K_f"].notna().any() else None
    for method in dict.fromkeys(frame["method"]):
        sub = frame[frame["method"] == method]
        color = _COLORS.get(method)
        xs = sub["value"].tolist()
        _errorbar(ax, xs, [SeedSummary(m, s, n) for m, s, n in zip(sub["cra"], sub["cra_std"], sub["n"])],
                  marker="o", color=color, label=f"{method} CRA")
        _errorbar(ax, xs, [SeedSummary(m, s, n) for m, s, n in zip(sub["clean"], sub["clean_std"], sub["n"])],
                  marker="s", linestyle="--", color=color, label=f"{method} clean")
        if k_axis is not None:
            k_axis.plot(sub["value"], sub["K_f"], marker="^", linestyle=":", color=color, label=f"{method} K(f)")
    if use_log_x(frame["value"]):
        ax.set_xscale("log")
    ax.set(xlabel=param, ylabel="accuracy (%)")
    if k_axis is not None:
        k_axis.set(yscale="log", ylabel="K(f) (dotted)")
    ax.legend(fontsize=7)
    _save_figure(fig, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    """Command line ``python -m lipcert.reporting.sweeps <command> --runs DIR... --scale S --out STEM``.

    Commands: ``eps-sweep --paper CSV`` (Fig. 5 table/right), ``slack-sweep [--eps E]`` (Fig. 5 left),
    ``grid-table --paper CSV`` (Table D5), ``curves [--eps E]`` (Fig. D1), ``param-sweep --param
    DOTTED [--eps E]`` (Fig. D4). Every command takes ``--title``. Exit status 2 on bad input.
    """
    parser = argparse.ArgumentParser(prog="python -m lipcert.reporting.sweeps",
                                     description="CLL sweep reports: Fig. 5, Table D5, Fig. D1, Fig. D4.")
    commands = parser.add_subparsers(dest="command", required=True)
    specs = {
        "eps-sweep": ("Fig. 5: CLL vs GloRo trained and certified at the same ε", True, False, False),
        "slack-sweep": ("Fig. 5 left: clean and CRA over slack p", False, True, False),
        "grid-table": ("Table D5: ε_train × p grid next to the paper", True, False, False),
        "curves": ("Fig. D1: CRA over epochs per method (history.json)", False, True, False),
        "param-sweep": ("Fig. D4: clean, CRA, K(f) over a run parameter", False, True, True),
    }
    for name, (help_text, needs_paper, takes_eps, takes_param) in specs.items():
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--runs", nargs="+", required=True, help="run directories (each with metrics.json)")
        sub.add_argument("--scale", required=True, choices=SCALES)
        sub.add_argument("--out", required=True, help="output stem: STEM.csv, STEM.md (+ STEM.png, STEM.pdf)")
        sub.add_argument("--title", default=None)
        if needs_paper:
            sub.add_argument("--paper", required=True, help="paper CSV from params/paper_tables")
        if takes_eps:
            sub.add_argument("--eps", type=float, default=DEFAULT_EPS,
                             help=f"certification radius (default 36/255 = {DEFAULT_EPS:.6g})")
        if takes_param:
            sub.add_argument("--param", required=True, help="dotted path into the run config, e.g. loss.lam")
    args = parser.parse_args(argv)
    try:
        if args.command == "eps-sweep":
            frame = eps_sweep(args.runs, args.paper, args.scale, args.out, title=args.title)
        elif args.command == "slack-sweep":
            frame = slack_sweep(args.runs, args.scale, args.out, eps=args.eps, title=args.title)
        elif args.command == "grid-table":
            frame = grid_table(args.runs, args.paper, args.scale, args.out, title=args.title)
        elif args.command == "curves":
            frame = curves(args.runs, args.scale, args.out, eps=args.eps, title=args.title)
        else:
            frame = param_sweep(args.runs, args.param, args.scale, args.out, eps=args.eps, title=args.title)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}.* ({len(frame)} rows, scale {args.scale!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
