"""Table D5 of the CLL supplement (D.1, ε-p ablation): the ε_train × p grid of CLL runs next to the paper's.

Runs are read by :mod:`lipcert.reporting.sweep_records` (clean accuracy and CRA from certify.json, K(h∘f) from
metrics.json); rendered with :mod:`lipcert.reporting.render`. Command line: ``python -m lipcert.reporting.sweeps
grid-table ...``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..run_record import p_from_printed, printed_p
from ..display import is_accuracy
from .paper_tables import paper_source, read_grid_paper
from .records import STATUS_NOT_REPRODUCED, STATUS_OURS_ONLY, STATUS_REPRODUCED, SeedFlags, check_scale
from .render import flag_mark, markdown_report, ours_paper_cell, row_notes, source_sentence, write_outputs
from .sweep_records import (SweepRun, close, group_runs, model_of, only_methods, optional_summary, point_key,
                            read_sweep_runs, run_param, seeds_text, training_eps, uniform)

__all__ = ["GRID_METRICS", "grid_table"]

GRID_METRICS = ("clean", "cra_36", "cra_108", "K_hf")
"""Metric columns of Table D5 (accuracies in %, K(h∘f))."""



def grid_table(run_dirs: Iterable[str | os.PathLike[str]], paper_csv: str | os.PathLike[str], scale: str,
               out_stem: str | os.PathLike[str], *, title: str | None = None) -> pd.DataFrame:
    """The ε_train × p grid of CLL runs next to the paper's Table D5 (supplement D.1, ε-p ablation).

    Runs (CLL, constant p) are grouped by (training ε, p); the printed p of Table D5 is 2 × eq. (5)'s p,
    and rows are matched on printed p and ε_train with a float tolerance. Every paper row is kept in
    the paper's order (ours empty when not run, status "paper value, not reproduced"); our grid points
    not in the paper are appended ("ours only"). Per metric of :data:`GRID_METRICS` the CSV has
    ``<m>_paper``, ``<m>_ours`` (mean over seeds; clean and CRA from certify.json, K(h∘f) from metrics.json),
    ``<m>_std``, ``<m>_n`` and ``<m>_diff`` (ours - paper), plus the collapse / retry columns. Writes .csv and .md.
    Returns the CSV's frame.
    """
    check_scale(scale)
    runs = read_sweep_runs(run_dirs)
    only_methods(runs, ("CLL",), "the ε × p grid (Table D5)")
    model = uniform(runs, model_of, "model")
    paper = read_grid_paper(paper_csv, GRID_METRICS)
    groups = group_runs(runs, lambda r: (point_key(training_eps(r)), point_key(run_param(r, "loss.p"))),
                        "(ε_train, eq. (5) p)")

    matched: set[tuple[float, float]] = set()
    ordered: list[tuple[float, float, Any, list[SweepRun]]] = []
    for row in paper.itertuples(index=False):
        eps, p_printed = float(row.eps_train), float(row.p)
        members: list[SweepRun] = []
        for (g_eps, g_p), group in groups.items():
            if close(g_eps, eps) and close(printed_p(g_p), p_printed):
                members = group
                matched.add((g_eps, g_p))
        ordered.append((eps, p_printed, row, members))
    for (g_eps, g_p), group in sorted(groups.items()):
        if (g_eps, g_p) not in matched:
            ordered.append((g_eps, printed_p(g_p), None, group))

    records, flags = [], []
    for eps, p_printed, row, members in ordered:
        status = STATUS_NOT_REPRODUCED if not members else (STATUS_REPRODUCED if row is not None else STATUS_OURS_ONLY)
        flags.append(SeedFlags.of(members))
        record: dict[str, Any] = {"p_printed": p_printed, "p_eq5": p_from_printed(p_printed), "eps_train": eps,
                                  "model": model, "status": status, "seeds": seeds_text(members), "scale": scale,
                                  **flags[-1].columns()}
        for metric in GRID_METRICS:
            summary = optional_summary(members, metric)
            paper_value = float(getattr(row, metric)) if row is not None else math.nan
            record.update({f"{metric}_paper": paper_value, f"{metric}_ours": summary.mean,
                           f"{metric}_std": summary.std, f"{metric}_n": summary.n,
                           f"{metric}_diff": summary.mean - paper_value})
        records.append(record)
    frame = pd.DataFrame.from_records(records)

    title = title or f"Table D5: ε_train × p grid (CLL, {model or 'the model'})"
    header = ["p printed (= 2p)", "p eq. (5)", "ε_train", "Clean", "CRA 36/255", "CRA 108/255", "K(h∘f)", "Status"]
    rows = [[f"{r['p_printed']:.6g}", f"{r['p_eq5']:.6g}", f"{r['eps_train']:.6g}",
             *(ours_paper_cell(r[f"{m}_ours"], r[f"{m}_std"], r[f"{m}_n"], r[f"{m}_paper"], " ± ", flag_mark(f),
                               accuracy=is_accuracy(m)) for m in GRID_METRICS), r["status"]]
            for r, f in zip(records, flags)]
    labels = [f"printed p = {r['p_printed']:.6g}, ε_train = {r['eps_train']:.6g}" for r in records]
    notes = ["Cells: ours as mean ± sample std over seeds (paper value); – = no value. Accuracies in % (clean and "
             "CRA from certify.json). The paper's grid is 8C2F on Tiny-ImageNet, seed 1; differences (ours - paper) "
             "are in the CSV.", source_sentence(paper_source(paper_csv)), *row_notes(labels, flags)]
    write_outputs(out_stem, frame, markdown_report(title, scale, notes, header, rows, [True] * 7 + [False]))
    return frame
