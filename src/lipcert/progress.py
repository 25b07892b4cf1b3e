"""Progress lines of a training run (issue 14, item 4): plain text, one line per N epochs, for log files.

A training job's output usually goes to a file (the Snakemake rule redirects it to its log; SLURM writes a
``.out`` file), where a progress bar leaves either nothing until the job ends or carriage-return noise.  The
engine (:func:`lipcert.training.train_run`) therefore prints whole lines, flushed, to stderr, built here from
values the epoch loop already holds on the host at the end of an epoch::

    resuming after epoch 400/800 from the checkpoint; a progress line every 50 epochs
    epoch 450/800  loss 0.3125  K(f) 1.25  CRA@0.15 87.5%  elapsed 1:15:00  ETA 0:52:30

Lines come at the epochs that are multiples of N, at the first epoch a process runs (a first ETA early, and the
point a resumed run continues from) and at the last epoch.  No torch here: the module only formats numbers.
"""

from __future__ import annotations

import math

from .display import display_accuracy

__all__ = ["LINES_PER_RUN", "NOT_EVALUATED", "default_progress_every", "eta_seconds",
           "format_duration", "is_progress_epoch", "progress_every", "progress_line", "start_line"]

LINES_PER_RUN = 20
"""The number of progress lines a run prints by default, roughly (:func:`default_progress_every`)."""

NOT_EVALUATED = "–"
"""What a progress line shows for the CRA of an epoch that was not evaluated (an en dash)."""


def default_progress_every(epochs: int, eval_every: int) -> int:
    """The default epochs between progress lines of a run of ``epochs`` epochs evaluated every ``eval_every``.

    It is the divisor N of ``eval_every`` (so every evaluated epoch gets a line and shows its CRA, and lines come at
    least as often as evaluations) whose line count ``epochs / N`` is closest to :data:`LINES_PER_RUN` (20); on a tie
    the smaller N.  Divisors above ``epochs`` are not considered, and N is at least 1 (never more than a line per
    epoch).  Examples: 800 epochs with ``eval_every`` 50 give 50 (16 lines), 1000 epochs give 50 (20 lines), 300
    epochs give 25 (12 lines); ``eval_every`` 1 gives 1.
    """
    if epochs < 1 or eval_every < 1:
        raise ValueError(f"epochs and eval_every must be positive, got {epochs} and {eval_every}")
    divisors = [d for d in range(1, min(eval_every, epochs) + 1) if eval_every % d == 0]
    return min(divisors, key=lambda d: (abs(epochs / d - LINES_PER_RUN), d))


def progress_every(progress: bool | int | None, epochs: int, eval_every: int) -> int | None:
    """The epochs between progress lines for the ``progress`` argument of :func:`lipcert.training.train_run`.

    ``False`` or ``None``: no lines (None).  ``True``: :func:`default_progress_every`.  A positive integer N: N.
    Anything else is a ValueError naming the CLI flag (``--progress-every``).
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        return default_progress_every(epochs, eval_every)
    if isinstance(progress, int) and progress >= 1:
        return progress
    raise ValueError(f"--progress-every (progress) must be a positive number of epochs, got {progress!r}")


def is_progress_epoch(epoch: int, total: int, every: int, first_in_process: bool) -> bool:
    """Whether 1-based ``epoch`` of ``total`` gets a line: a multiple of ``every``, the last epoch, or the first
    epoch this process trained (``first_in_process``)."""
    return first_in_process or epoch == total or epoch % every == 0


def eta_seconds(seconds_so_far: float, epochs_so_far: int, epochs_left: int) -> float:
    """Estimated seconds to the end: the mean epoch time of the epochs this process ran (``seconds_so_far`` over
    ``epochs_so_far``) times ``epochs_left``; 0 when nothing is left."""
    if epochs_left <= 0:
        return 0.0
    return seconds_so_far / max(epochs_so_far, 1) * epochs_left


def format_duration(seconds: float) -> str:
    """A duration as ``H:MM:SS`` rounded to whole seconds, hours unbounded (``72:00:00``); "?" if not finite."""
    if not math.isfinite(seconds):
        return "?"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def progress_line(epoch: int, total: int, loss: float, k_f: float, radius: float, cra: float | None,
                  elapsed_s: float, eta_s: float) -> str:
    """One progress line (no newline): epoch/total, the epoch's mean training loss, the converged K(f), the CRA in
    percent at ``radius`` (:data:`NOT_EVALUATED` when ``cra`` is None: not evaluated this epoch), the run's
    training time so far and the ETA.

    >>> progress_line(450, 800, 0.3125, 1.25, 0.15, 87.5, 4500.0, 3150.0)
    'epoch 450/800  loss 0.3125  K(f) 1.25  CRA@0.15 87.5%  elapsed 1:15:00  ETA 0:52:30'
    """
    cra_text = NOT_EVALUATED if cra is None else f"{display_accuracy(cra, 1)}%"  # rounded down: never 100 for less
    return (f"epoch {epoch}/{total}  loss {loss:.4g}  K(f) {k_f:.4g}  CRA@{radius:.4g} {cra_text}  "
            f"elapsed {format_duration(elapsed_s)}  ETA {format_duration(eta_s)}")


def start_line(start_epoch: int, total: int, every: int) -> str:
    """The line printed before the first epoch a process trains: a fresh start, or the epoch after which a resumed
    run (its checkpoint) continues, and the epochs between progress lines."""
    where = f"training {total} epochs" if start_epoch == 0 else \
        f"resuming after epoch {start_epoch}/{total} from the checkpoint"
    return f"{where}; a progress line every {'epoch' if every == 1 else f'{every} epochs'}"
