"""Summary table of a set of runs (one row per run) from their result files.

Used for the two-moons targets (Fig. 4, Fig. D2): method, eps, eq. (5) p, seed, clean accuracy, CRA,
K(f), K(h o f) and tightness, as CSV and Markdown, stating the scale the runs were built at.
Reads ``metrics.json`` and, when present, the sibling ``tightness.json``; never imports training code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io_utils import atomic_write_text, read_json
from ..run_record import cra_key

__all__ = ["summarise_runs", "main"]


def summarise_runs(metrics_paths: list[str | Path]) -> list[dict]:
    """One row per run: its parameters and final metrics (accuracies in %)."""
    rows = []
    for path in metrics_paths:
        path = Path(path)
        record = read_json(path)
        m, params = record["metrics"], record["params"]
        loss = params["loss"]
        eps = params["eval_eps"][0]
        p = loss.get("p")
        row = {
            "method": loss["name"], "eps": eps, "two_eps": 2 * eps,
            "p_eq5": None if p is None else (p["start"] if p["kind"] == "constant" else f"{p['start']:g}->{p['end']:g}"),
            "seed": record["seed"], "clean": m["clean"], "cra": m[cra_key(eps)],
            "train_cra": m.get(cra_key(eps, "train_")), "K_f": m["K_f"], "K_hf": m["K_hf"], "epochs": m["epoch"],
        }
        tight = path.with_name("tightness.json")
        row["tightness"] = 100.0 * read_json(tight)["tightness"] if tight.exists() else None
        rows.append(row)
    return rows


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_summary(rows: list[dict], scale: str, title: str, out_csv: Path, out_md: Path) -> None:
    """Write the rows as CSV (with a ``scale`` column) and Markdown (with the scale in the caption)."""
    cols = list(rows[0]) + ["scale"]
    csv_lines = [",".join(cols)] + [",".join(_fmt(r.get(c, scale if c == "scale" else None)) for c in cols) for r in rows]
    atomic_write_text(out_csv, "\n".join(csv_lines) + "\n")
    caveat = "" if scale == "paper" else (f"\n\n**Built at scale '{scale}'**: fewer epochs / less data than the paper; "
                                          "not comparable with the paper without this caveat.")
    md = [f"# {title}", f"Scale: `{scale}`. Accuracies in %, tightness = lower bound / K(f) in %.{caveat}", "",
          "| " + " | ".join(cols[:-1]) + " |", "|" + "---|" * (len(cols) - 1)]
    md += ["| " + " | ".join(_fmt(r[c]) for c in cols[:-1]) + " |" for r in rows]
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
    ap.add_argument("--runs", nargs="+", required=True, help="metrics.json files")
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
