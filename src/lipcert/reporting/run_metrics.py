"""The certified numbers of a target's runs, nested by method and configuration (DVC's metrics of a runs stage).

``dvc metrics show`` and ``dvc exp show`` flatten nested keys into columns, so one configuration's numbers line
up across experiments: ``cll.two_moons/two_moons/eps0.15_pdefault/base.mean.cra``. Layout::

    {"scale": "ci",
     "runs": {<method>: {<dataset>/<model>/eps<eps>_p<p>/<variant>: {
         "seeds": {"seed<k>": {"clean": .., "cra": .., "radius": .., "cra_<r>": .., "K_f": .., "K_hf": ..}},
         "mean": {the same keys, averaged over the seeds that have them}}}}}

With ``--history-dir``, each run's per-epoch record (``history.json``: epoch, loss, and clean accuracy and CRA on
evaluated epochs) is also written there as ``<method>__<dataset>__<model>__eps<eps>_p<p>__<variant>__seed<k>.json``,
one file per run, for ``dvc plots`` (one series per run).

Accuracies in %, at full precision (JSON floats round-trip exactly). ``cra`` is the CRA at the run's training
eps when it was certified there, else at its first certified radius (``radius`` says which;
:func:`lipcert.run_record.headline_radius`). The run
directory's last six components name the run (``lipcert.plan.RUN_DIR``:
``<dataset>/<model>/<method>/eps<eps>_p<p>/<variant>/seed<k>``). Files are read through
:mod:`lipcert.run_record`; certified numbers come from ``certify.json`` (the certification stage), ``K_hf`` from
``metrics.json``. Tightness is not part of it (not every target measures it; the tables report it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io_utils import atomic_write_json
from ..run_record import (CLEAN_KEY, CRA_KEY, K_F_KEY, K_HF_KEY, cra_key, headline_radius, read_certify, read_history,
                          read_metrics)

__all__ = ["nested_run_metrics", "run_numbers", "write_histories", "main"]

_RUN_PARTS = 6  # dataset, model, method, eps<eps>_p<p>, variant, seed<k>


def _run_names(run_dir: Path) -> tuple[str, str, str]:
    """(method, configuration key, seed key) of a run directory laid out as ``lipcert.plan.RUN_DIR``."""
    parts = run_dir.parts[-_RUN_PARTS:]
    if len(parts) < _RUN_PARTS or not parts[-1].startswith("seed") or not parts[3].startswith("eps"):
        raise ValueError(f"{run_dir}: not a run directory <dataset>/<model>/<method>/eps<eps>_p<p>/<variant>/"
                         "seed<k> (lipcert.plan.RUN_DIR)")
    dataset, model, method, eps_p, variant, seed = parts
    return method, f"{dataset}/{model}/{eps_p}/{variant}", seed


def run_numbers(run_dir: str | Path) -> dict[str, float]:
    """One run's numbers: clean, cra (with its radius), CRA per radius, K(f), K(h o f)."""
    run_dir = Path(run_dir)
    record = read_metrics(run_dir)
    certified = read_certify(run_dir)
    radius = headline_radius(record.get("params") or {})
    if cra_key(radius) not in certified:
        raise ValueError(f"{run_dir / 'certify.json'}: not certified at the run's headline radius {radius:g} "
                         f"(lipcert.run_record.headline_radius); it holds {sorted(certified)}")
    numbers = {CLEAN_KEY: certified[CLEAN_KEY], CRA_KEY: certified[cra_key(radius)], "radius": radius}
    numbers.update({key: value for key, value in certified.items() if key.startswith("cra_")})
    numbers[K_F_KEY] = certified[K_F_KEY]
    k_hf = record["metrics"].get(K_HF_KEY)
    if isinstance(k_hf, (int, float)):
        numbers["K_hf"] = float(k_hf)
    return numbers


def _mean(seeds: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = sorted({key for numbers in seeds.values() for key in numbers})
    return {key: sum(v[key] for v in seeds.values() if key in v) / sum(key in v for v in seeds.values())
            for key in keys}


def nested_run_metrics(run_dirs: list[str | Path], scale: str) -> dict:
    """The numbers of ``run_dirs`` nested by method, configuration and seed, with each configuration's seed mean."""
    runs: dict[str, dict[str, dict]] = {}
    for run_dir in dict.fromkeys(Path(d) for d in run_dirs):  # a run two grids share (Fig. 5) counts once
        method, config, seed = _run_names(run_dir)
        entry = runs.setdefault(method, {}).setdefault(config, {"seeds": {}})
        entry["seeds"][seed] = run_numbers(run_dir)
    for configs in runs.values():
        for entry in configs.values():
            entry["mean"] = _mean(entry["seeds"])
    return {"scale": scale, "runs": runs}


def write_histories(run_dirs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """Write each run's history (one JSON list per run, named after the run) into ``out_dir``; returns the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run_dir in dict.fromkeys(Path(d) for d in run_dirs):
        method, config, seed = _run_names(run_dir)
        name = "__".join([method, *config.split("/"), seed]) + ".json"
        written.append(atomic_write_json(out_dir / name, read_history(run_dir)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lipcert.reporting.run_metrics", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run directories (lipcert.plan.RUN_DIR layout)")
    parser.add_argument("--scale", required=True)
    parser.add_argument("--out", required=True, help="the JSON file to write (atomically)")
    parser.add_argument("--history-dir", help="also write each run's history.json here (one file per run)")
    args = parser.parse_args(argv)
    atomic_write_json(args.out, nested_run_metrics(args.runs, args.scale))
    if args.history_dir:
        write_histories(args.runs, args.history_dir)
    print(f"{args.out}: {len(args.runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
