"""The training objectives by name (issue 13, item 1, first step): one entry per loss, no name dispatch elsewhere.

An entry says how to build the run's loss from its ``LossConfig`` (scheduled values evaluated at the iteration
t of T, CLL supplement eq. (17)), whether it trains with the differentiable bound K_body, and its K(h∘f) (section
4.2: 1/sigma_eps(p) for CLL with the K-scale beta, s K(f) for GloRo with output scale s (supplement D), K(f)
otherwise).  A new loss is its module plus one :func:`register_loss` call, with its own options dataclass
(``loss.options`` in a params file); the six losses below still keep their options as ``LossConfig`` fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lipcert.config_validation import from_dict
from lipcert.losses.aol_loss import SLL_OFFSET, SLL_TEMPERATURE, aol_loss
from lipcert.losses.calibrated_loss import calibrated_loss, calibration_scale
from lipcert.losses.certificate_regularized import certificate_regularized_loss
from lipcert.losses.cross_entropy import cross_entropy_loss
from lipcert.losses.gloro_loss import gloro_loss
from lipcert.losses.margin_hinge import margin_hinge_loss

__all__ = ["LOSSES", "LossEntry", "build_loss", "calibrated_model_constant", "check_loss_options", "loss_options",
           "register_loss", "trains_with_bound"]

# loss(logits, targets, k_body, head_weight, t) -> scalar tensor
LossFn = Callable[..., object]


@dataclass(frozen=True)
class LossEntry:
    """``build(loss_config, T) -> LossFn``; ``uses_bound``: trains with K_body even without a K^2 term;
    ``model_constant(loss_config, k_f, t, T) -> K(h∘f)``; ``options``: the dataclass of the loss's own options
    (``loss.options`` in a params file, validated by :func:`lipcert.config_validation.from_dict`; read them in
    ``build`` with :func:`loss_options`), or None."""

    build: Callable[[object, int], LossFn]
    uses_bound: bool
    model_constant: Callable[[object, float, int, int], float]
    options: type | None = None


def _value(spec, t: int, total: int, default=None):
    return spec.spec().value(t, total) if spec is not None else default


def _cll(loss, total: int) -> LossFn:
    def cll(logits, targets, k_body, head_weight, t):
        return calibrated_loss(
            logits, targets, k_body, head_weight, eps=_value(loss.eps, t, total), p=_value(loss.p, t, total),
            delta=loss.delta, beta=_value(loss.beta, t, total, 1.0), normalisation=loss.normalisation,
            offset_mode=loss.offset_mode, detach_k=loss.detach_k, lam=loss.lam)
    return cll


def _gloro(loss, total: int) -> LossFn:
    def gloro(logits, targets, k_body, head_weight, t):
        return gloro_loss(logits, targets, k_body, head_weight, eps=_value(loss.eps, t, total),
                          trades_weight=_value(loss.trades_weight, t, total), output_scale=loss.output_scale)
    return gloro


def _certificate_regularized(loss, total: int) -> LossFn:
    def soc(logits, targets, k_body, head_weight, t):
        return certificate_regularized_loss(logits, targets, k_body, head_weight, gamma=loss.gamma or 0.0)
    return soc


def _margin_hinge(loss, total: int) -> LossFn:
    def cpl(logits, targets, k_body, head_weight, t):
        return margin_hinge_loss(logits, targets, k_body, head_weight, margin=loss.margin)
    return cpl


def _aol(loss, total: int) -> LossFn:
    offset = SLL_OFFSET if loss.offset is None else loss.offset
    temperature = SLL_TEMPERATURE if loss.temperature is None else loss.temperature

    def aol(logits, targets, k_body, head_weight, t):
        return aol_loss(logits, targets, k_body, head_weight, offset=offset, temperature=temperature)
    return aol


def _cross_entropy(loss, total: int) -> LossFn:
    def ce(logits, targets, k_body, head_weight, t):
        return cross_entropy_loss(logits, targets, k_body, head_weight, lam=loss.lam)
    return ce


def _k_f(loss, k_f: float, t: int, total: int) -> float:
    return k_f


def _k_hf_gloro(loss, k_f: float, t: int, total: int) -> float:
    return loss.output_scale * k_f


def _k_hf_cll(loss, k_f: float, t: int, total: int) -> float:
    beta = _value(loss.beta, t, total, 1.0)
    return 1.0 / (calibration_scale(_value(loss.eps, t, total), _value(loss.p, t, total)) * beta)


LOSSES: dict[str, LossEntry] = {
    "cll": LossEntry(_cll, True, _k_hf_cll),                          # CLL main eqs. (3)-(5), supplement Def. 2
    "gloro": LossEntry(_gloro, True, _k_hf_gloro),                    # GloRo (+ TRADES), supplement D
    "ce": LossEntry(_cross_entropy, False, _k_f),                     # cross-entropy (+ lam K^2)
    "certificate_regularized": LossEntry(_certificate_regularized, False, _k_f),  # SOC
    "margin_hinge": LossEntry(_margin_hinge, False, _k_f),            # CPL
    "aol": LossEntry(_aol, False, _k_f),                              # SLL / LBDN
}


def register_loss(name: str, entry: LossEntry) -> None:
    """Add a loss under ``name`` (the one place a new method's loss is named); a taken name raises."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} is already registered")
    if not isinstance(entry, LossEntry):
        raise TypeError(f"register_loss({name!r}, ...) needs a LossEntry, got {type(entry).__name__}")
    LOSSES[name] = entry


def _named(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; registered: {sorted(LOSSES)} (lipcert.losses.registry)")
    return LOSSES[name]


def _entry(loss) -> LossEntry:
    return _named(loss.name)


def check_loss_options(name: str, options) -> None:
    """Raise ValueError naming the problem: an unregistered loss, or options it does not declare or accept."""
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r}; registered: {sorted(LOSSES)} (lipcert.losses.registry)")
    entry = LOSSES[name]
    if options is None:
        if entry.options is not None:
            from_dict(entry.options, {}, f"loss.options ({name})")  # required options must be given
        return
    if entry.options is None:
        raise ValueError(f"loss.options: loss {name!r} declares no options, got {sorted(options)}")
    from_dict(entry.options, options, f"loss.options ({name})")


def loss_options(loss):
    """The validated options dataclass of the run's loss (its declared defaults where ``loss.options`` is unset)."""
    entry = _entry(loss)
    if entry.options is None:
        raise ValueError(f"loss {loss.name!r} declares no options")
    return from_dict(entry.options, loss.options or {}, f"loss.options ({loss.name})")


def build_loss(loss, total_iterations: int) -> LossFn:
    """The run's loss ``f(logits, targets, k_body, head_weight, t)`` with its scheduled values at t of T."""
    return _entry(loss).build(loss, total_iterations)


def trains_with_bound(loss) -> bool:
    """Whether a training step needs the differentiable K_body (the loss uses it, or a lam K^2 term)."""
    return _entry(loss).uses_bound or loss.lam > 0


def calibrated_model_constant(loss, k_f: float, t: int, total: int) -> float:
    """K(h∘f) of the run's loss at iteration t of T given the converged K(f) (section 4.2)."""
    return _entry(loss).model_constant(loss, k_f, t, total)
