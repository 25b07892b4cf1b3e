"""Training engine: one run = one method, one model, one seed (CLL supplement B).

Per step: ``power_iter`` warm-started power-iteration steps give the differentiable K_body; the loss
(CLL, GloRo or cross-entropy) is evaluated with the iteration's scheduled hyper-parameters
(supplement eq. (17)); Adam/AdamW steps.  After every epoch the bound is converged in float64
(relative error below 1e-9) and frozen, then the test set is certified (eq. (18)).

Runs are resumable and deterministic: one seed drives Python, NumPy, torch and the data order; a
checkpoint (model incl. power-iteration vectors, optimiser, RNG states, counters, history) is
written atomically after every epoch, and re-running the same command continues from it, ending with
exactly the metrics of an uninterrupted run.  A non-finite loss stops the run with an error naming
epoch and iteration; the run is marked failed and no ``metrics.json`` is written.  A finished run whose clean
accuracy is at chance level or whose loss came back to its first-epoch value is flagged in ``extra.collapse``
(:mod:`lipcert.collapse`); :func:`train_with_retries` retrains such a run under the next seed when asked to.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .methods import bound_provider, certificate, certify_with
from .progress import eta_seconds, is_progress_epoch, progress_every, progress_line, start_line
from .data.tensor_data import TensorData, as_model_input
from .devices import describe_device, resolve_device, set_deterministic
from .io_utils import atomic_torch_save, atomic_write_bytes, atomic_write_json
from .losses.local_lip_loss import TrainingBatch
from .losses.registry import (build_loss, calibrated_model_constant, loss_training_state, per_sample_loss,
                              trains_with_bound)
from .models import LipschitzClassifier, build_model
from .run_config import RunConfig
from .collapse import collapse_reason, retry_seed
from .run_record import (COLLAPSE_KEY, RETRY_KEY, RunFiles, collapse_of, collapsed_attempt_dir, cra_key, pgd_key,
                         read_metrics, final_metrics_path, headline_radius, retry_attempt_dir, retry_of)
from .trained_run import load_trained_model  # re-exported: finished runs load without this module
from .schedules import exponential_decay_lr, piecewise_linear_lr, step_decay_lr

__all__ = ["NonFiniteLossError", "RunFiles", "TensorData", "final_metrics_path", "load_trained_model", "make_optimizer",
           "train_run", "train_step", "train_with_retries"]

CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names epoch and iteration."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators (the data order has its own generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def base_learning_rate(cfg: RunConfig) -> float:
    """``optim.lr``, scaled linearly to the run's batch size when ``optim.lr_reference_batch`` is set.

    Recipes state their rate for their own batch size (LBDN: 1e-2 at 256).  At a 4x smaller batch the same
    rate takes 4x as many steps of the same size per epoch, each on a noisier gradient.  With the Sandwich layers,
    the large bias steps kill their ReLU units and the network collapses to a constant map
    (docs/benchmarks.md section 4.4).
    """
    o = cfg.optim
    if o.lr_reference_batch is None:
        return o.lr
    return o.lr * cfg.batch_size / o.lr_reference_batch


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    lr = base_learning_rate(cfg)
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    opt_cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return opt_cls(model.parameters(), lr=lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def learning_rate(cfg: RunConfig, epoch: int, iteration: int, total_iterations: int) -> float:
    """The learning rate of an iteration: step decay by epoch, or the triangular schedule by iteration."""
    o = cfg.optim
    lr = base_learning_rate(cfg)
    if o.lr_schedule == "triangular":
        return piecewise_linear_lr(iteration, total_iterations, lr)
    if o.lr_schedule == "exponential":
        hold = round(o.lr_hold * cfg.epochs) + (o.lr_hold_extra_epochs or 0)
        return exponential_decay_lr(epoch, cfg.epochs, lr, o.lr_end, hold)
    return step_decay_lr(epoch, lr, o.lr_milestones, o.lr_gamma)


def k_hf(cfg: RunConfig, k_f: float, t: int, total: int) -> float:
    """K(h o f) of the run at iteration t of T (section 4.2; :func:`lipcert.losses.registry.calibrated_model_constant`)."""
    return calibrated_model_constant(cfg.loss, k_f, t, total)


def make_loss(cfg: RunConfig, total_iterations: int):
    """The run's loss as ``f(logits, targets, k_body, head_weight, t) -> scalar`` (:mod:`lipcert.losses.registry`)."""
    return build_loss(cfg.loss, total_iterations)


def evaluate(model: LipschitzClassifier, x: torch.Tensor, y: torch.Tensor, eps_list, prefix: str,
             cfg: RunConfig | None = None, domain: tuple[float, float] | None = None) -> dict:
    """Clean accuracy and CRA (eq. (18)) with the frozen converged bound, as percentages.  ``x`` is stored data
    (uint8 images stay uint8; :func:`as_model_input` is applied per certification batch).  The run's bound provider
    and certificate (:mod:`lipcert.methods`) decide; the defaults are the global bound and the ℓ2 margin.  A
    certificate that runs PGD (``local_bcp``) adds its accuracy per radius (:func:`lipcert.run_record.pgd_key`) and
    the number of samples that needed the local bound (``<prefix>local_checked_<eps>``)."""
    res = certify_with(model, x, y, eps_list, bound=cfg.bound if cfg else None,
                       certificate_name=cfg.certificate if cfg else None, transform=as_model_input, domain=domain)
    out = {f"{prefix}clean": 100.0 * res.clean_accuracy}
    for e, c in zip(res.eps_list, res.certified_accuracy):
        out[cra_key(e, prefix)] = 100.0 * c
    details = res.details
    for e in res.eps_list if "pgd_accuracy" in details else ():
        key = f"{e:.6g}"
        out[pgd_key(e, prefix)] = 100.0 * details["pgd_accuracy"][key]
        out[f"{prefix}local_checked_{key}"] = details["local_checked"][key]
        out[f"{prefix}local_seconds_{key}"] = details["local_seconds"][key]
    return out


def train_step(model: LipschitzClassifier, optimizer: torch.optim.Optimizer, loss_fn, xb: torch.Tensor,
               yb: torch.Tensor, iteration: int, power_iter: int | None,
               training_constant=None, batch: TrainingBatch | None = None,
               projected: list | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step (supplement B): forward, K_body from ``power_iter`` warm-started power-iteration steps
    (None: no bound, K_body = 1) through ``training_constant(model, n_iter)`` (the run's bound provider,
    :mod:`lipcert.methods`; default: the global bound's), the loss at ``iteration`` (with ``batch`` as its sixth
    argument for a per-sample loss, e.g. Local-Lip), backward, optimiser step, then the projections of the modules
    in ``projected`` (``project_()``: ReLUθ thresholds to >= 0 after every step, seed 004's code).

    Returns the detached float64 loss, logits and K_body, all on the batch's device; nothing is read back to
    the host (a non-finite loss is the caller's to detect from the returned value).
    """
    logits = model(xb)
    if power_iter is None:
        k_body = torch.ones((), device=xb.device)
    else:
        k_body = (training_constant or bound_provider(None).training_constant)(model, power_iter)
    if batch is None:
        loss = loss_fn(logits, yb, k_body, model.head_weight(), iteration)
    else:
        loss = loss_fn(logits, yb, k_body, model.head_weight(), iteration, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    for module in projected or ():
        module.project_()
    return loss.detach().to(torch.float64), logits.detach(), k_body.detach()


def _non_finite(value: float, epoch: int, epoch_start_iteration: int, batch: int) -> NonFiniteLossError:
    """The error for the first non-finite loss of an epoch (0-based epoch and batch index)."""
    return NonFiniteLossError(f"non-finite loss ({value}) at epoch {epoch + 1}, iteration "
                              f"{epoch_start_iteration + batch + 1} (batch {batch + 1} of the epoch)")


def _checkpoint_mismatches(ckpt: dict, cfg: RunConfig, code_version: str | None = None) -> dict[str, str]:
    """What keeps a checkpoint from being this run's (its layout version, the config fingerprint and, when given,
    the code version), each as ``<what> <checkpoint's> != <this run's>``; empty when it is this run's."""
    wanted = {"version": CHECKPOINT_VERSION, "fingerprint": cfg.fingerprint()}
    if code_version is not None:
        wanted["code_version"] = code_version
    names = {"version": "checkpoint version", "fingerprint": "fingerprint", "code_version": "code version"}
    return {key: f"{names[key]} {ckpt.get(key)} != {value}" for key, value in wanted.items() if ckpt.get(key) != value}


def _check_resumable(ckpt: dict, cfg: RunConfig, path: Path) -> None:
    mismatches = _checkpoint_mismatches(ckpt, cfg)
    if "version" in mismatches:
        raise RuntimeError(f"{path}: {mismatches['version']}; delete it to start over")
    if "fingerprint" in mismatches:
        raise RuntimeError(f"{path}: checkpoint belongs to different run parameters ({mismatches['fingerprint']}); "
                           "delete the run directory or use another one")


def _check_finished(record: dict, cfg: RunConfig, path: Path) -> None:
    """RuntimeError unless the finished run recorded in ``path`` was trained with ``cfg`` (its fingerprint)."""
    if record.get("extra", {}).get("fingerprint") != cfg.fingerprint():
        raise RuntimeError(f"{path}: finished run has different parameters; "
                           "delete the run directory or use another one")


def _check_classes(model, data: TensorData, model_name: str) -> None:
    """ValueError before any training when the data's labels do not fit the model's outputs (e.g. a 10-class
    architecture on CIFAR-100); one host read of the labels on their own device, once per run."""
    n_out = int(model.head_weight().shape[0])
    top = int(torch.maximum(data.y_train.max(), data.y_test.max()))
    if top >= n_out:
        raise ValueError(f"model {model_name!r} has {n_out} outputs, but the data ({data.label}) has labels up to "
                         f"{top}: use an architecture with {top + 1} classes (params/architectures.yaml)")


def _discard_stale_checkpoint(ckpt: dict, cfg: RunConfig, code_version: str, path: Path) -> bool:
    """Move a checkpoint aside (``checkpoint.stale.pt``) when it was written by other code or for other parameters
    than this run's, so the run starts over instead of resuming a result it would not compute now. True if moved.

    The workflow reruns a training job exactly when the code it runs or the run's config changed
    (``lipcert.provenance``); resuming the old checkpoint then would record stale numbers as fresh ones."""
    reasons = list(_checkpoint_mismatches(ckpt, cfg, code_version).values())
    if not reasons:
        return False
    path.replace(path.with_name("checkpoint.stale.pt"))
    print(f"{path}: written by other code or parameters ({'; '.join(reasons)}): moved to checkpoint.stale.pt, "
          f"training starts over", file=sys.stderr, flush=True)
    return True


def train_run(cfg: RunConfig, data: TensorData, out_dir: str | Path, *, tracker=None, progress: bool | int = True,
              max_epochs_this_call: int | None = None, device: str | torch.device = "cpu",
              deterministic: bool = False, code_version: str | None = None) -> dict | None:
    """Train (or resume, or return the finished result of) one run in ``out_dir``.

    Returns the final metrics dict, or None when ``max_epochs_this_call`` stopped the run early (the
    checkpoint then allows resuming).  ``tracker`` is an entered :class:`lipcert.tracking.RunTracker`
    (or None).  Raises :class:`NonFiniteLossError` on a NaN/inf loss after writing ``failed.json``.

    ``progress`` says how often plain progress lines (:mod:`lipcert.progress`) go to stderr, flushed: True, a line
    every :func:`lipcert.progress.default_progress_every` epochs; a positive integer N, every N epochs; False,
    none.  A first line says whether the run starts or resumes from its checkpoint.

    ``code_version`` (the workflow passes the digest of the training code, :func:`lipcert.provenance.code_digest`) is
    recorded in the checkpoint and in ``metrics.json`` (``extra.code_version``); a checkpoint of another code version
    or other parameters is then moved aside and the run starts over. Without it a checkpoint of other parameters is
    an error, as a run directory reused by hand should be.
    """
    from .tracking import write_metrics  # light import; MLflow is only touched through ``tracker``

    every = progress_every(progress, cfg.epochs, cfg.eval_every)
    device = resolve_device(device)
    set_deterministic(deterministic)
    files = RunFiles(Path(out_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    if files.metrics.exists():
        done = read_metrics(files.metrics)
        _check_finished(done, cfg, files.metrics)
        return done["metrics"]
    torch.set_num_threads(cfg.threads)
    atomic_write_json(files.config, cfg.to_dict())

    seed_everything(cfg.seed)
    model = build_model(cfg.model, seed=cfg.seed, head=cfg.head).to(device)
    _check_classes(model, data, cfg.model)
    optimizer = make_optimizer(cfg, model)
    order = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    n = data.x_train.shape[0]
    bs = min(cfg.batch_size, n)
    iters_per_epoch = n // bs if cfg.drop_last else math.ceil(n / bs)
    total = cfg.epochs * iters_per_epoch
    loss_fn = make_loss(cfg, total)
    needs_bound = trains_with_bound(cfg.loss)
    provider = bound_provider(cfg.bound)
    per_sample = per_sample_loss(cfg.loss)
    loss_state = loss_training_state(cfg.loss, model, n, files.root, cfg.seed)
    projected = [m for m in model.modules() if hasattr(m, "project_")]
    start_epoch, iteration, history, elapsed = 0, 0, [], 0.0
    best_on_test = None  # {"entry", "model"} with cfg.select_on_test

    ckpt = None
    if files.checkpoint.exists():
        ckpt = torch.load(files.checkpoint, map_location=device, weights_only=False)
        if code_version is None:  # a run directory reused by hand: other parameters are an error
            _check_resumable(ckpt, cfg, files.checkpoint)
        elif _discard_stale_checkpoint(ckpt, cfg, code_version, files.checkpoint):
            ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        order.set_state(ckpt["order_rng"])
        aug_gen.set_state(ckpt["augment_rng"])
        _set_rng_state(ckpt["rng"])
        start_epoch, iteration, history, elapsed = ckpt["epoch"], ckpt["iteration"], ckpt["history"], ckpt["elapsed"]
        if loss_state is not None:
            loss_state.load_state_dict(ckpt["loss_state"])
        best_on_test = ckpt.get("best_on_test")

    # stored inputs stay as they are (uint8 images: 1 byte per value); the model sees as_model_input(x)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    radius = _progress_radius(cfg)
    if every is not None:
        print(start_line(start_epoch, cfg.epochs, every), file=sys.stderr, flush=True)
    epochs_done_now, process_t0 = 0, time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            lr = learning_rate(cfg, epoch, iteration, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            perm_host = torch.randperm(n, generator=order)  # host copy: per-sample state is indexed on the host
            perm = perm_host.to(device)
            # Per-epoch sums stay on the device and are read once after the loop: no host synchronisation
            # inside it (issue 12).  The first non-finite loss of the epoch is remembered by its batch index.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            first_bad = torch.full((), -1, dtype=torch.int64, device=device)
            bad_loss = torch.zeros((), dtype=torch.float64, device=device)
            k_train = torch.full((), float("nan"), device=device)
            seen = 0
            epoch_start_iteration = iteration
            try:
                for b in range(iters_per_epoch):
                    idx = perm[b * bs:(b + 1) * bs]
                    xb, yb = as_model_input(x_train[idx]), y_train[idx]
                    if data.augment is not None:
                        xb = data.augment(xb, aug_gen)
                    if cfg.optim.lr_schedule == "triangular":
                        for group in optimizer.param_groups:
                            group["lr"] = learning_rate(cfg, epoch, iteration, total)
                    batch = TrainingBatch(model, xb, perm_host[b * bs:(b + 1) * bs], iteration, iters_per_epoch, cfg.loss.power_iter,
                                          loss_state) if per_sample else None
                    detached, logits, k_body = train_step(model, optimizer, loss_fn, xb, yb, iteration,
                                                          cfg.loss.power_iter if needs_bound else None,
                                                          provider.training_constant, batch, projected)
                    newly_bad = (first_bad < 0) & ~torch.isfinite(detached)
                    first_bad = torch.where(newly_bad, b, first_bad)
                    bad_loss = torch.where(newly_bad, detached, bad_loss)
                    iteration += 1
                    loss_sum += detached * yb.shape[0]
                    correct += (logits.argmax(1) == yb).sum()
                    seen += yb.shape[0]
                    k_train = k_body
            except Exception as err:
                # a failure after a non-finite loss (NaN weights can break a later step) is reported as that loss
                if int(first_bad) >= 0:
                    raise _non_finite(float(bad_loss), epoch, epoch_start_iteration, int(first_bad)) from err
                raise
            # the epoch's one host read: its sums and the non-finite guard
            bad_batch, bad_value, loss_total, correct_total, k_train = torch.stack(
                (first_bad.to(torch.float64), bad_loss, loss_sum, correct.to(torch.float64),
                 k_train.to(torch.float64))).tolist()
            if bad_batch >= 0:
                raise _non_finite(bad_value, epoch, epoch_start_iteration, int(bad_batch))
            loss_sum, correct = loss_total, int(correct_total)
            if loss_state is not None:
                loss_state.end_epoch()
            train_s = time.perf_counter() - t0  # the read above waited for the epoch's last kernel
            report = model.converge(cfg.converge_tol)
            entry = {"epoch": epoch + 1, "iteration": iteration, "lr": lr, "loss": loss_sum / max(seen, 1),
                     "train_batch_acc": 100.0 * correct / max(seen, 1), "k_body_train": k_train,
                     "k_body": report.k_body, "K_f": report.k_global,
                     "K_hf": k_hf(cfg, report.k_global, iteration, total),
                     "converge_iterations": report.iterations, "converge_s": report.seconds, "train_s": train_s}
            last = epoch + 1 == cfg.epochs
            if last or (epoch + 1) % cfg.eval_every == 0:
                entry.update(evaluate(model, x_test, y_test, cfg.eval_eps, "", cfg, data.domain))
            if last:  # a model-level certificate (local bound, PGD) on the whole training set would cost more than
                # the run: the train_ CRA of such a run is the global certificate's (a lower bound of its own)
                train_cfg = replace(cfg, certificate=None) if certificate(cfg.certificate).certify_model else cfg
                entry.update(evaluate(model, x_train, y_train, cfg.eval_eps, "train_", train_cfg, data.domain))
            elapsed += time.perf_counter() - t0
            entry["elapsed_s"] = elapsed
            history.append(entry)
            if cfg.select_on_test:
                best_on_test = _select_on_test(best_on_test, entry, model, cfg, iteration / total)
            atomic_torch_save({
                "version": CHECKPOINT_VERSION, "fingerprint": cfg.fingerprint(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "order_rng": order.get_state(), "augment_rng": aug_gen.get_state(),
                "rng": _rng_state(), "epoch": epoch + 1, "iteration": iteration, "history": history,
                "elapsed": elapsed, "code_version": code_version,
                "loss_state": None if loss_state is None else loss_state.state_dict(),
                "best_on_test": best_on_test}, files.checkpoint)
            if tracker is not None:
                tracker.log_epoch(epoch + 1, {k: v for k, v in entry.items() if k != "epoch"})
            epochs_done_now += 1
            if every is not None and is_progress_epoch(epoch + 1, cfg.epochs, every, epochs_done_now == 1):
                eta = eta_seconds(time.perf_counter() - process_t0, epochs_done_now, cfg.epochs - epoch - 1)
                print(progress_line(epoch + 1, cfg.epochs, entry["loss"], entry["K_f"], radius,
                                    entry.get(cra_key(radius)), elapsed, eta), file=sys.stderr, flush=True)
            if max_epochs_this_call is not None and epochs_done_now >= max_epochs_this_call and not last:
                return None
    except NonFiniteLossError as err:
        atomic_write_json(files.failed, {"error": str(err), "history": history})
        raise

    final = dict(history[-1])
    selected = {}
    if best_on_test is not None and best_on_test["entry"]["epoch"] != final["epoch"]:
        final = {**final, **{k: v for k, v in best_on_test["entry"].items() if not k.startswith("train_")}}
        model.load_state_dict(best_on_test["model"])
        selected = {"selected_on_test_epoch": best_on_test["entry"]["epoch"]}
    atomic_torch_save(model.state_dict(), files.model)
    atomic_write_json(files.history, history)
    # the flag is an output, not a parameter: the fingerprint stays that of the config (issue 13, item 5)
    collapse = collapse_reason(history, n_classes=int(model.head_weight().shape[0]), n_test=int(y_test.shape[0]))
    if collapse is not None:
        print(f"warning: {files.root}: the run collapsed: {collapse['reason']}", file=sys.stderr, flush=True)
    record = write_metrics(files.metrics, final, cfg.to_dict(), cfg.seed, elapsed,
                           extra={"fingerprint": cfg.fingerprint(), "data": data.label,
                                  "iterations_per_epoch": iters_per_epoch, "numerics": describe_device(device),
                                  COLLAPSE_KEY: collapse, **selected,
                                  **({"code_version": code_version} if code_version is not None else {})})
    if files.failed.exists():
        files.failed.unlink()
    if tracker is not None:
        tracker.log_final(final)
        tracker.log_artifact(files.metrics)
    return record["metrics"]


def _ramps_end(cfg: RunConfig) -> float:
    """The fraction of the run after which the loss's schedules are constant (local_lip: warm-up + ramp; others 0)."""
    return float(cfg.loss.get("warmup", 0.0) or 0.0) + float(cfg.loss.get("ramp", 0.0) or 0.0)


def _select_on_test(best: dict | None, entry: dict, model, cfg: RunConfig, progress: float) -> dict | None:
    """``select_on_test`` (seed 004's code, ``*_best.pth``): after the ramps, an evaluated epoch whose test CRA at the
    headline radius beats the kept one replaces it (its entry and a copy of the model's state)."""
    key = cra_key(headline_radius(cfg.to_dict()))
    if key not in entry or progress < _ramps_end(cfg) - 1e-12:
        return best
    if best is None or entry[key] > best["entry"][key]:
        return {"entry": dict(entry), "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    return best


def _progress_radius(cfg: RunConfig) -> float:
    """The radius of the CRA in the progress lines: the run's headline radius (:func:`lipcert.run_record.headline_radius`)."""
    return headline_radius(cfg.to_dict())


# --- retries of collapsed runs (issue 13, item 5): orchestration around train_run, outside its epoch loop ---------
def train_with_retries(cfg: RunConfig, data: TensorData, out_dir: str | Path, *, retries: int = 0,
                       **train_kw) -> dict | None:
    """:func:`train_run` in ``out_dir``, then, while the result is flagged as collapsed (``extra.collapse``,
    :func:`lipcert.collapse.collapse_reason`) and fewer than ``retries`` retries were made, train it again under
    the next seed of :func:`lipcert.collapse.retry_seed` (``cfg.seed + 1000 k``).  With ``retries=0`` (the
    default) nothing is retried: a collapsed run stays as it is, flagged (and a run retried earlier is kept).

    Retry k trains in its own run directory (:func:`lipcert.run_record.retry_attempt_dir`) and resumes from its
    own checkpoint like any run.  When the last attempt finishes, ``out_dir`` is made to hold it: the files of the
    run it replaces go to :func:`lipcert.run_record.collapsed_attempt_dir`, the last attempt's config, history and
    model are copied in, and its ``metrics.json`` is written with ``extra.retry = {"requested_seed",
    "trained_seed", "attempts": [{"seed", "collapse"}, ...]}`` (the commit point; every step before it can be
    repeated after a crash).  Collapsed intermediate attempts are archived too, so nothing is lost.

    Re-running on a finished (retried or not) run trains nothing, unless its last attempt collapsed and
    ``retries`` now allows more.  Returns the final metrics, or None when ``max_epochs_this_call`` (in
    ``train_kw``, applied to each :func:`train_run` call) stopped an attempt early.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries (--retry-collapsed) must be a non-negative integer, got {retries!r}")
    files = RunFiles(Path(out_dir))
    record = read_metrics(files.metrics) if files.metrics.exists() else None
    note = retry_of(record) if record is not None else None
    if note is None:
        if retries > 0:
            retry_seed(cfg.seed, 1)  # a seed whose retries could collide with another run fails before training
        if train_run(cfg, data, files.root, **train_kw) is None:
            return None
        record = read_metrics(files.metrics)
        attempts = [{"seed": cfg.seed, "collapse": collapse_of(record)}]
    else:
        attempts = _retried_attempts(files, record, note, cfg)
    while attempts[-1]["collapse"] is not None and len(attempts) <= retries:
        seed = retry_seed(cfg.seed, len(attempts))
        attempt_dir = retry_attempt_dir(files.root, seed)
        print(f"{files.root}: seed {attempts[-1]['seed']} collapsed; retry {len(attempts)} of {retries} under seed "
              f"{seed} in {attempt_dir}", file=sys.stderr, flush=True)
        if train_run(replace(cfg, seed=seed), data, attempt_dir, **train_kw) is None:
            return None
        attempts.append({"seed": seed, "collapse": collapse_of(read_metrics(RunFiles(attempt_dir).metrics))})
    if attempts[-1]["seed"] != record["seed"]:
        record = _promote_attempt(files, record, cfg.seed, attempts)
    if len(attempts) > 1:
        _tidy_attempts(files, attempts)
    return record["metrics"]


def _retried_attempts(files: RunFiles, record: dict, note: dict, cfg: RunConfig) -> list[dict]:
    """The attempts of a finished retried run, after checking that it is this config's run."""
    if note["requested_seed"] != cfg.seed:
        raise RuntimeError(f"{files.metrics}: finished run was requested with seed {note['requested_seed']}, "
                           f"not {cfg.seed}; delete the run directory or use another one")
    _check_finished(record, replace(cfg, seed=note["trained_seed"]), files.metrics)
    attempts = note.get("attempts")
    if not isinstance(attempts, list) or not attempts or not all(isinstance(a, dict) for a in attempts) \
            or attempts[-1].get("seed") != note["trained_seed"]:
        raise ValueError(f"{files.metrics}: extra.{RETRY_KEY}.attempts must list the attempts as "
                         f"{{'seed', 'collapse'}} ending with the trained seed {note['trained_seed']}, "
                         f"got {attempts!r}")
    return [dict(a) for a in attempts]


def _copy_trained_files(source: RunFiles, target: RunFiles) -> None:
    """Copy a finished run's config, history and model (atomically, file by file; metrics.json is the caller's)."""
    for name in ("config", "history", "model"):
        atomic_write_bytes(getattr(target, name), getattr(source, name).read_bytes())


def _promote_attempt(files: RunFiles, record: dict, requested_seed: int, attempts: list[dict]) -> dict:
    """Make ``files.root`` hold the last attempt; the run it held is archived first (once)."""
    archive = RunFiles(collapsed_attempt_dir(files.root, record["seed"]))
    if not archive.metrics.exists():  # metrics.json last: an archive with it is complete
        _copy_trained_files(files, archive)
        atomic_write_bytes(archive.metrics, files.metrics.read_bytes())
    final = RunFiles(retry_attempt_dir(files.root, attempts[-1]["seed"]))
    _copy_trained_files(final, files)
    promoted = read_metrics(final.metrics)
    promoted["extra"][RETRY_KEY] = {"requested_seed": requested_seed, "trained_seed": attempts[-1]["seed"],
                                    "attempts": attempts}
    atomic_write_json(files.metrics, promoted)
    return promoted


def _tidy_attempts(files: RunFiles, attempts: list[dict]) -> None:
    """After the commit: archive collapsed intermediate attempts, drop the promoted attempt's directory and the
    checkpoint of the replaced seed (idempotent; it finishes an interrupted tidy on a re-run)."""
    files.checkpoint.unlink(missing_ok=True)
    for attempt in attempts[1:-1]:
        source = retry_attempt_dir(files.root, attempt["seed"])
        target = collapsed_attempt_dir(files.root, attempt["seed"])
        if source.is_dir() and not target.exists():
            RunFiles(source).checkpoint.unlink(missing_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
    shutil.rmtree(retry_attempt_dir(files.root, attempts[-1]["seed"]), ignore_errors=True)
    retries_root = retry_attempt_dir(files.root, attempts[-1]["seed"]).parent
    if retries_root.is_dir() and not any(retries_root.iterdir()):
        retries_root.rmdir()
