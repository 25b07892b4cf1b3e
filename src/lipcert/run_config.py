"""Validated parameters of one training run (one method, one model, one seed).

The values of the paper's runs live in ``params/*.yaml`` with table references (CLL supplement tables
B1 and B4); this module turns one run's mapping into frozen dataclasses and rejects unknown keys,
wrong types and out-of-range values before any work starts.

Scheduled hyper-parameters (p, eps, beta, TRADES weight) are :class:`~lipcert.schedules.ScheduleConfig`
mappings; a plain number is shorthand for a constant schedule.  Each loss owns its keys (:class:`LossConfig`).
"""

from __future__ import annotations

import hashlib
import os
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping

from .config_validation import check_range, from_dict
from .run_record import PAPER_RADII
from .schedules import ScheduleConfig

__all__ = ["DATA_ROOT_ENV", "DataConfig", "LossConfig", "OptimConfig", "RunConfig", "ScheduleConfig", "data_root",
           "load_run_config"]

# keys added after runs existed: left out of the fingerprint while unset (old runs keep theirs)
_ENTER_ONLY_WHEN_SET = (("optim", "lr_reference_batch"), (None, "bound"), (None, "certificate"), (None, "select_on_test"), ("optim", "lr_end"),
                        ("optim", "lr_hold"), ("optim", "lr_hold_extra_epochs"))

# --- compatibility with the one shared loss layout (before each loss owned its keys, issue 13 item 1) --------------
# Until commit 01a734a every run's loss section held all keys below, with these defaults, whatever its loss.  The
# fingerprint of a run of one of the losses of that time still hashes that layout (keys its loss does not declare
# at their defaults), so runs and checkpoints made before keep their fingerprints; losses registered later hash
# their own keys.  A config.json of that time (it holds at least _FIRST_SHARED_LAYOUT) loads: its keys that the
# loss does not declare are dropped where they hold these defaults (or null for ``options``).
_SHARED_LAYOUT_DEFAULTS: dict[str, Any] = {
    "eps": None, "p": None, "delta": None, "beta": None, "normalisation": "pairwise", "offset_mode": "two_sided",
    "detach_k": True, "lam": 0.0, "trades_weight": None, "output_scale": 1.0, "power_iter": 5, "gamma": None,
    "margin": None, "offset": None, "temperature": None,
}
_SHARED_LAYOUT_LOSSES = ("cll", "gloro", "ce", "certificate_regularized", "margin_hinge", "aol")
_FIRST_SHARED_LAYOUT = ("eps", "p", "delta", "beta", "normalisation", "offset_mode", "detach_k", "lam",
                        "trades_weight", "power_iter")


def _without_shared_layout_defaults(name: str, own: dict[str, Any], declared: tuple[str, ...]) -> dict[str, Any]:
    """``own`` without the undeclared keys at their shared-layout defaults, if it is a config.json of that layout."""
    if name not in _SHARED_LAYOUT_LOSSES or not set(_FIRST_SHARED_LAYOUT) <= {*own, "power_iter"}:
        return own
    defaults = {**_SHARED_LAYOUT_DEFAULTS, "options": None}
    return {k: v for k, v in own.items() if k in declared or k not in defaults or v != defaults[k]}


def _fingerprint_loss_section(section: dict[str, Any]) -> dict[str, Any]:
    if section["name"] in _SHARED_LAYOUT_LOSSES:
        return {**_SHARED_LAYOUT_DEFAULTS, **section}
    return section


@dataclass(frozen=True)
class LossConfig:
    """The loss of a run: a registered loss (:data:`lipcert.losses.registry.LOSSES`) and its own settings.

    ``settings`` is an instance of the loss's config dataclass (its keys, defaults and validation live in the loss's
    module, e.g. :class:`lipcert.losses.calibrated_loss.CalibratedLossConfig`; None: its defaults).
    ``power_iter``, the number of power-iteration steps per training step (supplement B: 5), is the one key every
    loss accepts: the training engine uses it whenever the loss trains with the bound.  In a params file the keys
    are flat, ``loss: {name: cll, eps: 0.15, p: 0.15, lam: 1.0e-4}`` (:meth:`from_mapping`, :meth:`to_dict`).
    """

    name: str
    settings: Any = None
    power_iter: int = 5

    def __post_init__(self) -> None:
        from .losses.registry import loss_settings  # the registry imports torch: only when a config is built

        object.__setattr__(self, "settings", loss_settings(self.name, self.settings))
        check_range("loss.power_iter", self.power_iter, lo=1)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "loss") -> "LossConfig":
        """The flat ``loss`` section of a run mapping: ``name``, ``power_iter`` and the named loss's own keys."""
        from .losses.registry import loss_keys, settings_from_mapping

        name = data.get("name")
        if not isinstance(name, str):
            raise ValueError(f"{where}: key 'name' expects the name of a registered loss, got {name!r}")
        common = tuple(f.name for f in fields(cls) if f.name != "settings")
        own = {k: v for k, v in data.items() if k not in common}
        own = _without_shared_layout_defaults(name, own, loss_keys(name))
        settings = settings_from_mapping(name, own, where, common)
        return from_dict(cls, {**{k: data[k] for k in common if k in data}, "settings": settings}, where)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping of :meth:`from_mapping`: ``name``, the loss's own keys, ``power_iter``."""
        return {"name": self.name, **asdict(self.settings), "power_iter": self.power_iter}

    def get(self, key: str, default: Any = None) -> Any:
        """The loss's setting ``key``, or ``default`` where the loss has no such key (e.g. ``p`` of a GloRo run)."""
        declared = {f.name for f in fields(self.settings)}
        return getattr(self.settings, key) if key in declared else default


@dataclass(frozen=True)
class OptimConfig:
    """Adam/AdamW/SGD with step decay (supplement B: decay by 0.1 at epochs 400, 600, 780) or the triangular
    schedule of CPL/SLL (table B4 blocks 5-8; :data:`lipcert.schedules.TRIANGULAR_KNOTS`, per iteration), or the
    exponential decay of Local-Lip (seed 004 eq. (27), per epoch): ``lr`` for the first ``lr_hold`` of the epochs,
    then geometric to ``lr_end`` at the last; ``lr_hold_extra_epochs`` (default off) holds that many epochs more,
    as seed 004's code does (``utils.lr_exp``, ``more=25``: decay from epoch 425 of 800, not the paper's 400).

    ``betas`` are Adam's (SLL: (0.5, 0.9)); ``momentum`` is SGD's.  ``lr_reference_batch`` (optional) says
    that ``lr`` belongs to that batch size: a run with another ``batch_size`` (e.g. the quick scale's 64
    instead of LBDN's 256) uses ``lr * batch_size / lr_reference_batch`` (the linear scaling rule; see
    :func:`lipcert.training.base_learning_rate`).  Without it ``lr`` is used as given.
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: Literal["step", "triangular", "exponential"] = "step"
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    lr_reference_batch: int | None = None
    lr_end: float | None = None
    lr_hold: float | None = None
    lr_hold_extra_epochs: int | None = None

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, lo=0.0, lo_inclusive=False)
        exponential = {"lr_end": self.lr_end, "lr_hold": self.lr_hold, "lr_hold_extra_epochs": self.lr_hold_extra_epochs}
        if self.lr_schedule == "exponential":
            if self.lr_end is None or self.lr_hold is None:
                raise ValueError("optim.lr_schedule 'exponential' (seed 004 eq. (27)) needs optim.lr_end and "
                                 "optim.lr_hold (the fraction of epochs at the initial rate)")
            check_range("optim.lr_end", self.lr_end, lo=0.0, lo_inclusive=False)
            check_range("optim.lr_hold", self.lr_hold, lo=0.0, hi=1.0, hi_inclusive=False)
            if self.lr_hold_extra_epochs is not None:
                check_range("optim.lr_hold_extra_epochs", self.lr_hold_extra_epochs, lo=0)
            if self.lr_milestones:
                raise ValueError("optim.lr_milestones apply to lr_schedule 'step' only, not 'exponential'")
        else:
            for key, value in exponential.items():
                if value is not None:
                    raise ValueError(f"optim.{key} applies to lr_schedule 'exponential' only, not {self.lr_schedule!r}")
        ref = self.lr_reference_batch
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int) or ref < 1):
            raise ValueError(f"optim.lr_reference_batch must be a positive integer or null, got {ref!r}")
        check_range("optim.weight_decay", self.weight_decay, lo=0.0)
        check_range("optim.lr_gamma", self.lr_gamma, lo=0.0, hi=1.0, lo_inclusive=False)
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)) or any(m < 1 for m in self.lr_milestones):
            raise ValueError(f"optim.lr_milestones must be increasing positive epochs, got {list(self.lr_milestones)}")
        if self.lr_schedule == "triangular" and self.lr_milestones:
            raise ValueError("optim.lr_milestones apply to lr_schedule 'step' only, not 'triangular'")
        if len(self.betas) != 2:
            raise ValueError(f"optim.betas must be two numbers, got {list(self.betas)}")
        for b in self.betas:
            check_range("optim.betas", b, lo=0.0, hi=1.0, hi_inclusive=False)
        check_range("optim.momentum", self.momentum, lo=0.0, hi=1.0, hi_inclusive=False)


_IMAGE_DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "mnist")
_FORMATS_BY_DATASET = {
    "cifar10": ("auto", "torchvision", "pickle", "binary", "image_folder"),
    "cifar100": ("auto", "torchvision", "pickle", "binary", "image_folder"),
    "tiny_imagenet": ("auto", "tiny_imagenet"),
    "mnist": ("auto", "torchvision", "idx"),  # lipcert.data.mnist.MNIST_FORMATS
}
_TWO_MOONS_DEFAULTS = {"n_train": 2000, "n_test": 20000, "noise_radius": 0.1, "seed": 0}


DATA_ROOT_ENV = "LIPCERT_DATA_ROOT"
"""Environment variable with the folder holding one sub-folder per image dataset (``<root>/cifar10`` ...)."""


@dataclass(frozen=True)
class DataConfig:
    """Dataset of a run.

    ``two_moons``: generated (section 4.1); ``n_train``, ``n_test``, ``noise_radius`` and ``seed`` fix
    the data across runs.  ``cifar10`` / ``cifar100`` / ``tiny_imagenet`` (section 4.2, supplement B) and
    ``mnist`` (seed paper 004, Local-Lip): read from ``root`` (default ``$LIPCERT_DATA_ROOT/<name>``) in
    ``format`` ('auto' detects it; see :mod:`lipcert.data.cifar`, :mod:`lipcert.data.tiny_imagenet`,
    :mod:`lipcert.data.mnist`); ``subset_train`` / ``subset_test`` keep the first k images per class
    (quick scale); ``augment`` switches the supplement-B training augmentation (crop, flip, colour
    jitter 0.25, rotation 2 degrees) on; two-moons and MNIST have none (for MNIST ``augment`` has no
    effect: :data:`lipcert.datasets.UNAUGMENTED`).
    Fields of one kind of dataset may not be set for the other.
    """

    name: Literal["two_moons", "cifar10", "cifar100", "tiny_imagenet", "mnist"]  # DATASET_NAMES below
    n_train: int = 2000
    n_test: int = 20000
    noise_radius: float = 0.1
    seed: int = 0
    root: str | None = None
    format: Literal["auto", "torchvision", "pickle", "binary", "image_folder", "tiny_imagenet", "idx"] = "auto"
    subset_train: int | None = None
    subset_test: int | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        check_range("data.n_train", self.n_train, lo=2)
        check_range("data.n_test", self.n_test, lo=1)
        check_range("data.noise_radius", self.noise_radius, lo=0.0)
        check_range("data.seed", self.seed, lo=0)
        if self.name == "two_moons":
            image_only = {"root": (self.root, None), "format": (self.format, "auto"),
                          "subset_train": (self.subset_train, None), "subset_test": (self.subset_test, None)}
            for key, (value, default) in image_only.items():
                if value != default:
                    raise ValueError(f"data.{key} applies only to image datasets {list(_IMAGE_DATASETS)}, "
                                     f"not to 'two_moons' (got {value!r}); remove it")
            return
        for key, default in _TWO_MOONS_DEFAULTS.items():
            if getattr(self, key) != default:
                hint = f"; use data.subset_{key[2:]} for a per-class subset" if key in ("n_train", "n_test") else ""
                raise ValueError(f"data.{key} applies only to 'two_moons', not to {self.name!r} "
                                 f"(got {getattr(self, key)!r}){hint}")
        allowed = _FORMATS_BY_DATASET[self.name]
        if self.format not in allowed:
            raise ValueError(f"data.format {self.format!r} is not a source of {self.name!r}; expected one of {list(allowed)}")
        if self.root is not None and not self.root.strip():
            raise ValueError("data.root must be a non-empty path (or left out to use $LIPCERT_DATA_ROOT/<name>)")
        for key in ("subset_train", "subset_test"):
            value = getattr(self, key)
            if value is not None:
                check_range(f"data.{key}", value, lo=1)


DATASET_NAMES: tuple[str, ...] = typing.get_args(typing.get_type_hints(DataConfig)["name"])
"""The datasets a run can name (``data.name``); the workflow's ``dataset`` wildcard (:mod:`lipcert.plan`)."""


@dataclass(frozen=True)
class RunConfig:
    """One training run.  ``eval_eps`` are the certification radii (paper: 36/255, 72/255, 108/255).

    ``head`` is the model's last layer: ``linear`` (unconstrained; CLL on every model, supplement B) or ``lln``
    (last-layer normalisation, SOC/SLL/LBDN with their own losses) or ``pooling_linear`` (the first C features,
    SLL's CIFAR-10 head); the last two for 1-Lipschitz architectures only.
    """

    model: str
    data: DataConfig
    loss: LossConfig
    epochs: int
    batch_size: int
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval_eps: tuple[float, ...] = PAPER_RADII
    converge_tol: float = 1e-9
    eval_every: int = 1
    threads: int = 1
    drop_last: bool = True
    head: Literal["linear", "lln", "pooling_linear"] = "linear"
    bound: str | None = None        # a registered bound provider (lipcert.methods); None: "global"
    certificate: str | None = None  # a registered certificate (lipcert.methods); None: "l2_margin"
    # seed 004's code (default off): keep the model of the evaluated epoch with the best test CRA after the loss's
    # ramps and report it (test-set model selection; seed_systems_code.md B.1.5)
    select_on_test: bool | None = None

    def __post_init__(self) -> None:
        from .methods import bound_provider, certificate  # validates the names (imports torch, as the losses do)

        bound_provider(self.bound)
        certificate(self.certificate)
        check_range("epochs", self.epochs, lo=1)
        check_range("batch_size", self.batch_size, lo=1)
        check_range("seed", self.seed, lo=0)
        check_range("converge_tol", self.converge_tol, lo=0.0, hi=1e-3, lo_inclusive=False)
        check_range("eval_every", self.eval_every, lo=1)
        check_range("threads", self.threads, lo=1)
        if not self.eval_eps:
            raise ValueError("eval_eps must list at least one radius")
        for e in self.eval_eps:
            check_range("eval_eps", e, lo=0.0, lo_inclusive=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (round-trips through :func:`load_run_config`); the loss section flat (:meth:`LossConfig.to_dict`)."""
        data = asdict(self)
        data["loss"] = self.loss.to_dict()
        return json.loads(json.dumps(data))

    def fingerprint(self) -> str:
        """Hash of everything that determines the run's result (threads excluded).

        ``optim.lr_reference_batch``, ``bound`` and ``certificate`` enter only when set, and the loss section of the
        six losses of the shared loss layout is hashed in that layout (``_SHARED_LAYOUT_DEFAULTS``), so runs made
        before keep their fingerprint (and resume from their checkpoints); ``tests/test_run_fingerprints.py`` pins them.
        """
        data = self.to_dict()
        data.pop("threads")
        data["loss"] = _fingerprint_loss_section(data["loss"])
        for section, key in _ENTER_ONLY_WHEN_SET:
            node = data if section is None else data[section]
            if node[key] is None:
                del node[key]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_run_config(data: Mapping[str, Any], where: str = "run config") -> RunConfig:
    """Validate a run mapping (e.g. one entry of a params YAML file) into a :class:`RunConfig`.

    The loss section is flat (:meth:`LossConfig.from_mapping`; plain numbers for scheduled loss parameters are
    constant schedules); a config.json of the shared loss layout loads too.  Errors name the source ``where``,
    the offending key and the allowed keys/values.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    return from_dict(RunConfig, data, where)


def data_root(cfg: DataConfig) -> Path:
    """The folder an image dataset is read from: ``cfg.root``, else ``$LIPCERT_DATA_ROOT/<name>``."""
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    base = os.environ.get(DATA_ROOT_ENV)
    if not base:
        raise ValueError(f"data.root is not set for dataset {cfg.name!r} and ${DATA_ROOT_ENV} is unset: set "
                         f"data.root (e.g. --set data.root=/path/to/{cfg.name}) or export {DATA_ROOT_ENV}=/path "
                         f"with the data in /path/{cfg.name}")
    return Path(base).expanduser() / cfg.name
