"""Collapsed runs: the detector that flags them and the seed rule of their retries (issue 13, item 5; torch-free).

A run *collapsed* when its final clean test accuracy is at chance level or its training loss went down and came
back to its first-epoch value (docs/benchmarks.md section 4.4: Sandwich-S at a 4x smaller batch ended at 11.2 %
and 10.0 % clean on CIFAR-10, and a CLL run's loss "returns to its initial value of 8.1").  Training stores the
flag of :func:`collapse_reason` under ``extra.collapse`` of ``metrics.json`` (:data:`lipcert.run_record.COLLAPSE_KEY`);
reporting marks every table cell such a run feeds.  ``python -m lipcert train --retry-collapsed N`` trains a
flagged run again under :func:`retry_seed` (off by default; :func:`lipcert.training.train_with_retries`).

Plain numbers in, plain dicts out: importing this module imports neither torch nor the training engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["CHANCE_RELATIVE_MARGIN", "CHANCE_Z", "LOSS_DIP", "LOSS_RETURN_TOLERANCE", "RETRY_SEED_STRIDE",
           "chance_threshold", "collapse_reason", "retry_seed"]

CHANCE_Z = 3.0
"""Binomial standard deviations above 100/C % that still count as chance (one-sided, about 0.13 % false alarms
for a guessing classifier)."""

CHANCE_RELATIVE_MARGIN = 0.15
"""Relative margin above 100/C % that still counts as chance: a collapsed network is rarely exactly constant (the
Sandwich-S AOL run of docs/benchmarks.md section 4.4 kept a few live units and ended at 11.2 % = 1.12 x chance for
10 classes, more than 3 standard deviations above 10 % on the 10 000 CIFAR-10 test images)."""

LOSS_RETURN_TOLERANCE = 0.02
"""A final training loss within 2 % of the first epoch's (or above it) is "back at its first-epoch value"."""

LOSS_DIP = 0.10
"""The loss must first have fallen at least 10 % below its first-epoch value for a return to count.  The scheduled
hyper-parameters make a learning run's loss rise (CLL's p falling towards 1e-12, GloRo's eps ramp): a 3-epoch
two-moons CLL run at 82 % clean goes from 14.8 to 27.0 without ever dipping, and must not be flagged."""

RETRY_SEED_STRIDE = 1000
"""The retry seed rule, in one place: attempt k (k = 1, 2, ...) of a collapsed run with seed s trains under
s + 1000 k.  The paper tables use seeds 0-9 as separate runs, so s + 1 would duplicate another run; seeds of
separate runs must stay below 1000 for their retries to be distinct from every one of them."""


def retry_seed(seed: int, attempt: int) -> int:
    """The seed of retry ``attempt`` (1, 2, ...) of a run with ``seed``: ``seed + RETRY_SEED_STRIDE * attempt``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < RETRY_SEED_STRIDE:
        raise ValueError(f"a run retried after a collapse needs a seed in [0, {RETRY_SEED_STRIDE}) so that its retry "
                         f"seeds (seed + {RETRY_SEED_STRIDE} k) collide with no other run, got seed {seed!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"retry attempt must be an integer >= 1, got {attempt!r}")
    return seed + RETRY_SEED_STRIDE * attempt


def chance_threshold(n_classes: int, n_test: int, z: float = CHANCE_Z,
                     relative_margin: float = CHANCE_RELATIVE_MARGIN) -> float:
    """The highest clean accuracy (in %) that is still chance level for ``n_classes`` on ``n_test`` test points.

    A classifier that ignores its input is right with probability 1/C on a balanced test set; its accuracy on n
    points is Binomial(n, 1/C) / n with standard deviation sqrt((1/C)(1 - 1/C)/n).  The threshold is
    ``100/C + max(z sd, relative_margin 100/C)``: the binomial term covers the small test sets of the quick and ci
    scales, the relative margin the not-quite-constant collapses (:data:`CHANCE_RELATIVE_MARGIN`).  For the full
    test sets: two-moons (C = 2, n = 20 000) 57.5 %, CIFAR-10 (C = 10, n = 10 000) 11.5 %, CIFAR-100 (C = 100,
    n = 10 000) 1.30 %, Tiny-ImageNet (C = 200, n = 10 000) 0.71 %.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise ValueError(f"n_test must be a positive integer, got {n_test!r}")
    chance = 1.0 / n_classes
    sd = math.sqrt(chance * (1.0 - chance) / n_test)
    return 100.0 * (chance + max(z * sd, relative_margin * chance))


def _loss(entry: Mapping, index: int) -> float:
    if "loss" not in entry:
        raise ValueError(f"history entry {index} (epoch {entry.get('epoch', '?')}) has no 'loss'")
    return float(entry["loss"])


def collapse_reason(history: Sequence[Mapping], n_classes: int, n_test: int) -> dict | None:
    """The collapse flag of a finished run's ``history`` (one entry per epoch, as training writes history.json), or
    None when the run learned.

    Two criteria, both on plain numbers:

    * ``chance_accuracy``: the final epoch's clean test accuracy (``clean``, in %) is at or below
      :func:`chance_threshold` (``n_classes`` = C, ``n_test`` test points).  Not applied when the final entry has
      no ``clean`` (no evaluation in the last epoch).
    * ``loss_returned``: the training loss (``loss``, the epoch mean) fell at least :data:`LOSS_DIP` below its
      first-epoch value and ends at or above ``(1 - LOSS_RETURN_TOLERANCE)`` times it.  Needs 2 epochs; skipped
      for a first-epoch loss <= 0 (no relative scale); a non-finite first or final loss never flags (training
      stops on a non-finite loss before it gets here).

    The flag is a mapping with ``kind`` (the first criterion that holds, in the order above), ``reason`` (one
    sentence per criterion that holds, naming the numbers) and those numbers.
    """
    if not history:
        raise ValueError("collapse_reason needs a history of at least one epoch, got an empty one")
    findings: list[tuple[str, str, dict]] = []
    final = history[-1]
    if final.get("clean") is not None:
        clean = float(final["clean"])
        threshold = chance_threshold(n_classes, n_test)
        chance = 100.0 / n_classes
        if clean <= threshold:
            findings.append(("chance_accuracy",
                             f"final clean accuracy {clean:.1f}% is at chance level ({chance:.3g}% for {n_classes} "
                             f"classes, flagged at or below {threshold:.3g}% on {n_test} test points)",
                             {"final_clean": clean, "chance": chance, "threshold": threshold,
                              "n_classes": n_classes, "n_test": n_test}))
    losses = [_loss(entry, i) for i, entry in enumerate(history)]
    first, last, lowest = losses[0], losses[-1], min(losses)
    if len(losses) >= 2 and first > 0 and lowest <= (1 - LOSS_DIP) * first \
            and last >= (1 - LOSS_RETURN_TOLERANCE) * first:
        findings.append(("loss_returned",
                         f"training loss {last:.4g} in the final epoch is back at its first-epoch value {first:.4g} "
                         f"(it had fallen to {lowest:.4g})",
                         {"first_loss": first, "final_loss": last, "min_loss": lowest, "epochs": len(losses)}))
    if not findings:
        return None
    flag = {"kind": findings[0][0], "reason": "; ".join(reason for _, reason, _ in findings)}
    for _, _, numbers in findings:
        flag.update(numbers)
    return flag
