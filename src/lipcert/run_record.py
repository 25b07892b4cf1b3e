"""The run record: where a run's files live and how its metrics are named (torch-free; issue 13, first step).

One definition of each convention that training, certification, tightness, the decision grid and reporting share:

* :data:`PAPER_RADII`: the ℓ2 radii the paper reports CRA at (Tables 1 and 2: 36/255, 72/255, 108/255);
* :func:`cra_key`: the ``metrics.json`` key of the CRA at a radius (``cra_<eps:.6g>``, e.g. ``cra_0.141176``;
  ``train_`` prefixed for the training set);
* :func:`p_from_printed` / :func:`printed_p`: eq. (5)'s p from a p printed in the paper's tables (the authors' code
  splits the printed value over both margin sides, so eq. (5)'s p is half of it) and back;
* :func:`path_number`: how a number is spelled in a run path (``eps0.15``, ``p0.005``, ``lam1e-05``), so that
  ``1`` and ``1.0`` name the same run;
* :class:`RunFiles`: the files of one run directory;
* the metric keys (:data:`CLEAN_KEY`, :data:`CRA_KEY`, :data:`K_F_KEY`, :data:`K_HF_KEY`, :data:`K_LOBO_KEY`,
  :data:`TIGHTNESS_KEY`, :data:`SEED_KEY`, :data:`DATA_LABEL_KEY`),
  the metrics.json layout (:func:`metrics_record`) and the one reader of each result file: :func:`read_metrics`
  (training), :func:`read_certify` (certification stage), :func:`read_tightness` (supplement C); the run config's
  numbers (:func:`param_value`, :func:`training_eps_of`) and the collapse / retry flags (:func:`collapse_of`,
  :func:`retry_of`).

Importing this module imports neither torch nor the training engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .io_utils import read_json

__all__ = ["pgd_key", "CERTIFY_SUMMARY_KEYS", "CLEAN_KEY", "COLLAPSE_KEY", "CRA_KEY", "DATA_LABEL_KEY", "K_F_KEY", "K_HF_KEY",
           "K_LOBO_KEY", "METRICS_SCHEMA_VERSION", "PAPER_RADII", "RETRY_KEY", "SEED_KEY", "TIGHTNESS_KEY",
           "TIGHTNESS_TOLERANCE", "certify_record", "collapse_of", "collapsed_attempt_dir", "cra_key",
           "data_label_of", "final_metrics_path", "finite_number", "headline_radius", "metrics_record",
           "p_from_printed", "param_value", "path_number", "printed_p", "read_certify", "read_history", "read_metrics", "read_tightness",
           "retry_attempt_dir", "retry_of", "RunFiles", "string_keyed", "training_eps_of"]

PAPER_RADII: tuple[float, ...] = (36 / 255, 72 / 255, 108 / 255)
"""ℓ2 certification radii of the paper's CRA columns (CLL section 4, Tables 1 and 2)."""


def cra_key(eps: float, prefix: str = "") -> str:
    """The metrics key of the CRA (in %) at ℓ2 radius ``eps``: ``<prefix>cra_<eps:.6g>``."""
    return f"{prefix}cra_{float(eps):.6g}"


def pgd_key(eps: float, prefix: str = "") -> str:
    """The metrics key of the accuracy (in %) under the ℓ2 PGD-100 attack at radius ``eps``: ``<prefix>pgd_<eps:.6g>``
    (seed 004's PGD column)."""
    return f"{prefix}pgd_{float(eps):.6g}"


def path_number(value: float | str) -> str:
    """A number as it appears in a run path: ``format(float(value), "g")`` (``1.0`` -> ``1``, ``1e-05``); the word
    ``default`` (no value set) passes unchanged."""
    if value == "default":
        return "default"
    return f"{float(value):g}"


def p_from_printed(p_printed: float) -> float:
    """Eq. (5) p from a p printed in Table 1, Table D5, Fig. D2 or Table B4 (authors' code convention): p_printed / 2.

    The authors' code uses the quantiles p/2 and 1 - p/2, i.e. it splits the printed value over the
    two margin sides. logit(1 - p_printed/2) / eps reproduces all 25 K(h o f) cells of Table D5 and
    the CLL K(h o f) of Tables 1 and 2 (see /work/shared/paper_tables/README.md, "How the K columns
    were assigned", point 5). Table B4's p = 0.15 for 4C3F/6C2F is already an eq. (5) p
    (inconsistency 9 there) and must not be halved.
    """
    p_printed = float(p_printed)
    if not (0.0 < p_printed < 1.0):
        raise ValueError(f"printed p must lie in (0, 1), got {p_printed!r}")
    return p_printed / 2.0


def printed_p(p: float) -> float:
    """The inverse of :func:`p_from_printed`: the paper's printed p for eq. (5)'s p (2 p)."""
    p = float(p)
    if not (0.0 < p < 0.5):
        raise ValueError(f"eq. (5) p must lie in (0, 0.5), got {p!r}")
    return 2.0 * p


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def failed(self) -> Path:
        return self.root / "failed.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def tightness(self) -> Path:
        return self.root / "tightness.json"

    @property
    def certify(self) -> Path:
        return self.root / "certify.json"


def final_metrics_path(run_dir: str | Path) -> Path:
    """Where a finished run's ``metrics.json`` lives."""
    return RunFiles(Path(run_dir)).metrics


# ----------------------------------------------------------------------------------------------------
# metric keys: one name per quantity, shared by training's metrics.json and every reader

CLEAN_KEY = "clean"
"""Clean test accuracy in % (``metrics`` of metrics.json; ``clean_accuracy`` as a fraction in certify.json)."""

K_F_KEY = "K_f"
"""K(f): the largest pairwise Lipschitz bound of the logits (paper section 3.3)."""

K_HF_KEY = "K_hf"
"""K(h∘f): K(f) composed with the loss non-linearity, 1/σ_ε(p) for CLL (section 3.3); a training-stage number."""

CRA_KEY = "cra"
"""The CRA in % at a run's headline radius (its training ε when certified there, else its first radius): one
column across runs whose radii differ, beside the per-radius :func:`cra_key` keys (the MLflow mirror logs it)."""

K_LOBO_KEY = "K_lobo"
"""The empirical lower Lipschitz bound of the tightness attack (supplement C, eq. (19); ``lower_bound`` in
tightness.json)."""

TIGHTNESS_KEY = "tightness"
"""Tightness in %: K_lobo / K(f) (supplement C, eq. (20); a fraction under this key in tightness.json)."""

SEED_KEY = "seed"
"""Top-level key of metrics.json: the seed the run was trained with."""

DATA_LABEL_KEY = "data"
"""Key under ``extra`` of metrics.json (and top-level in certify.json): the data label, e.g. "CIFAR-10 (JPEG export)"."""

RETRY_KEY = "retry"
"""Key under ``extra`` of metrics.json: None, or a mapping ``{"requested_seed", "trained_seed", "attempts"}`` for a
run retrained under another seed after its first seed collapsed (issue 13, item 5); ``attempts`` lists every
attempt in order as ``{"seed", "collapse"}`` (the last one is the trained seed; :func:`lipcert.training.train_with_retries`)."""

METRICS_SCHEMA_VERSION = 1
"""Version of the metrics.json layout built by :func:`metrics_record`."""


def finite_number(value, where: str) -> float:
    """``value`` as a finite float; ValueError naming ``where`` otherwise (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return number


def string_keyed(value, where: str) -> dict:
    """A mapping with string keys as a dict; ValueError naming ``where`` otherwise."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(value).__name__}")
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise ValueError(f"{where} keys must be strings, got {bad!r}")
    return dict(value)


def metrics_record(metrics: Mapping, params: Mapping, seed: int, wall_time_s: float, extra: Mapping | None, *,
                   versions: Mapping[str, str], hostname: str, timestamp_utc: str) -> dict:
    """The metrics.json layout (written by :func:`lipcert.tracking.write_metrics`, read by :func:`read_metrics`).

    ``metrics`` (clean accuracy and CRA in %, K(f), K(h∘f), epoch, iteration, ...), the run config ``params``, the
    ``seed``, ``wall_time_s``, ``extra`` (fingerprint, data label, collapse/retry flags; ``{}`` when None), the
    package ``versions``, ``hostname``, ``timestamp_utc`` and ``schema_version``. A bad seed or wall time raises
    ValueError.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(wall_time_s, bool) or not isinstance(wall_time_s, (int, float)):
        raise ValueError(f"wall_time_s must be a number of seconds, got {wall_time_s!r}")
    if not math.isfinite(wall_time_s) or wall_time_s < 0:
        raise ValueError(f"wall_time_s must be finite and >= 0, got {wall_time_s!r}")
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "metrics": string_keyed(metrics, "metrics"),
        "params": string_keyed(params, "params"),
        SEED_KEY: seed,
        "wall_time_s": float(wall_time_s),
        "extra": string_keyed(extra if extra is not None else {}, "extra"),
        "versions": dict(versions),
        "hostname": hostname,
        "timestamp_utc": timestamp_utc,
    }


def _record_path(run_dir_or_file, name: str) -> Path:
    path = Path(run_dir_or_file)
    return path / name if path.is_dir() else path


def read_history(run_dir_or_path) -> list[dict]:
    """The one reader of a run's ``history.json`` (a run directory or the file itself): the per-epoch records the
    training stage writes (``epoch``, ``loss``; ``clean`` and ``cra_<eps>`` on evaluated epochs). A missing file
    raises FileNotFoundError naming it; anything but a non-empty list of objects with an ``epoch`` ValueError."""
    path = _record_path(run_dir_or_path, "history.json")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist (the training stage writes it every epoch)")
    history = read_json(path)
    if not isinstance(history, list) or not history:
        raise ValueError(f"{path}: expected a non-empty list of per-epoch objects")
    for index, entry in enumerate(history):
        if not isinstance(entry, Mapping) or "epoch" not in entry:
            raise ValueError(f"{path}: entry {index} must be an object with an 'epoch', got {entry!r}")
    return history


def read_metrics(run_dir_or_path) -> dict:
    """The one reader of a run's ``metrics.json`` (a run directory or the file itself).

    Checks the parts every reader relies on: a ``metrics`` object, an int ``seed``, ``params`` and ``extra``
    objects when present. A missing file raises FileNotFoundError naming it; a malformed one ValueError naming it.
    """
    path = _record_path(run_dir_or_path, "metrics.json")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist (a finished training run writes it)")
    record = read_json(path)
    if not isinstance(record, Mapping) or not isinstance(record.get("metrics"), Mapping):
        raise ValueError(f"{path}: expected an object with a 'metrics' object")
    seed = record.get(SEED_KEY)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{path}: {SEED_KEY!r} must be an int, got {seed!r}")
    for name in ("params", "extra"):
        if record.get(name) is not None and not isinstance(record[name], Mapping):
            raise ValueError(f"{path}: {name!r} must be an object, got {record[name]!r}")
    return dict(record)


def data_label_of(record: Mapping) -> str:
    """The data label a metrics.json record carries (``extra.data``), "" when it has none."""
    label = (record.get("extra") or {}).get(DATA_LABEL_KEY, "")
    return label if isinstance(label, str) else ""


CERTIFY_SUMMARY_KEYS = ("n_samples", "clean_accuracy", "certified_accuracy", "global_lipschitz")
"""What certify.json must hold from the certification result (fractions; radii as ``f"{eps:.6g}"`` strings)."""


def certify_record(summary: Mapping, *, bound: str, certificate: str, k_body: float, converge_iterations: int,
                   converge_tol: float, converged: bool, data_label: str, numerics: Mapping) -> dict:
    """The certify.json layout (written by ``python -m lipcert certify``, read by :func:`read_certify`): the
    certification result's summary (:meth:`lipcert.certification.CertificationResult.summary`: clean accuracy and
    CRA per radius as fractions, K(f), radius statistics), the bound provider and certificate it used
    (:mod:`lipcert.methods`), the converged bound (K_body, iterations, tolerance, whether it converged), the data
    label and the device numerics."""
    missing = [key for key in CERTIFY_SUMMARY_KEYS if key not in summary]
    if missing:
        raise ValueError(f"certify.json: the certification summary lacks {missing}")
    return {**string_keyed(summary, "certification summary"), "bound": bound, "certificate": certificate,
            "k_body": finite_number(k_body, "k_body"), "converge_iterations": int(converge_iterations),
            "converge_tol": finite_number(converge_tol, "converge_tol"), "converged": bool(converged),
            "data": data_label, "numerics": string_keyed(numerics, "numerics")}


def read_certify(run_dir_or_path) -> dict:
    """Read a run's ``certify.json`` (written by ``python -m lipcert certify``, the certification stage).

    Returns its numbers in metrics.json's key space: ``clean`` and ``cra_<eps:.6g>`` in % (certify.json stores
    fractions), ``K_f`` (its ``global_lipschitz``) and ``n_samples``. A missing file raises FileNotFoundError naming
    it and the command that writes it; a missing or non-finite number ValueError naming the file and key.
    """
    path = _record_path(run_dir_or_path, "certify.json")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: the certification stage writes it "
                                f"(python -m lipcert certify --run {str(path.parent)!r}; workflow rule certify)")
    record = read_json(path)
    if not isinstance(record, Mapping):
        raise ValueError(f"{path}: expected a JSON object")
    for key in CERTIFY_SUMMARY_KEYS:
        if key not in record:
            raise ValueError(f"{path}: missing key {key!r}")
    if not isinstance(record["certified_accuracy"], Mapping):
        raise ValueError(f"{path}: 'certified_accuracy' must map radii to fractions, got {record['certified_accuracy']!r}")
    values = {CLEAN_KEY: 100.0 * finite_number(record["clean_accuracy"], f"{path}: 'clean_accuracy'"),
              K_F_KEY: finite_number(record["global_lipschitz"], f"{path}: 'global_lipschitz'"),
              "n_samples": finite_number(record["n_samples"], f"{path}: 'n_samples'")}
    for radius, fraction in record["certified_accuracy"].items():
        eps = finite_number(float(radius) if isinstance(radius, str) else radius, f"{path}: certified_accuracy radius")
        values[cra_key(eps)] = 100.0 * finite_number(fraction, f"{path}: certified_accuracy[{radius!r}]")
    return values


TIGHTNESS_TOLERANCE = 1e-9
"""Slack allowed above 1 for the tightness fraction (floating-point rounding of K_lobo / K(f))."""


def read_tightness(run_dir_or_path) -> float | None:
    """The tightness of a run in % from its ``tightness.json`` (supplement C, eq. (20): K_lobo / K(f), stored as a
    fraction), or None when the run has no such file. Out-of-range or missing values raise ValueError naming it."""
    path = _record_path(run_dir_or_path, "tightness.json")
    if not path.exists():
        return None
    record = read_json(path)
    if not isinstance(record, Mapping) or "tightness" not in record:
        raise ValueError(f"{path}: expected an object with key 'tightness'")
    fraction = finite_number(record["tightness"], f"{path}: 'tightness'")
    if not -TIGHTNESS_TOLERANCE <= fraction <= 1.0 + TIGHTNESS_TOLERANCE:
        raise ValueError(f"{path}: 'tightness' = {fraction!r} is outside [0, 1]; it is the fraction K_lobo / K(f) "
                         "(a value above 1 means the lower bound exceeds the certified bound)")
    return 100.0 * fraction


def param_value(params: Mapping, dotted: str, where: str) -> float:
    """The number at the dotted path ``dotted`` of a run config (e.g. ``loss.p``, ``loss.lam``, ``loss.delta``).

    A schedule (a mapping with ``kind`` and ``start``) must be constant and gives its value; a missing key, a
    non-constant schedule, null or a non-number raises ValueError naming ``where`` (the file).
    """
    value = params
    walked: list[str] = []
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            holder = ".".join(walked) or "params"
            keys = sorted(value) if isinstance(value, Mapping) else f"a {type(value).__name__}"
            raise ValueError(f"{where}: params has no {'.'.join([*walked, part])!r} "
                             f"(looking up {dotted!r}; {holder} holds {keys})")
        value = value[part]
        walked.append(part)
    if isinstance(value, Mapping) and "kind" in value and "start" in value:
        if value["kind"] != "constant":
            raise ValueError(f"{where}: params.{dotted} is a {value['kind']!r} schedule; this needs a constant value")
        value = value["start"]
    if value is None:
        raise ValueError(f"{where}: params.{dotted} is null; this needs a number")
    return finite_number(value, f"{where}: params.{dotted}")


def training_eps_of(params: Mapping, where: str) -> float:
    """The training margin ε of a run config (``params.loss.eps``): a constant's value, a schedule's end value."""
    loss = params.get("loss") if isinstance(params, Mapping) else None
    spec = loss.get("eps") if isinstance(loss, Mapping) else None
    if isinstance(spec, Mapping):
        spec = spec.get("end") if spec.get("end") is not None else spec.get("start")
    if spec is None:
        raise ValueError(f"{where}: params.loss.eps is not set; the training ε is needed")
    return finite_number(spec, f"{where}: params.loss.eps")


def headline_radius(params: Mapping) -> float:
    """The radius of a run's headline CRA (:data:`CRA_KEY`; the progress lines, MLflow's ``cra`` and the DVC run
    metrics): its training eps when the run is certified there (``eval_eps`` holds it, compared as :func:`cra_key`
    spells it), else its first certification radius. A config without ``eval_eps`` raises ValueError."""
    radii = [float(radius) for radius in params.get("eval_eps") or ()]
    if not radii:
        raise ValueError("the run config has no eval_eps (certification radii)")
    try:
        eps = training_eps_of(params, "run config")
    except ValueError:  # a method without a training eps (cross-entropy, the 1-Lipschitz recipes)
        return radii[0]
    return eps if any(cra_key(radius) == cra_key(eps) for radius in radii) else radii[0]


COLLAPSE_KEY = "collapse"
"""Key under ``extra`` of ``metrics.json``: None for a run that learned, else a mapping with at least ``reason`` (a
short sentence: e.g. clean accuracy at chance level, or the training loss back at its first-epoch value) set by the
training stage; reporting marks every table cell such a run feeds (issue 13, item 5)."""


def collapse_of(record) -> dict | None:
    """The collapse flag of a ``metrics.json`` record (``extra.collapse``), or None when the run did not collapse
    (or was written before the flag existed)."""
    flag = (record.get("extra") or {}).get(COLLAPSE_KEY)
    if flag is None:
        return None
    if not isinstance(flag, dict) or not isinstance(flag.get("reason"), str):
        raise ValueError(f"metrics.json extra.{COLLAPSE_KEY} must be null or a mapping with a 'reason' string, "
                         f"got {flag!r}")
    return flag


def retry_of(record) -> dict | None:
    """The retry note of a ``metrics.json`` record (``extra.retry``): None for a run trained under its requested
    seed (or written before the note existed), else a mapping with int ``requested_seed`` and ``trained_seed`` (and
    the ``attempts`` list, see :data:`RETRY_KEY`)."""
    note = (record.get("extra") or {}).get(RETRY_KEY)
    if note is None:
        return None
    seeds_ok = isinstance(note, dict) and all(
        isinstance(note.get(k), int) and not isinstance(note.get(k), bool) for k in ("requested_seed", "trained_seed"))
    if not seeds_ok:
        raise ValueError(f"metrics.json extra.{RETRY_KEY} must be null or a mapping with int 'requested_seed' and "
                         f"'trained_seed', got {note!r}")
    return note


def retry_attempt_dir(run_dir: str | Path, seed: int) -> Path:
    """Where retry attempt under ``seed`` of a collapsed run trains (a run directory of its own, resumable):
    ``<run>/retries/seed<seed>``; removed once the attempt is promoted into ``<run>`` or archived."""
    return Path(run_dir) / "retries" / f"seed{seed}"


def collapsed_attempt_dir(run_dir: str | Path, seed: int) -> Path:
    """Where the files (config, history, model, metrics.json with its collapse flag) of a collapsed attempt under
    ``seed`` of a retried run are kept: ``<run>/collapsed_attempts/seed<seed>``."""
    return Path(run_dir) / "collapsed_attempts" / f"seed{seed}"
