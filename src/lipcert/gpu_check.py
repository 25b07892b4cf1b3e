"""One command that proves the GPU path (issue 12): ``make gpu-check`` = ``PYTHONPATH=src python3 -m lipcert.gpu_check``.

Needs only torch (2.11 or newer), numpy, scipy, pyyaml, tqdm and pytest: no MLflow, Snakemake, DVC, pandas,
matplotlib, Pillow or scikit-learn (GPU machines often have no package registry).  Steps:

1. ``pytest -m gpu`` on the test files that hold ``gpu`` tests: CUDA against CPU for converged norms of every layer
   type (1e-10 relative), one training step's loss and gradients, certification and the tightness attack, and a
   training step under ``torch.cuda.set_sync_debug_mode("error")`` (no host synchronisation).
2. CLL training at paper settings (CIFAR-10 recipe of ``params/cifar10.yaml``, table B4 block 1: batch 128,
   Adam 1e-3, eps 0.15, p 0.15, lambda 1e-4, 5 power iterations, the supplement-B augmentation) on generated
   CIFAR-shaped data (50 000 training and 10 000 test images of uint8 noise with random labels: the speed of a
   step does not depend on the pixel values) for 2 epochs per architecture (4C3F, 6C2F): once alone, then
   ``--shared`` runs at the same time on the same GPU (separate processes, as ``gpu_lease`` slots run them).
3. A probe of 4C3F, 6C2F and 8C2F (8C2F with the Tiny-ImageNet recipe, table B4 block 4, on 64x64 noise):
   20 training steps at the paper's batch size and a converge before and after them, with the peak memory of a run.
4. Per architecture: s/epoch of the training loop (epochs after the first; the first includes cuDNN autotuning;
   evaluation excluded), converge s/epoch
   after the first, certification s per 10 000 images, peak GPU memory per run, and the aggregate throughput of
   the shared runs (epochs per hour, all runs together) against running them one after another.

Writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` (default ``results/gpu_check/``) and prints the table.
``--device cpu`` with small ``--train-size`` runs the same code on the CPU (the test suite does this).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "measure_run", "run_shared"]

DEFAULT_MODELS = ("4C3F", "6C2F")
# paper settings per architecture: CIFAR-10 (table B4 block 1) for 4C3F/6C2F, Tiny-ImageNet (block 4) for 8C2F
PARAMS = {"4C3F": "params/cifar10.yaml", "6C2F": "params/cifar10.yaml", "8C2F": "params/tiny_imagenet.yaml"}
EXPERIMENT = "cll"
CERTIFY_IMAGES = 10_000
PROBE_MODELS = ("4C3F", "6C2F", "8C2F")
PROBE_STEPS = 20


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _config(model: str, sets: list[str], seed: int):
    from .params import run_config_from_params

    return run_config_from_params(_project_root() / PARAMS.get(model, PARAMS["4C3F"]), EXPERIMENT,
                                  [f"model={model}", *sets], seed=seed)


def _generated_images(model: str, train: int, test: int, seed: int):
    """uint8 noise of the architecture's input shape with random labels of its classes, and the supplement-B
    augmentation (CIFAR: 32 px, pad 4; Tiny-ImageNet: 64 px, pad 8)."""
    import torch

    from .data.augment import make_augment
    from .data.tensor_data import TensorData
    from .models import load_architectures

    spec = load_architectures()[model]
    shape, classes = spec.input_shape, spec.num_classes
    g = torch.Generator().manual_seed(seed)
    def images(n):
        return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    def labels(n):
        return torch.randint(0, classes, (n,), generator=g)
    return TensorData(images(train), labels(train), images(test), labels(test), domain=(0.0, 1.0),
                      augment=make_augment(shape[-1], shape[-1] // 8),
                      label=f"generated {'x'.join(map(str, shape))} noise, {classes} classes ({train}/{test})")


def probe_model(model: str, device: str, steps: int = PROBE_STEPS, seed: int = 0) -> dict:
    """``steps`` CLL training steps at the paper's batch size and one converge on generated data: s/step, converge s
    from a fresh start and after the steps, and the peak memory of one run (issue 12: 4C3F, 6C2F, 8C2F)."""
    import torch

    from .data.tensor_data import as_model_input
    from .devices import resolve_device
    from .models import build_model
    from .training import make_optimizer, make_loss, train_step

    dev = resolve_device(device)
    cfg = _config(model, [], seed)
    data = _generated_images(model, cfg.batch_size, 1, seed)
    net = build_model(model, seed=seed).to(dev)
    optimizer = make_optimizer(cfg, net)
    loss_fn = make_loss(cfg, 1000)
    x = as_model_input(data.x_train.to(dev))
    y = data.y_train.to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    fresh = net.converge(cfg.converge_tol).seconds
    train_step(net, optimizer, loss_fn, x, y, 0, cfg.loss.power_iter)  # warm-up (autotuning, lazy state)
    _sync(dev)
    start = time.perf_counter()
    for t in range(1, steps + 1):
        train_step(net, optimizer, loss_fn, x, y, t, cfg.loss.power_iter)
    _sync(dev)
    per_step = (time.perf_counter() - start) / steps
    after = net.converge(cfg.converge_tol)
    return {"model": model, "batch_size": cfg.batch_size, "steps": steps, "s_per_step": per_step, "converge_fresh_s": fresh,
            "converge_after_steps_s": after.seconds, "converge_after_steps_iterations": after.iterations,
            "peak_memory_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None}


def measure_run(model: str, device: str, epochs: int, train: int, test: int, out_dir: Path, seed: int = 0,
                threads: int = 1, certify_images: int = CERTIFY_IMAGES) -> dict:
    """Train one CLL run (paper settings, ``epochs`` epochs) on generated data and measure it."""
    import torch

    from .certification import certify_model
    from .data.tensor_data import as_model_input
    from .devices import describe_device, resolve_device
    from .run_record import read_history
    from .training import train_run

    dev = resolve_device(device)
    torch.set_num_threads(threads)
    if out_dir.exists():  # a finished run would be returned as it is, not re-measured
        shutil.rmtree(out_dir)
    cfg = _config(model, [f"epochs={epochs}", f"eval_every={epochs}", f"threads={threads}"], seed)
    data = _generated_images(model, train, test, seed)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    wall = time.perf_counter()
    train_run(cfg, data, out_dir, progress=False, device=dev)
    wall = time.perf_counter() - wall
    history = read_history(out_dir)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    # certification of 10 000 images (the test set repeated if smaller), bound already converged
    from .trained_run import load_trained_model

    _, trained = load_trained_model(out_dir, device=dev)  # its frozen converged bound comes with it
    reps = -(-certify_images // test)
    x = as_model_input(data.x_test.repeat(reps, 1, 1, 1)[:certify_images].to(dev))
    y = data.y_test.repeat(reps)[:certify_images].to(dev)
    _sync(dev)
    start = time.perf_counter()
    certify_model(trained, x, y, cfg.eval_eps)
    _sync(dev)
    certify_s = time.perf_counter() - start
    per_epoch = [e["train_s"] for e in history]  # the iteration loop alone (evaluation excluded)
    converge = [e["converge_s"] for e in history]
    steady = per_epoch[1:] or per_epoch
    return {
        "model": model, "epochs": epochs, "train_images": train, "batch_size": cfg.batch_size,
        "iterations_per_epoch": -(-train // cfg.batch_size),
        "s_per_epoch": per_epoch, "s_per_epoch_after_first": sum(steady) / len(steady),
        "converge_s": converge, "converge_s_after_first": (sum(converge[1:]) / len(converge[1:]) if len(converge) > 1
                                                          else converge[0]),
        "converge_iterations": [e["converge_iterations"] for e in history],
        "certify_s_per_10000": certify_s * 10_000 / certify_images, "peak_memory_bytes": peak,
        "wall_s": wall, "numerics": describe_device(dev),
    }


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _child_env() -> dict:
    """The environment of a child process: this checkout's ``src`` first on ``PYTHONPATH``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(_project_root() / "src"), os.environ.get("PYTHONPATH", "")])}


def run_shared(model: str, n: int, args, out: Path) -> dict:
    """``n`` runs of ``model`` at the same time on the same device (one process each); wall time and per-run results."""
    env = _child_env()
    procs = []
    start = time.perf_counter()
    for i in range(n):
        result = out / f"shared_{model}_{i}.json"
        cmd = [sys.executable, "-m", "lipcert.gpu_check", "--worker", "--models", model, "--device", args.device,
               "--epochs", str(args.epochs), "--train-size", str(args.train_size), "--test-size", str(args.test_size),
               "--threads", str(args.threads), "--certify-images", str(args.certify_images), "--seed", str(i), "--out", str(out / f"runs/shared_{model}_{i}"),
               "--worker-result", str(result)]
        procs.append((subprocess.Popen(cmd, env=env), result))
    codes = [p.wait() for p, _ in procs]
    wall = time.perf_counter() - start
    if any(codes):
        raise RuntimeError(f"shared runs of {model} failed with exit codes {codes}")
    runs = [json.loads(r.read_text()) for _, r in procs]
    return {"model": model, "runs": n, "wall_s": wall, "results": runs,
            "s_per_epoch_after_first": [r["s_per_epoch_after_first"] for r in runs],
            "peak_memory_bytes": [r["peak_memory_bytes"] for r in runs]}


def _pytest_gpu(out: Path) -> dict:
    """``pytest -m gpu`` on the test files that hold gpu tests (the others may need packages this machine lacks)."""
    tests = _project_root() / "tests"
    files = sorted(str(p) for p in tests.glob("test_*.py") if "mark.gpu" in p.read_text())
    if not files:
        return {"ran": False, "reason": "no test files with gpu tests found"}
    env = _child_env()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-o", "addopts=", *files]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=_project_root())
    (out / "pytest_gpu.log").write_text(proc.stdout + proc.stderr)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"ran": True, "exit_code": proc.returncode, "summary": tail, "seconds": time.perf_counter() - start,
            "files": [Path(f).name for f in files]}


def _mib(value) -> str:
    return "n/a (CPU)" if value is None else f"{value / 2**20:.0f}"


def render_markdown(report: dict) -> str:
    """The check's table (docs/benchmarks.md section 5 pastes it)."""
    lines = [f"GPU check on {report['device_name']} ({report['device']}), torch {report['torch']}, "
             f"{report['train_size']} training images, {report['epochs']} epochs, {report['date_utc']} UTC", ""]
    p = report.get("pytest_gpu", {})
    if p.get("ran"):
        lines += [f"pytest -m gpu: exit {p['exit_code']}, {p['summary']}", ""]
    lines += ["| model | runs at once | s/epoch per run (after the 1st) | converge s/epoch (after the 1st) | "
              "certify s / 10 000 | peak MiB per run | aggregate epochs/h |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for m in report["models"]:
        single = m["single"]
        lines.append(f"| {m['model']} | 1 | {single['s_per_epoch_after_first']:.2f} | "
                     f"{single['converge_s_after_first']:.3f} | {single['certify_s_per_10000']:.2f} | "
                     f"{_mib(single['peak_memory_bytes'])} | {3600 / single['s_per_epoch_after_first']:.0f} |")
        shared = m.get("shared")
        if shared:
            per = shared["s_per_epoch_after_first"]
            conv = [r["converge_s_after_first"] for r in shared["results"]]
            cert = [r["certify_s_per_10000"] for r in shared["results"]]
            peaks = [v for v in shared["peak_memory_bytes"] if v is not None]
            lines.append(f"| {m['model']} | {shared['runs']} | {sum(per) / len(per):.2f} | {sum(conv) / len(conv):.3f} | "
                         f"{sum(cert) / len(cert):.2f} | {_mib(max(peaks) if peaks else None)} | "
                         f"{3600 * sum(1 / s for s in per):.0f} |")
    if report.get("probes"):
        lines += ["", f"Per architecture ({report['probes'][0]['steps']} CLL steps at the paper's batch size, "
                  "then converge):", "",
                  "| model | batch | s/step | converge s, fresh | converge s after the steps (it) | peak MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in report["probes"]:
            lines.append(f"| {r['model']} | {r['batch_size']} | {r['s_per_step']:.4f} | {r['converge_fresh_s']:.3f} | "
                         f"{r['converge_after_steps_s']:.3f} ({r['converge_after_steps_iterations']}) | "
                         f"{_mib(r['peak_memory_bytes'])} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lipcert.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=50_000, help="generated training images (default 50000)")
    parser.add_argument("--test-size", type=int, default=10_000, help="generated test images (default 10000)")
    parser.add_argument("--certify-images", type=int, default=CERTIFY_IMAGES,
                        help="images certified for the timing (default 10000; reported per 10 000)")
    parser.add_argument("--shared", type=int, default=4, help="runs sharing the device in the second pass (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-models", nargs="*", default=list(PROBE_MODELS),
                        help="architectures for the step/memory probe (default 4C3F 6C2F 8C2F; none: skip)")
    parser.add_argument("--probe-steps", type=int, default=PROBE_STEPS)
    parser.add_argument("--skip-pytest", action="store_true")
    parser.add_argument("--out", default="results/gpu_check")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-result", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .devices import describe_device, resolve_device
    from .io_utils import atomic_write_json

    for name in ("epochs", "train_size", "test_size", "threads", "certify_images", "probe_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    dev = resolve_device(args.device)
    out = Path(args.out)
    if args.worker:
        result = measure_run(args.models[0], args.device, args.epochs, args.train_size, args.test_size,
                             out, seed=args.seed, threads=args.threads, certify_images=args.certify_images)
        atomic_write_json(Path(args.worker_result), result)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    numerics = describe_device(dev)
    from datetime import datetime, timezone

    report = {"device": str(dev), "device_name": numerics["device_name"], "torch": numerics["torch"],
              "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "epochs": args.epochs,
              "train_size": args.train_size, "test_size": args.test_size, "models": []}
    if not args.skip_pytest:
        report["pytest_gpu"] = _pytest_gpu(out)
        print(f"pytest -m gpu: {report['pytest_gpu'].get('summary', report['pytest_gpu'].get('reason'))}", flush=True)
    report["probes"] = []
    for model in args.probe_models:
        report["probes"].append(probe_model(model, args.device, steps=args.probe_steps, seed=args.seed))
        print(f"probe {model}: {report['probes'][-1]['s_per_step']:.4f} s/step", flush=True)
        atomic_write_json(out / "gpu_check.json", report)
    for model in args.models:
        entry = {"model": model}
        entry["single"] = measure_run(model, args.device, args.epochs, args.train_size, args.test_size,
                                      out / f"runs/single_{model}", seed=args.seed, threads=args.threads,
                                      certify_images=args.certify_images)
        print(f"{model} alone: {entry['single']['s_per_epoch_after_first']:.2f} s/epoch", flush=True)
        if args.shared > 1:
            entry["shared"] = run_shared(model, args.shared, args, out)
            print(f"{model} x{args.shared}: {entry['shared']['s_per_epoch_after_first']} s/epoch", flush=True)
        report["models"].append(entry)
        atomic_write_json(out / "gpu_check.json", report)  # after every model: a timeout keeps what was measured
    markdown = render_markdown(report)
    (out / "gpu_check.md").write_text(markdown)
    print(markdown)
    failed = report.get("pytest_gpu", {}).get("exit_code", 0) not in (0, 5)  # 5: no tests collected
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
