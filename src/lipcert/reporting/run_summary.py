"""Summary table of a set of runs (one row per run) from their result files.

Used for the two-moons targets (Fig. 4, Fig. D2): method, eps, eq. (5) p, seed, clean accuracy, CRA,
K(f), K(h o f) and tightness, as CSV and Markdown, stating the scale the runs were built at.
Files are read through :mod:`lipcert.run_record`: clean accuracy, CRA and K(f) from the certification stage's
``certify.json`` next to each ``metrics.json`` (the source of the certified numbers; a missing one is an error
naming it), the run config, seed, training-set CRA, epochs, K(h o f) and the collapse / retry flags from
``metrics.json``, tightness from ``tightness.json`` when present. A collapsed run's certified cells are marked
with the collapse mark and footnoted. Never imports training code.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from ..io_utils import atomic_write_text
from ..run_record import K_HF_KEY, collapse_of, cra_key, read_certify, read_metrics, read_tightness, retry_of
from ..display import csv_float, display_accuracy, display_significant, is_accuracy
from .records import SeedFlags, check_clean_agreement
from .render import flag_mark, row_notes

__all__ = ["summarise_runs", "main"]

CERTIFIED_COLUMNS = ("clean", "cra", "K_f")
"""Columns of the summary taken from certify.json (the rest come from metrics.json / tightness.json)."""


def summarise_runs(metrics_paths: list[str | Path]) -> list[dict]:
    """One row per run: its parameters, certified numbers and training numbers (accuracies in %).

    ``collapse`` is the collapse reason ("" when the run learned) and ``retry`` "requested->trained" seed ("" when
    trained under its requested seed).
    """
    rows = []
    for path in metrics_paths:
        path = Path(path)
        record = read_metrics(path)
        certified = read_certify(path.parent)
        check_clean_agreement(record, certified, path.parent)
        m, params = record["metrics"], record["params"]
        loss = params["loss"]
        eps = params["eval_eps"][0]
        p = loss.get("p")
        if cra_key(eps) not in certified:
            raise ValueError(f"{path.parent / 'certify.json'}: has no CRA at eps = {eps:g} (params.eval_eps[0])")
        collapse, retry = collapse_of(record), retry_of(record)
        row = {
            "method": loss["name"], "eps": eps, "two_eps": 2 * eps,
            "p_eq5": None if p is None else (p["start"] if p["kind"] == "constant" else f"{p['start']:g}->{p['end']:g}"),
            "seed": record["seed"], "clean": certified["clean"], "cra": certified[cra_key(eps)],
            "train_cra": m.get(cra_key(eps, "train_")), "K_f": certified["K_f"], "K_hf": m[K_HF_KEY],
            "epochs": m["epoch"], "tightness": read_tightness(path.parent),
            "collapse": collapse["reason"] if collapse else "",
            "retry": f"{retry['requested_seed']}->{retry['trained_seed']}" if retry else "",
        }
        rows.append(row)
    return rows


SHOWN_DECIMALS = 2
"""Decimal places of the accuracies in the Markdown (rounded down, :func:`lipcert.display.display_accuracy`);
the CSV and JSON keep every float exact."""


def _cell(column: str, value) -> str:
    """One Markdown cell by the display rule: accuracies rounded down, constants to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float) and is_accuracy(column):
        return display_accuracy(value, SHOWN_DECIMALS)
    if isinstance(value, float):
        return display_significant(value, 4)
    return str(value)


def _flags(row: dict) -> SeedFlags:
    collapsed = ((row["seed"], row["collapse"]),) if row["collapse"] else ()
    retried = (tuple(int(s) for s in row["retry"].split("->")),) if row["retry"] else ()
    return SeedFlags(1, collapsed, retried)


def write_summary(rows: list[dict], scale: str, title: str, out_csv: Path, out_md: Path) -> None:
    """Write the rows as CSV (with a ``scale`` column) and Markdown (with the scale in the caption, collapsed runs
    marked and footnoted)."""
    cols = list(rows[0]) + ["scale"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quotes cells with commas (a collapse reason has them)
    writer.writerow(cols)
    writer.writerows([csv_float(r.get(c, scale if c == "scale" else None)) for c in cols] for r in rows)
    atomic_write_text(out_csv, buffer.getvalue())
    caveat = "" if scale == "paper" else (f"\n\n**Built at scale '{scale}'**: fewer epochs / less data than the paper; "
                                          "not comparable with the paper without this caveat.")
    shown = [c for c in cols[:-1] if c not in ("collapse", "retry")]
    flags = [_flags(r) for r in rows]
    slack = ["" if r["p_eq5"] is None else f" p={_cell('p_eq5', r['p_eq5'])}" for r in rows]
    notes = row_notes([f"{r['method']} 2ε={r['two_eps']:g}{p} seed {r['seed']}" for r, p in zip(rows, slack)], flags)
    md = [f"# {title}", f"Scale: `{scale}`. Accuracies in %, tightness = lower bound / K(f) in %, shown rounded down "
          f"to {SHOWN_DECIMALS} decimals (the CSV and JSON hold the exact values). Clean, CRA (test set) and K(f) from "
          f"the certification stage (certify.json); train_cra from training (metrics.json).{caveat}",
          *(f"\n{note}" for note in notes), "",
          "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    md += ["| " + " | ".join(_cell(c, r[c]) + (flag_mark(f) if c in CERTIFIED_COLUMNS else "") for c in shown) + " |"
           for r, f in zip(rows, flags)]
    atomic_write_text(out_md, "\n".join(md) + "\n")


def write_dvc_metrics(rows: list[dict], scale: str, out_json: Path) -> None:
    """Clean accuracy and CRA per run, keyed by method / 2*eps / p / seed (for ``dvc metrics show``)."""
    from ..io_utils import atomic_write_json

    out = {"scale": scale}
    for r in rows:
        key = f"{r['method']}_2eps{r['two_eps']:g}" + (f"_p{r['p_eq5']}" if r["p_eq5"] is not None else "") + f"_seed{r['seed']}"
        out[key] = {"clean": r["clean"], "cra": r["cra"], "K_hf": r["K_hf"]}
    atomic_write_json(out_json, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lipcert.reporting.run_summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="metrics.json files (each with certify.json beside it)")
    ap.add_argument("--scale", required=True)
    ap.add_argument("--title", default="runs")
    ap.add_argument("--out-csv", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-json", default=None, help="metrics for `dvc metrics show` (clean, CRA per run)")
    args = ap.parse_args(argv)
    rows = summarise_runs(args.runs)
    write_summary(rows, args.scale, args.title, Path(args.out_csv), Path(args.out_md))
    if args.out_json:
        write_dvc_metrics(rows, args.scale, Path(args.out_json))
    print(f"{args.out_csv}: {len(rows)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
