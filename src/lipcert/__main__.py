"""Command line: ``python -m lipcert {train,certify,tightness,demo} ...``.

Each sub-command is one task of the pipeline (the Snakemake rules call these):

* ``train``: train one run (params file + experiment + seed) into a run directory (resumes if interrupted);
* ``certify``: converge the bound of a finished run and certify its test set (CLL supplement C, eq. (18));
* ``tightness``: empirical lower Lipschitz bound and tightness (supplement C, eqs. (19)-(20));
* ``demo``: the main job on the embedded default (two-moons, no download).

``train``, ``certify`` and ``tightness`` mirror their numbers into one MLflow run per seed, nested under one
parent per configuration (:mod:`lipcert.tracking`); ``--no-mlflow`` turns that off, and without MLflow
installed they warn and run unmirrored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _mlflow_enabled(args) -> bool:
    """Whether a command mirrors into MLflow: not with ``--no-mlflow``, nor (after a warning) without MLflow."""
    if args.no_mlflow:
        return False
    from .tracking import mlflow_available

    if not mlflow_available():
        print("warning: mlflow is not installed here: not logging to MLflow (pass --no-mlflow to silence this)",
              file=sys.stderr)
        return False
    return True


def _tracking_uri(args, enabled: bool) -> str | None:
    """The store a command logs to: ``$MLFLOW_TRACKING_URI``, else ``<results-dir>/mlflow.db``."""
    from .tracking import default_tracking_uri

    return default_tracking_uri(args.results_dir) if enabled else None


def _key_values(pairs: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` strings (a repeated flag) as a dict; a malformed one raises ValueError naming ``flag``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def _train_tracker(args, cfg, data_label: str, out: Path):
    """The MLflow mirror of one training run: its configuration's parent, its names, params and tags.

    The configuration (:data:`lipcert.tracking.CONFIG_FIELDS`) comes from the workflow's wildcards when passed as
    ``--tag dataset=... --tag eps=...``, else from the config (variant ``base`` without ``--set``, otherwise
    ``set-`` and the config's fingerprint less its seed); ``--group`` (default: the configuration key) picks the
    parent. A run directory that already names a run of this group (an interrupted job) continues that run.
    """
    from dataclasses import replace

    from .run_record import DATA_LABEL_KEY, headline_radius
    from .tracking import (CONFIG_FIELDS, GIT_COMMIT_TAG, SOURCE_NAME_TAG, SOURCE_TYPE_TAG, RunTracker,
                           child_run_name, config_fields, configuration_key, git_commit, parent_run_name,
                           recorded_run)

    enabled = _mlflow_enabled(args)
    extra = _key_values(args.tag, "--tag")
    params = cfg.to_dict()
    variant = f"set-{replace(cfg, seed=0).fingerprint()[:8]}" if args.set else "base"
    fields = config_fields(params, dataset=Path(args.params).stem, method=args.experiment, variant=variant)
    fields.update({name: extra[name] for name in CONFIG_FIELDS if name in extra})
    key = configuration_key(fields)
    group = args.group or key
    parent_tags = {**fields, **extra}
    tags = {**parent_tags, "loss": cfg.loss.name, "seed": cfg.seed, DATA_LABEL_KEY: data_label,
            "run_dir": str(out), GIT_COMMIT_TAG: git_commit(), SOURCE_NAME_TAG: "python -m lipcert train",
            SOURCE_TYPE_TAG: "LOCAL"}
    previous = recorded_run(out) if enabled else None
    return RunTracker(Path(args.params).stem, child_run_name(fields, cfg.seed), enabled=enabled,
                      tracking_uri=_tracking_uri(args, enabled), group=group,
                      parent_name=parent_run_name(fields) if group == key else group, parent_tags=parent_tags,
                      tags=tags, cra_radius=headline_radius(params),
                      resume_run_id=previous["run_id"] if previous else None)


def _device(name: str):
    """The torch device of ``--device``; fails at once, naming the problem, when it does not exist."""
    from .devices import resolve_device

    return resolve_device(name)


def _run_data(cfg_data, data_path: str | None):
    """The run's dataset: from a prepared cache (verified against the run's data config) or generated."""
    from dataclasses import asdict

    from .data.tensor_data import load_cache
    from .datasets import load_data

    if data_path is None:
        return load_data(cfg_data)
    data, description = load_cache(data_path)
    if description != asdict(cfg_data):
        raise ValueError(f"{data_path} was prepared for data config {description}, but the run needs {asdict(cfg_data)}")
    return data


def cmd_train(args) -> int:
    import torch

    from .params import run_config_from_params
    from .training import train_with_retries

    device = _device(args.device)  # before anything is loaded: a missing GPU fails at once
    cfg = run_config_from_params(args.params, args.experiment, args.set, seed=args.seed)
    if args.threads:
        from dataclasses import replace

        cfg = replace(cfg, threads=args.threads)
    torch.set_num_threads(cfg.threads)
    data = _run_data(cfg.data, args.data)
    out = Path(args.out)
    with _train_tracker(args, cfg, data.label, out) as tracker:
        if tracker.enabled:
            tracker.record(out)
            tracker.log_params(cfg.to_dict())
        metrics = train_with_retries(cfg, data, out, retries=args.retry_collapsed,
                                     tracker=tracker if tracker.enabled else None,
                                     progress=False if args.no_progress else args.progress_every,
                                     device=device, deterministic=args.deterministic,
                                     code_version=args.code_version)
        if metrics is not None and tracker.enabled:
            _log_history_figure(out, tracker)
    if metrics is not None:
        from .display import display_metric, is_accuracy

        keys = [k for k in metrics if k.startswith(("clean", "cra_", "train_cra_", "K_f", "K_hf"))]
        # accuracies rounded down (never 100 for less), the rest to 4 significant digits
        print(f"{out}: " + ", ".join(f"{k}={display_metric(k, metrics[k], 2) if is_accuracy(k) else f'{metrics[k]:.4g}'}"
                                     for k in keys))
    return 0


def _log_history_figure(run_dir: Path, tracker) -> None:
    from .reporting.curves import plot_history

    png = plot_history(run_dir / "history.json", run_dir / "history.png")
    tracker.log_artifact(png)


def cmd_certify(args) -> int:
    import torch

    from .data.tensor_data import as_model_input
    from .devices import describe_device
    from .io_utils import atomic_write_json
    from .methods import certify_with, resolve_bound_name, resolve_certificate_name
    from .run_record import certify_record
    from .trained_run import load_trained_model

    device = _device(args.device)
    torch.set_num_threads(args.threads)
    cfg, model = load_trained_model(args.run, device=device)
    report = model.converge(args.tol)
    data = _run_data(cfg.data, args.data)
    eps = tuple(args.eps) if args.eps else cfg.eval_eps
    res = certify_with(model, data.x_test.to(device), data.y_test.to(device), eps, bound=cfg.bound,
                       certificate_name=cfg.certificate, transform=as_model_input)
    out = Path(args.out) if args.out else Path(args.run) / "certify.json"
    record = certify_record(res.summary(), bound=resolve_bound_name(cfg.bound),
                            certificate=resolve_certificate_name(cfg.certificate), k_body=report.k_body,
                            converge_iterations=report.iterations, converge_tol=args.tol, converged=report.converged,
                            data_label=data.label, numerics=describe_device(device))
    atomic_write_json(out, record)
    _log_certify(args, cfg, out, report)
    from .display import display_accuracy

    print(f"{out}: clean={display_accuracy(100 * res.clean_accuracy, 2)}% " + " ".join(
        f"CRA@{e:.4g}={display_accuracy(100 * c, 2)}%" for e, c in zip(res.eps_list, res.certified_accuracy))
        + f" K(f)={res.global_lipschitz:.5g}")
    return 0


def _log_certify(args, cfg, certify_json: Path, report) -> None:
    """Mirror a certification into the training run of ``--run`` (``certify/<key>``, run record keys)."""
    enabled = _mlflow_enabled(args)
    if not enabled:
        return
    from .run_record import cra_key, headline_radius, read_certify
    from .tracking import log_stage, with_headline_cra

    values = read_certify(certify_json)
    radius = headline_radius(cfg.to_dict())
    if cra_key(radius) not in values:  # certified at other radii (--eps): the first of them
        radius = float(args.eps[0]) if args.eps else radius
    metrics = {**with_headline_cra(values, radius), "k_body": report.k_body,
               "converge_iterations": report.iterations}
    log_stage(args.run, "certify", metrics, enabled=True, tracking_uri=_tracking_uri(args, enabled),
              tags={"certify.cra_radius": f"{radius:.6g}", "certify.tol": args.tol,
                    "certify.converged": report.converged})


def cmd_tightness(args) -> int:
    import torch

    from .data.tensor_data import as_model_input
    from .io_utils import atomic_write_json
    from .devices import describe_device
    from .tightness import sample_pairs, tightness_attack
    from .trained_run import load_trained_model

    device = _device(args.device)
    torch.set_num_threads(args.threads)
    cfg, model = load_trained_model(args.run, device=device)
    model.converge(args.tol)
    data = _run_data(cfg.data, args.data)
    g = torch.Generator().manual_seed(args.seed)
    n_pairs = min(args.pairs, data.x_train.shape[0] // 2)
    x1, x2 = sample_pairs(data.x_train, n_pairs, generator=g)
    # supplement C / the authors' code: pairs are drawn from the (augmented) training data
    x1, x2 = as_model_input(x1), as_model_input(x2)
    if data.augment is not None:
        x1, x2 = data.augment(x1, g), data.augment(x2, g)
    x1, x2 = x1.to(device), x2.to(device)  # drawn and augmented on the CPU: the same pairs on every device
    res = tightness_attack(model, x1, x2, steps=args.steps, lr=args.lr, domain=data.domain,
                           batch_size=args.batch_size, generator=g)
    out = Path(args.out) if args.out else Path(args.run) / "tightness.json"
    summary = res.summary()
    summary.update({"pairs": n_pairs, "steps": args.steps, "lr": args.lr, "seed": args.seed,
                    "numerics": describe_device(device)})
    atomic_write_json(out, summary)
    enabled = _mlflow_enabled(args)
    if enabled:
        from .run_record import K_F_KEY, K_LOBO_KEY, TIGHTNESS_KEY, read_tightness
        from .tracking import log_stage

        log_stage(args.run, "tightness", {TIGHTNESS_KEY: read_tightness(out), K_LOBO_KEY: res.lower_bound,
                                          K_F_KEY: res.global_lipschitz, "elapsed_s": res.elapsed_s},
                  enabled=True, tracking_uri=_tracking_uri(args, enabled),
                  tags={"tightness.pairs": n_pairs, "tightness.steps": args.steps, "tightness.lr": args.lr,
                        "tightness.seed": args.seed})
    print(f"{out}: lower bound={res.lower_bound:.5g} K(f)={res.global_lipschitz:.5g} "
          f"tightness={100 * res.tightness:.1f}% ({res.pair_steps_per_second:.3g} pair-steps/s)")
    return 0


def cmd_prepare_data(args) -> int:
    """Generate/convert the dataset of a params file once into a verified cache."""
    from dataclasses import asdict

    from .data.tensor_data import save_cache
    from .datasets import load_data
    from .params import load_params_file, run_config_from_params

    experiment = args.experiment or next(iter(load_params_file(args.params)["experiments"]))
    cfg = run_config_from_params(args.params, experiment, args.set)
    data = load_data(cfg.data)
    save_cache(data, args.out, asdict(cfg.data))
    print(f"{args.out}: {data.label} train {tuple(data.x_train.shape)} test {tuple(data.x_test.shape)}")
    return 0


def cmd_extract_archive(args) -> int:
    """Verify a dataset archive's checksum and extract it atomically (e.g. the CIFAR-10 JPEG export)."""
    from .data.archive import extract_archive

    dest = extract_archive(args.archive, args.dest, md5=args.md5, sha256=args.sha256)
    print(f"{dest}: extracted from {args.archive}")
    return 0


def cmd_mlflow_init(args) -> int:
    """Create the MLflow store once, before parallel jobs (concurrent first creation races)."""
    from .io_utils import atomic_write_json
    from .tracking import default_tracking_uri, init_tracking, mlflow_available

    uri = default_tracking_uri(args.results_dir)  # $MLFLOW_TRACKING_URI when set
    if not mlflow_available():  # a machine without MLflow (the GPU machines): the jobs will not log either
        print(f"warning: mlflow is not installed here: no MLflow store created at {uri}", file=sys.stderr)
        if args.marker:
            atomic_write_json(args.marker, {"tracking_uri": None, "note": "mlflow not installed"})
        return 0
    init_tracking(uri)
    if args.marker:  # a file that stays unchanged while jobs log into the database (Snakemake input)
        atomic_write_json(args.marker, {"tracking_uri": uri})
    print(f"MLflow store ready: {uri}")
    return 0


def cmd_demo(args) -> int:
    """The main job: ``snakemake fig4`` (CLL vs GloRo on two-moons, paper Fig. 4) at the chosen scale."""
    import subprocess

    from .gpu_lease import device_count, slots_per_device

    root = Path(__file__).resolve().parents[2]
    snakemake = Path(sys.executable).with_name("snakemake")
    # gpu=N caps concurrent gpu jobs (devices x LIPCERT_GPU_SLOTS); without a GPU they run on the CPU, one per core
    slots = device_count() * slots_per_device() or args.cores
    cmd = [str(snakemake), "fig4", "--cores", str(args.cores), "--resources", f"gpu={slots}",
           "--config", f"scale={args.scale}"]
    print("running: " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    rc = subprocess.run(cmd, cwd=root).returncode
    if rc != 0:
        print(f"error: snakemake fig4 failed (exit {rc}); see the logs under results/{args.scale}/logs", file=sys.stderr)
        return rc
    out = root / "results" / args.scale
    print(f"\nfig4 built at scale '{args.scale}' in {time.perf_counter() - start:.0f} s")
    print((out / "tables" / "fig4.md").read_text())
    for rel in ("figures/fig4.png", "figures/fig4.pdf", "tables/fig4.csv", "notebooks/fig4.html"):
        print(f"  {out / rel}")
    print(f"MLflow UI: make ui SCALE={args.scale}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lipcert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def mlflow_flags(p):
        p.add_argument("--results-dir", default="results",
                       help="results root (MLflow database lives here unless $MLFLOW_TRACKING_URI is set)")
        p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")

    def common(p):
        mlflow_flags(p)
        p.add_argument("--group", default=None,
                       help="MLflow group (parent run) shared by seeds; default: the configuration key "
                            "<dataset>/<model>/<method>/eps<eps>_p<p>/<variant>")
        p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                       help="MLflow tag of the run (repeatable), e.g. scale=ci; dataset, model, method, eps, p and "
                            "variant also name the configuration (the workflow passes its wildcards)")

    t = sub.add_parser("train", help="train one run")
    t.add_argument("--params", required=True, help="params YAML file, e.g. params/two_moons.yaml")
    t.add_argument("--experiment", required=True, help="experiment name inside the params file")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. loss.eps=0.2")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: params 'threads')")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--data", default=None, help="prepared data cache (.npz); default: generate from params")
    t.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels (cuDNN deterministic, no autotuning; README 'GPU numerics')")
    t.add_argument("--no-progress", action="store_true", help="print no progress lines")
    t.add_argument("--progress-every", type=int, default=True, metavar="N",  # True: the default N
                   help="a progress line (epoch/total, loss, K(f), CRA, elapsed, ETA) to stderr every N epochs, plus "
                        "the first and last epoch (default: the divisor of eval_every giving about 20 lines; "
                        "lipcert.progress.default_progress_every)")
    t.add_argument("--code-version", default=None, metavar="DIGEST",
                   help="the training code's digest (the workflow passes lipcert.provenance.code_digest('train')): "
                        "recorded with the run; a checkpoint of other code or parameters is moved aside and the run "
                        "starts over")
    t.add_argument("--retry-collapsed", type=int, default=0, metavar="N",
                   help="retrain a run flagged as collapsed (accuracy at chance, or loss back at its first-epoch "
                        "value) up to N times under seed + 1000 k (default 0: keep it, flagged; lipcert.collapse)")
    common(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("certify", help="certify a finished run on its test set")
    c.add_argument("--run", required=True)
    c.add_argument("--eps", type=float, nargs="*", default=None)
    c.add_argument("--tol", type=float, default=1e-9)
    c.add_argument("--out", default=None)
    c.add_argument("--data", default=None, help="prepared data cache (.npz)")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    mlflow_flags(c)
    c.set_defaults(func=cmd_certify)

    k = sub.add_parser("tightness", help="tightness attack on a finished run")
    k.add_argument("--run", required=True)
    k.add_argument("--pairs", type=int, default=4000)
    k.add_argument("--steps", type=int, default=1000)
    k.add_argument("--lr", type=float, default=3e-4)
    k.add_argument("--batch-size", type=int, default=None)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--tol", type=float, default=1e-9)
    k.add_argument("--out", default=None)
    k.add_argument("--data", default=None, help="prepared data cache (.npz)")
    k.add_argument("--threads", type=int, default=1)
    k.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    mlflow_flags(k)
    k.set_defaults(func=cmd_tightness)

    pd = sub.add_parser("prepare-data", help="prepare a params file's dataset into a verified cache")
    pd.add_argument("--params", required=True)
    pd.add_argument("--experiment", default=None, help="experiment whose data config to use (default: first)")
    pd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pd.add_argument("--out", required=True)
    pd.set_defaults(func=cmd_prepare_data)

    ea = sub.add_parser("extract-archive", help="verify a dataset archive's checksum and extract it atomically")
    ea.add_argument("archive")
    ea.add_argument("dest", help="folder to create (e.g. data_cache/cifar10); the archive's single root is stripped")
    ea.add_argument("--md5", default=None)
    ea.add_argument("--sha256", default=None)
    ea.set_defaults(func=cmd_extract_archive)

    mi = sub.add_parser("mlflow-init", help="create the MLflow sqlite store once")
    mi.add_argument("--results-dir", default="results")
    mi.add_argument("--marker", default=None, help="write this file once the store exists")
    mi.set_defaults(func=cmd_mlflow_init)

    d = sub.add_parser("demo", help="the main job: snakemake fig4 on the embedded default (two-moons)")
    d.add_argument("--scale", default="paper", choices=["paper", "quick", "ci"])
    d.add_argument("--cores", type=int, default=2)
    d.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
