"""The training objectives by name (issue 13, item 1): one entry per loss, no name dispatch elsewhere.

An entry names the loss's own config dataclass (its keys in a run's ``loss`` section, their defaults and their
validation, defined in the loss's module), says how to build the run's loss from it (scheduled values evaluated
at the iteration t of T, CLL supplement eq. (17)), whether it trains with the differentiable bound K_body, and
its K(h∘f) (section 4.2: 1/sigma_eps(p) for CLL with the K-scale beta, s K(f) for GloRo with output scale s
(supplement D), K(f) otherwise).  A new loss is its module plus one :func:`register_loss` call; its keys are
written flat in a params file (``loss: {name: my_loss, my_key: 1.0}``) as those of the losses below.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lipcert.config_validation import from_dict, unknown_key_message
from lipcert.losses.aol_loss import AOLLossConfig, aol_loss
from lipcert.losses.calibrated_loss import CalibratedLossConfig, calibrated_loss, calibration_scale
from lipcert.losses.certificate_regularized import CertificateRegularizedConfig, certificate_regularized_loss
from lipcert.losses.cross_entropy import CrossEntropyConfig, cross_entropy_loss
from lipcert.losses.gloro_loss import GloroLossConfig, gloro_loss
from lipcert.losses.local_lip_loss import LocalLipLossConfig, local_lip_loss, local_lip_state
from lipcert.losses.margin_hinge import MarginHingeConfig, margin_hinge_loss
from lipcert.schedules import ScheduleConfig

__all__ = ["LOSSES", "LossEntry", "build_loss", "calibrated_model_constant", "loss_keys", "loss_settings",
           "loss_training_state", "per_sample_loss", "register_loss", "settings_from_mapping", "trains_with_bound"]

# loss(logits, targets, k_body, head_weight, t) -> scalar tensor
LossFn = Callable[..., object]


@dataclass(frozen=True)
class LossEntry:
    """``build(settings, T) -> LossFn``; ``uses_bound``: whether it trains with K_body (a bool, or a function of
    the settings, e.g. cross-entropy only with a lam K^2 term); ``model_constant(settings, k_f, t, T) -> K(h∘f)``;
    ``config``: the frozen dataclass of the loss's keys (``settings`` is an instance of it, validated from the
    run's ``loss`` section by :func:`lipcert.config_validation.from_dict`).

    ``per_sample``: the loss takes a sixth argument, a :class:`lipcert.losses.local_lip_loss.TrainingBatch` (model,
    inputs, their training-set positions, step counters), e.g. for a per-input bound; ``training_state(settings,
    model, n_train, run_dir, seed)`` makes the run's state such a loss keeps between steps (with ``end_epoch()``,
    ``state_dict()``, ``load_state_dict()``; saved in the checkpoint), or is None."""

    build: Callable[[Any, int], LossFn]
    uses_bound: bool | Callable[[Any], bool]
    model_constant: Callable[[Any, float, int, int], float]
    config: type
    per_sample: bool = False
    training_state: Callable[..., Any] | None = None


def _value(spec: ScheduleConfig | None, t: int, total: int, default=None):
    return spec.value(t, total) if spec is not None else default


def _cll(c: CalibratedLossConfig, total: int) -> LossFn:
    def cll(logits, targets, k_body, head_weight, t):
        return calibrated_loss(
            logits, targets, k_body, head_weight, eps=_value(c.eps, t, total), p=_value(c.p, t, total),
            delta=c.delta, beta=_value(c.beta, t, total, 1.0), normalisation=c.normalisation,
            offset_mode=c.offset_mode, detach_k=c.detach_k, lam=c.lam)
    return cll


def _gloro(c: GloroLossConfig, total: int) -> LossFn:
    def gloro(logits, targets, k_body, head_weight, t):
        return gloro_loss(logits, targets, k_body, head_weight, eps=_value(c.eps, t, total),
                          trades_weight=_value(c.trades_weight, t, total), output_scale=c.output_scale)
    return gloro


def _certificate_regularized(c: CertificateRegularizedConfig, total: int) -> LossFn:
    def soc(logits, targets, k_body, head_weight, t):
        return certificate_regularized_loss(logits, targets, k_body, head_weight, gamma=c.gamma or 0.0)
    return soc


def _margin_hinge(c: MarginHingeConfig, total: int) -> LossFn:
    def cpl(logits, targets, k_body, head_weight, t):
        return margin_hinge_loss(logits, targets, k_body, head_weight, margin=c.margin)
    return cpl


def _aol(c: AOLLossConfig, total: int) -> LossFn:
    offset, temperature = c.offset_value(), c.temperature_value()

    def aol(logits, targets, k_body, head_weight, t):
        return aol_loss(logits, targets, k_body, head_weight, offset=offset, temperature=temperature)
    return aol


def _cross_entropy(c: CrossEntropyConfig, total: int) -> LossFn:
    def ce(logits, targets, k_body, head_weight, t):
        return cross_entropy_loss(logits, targets, k_body, head_weight, lam=c.lam)
    return ce


def _with_k_squared(c) -> bool:
    """A lam K(f)^2 term (main eq. (3)) needs the differentiable bound."""
    return c.lam > 0


def _k_f(c, k_f: float, t: int, total: int) -> float:
    return k_f


def _k_hf_gloro(c: GloroLossConfig, k_f: float, t: int, total: int) -> float:
    return c.output_scale * k_f


def _k_hf_cll(c: CalibratedLossConfig, k_f: float, t: int, total: int) -> float:
    beta = _value(c.beta, t, total, 1.0)
    return 1.0 / (calibration_scale(_value(c.eps, t, total), _value(c.p, t, total)) * beta)


LOSSES: dict[str, LossEntry] = {
    "cll": LossEntry(_cll, True, _k_hf_cll, CalibratedLossConfig),          # CLL main eqs. (3)-(5), suppl. Def. 2
    "gloro": LossEntry(_gloro, True, _k_hf_gloro, GloroLossConfig),         # GloRo (+ TRADES), supplement D
    "ce": LossEntry(_cross_entropy, _with_k_squared, _k_f, CrossEntropyConfig),  # cross-entropy (+ lam K^2)
    "certificate_regularized": LossEntry(_certificate_regularized, False, _k_f, CertificateRegularizedConfig),  # SOC
    "margin_hinge": LossEntry(_margin_hinge, False, _k_f, MarginHingeConfig),  # CPL
    "aol": LossEntry(_aol, False, _k_f, AOLLossConfig),                     # SLL / LBDN
    "local_lip": LossEntry(local_lip_loss, False, _k_f, LocalLipLossConfig,  # Local-Lip-B / -G, seed 004 eq. (25)
                           per_sample=True, training_state=local_lip_state),
}


def register_loss(name: str, entry: LossEntry) -> None:
    """Add a loss under ``name`` (the one place a new method's loss is named); a taken name raises."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} is already registered")
    if not isinstance(entry, LossEntry):
        raise TypeError(f"register_loss({name!r}, ...) needs a LossEntry, got {type(entry).__name__}")
    if not (dataclasses.is_dataclass(entry.config) and isinstance(entry.config, type)):
        raise TypeError(f"register_loss({name!r}, ...): LossEntry.config must be a dataclass type, got {entry.config!r}")
    LOSSES[name] = entry


def _named(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r}; registered: {sorted(LOSSES)} (lipcert.losses.registry)")
    return LOSSES[name]


def _entry(loss) -> LossEntry:
    return _named(loss.name)


def loss_keys(name: str) -> tuple[str, ...]:
    """The keys loss ``name`` declares (the fields of its config dataclass), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(_named(name).config) if f.init)


def _is_schedule(hint) -> bool:
    return hint is ScheduleConfig or ScheduleConfig in typing.get_args(hint)


def settings_from_mapping(name: str, data: Mapping[str, Any], where: str, common_keys: tuple[str, ...] = ()):
    """Validate the keys of loss ``name`` in ``data`` (its flat ``loss`` section without the ``common_keys``) into its
    config dataclass.  A number for a schedule field is a constant schedule.  A key the loss does not declare raises
    ValueError naming the key, the loss, the losses that do declare it and the accepted keys."""
    config = _named(name).config
    accepted = loss_keys(name)
    allowed = sorted({*accepted, *common_keys})
    for key in data:
        if key in accepted:
            continue
        owners = sorted(n for n in LOSSES if key in loss_keys(n))
        if owners:
            whose = f"loss {owners[0]!r}" if len(owners) == 1 else f"losses {owners}"
            raise ValueError(f"{where}: loss.{key} applies only to {whose}, not {name!r}; "
                             f"loss {name!r} accepts {allowed}")
        raise ValueError(unknown_key_message(where, key, allowed, f" for loss {name!r}"))
    hints = typing.get_type_hints(config)
    values = {k: ScheduleConfig.from_value(v) if _is_schedule(hints[k]) else v for k, v in data.items()}
    return from_dict(config, values, where)


def loss_settings(name: str, settings=None):
    """``settings`` checked to be loss ``name``'s config dataclass; None gives its defaults (required keys raise)."""
    config = _named(name).config
    if settings is None:
        return from_dict(config, {}, f"loss ({name})")
    if not isinstance(settings, config):
        raise TypeError(f"loss {name!r} takes its settings as {config.__name__}, got {type(settings).__name__}")
    return settings


def build_loss(loss, total_iterations: int) -> LossFn:
    """The run's loss ``f(logits, targets, k_body, head_weight, t)`` with its scheduled values at t of T."""
    return _entry(loss).build(loss.settings, total_iterations)


def per_sample_loss(loss) -> bool:
    """Whether the run's loss takes the :class:`~lipcert.losses.local_lip_loss.TrainingBatch` argument."""
    return _entry(loss).per_sample


def loss_training_state(loss, model, n_train: int, run_dir, seed: int):
    """The state the run's loss keeps between steps (None for most losses)."""
    factory = _entry(loss).training_state
    return None if factory is None else factory(loss.settings, model, n_train, run_dir, seed)


def trains_with_bound(loss) -> bool:
    """Whether a training step needs the differentiable K_body (the loss uses it, or a lam K^2 term)."""
    uses_bound = _entry(loss).uses_bound
    return bool(uses_bound(loss.settings) if callable(uses_bound) else uses_bound)


def calibrated_model_constant(loss, k_f: float, t: int, total: int) -> float:
    """K(h∘f) of the run's loss at iteration t of T given the converged K(f) (section 4.2)."""
    return _entry(loss).model_constant(loss.settings, k_f, t, total)
