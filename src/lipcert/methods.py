"""What a method trains with and is evaluated by, besides its loss (issue 13, item 1): bound providers and certificates.

A *method* is a training objective (:mod:`lipcert.losses.registry`), the *bound provider* it trains and certifies
with, and the *certificate* that turns logits and constants into certified accuracy.  Both registries below hold
today's single entries; the next methods add entries, not branches:

* a bound provider gives the differentiable training-time K_body (``training_constant(model, n_iter)``) and the
  certified constants (``certified_constants(model, inputs)``): a (C, C) matrix of K_ij for a global bound, or
  (N, C, C) for a per-input (local) bound (``per_input``).  ``global``: the product of the layers' spectral norms
  and 1-Lipschitz constants times the head's pairwise row distances (CLL eq. (1)/(16), supplement C).
* a certificate decides per sample and radius (``certify(logits, labels, constants, eps_list)`` ->
  :class:`lipcert.certification.CertificationResult`).  ``l2_margin``: f_j - f_i > eps K_ji for all i != j
  (supplement C, eq. (18)).  ``local_bcp``: the global certificate, PGD-100, then the local bound of seed 004
  (:mod:`lipcert.local_certification`).  An ℓ∞ certificate or a LipLT-style pairwise provider are further entries.

A run names them in ``bound`` and ``certificate`` (params; unset means ``global`` and ``l2_margin``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .certification import CertificationResult, certification_logits, certify, check_certification_inputs
from .local_certification import certify_local

__all__ = ["BOUND_PROVIDERS", "CERTIFICATES", "BoundProvider", "Certificate", "bound_provider", "certificate",
           "certify_with", "DEFAULT_BOUND", "DEFAULT_CERTIFICATE", "register_bound_provider", "register_certificate",
           "resolve_bound_name", "resolve_certificate_name"]

DEFAULT_BOUND = "global"
DEFAULT_CERTIFICATE = "l2_margin"


@dataclass(frozen=True)
class BoundProvider:
    """``training_constant(model, n_iter)``: differentiable K_body; ``certified_constants(model, inputs)``: (C, C) or,
    with ``per_input``, (N, C, C) float64 constants from the converged bound."""

    training_constant: Callable[[torch.nn.Module, int], torch.Tensor]
    certified_constants: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
    per_input: bool = False


@dataclass(frozen=True)
class Certificate:
    """``certify(logits, labels, constants, eps_list) -> CertificationResult``; ``per_input_constants``: accepts
    (N, C, C) constants.  ``certify_model(model, inputs, labels, eps_list, batch_size=, transform=, domain=)``, when
    set, certifies from the model itself (a certificate whose bound depends on the radius, as the local bound's
    boxes do); ``certify`` is then the global fallback it starts from."""

    certify: Callable[..., CertificationResult]
    per_input_constants: bool = False
    certify_model: Callable[..., CertificationResult] | None = None


BOUND_PROVIDERS: dict[str, BoundProvider] = {
    "global": BoundProvider(lambda model, n_iter: model.body_lipschitz(n_iter),
                            lambda model, inputs: model.pairwise_lipschitz()),
}

CERTIFICATES: dict[str, Certificate] = {
    "l2_margin": Certificate(certify),
    # seed 004: global certificate first, PGD-100, then the local bound (lipcert.local_certification)
    "local_bcp": Certificate(certify, certify_model=certify_local),
}


def _register(table: dict, name: str, entry, kind: type, what: str) -> None:
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered")
    if not isinstance(entry, kind):
        raise TypeError(f"registering {what} {name!r} needs a {kind.__name__}, got {type(entry).__name__}")
    table[name] = entry


def register_bound_provider(name: str, provider: BoundProvider) -> None:
    """Add a bound provider under ``name`` (e.g. a per-input local bound); a taken name raises."""
    _register(BOUND_PROVIDERS, name, provider, BoundProvider, "bound provider")


def register_certificate(name: str, cert: Certificate) -> None:
    """Add a certificate under ``name`` (e.g. an ℓ∞ certificate); a taken name raises."""
    _register(CERTIFICATES, name, cert, Certificate, "certificate")


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; registered: {sorted(table)} (lipcert.methods)")
    return table[name]


def resolve_bound_name(name: str | None) -> str:
    """The name a run's ``bound`` stands for (None: ``global``)."""
    return DEFAULT_BOUND if name is None else name


def resolve_certificate_name(name: str | None) -> str:
    """The name a run's ``certificate`` stands for (None: ``l2_margin``)."""
    return DEFAULT_CERTIFICATE if name is None else name


def bound_provider(name: str | None) -> BoundProvider:
    """The registered bound provider (None: ``global``)."""
    return _lookup(BOUND_PROVIDERS, resolve_bound_name(name), "bound provider")


def certificate(name: str | None) -> Certificate:
    """The registered certificate (None: ``l2_margin``)."""
    return _lookup(CERTIFICATES, resolve_certificate_name(name), "certificate")


def certify_with(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps_list, *,
                 bound: str | None = None, certificate_name: str | None = None, batch_size: int = 1000,
                 transform=None, domain: tuple[float, float] | None = None) -> CertificationResult:
    """Certify ``model`` on (inputs, labels) with a registered bound provider and certificate (defaults: the global
    bound and the ℓ2 margin certificate, i.e. :func:`lipcert.certification.certify_model`)."""
    check_certification_inputs(inputs, labels, batch_size)
    provider, cert = bound_provider(bound), certificate(certificate_name)
    if cert.certify_model is not None:
        return cert.certify_model(model, inputs, labels, eps_list, batch_size=batch_size, transform=transform,
                                  domain=domain)
    if provider.per_input and not cert.per_input_constants:
        raise ValueError(f"certificate {resolve_certificate_name(certificate_name)!r} takes global constants, but bound "
                         f"provider {bound!r} gives per-input ones")
    constants = provider.certified_constants(model, inputs)
    return cert.certify(certification_logits(model, inputs, batch_size, transform), labels, constants, eps_list)
