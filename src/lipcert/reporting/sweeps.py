"""Sweep reports of the CLL paper: Fig. 5 (ε sweep and slack sweep), Table D5 (ε × p grid), Fig. D1
(CRA over epochs) and Fig. D4 (λ and margin-offset sweeps).

This module aggregates and renders; runs are read by :mod:`lipcert.reporting.sweep_records` (clean accuracy, CRA
and K(f) from each run's certify.json, the run config and flags from metrics.json, tightness from tightness.json;
Fig. D1 reads history.json) and figures are drawn by :mod:`lipcert.reporting.sweep_figures`. Runs that share a
sweep point are averaged over seeds (mean and sample std, n - 1); a point that averages a collapsed run is marked
† with a footnote, a retried seed is noted.

p conventions: the run config stores eq. (5)'s p; the paper prints 2p (Fig. 5, Table D5, Table B4;
see params/paper_tables/README.md). Tables show both. Every output states the scale the runs were
built at and, at any scale but ``paper``, the caveat that the numbers are not comparable with the
paper as they are; paper numbers carry their source (params/paper_tables/sources.yaml). Each command writes
STEM.csv and STEM.md, figures also STEM.png and STEM.pdf, all atomically.

Public API: :func:`read_sweep_run`, :func:`run_param`, :func:`training_eps`, :func:`cra_key`,
:func:`use_log_x`, :func:`eps_sweep`, :func:`slack_sweep`, :func:`grid_table`, :func:`curves`,
:func:`param_sweep`, :func:`main` (``python -m lipcert.reporting.sweeps <command> ...``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ..run_record import PAPER_RADII, RunFiles, cra_key, printed_p, read_history
from .paper_tables import paper_quote, paper_source, read_fig5_paper
from .records import SCALES, SeedFlags, SeedSummary, check_scale, finite_number, summarise
from ..display import is_accuracy
from .eps_p_grid import GRID_METRICS, grid_table
from .render import (flag_mark, format_value, markdown_report, mean_std_cell, ours_paper_cell, quote_sentence,
                     row_notes, source_sentence, write_outputs)
from .sweep_figures import draw_curves, draw_eps_sweep, draw_param_sweep, draw_slack_sweep
from .sweep_records import (SweepRun, close, group_runs, metric_of, model_of, only_methods, optional_summary,
                            point_key, read_sweep_run, read_sweep_runs, run_param, seeds_text, training_eps,
                            uniform, use_log_x)

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

EPS_SWEEP_METHODS = ("GloRo", "CLL")

PARAM_QUOTES = {"loss.lam": "figD4_lam", "loss.delta": "figD4_delta"}
"""The sources.yaml quote shown beside a Fig. D4 parameter sweep."""


# ----------------------------------------------------------------------------------------------------
# Fig. 5 (middle/right): CLL vs GloRo over ε, trained and certified at the same ε


def _rel_gain(cll: float, gloro: float) -> float:
    """Relative CRA gain of CLL over GloRo in % (the table inside Fig. 5): (CLL - GloRo) / GloRo."""
    if math.isnan(cll) or math.isnan(gloro) or gloro == 0.0:
        return math.nan
    return 100.0 * (cll - gloro) / gloro


def eps_sweep(run_dirs: Iterable[str | os.PathLike[str]], paper_csv: str | os.PathLike[str], scale: str,
              out_stem: str | os.PathLike[str], *, title: str | None = None) -> pd.DataFrame:
    """CLL vs GloRo trained and certified at the same ε (CLL Fig. 5, table and the two right panels).

    Each run (loss cll or gloro, one model) is placed at its training ε (a schedule's end value) and
    its CRA is read from its certify.json at ``cra_<ε:.6g>`` (ε_train = ε_test, sec. 4.3); a run whose
    certification lacks that radius raises ValueError naming its certify.json. One row per ε (the paper's ε first,
    matched with a float tolerance, then ε only we ran) with, per method (``gloro_``/``cll_``): CRA mean / std / n /
    seeds / collapsed seeds, K(f) and tightness (%) means and stds; the paper's CRAs, its printed relative gain and
    the gain recomputed from its CRAs; ``rel_gain_ours_pct`` = (CLL - GloRo) / GloRo in %. Writes .csv, .md and a
    3-panel figure (CRA, K(f) on a log axis, tightness over ε) as .png and .pdf. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = read_sweep_runs(run_dirs)
    only_methods(runs, EPS_SWEEP_METHODS, "the ε sweep (Fig. 5)")
    model = uniform(runs, model_of, "model")
    paper = read_fig5_paper(paper_csv)
    groups = group_runs(runs, lambda r: (r.method, point_key(training_eps(r))), "(method, training ε)")
    cra = {id(r): metric_of(r, cra_key(training_eps(r))) for r in runs}

    eps_values = [float(e) for e in paper["eps"]]
    for _, eps in groups:
        if not any(close(eps, e) for e in eps_values):
            eps_values.append(eps)
    records, flags, labels = [], [], []
    for eps in eps_values:
        paper_row = next((row for row in paper.itertuples(index=False) if close(row.eps, eps)), None)
        record: dict[str, Any] = {"eps": eps, "model": model, "scale": scale}
        ours, row_flags = {}, {}
        for method in EPS_SWEEP_METHODS:
            prefix = method.lower()
            members = next((g for (m, e), g in groups.items() if m == method and close(e, eps)), [])
            summary = summarise([cra[id(r)] for r in members])
            ours[method] = summary.mean
            row_flags[method] = SeedFlags.of(members)
            paper_cra = float(getattr(paper_row, f"{prefix}_cra")) if paper_row is not None else math.nan
            record.update({f"{prefix}_cra_ours": summary.mean, f"{prefix}_cra_std": summary.std,
                           f"{prefix}_n": summary.n, f"{prefix}_seeds": seeds_text(members),
                           f"{prefix}_collapsed_seeds": row_flags[method].columns()["collapsed_seeds"],
                           f"{prefix}_cra_paper": paper_cra, f"{prefix}_cra_diff": summary.mean - paper_cra})
            for name in ("K_f", "tightness"):
                extra = optional_summary(members, name)
                record[f"{prefix}_{name}"], record[f"{prefix}_{name}_std"] = extra.mean, extra.std
            flags.append(row_flags[method])
            labels.append(f"{method} at ε = {eps:.6g}")
        record["rel_gain_ours_pct"] = _rel_gain(ours["CLL"], ours["GloRo"])
        record["rel_gain_paper_printed_pct"] = (float(paper_row.printed_rel_gain_pct) if paper_row is not None
                                                else math.nan)
        record["rel_gain_paper_computed_pct"] = (_rel_gain(float(paper_row.cll_cra), float(paper_row.gloro_cra))
                                                 if paper_row is not None else math.nan)
        records.append((record, row_flags))
    frame = pd.DataFrame.from_records([record for record, _ in records])

    title = title or f"Fig. 5: CLL vs GloRo over ε on {model or 'the model'} (ε_train = ε_test)"
    header = ["ε", "GloRo CRA", "CLL CRA", "Rel. gain % (printed)", "GloRo K(f)", "CLL K(f)",
              "GloRo tightness", "CLL tightness"]
    rows = []
    for rec, row_flags in records:
        cells = [f"{rec['eps']:.6g}"]
        for prefix, method in (("gloro", "GloRo"), ("cll", "CLL")):
            cells.append(ours_paper_cell(rec[f"{prefix}_cra_ours"], rec[f"{prefix}_cra_std"], rec[f"{prefix}_n"],
                                         rec[f"{prefix}_cra_paper"], " ± ", flag_mark(row_flags[method]),
                                         accuracy=True))
        cells.append(f"{format_value(rec['rel_gain_ours_pct'], 2)} ({format_value(rec['rel_gain_paper_printed_pct'])})")
        for name in ("K_f", "tightness"):
            for prefix in ("gloro", "cll"):
                n = rec[f"{prefix}_n"] if not math.isnan(rec[f"{prefix}_{name}"]) else 0
                cells.append(mean_std_cell(SeedSummary(rec[f"{prefix}_{name}"], rec[f"{prefix}_{name}_std"], n),
                                           accuracy=is_accuracy(name)))
        rows.append(cells)
    notes = ["Cells: ours as mean ± sample std over seeds (paper value); – = no value. CRA certified at the "
             "training ε (certify.json), accuracies and tightness in %. Relative gain = (CLL - GloRo) / GloRo; the "
             "paper prints no K(f) or tightness numbers for this figure.",
             source_sentence(paper_source(paper_csv)), *row_notes(labels, flags)]
    write_outputs(out_stem, frame, markdown_report(title, scale, notes, header, rows, [True] * len(header)))
    draw_eps_sweep(frame, EPS_SWEEP_METHODS, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# Fig. 5 (left): slack sweep


def slack_sweep(run_dirs: Iterable[str | os.PathLike[str]], scale: str, out_stem: str | os.PathLike[str], *,
                eps: float = DEFAULT_EPS, title: str | None = None) -> pd.DataFrame:
    """Clean accuracy and CRA at ``eps`` over the slack p of CLL runs (CLL Fig. 5, left; sec. 4.3).

    Runs must be CLL with a constant p and share model and training ε. One row per p, sorted, with
    ``p_eq5`` (eq. (5)'s p, as configured) and ``p_printed`` = 2 p (the paper's axis), clean and CRA
    mean / std over seeds (certify.json), n, seeds, collapsed seeds and K(h∘f) where recorded. Writes .csv, .md,
    and .png / .pdf with both curves over the printed p on a log x-axis. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = read_sweep_runs(run_dirs)
    only_methods(runs, ("CLL",), "the slack sweep (Fig. 5 left)")
    model = uniform(runs, model_of, "model")
    eps_train = uniform(runs, lambda r: point_key(training_eps(r)), "training ε")
    groups = group_runs(runs, lambda r: point_key(run_param(r, "loss.p")), "p")
    records, flags = [], []
    for p in sorted(groups):
        members = groups[p]
        clean = summarise([metric_of(r, "clean") for r in members])
        cra = summarise([metric_of(r, cra_key(eps)) for r in members])
        k_hf = optional_summary(members, "K_hf")
        flags.append(SeedFlags.of(members))
        records.append({"p_eq5": p, "p_printed": printed_p(p), "eps_train": eps_train, "eps_cert": eps, "model": model,
                        "n": len(members), "seeds": seeds_text(members), "clean": clean.mean, "clean_std": clean.std,
                        "cra": cra.mean, "cra_std": cra.std, "K_hf": k_hf.mean, "K_hf_std": k_hf.std,
                        "scale": scale, **flags[-1].columns()})
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. 5 (left): slack p on {model or 'the model'}, ε_train = {eps_train:.6g}"
    header = ["p printed (= 2p)", "p eq. (5)", "Clean", f"CRA {eps:.4g}", "K(h∘f)", "Seeds"]
    rows = [[f"{r['p_printed']:.6g}", f"{r['p_eq5']:.6g}",
             mean_std_cell(SeedSummary(r["clean"], r["clean_std"], r["n"]), accuracy=True) + flag_mark(f),
             mean_std_cell(SeedSummary(r["cra"], r["cra_std"], r["n"]), accuracy=True) + flag_mark(f),
             mean_std_cell(SeedSummary(r["K_hf"], r["K_hf_std"], 0 if math.isnan(r["K_hf"]) else 2), 2), r["seeds"]]
            for r, f in zip(records, flags)]
    notes = ["Cells: mean ± sample std over seeds, accuracies in % (certify.json).", quote_sentence(paper_quote("fig5_slack")),
             *row_notes([f"printed p = {r['p_printed']:.6g}" for r in records], flags)]
    write_outputs(out_stem, frame, markdown_report(title, scale, notes, header, rows, [True] * 5 + [False]))
    draw_slack_sweep(frame, eps, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# Fig. D1: CRA over epochs (training's per-epoch evaluation: history.json, no certification stage)


def _read_history(run: SweepRun, key: str) -> dict[int, dict[str, float]]:
    path = RunFiles(run.run_dir).history
    history = read_history(path)
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

    Reads each run's history.json (training's per-epoch evaluation, key ``cra_<eps:.6g>`` on evaluated epochs; an
    evaluated epoch without it raises ValueError naming the file); needs no certify.json. Per (method, epoch) the
    CSV has CRA and clean accuracy mean / std over the seeds that evaluated that epoch, n and the collapsed seeds.
    Writes .csv, .md, .png, .pdf. Returns the CSV's frame.
    """
    check_scale(scale)
    runs = read_sweep_runs(run_dirs, certified=False)
    model = uniform(runs, model_of, "model")
    key = cra_key(eps)
    groups = group_runs(runs, lambda r: r.method, "method")
    records = []
    for method, members in groups.items():
        histories = [_read_history(r, key) for r in members]
        collapsed = SeedFlags.of(members).columns()["collapsed_seeds"]
        for epoch in sorted(set().union(*histories)):
            present = [h[epoch] for h in histories if epoch in h]
            cra = summarise([p["cra"] for p in present])
            clean = summarise([p["clean"] for p in present if not math.isnan(p["clean"])])
            records.append({"method": method, "epoch": epoch, "cra": cra.mean, "cra_std": cra.std, "n": cra.n,
                            "clean": clean.mean, "clean_std": clean.std, "seeds": seeds_text(members),
                            "collapsed_seeds": collapsed, "eps_cert": eps, "model": model, "scale": scale})
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. D1: CRA (ε = {eps:.4g}) over epochs on {model or 'the model'}"
    last = frame.groupby("method", sort=False).tail(1)
    best = frame.loc[frame.groupby("method", sort=False)["cra"].idxmax()]
    header = ["Method", "Seeds", "Epochs evaluated", "Final epoch", "Final CRA", "Best CRA (epoch)"]
    rows = []
    for (_, fin), (_, top) in zip(last.iterrows(), best.iterrows()):
        mark = flag_mark(SeedFlags.of(groups[fin["method"]]))
        count = int((frame["method"] == fin["method"]).sum())
        rows.append([fin["method"], fin["seeds"], str(count), str(fin["epoch"]),
                     mean_std_cell(SeedSummary(fin["cra"], fin["cra_std"], fin["n"]), accuracy=True) + mark,
                     f"{format_value(top['cra'], accuracy=True)}{mark} ({top['epoch']})"])
    notes = ["CRA in %, mean ± sample std over seeds, from training's per-epoch evaluation (history.json); the "
             "per-epoch curve is in the CSV. The paper prints no numbers for Fig. D1 (its GloRo run used a fixed ε "
             "schedule).", *row_notes(list(groups), [SeedFlags.of(m) for m in groups.values()])]
    write_outputs(out_stem, frame, markdown_report(title, scale, notes, header, rows, [False, False, *[True] * 4]))
    draw_curves(frame, list(groups), eps, out_stem, scale, title)
    return frame


# ----------------------------------------------------------------------------------------------------
# Fig. D4: λ and margin-offset sweeps


def param_sweep(run_dirs: Iterable[str | os.PathLike[str]], param: str, scale: str, out_stem: str | os.PathLike[str],
                *, eps: float = DEFAULT_EPS, title: str | None = None) -> pd.DataFrame:
    """Clean accuracy, CRA at ``eps`` and K(f) over a run parameter (CLL Fig. D4: λ, margin offset δ).

    ``param`` is a dotted path into the run config (``loss.lam`` for Fig. D4a, ``loss.delta`` for the
    margin offset δ of supplement D.1). One row per (method, value), sorted by value, with mean / std
    over seeds (certify.json), n, seeds and collapsed seeds. Writes .csv, .md and .png / .pdf (accuracies on the
    left axis, K(f) on a log right axis); the x-axis is logarithmic when :func:`use_log_x` holds. Returns the
    CSV's frame.
    """
    check_scale(scale)
    runs = read_sweep_runs(run_dirs)
    model = uniform(runs, model_of, "model")
    groups = group_runs(runs, lambda r: (r.method, point_key(run_param(r, param))), f"(method, {param})")
    records, flags = [], []
    for method, value in sorted(groups, key=lambda k: (k[0], k[1])):
        members = groups[(method, value)]
        clean = summarise([metric_of(r, "clean") for r in members])
        cra = summarise([metric_of(r, cra_key(eps)) for r in members])
        k_f, k_hf = optional_summary(members, "K_f"), optional_summary(members, "K_hf")
        flags.append(SeedFlags.of(members))
        records.append({"method": method, "param": param, "value": value, "n": len(members),
                        "seeds": seeds_text(members), "clean": clean.mean, "clean_std": clean.std, "cra": cra.mean,
                        "cra_std": cra.std, "K_f": k_f.mean, "K_f_std": k_f.std, "K_hf": k_hf.mean,
                        "K_hf_std": k_hf.std, "eps_cert": eps, "model": model,
                        "scale": scale, **flags[-1].columns()})
    frame = pd.DataFrame.from_records(records)

    title = title or f"Fig. D4: {param} sweep on {model or 'the model'}"
    header = ["Method", param, "Clean", f"CRA {eps:.4g}", "K(f)", "K(h∘f)", "Seeds"]
    rows = [[r["method"], f"{r['value']:.6g}",
             mean_std_cell(SeedSummary(r["clean"], r["clean_std"], r["n"]), accuracy=True) + flag_mark(f),
             mean_std_cell(SeedSummary(r["cra"], r["cra_std"], r["n"]), accuracy=True) + flag_mark(f),
             mean_std_cell(SeedSummary(r["K_f"], r["K_f_std"], 0 if math.isnan(r["K_f"]) else 2)),
             mean_std_cell(SeedSummary(r["K_hf"], r["K_hf_std"], 0 if math.isnan(r["K_hf"]) else 2), 2), r["seeds"]]
            for r, f in zip(records, flags)]
    notes = ["Cells: mean ± sample std over seeds, accuracies in % (certify.json)."]
    if param in PARAM_QUOTES:
        notes.append(quote_sentence(paper_quote(PARAM_QUOTES[param])))
    notes += row_notes([f"{r['method']} at {param} = {r['value']:.6g}" for r in records], flags)
    write_outputs(out_stem, frame, markdown_report(title, scale, notes, header, rows,
                                                   [False, True, True, True, True, True, False]))
    draw_param_sweep(frame, param, out_stem, scale, title)
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
        sub.add_argument("--runs", nargs="+", required=True,
                         help="run directories (each with metrics.json; certify.json except for curves)")
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
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}.* ({len(frame)} rows, scale {args.scale!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
