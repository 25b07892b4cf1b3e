"""Validated parameters of one training run (one method, one model, one seed).

The values of the paper's runs live in ``params/*.yaml`` with table references (CLL supplement tables
B1 and B4); this module turns one run's mapping into frozen dataclasses and rejects unknown keys,
wrong types and out-of-range values before any work starts.

Scheduled hyper-parameters (p, eps, beta, TRADES weight) are :class:`~lipcert.schedules.ScheduleSpec`
mappings; a plain number is shorthand for a constant schedule.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

from .config_validation import check_range, from_dict
from .run_record import PAPER_RADII
from .schedules import ScheduleSpec

__all__ = ["DataConfig", "LossConfig", "OptimConfig", "RunConfig", "load_run_config"]

_SCHEDULED = ("eps", "p", "beta", "trades_weight")
# keys added after runs existed: left out of the fingerprint while unset (old runs keep theirs)
_ENTER_ONLY_WHEN_SET = (("optim", "lr_reference_batch"), ("loss", "options"), (None, "bound"), (None, "certificate"))


@dataclass(frozen=True)
class ScheduleConfig:
    """Mapping form of :class:`ScheduleSpec` (validated by it)."""

    kind: Literal["constant", "linear", "polynomial"]
    start: float
    end: float | None = None
    power: float = 1.0
    until: int | None = None

    def __post_init__(self) -> None:
        self.spec()  # validates

    def spec(self) -> ScheduleSpec:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return ScheduleSpec.from_dict(data)


@dataclass(frozen=True)
class LossConfig:
    """Loss of a run: CLL (main eqs. (3)-(5), supplement Definition 2), GloRo, or plain cross-entropy.

    ``p`` is eq. (5)'s p (half the value printed in most of table B4 / table 1 / table D5; see
    :func:`lipcert.losses.p_from_printed`).  ``eps`` is the training margin (GloRo ramps it).
    ``lam`` weighs the K(f)^2 regulariser; ``power_iter`` is the number of power-iteration steps per
    training step (supplement B: 5); ``output_scale`` is GloRo's fixed temperature s = 1/T (supplement D).
    """

    name: str  # a registered loss (lipcert.losses.registry.LOSSES): cll, gloro, ce, certificate_regularized, ...
    eps: ScheduleConfig | None = None
    p: ScheduleConfig | None = None
    delta: float | None = None
    beta: ScheduleConfig | None = None
    normalisation: Literal["pairwise", "per_logit"] = "pairwise"
    offset_mode: Literal["two_sided", "one_sided"] = "two_sided"
    detach_k: bool = True
    lam: float = 0.0
    trades_weight: ScheduleConfig | None = None
    output_scale: float = 1.0
    power_iter: int = 5
    gamma: float | None = None
    margin: float | None = None
    offset: float | None = None
    temperature: float | None = None
    options: dict[str, Any] | None = None  # a registered loss's own options, validated by its options dataclass

    def __post_init__(self) -> None:
        from .losses.registry import check_loss_options  # the registry imports torch: only when a config is built

        check_loss_options(self.name, self.options)
        check_range("loss.lam", self.lam, lo=0.0)
        check_range("loss.power_iter", self.power_iter, lo=1)
        own = {"gamma": "certificate_regularized", "margin": "margin_hinge", "offset": "aol", "temperature": "aol"}
        for key, loss_name in own.items():
            if getattr(self, key) is not None and self.name != loss_name:
                raise ValueError(f"loss.{key} applies only to loss {loss_name!r}, not {self.name!r}")
        if self.gamma is not None:
            check_range("loss.gamma", self.gamma, lo=0.0)
        if self.name == "margin_hinge":
            if self.margin is None:
                raise ValueError("loss.margin is required for loss 'margin_hinge' (CPL uses 0.7)")
            check_range("loss.margin", self.margin, lo=0.0, lo_inclusive=False)
        if self.offset is not None:
            check_range("loss.offset", self.offset, lo=0.0)
        if self.temperature is not None:
            check_range("loss.temperature", self.temperature, lo=0.0, lo_inclusive=False)
        check_range("loss.output_scale", self.output_scale, lo=0.0, lo_inclusive=False)
        if self.output_scale != 1.0 and self.name != "gloro":
            raise ValueError("loss.output_scale (GloRo temperature s = 1/T, supplement D) applies only to loss 'gloro'")
        if self.delta is not None:
            check_range("loss.delta", self.delta, lo=0.0)
        if self.name in ("cll", "gloro") and self.eps is None:
            raise ValueError(f"loss.eps is required for loss {self.name!r}")
        if self.name == "cll":
            if self.p is None:
                raise ValueError("loss.p (eq. (5) slack) is required for loss 'cll'")
            for value in (self.p.start, self.p.spec().end):
                check_range("loss.p", value, lo=0.0, hi=0.5, lo_inclusive=False, hi_inclusive=False)
        elif self.p is not None:
            raise ValueError(f"loss.p applies only to loss 'cll', not {self.name!r}")
        if self.trades_weight is not None and self.name != "gloro":
            raise ValueError("loss.trades_weight applies only to loss 'gloro'")
        if self.eps is not None:
            for value in (self.eps.start, self.eps.spec().end):
                check_range("loss.eps", value, lo=0.0)


@dataclass(frozen=True)
class OptimConfig:
    """Adam/AdamW/SGD with step decay (supplement B: decay by 0.1 at epochs 400, 600, 780) or the triangular
    schedule of CPL/SLL (table B4 blocks 5-8; :data:`lipcert.schedules.TRIANGULAR_KNOTS`, per iteration).

    ``betas`` are Adam's (SLL: (0.5, 0.9)); ``momentum`` is SGD's.  ``lr_reference_batch`` (optional) says
    that ``lr`` belongs to that batch size: a run with another ``batch_size`` (e.g. the quick scale's 64
    instead of LBDN's 256) uses ``lr * batch_size / lr_reference_batch`` (the linear scaling rule; see
    :func:`lipcert.training.base_learning_rate`).  Without it ``lr`` is used as given.
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: Literal["step", "triangular"] = "step"
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    lr_reference_batch: int | None = None

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, lo=0.0, lo_inclusive=False)
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


_IMAGE_DATASETS = ("cifar10", "cifar100", "tiny_imagenet")
_FORMATS_BY_DATASET = {
    "cifar10": ("auto", "torchvision", "pickle", "binary", "image_folder"),
    "cifar100": ("auto", "torchvision", "pickle", "binary", "image_folder"),
    "tiny_imagenet": ("auto", "tiny_imagenet"),
}
_TWO_MOONS_DEFAULTS = {"n_train": 2000, "n_test": 20000, "noise_radius": 0.1, "seed": 0}


@dataclass(frozen=True)
class DataConfig:
    """Dataset of a run.

    ``two_moons``: generated (section 4.1); ``n_train``, ``n_test``, ``noise_radius`` and ``seed`` fix
    the data across runs.  ``cifar10`` / ``cifar100`` / ``tiny_imagenet`` (section 4.2, supplement B):
    read from ``root`` (default ``$LIPCERT_DATA_ROOT/<name>``) in ``format`` ('auto' detects it; see
    :mod:`lipcert.data.cifar`, :mod:`lipcert.data.tiny_imagenet`); ``subset_train`` / ``subset_test``
    keep the first k images per class (quick scale); ``augment`` switches the supplement-B training
    augmentation (crop, flip, colour jitter 0.25, rotation 2 degrees) on; two-moons has none.
    Fields of one kind of dataset may not be set for the other.
    """

    name: Literal["two_moons", "cifar10", "cifar100", "tiny_imagenet"]  # DATASET_NAMES below
    n_train: int = 2000
    n_test: int = 20000
    noise_radius: float = 0.1
    seed: int = 0
    root: str | None = None
    format: Literal["auto", "torchvision", "pickle", "binary", "image_folder", "tiny_imagenet"] = "auto"
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
        """Plain mapping (round-trips through :func:`load_run_config`)."""
        return json.loads(json.dumps(asdict(self)))

    def fingerprint(self) -> str:
        """Hash of everything that determines the run's result (threads excluded).

        ``optim.lr_reference_batch``, ``loss.options``, ``bound`` and ``certificate`` enter only when set, so runs made before the options
        existed keep their fingerprint (and resume from their checkpoints).
        """
        data = self.to_dict()
        data.pop("threads")
        for section, key in _ENTER_ONLY_WHEN_SET:
            node = data if section is None else data[section]
            if node[key] is None:
                del node[key]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _expand_schedules(loss: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(loss)
    for key in _SCHEDULED:
        value = out.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = {"kind": "constant", "start": float(value)}
    return out


def load_run_config(data: Mapping[str, Any], where: str = "run config") -> RunConfig:
    """Validate a run mapping (e.g. one entry of a params YAML file) into a :class:`RunConfig`.

    Plain numbers for scheduled loss parameters are expanded to constant schedules.  Errors name the
    source ``where``, the offending key and the allowed keys/values.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    prepared = dict(data)
    if isinstance(prepared.get("loss"), Mapping):
        prepared["loss"] = _expand_schedules(prepared["loss"])
    return from_dict(RunConfig, prepared, where)
