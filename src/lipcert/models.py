"""Lipschitz classifiers built from a declarative spec (CLL supplement tables B1 and B2).

A model is ``head o body``: the body is a stack of :class:`SpectralConv2d` / :class:`SpectralLinear`
layers with MinMax after each, the head is the last linear layer.  The bound machinery of
:mod:`lipcert.bounds` turns the per-layer power-iteration norms into K_body, the pairwise constants
K_ij = K_body * ||W_i - W_j|| and the global K(f) = max_ij K_ij (CLL eq. (1)/(16), supplement C).

Architectures are data: ``params/architectures.yaml`` holds table B2's layer strings
(``c(C,K,S,P)`` / ``d(C)``), so a new architecture needs no new code.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from .activations import ACTIVATIONS, make_activation
from .classifier import ConvergenceReport, LipschitzClassifier
from .one_lipschitz_nets import cpl_net, lipconvnet, sandwich_net, sll_net
from .power_iteration import SpectralConv2d, SpectralLinear

__all__ = [
    "ArchitectureSpec",
    "ConvergenceReport",
    "LipschitzClassifier",
    "build_model",
    "default_architectures_path",
    "load_architectures",
    "parse_layer",
]

_CONV = re.compile(r"^c\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")
_DENSE = re.compile(r"^d\(\s*(\d+)\s*\)$")


@dataclass(frozen=True)
class ConvSpec:
    """c(C,K,S,P) of table B2."""

    channels: int
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class DenseSpec:
    """d(C) of table B2."""

    features: int


def parse_layer(text: str) -> ConvSpec | DenseSpec:
    """Parse one table-B2 layer string, e.g. ``"c(32,4,2,1)"`` or ``"d(512)"``."""
    s = str(text).strip()
    if m := _CONV.match(s):
        c, k, st, p = (int(g) for g in m.groups())
        if min(c, k, st) < 1:
            raise ValueError(f"layer {text!r}: channels, kernel and stride must be >= 1")
        return ConvSpec(c, k, st, p)
    if m := _DENSE.match(s):
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"layer {text!r}: features must be >= 1")
        return DenseSpec(n)
    raise ValueError(f"layer {text!r}: expected 'c(C,K,S,P)' or 'd(C)' (CLL table B2 syntax)")


@dataclass(frozen=True)
class ArchitectureSpec:
    """A validated architecture: input shape (without batch) and either table-B2 layers or a family.

    ``family`` is ``"layers"`` for the table-B2 layer strings (4C3F, 6C2F, 8C2F, two-moons MLP); the
    1-Lipschitz families (``lipconvnet``, ``cpl``, ``sll``, ``sandwich``) are built by their builders in
    :mod:`lipcert.one_lipschitz_nets` from ``options`` and ``classes``.
    """

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[ConvSpec | DenseSpec, ...] = ()
    reference: str = ""
    family: str = "layers"
    options: tuple[tuple[str, object], ...] = ()
    classes: int = 0
    activation: str = "minmax"
    activation_init: tuple[float, ...] = ()

    @classmethod
    def from_dict(cls, name: str, data: dict, where: str = "architectures") -> "ArchitectureSpec":
        family = data.get("family", "layers") if isinstance(data, dict) else "layers"
        if family != "layers":
            return cls._family_from_dict(name, data, where)
        allowed = {"input_shape", "layers", "reference", "family", "activation", "activation_init"}
        if not isinstance(data, dict):
            raise ValueError(f"{where}: {name}: expected a mapping with keys {sorted(allowed)}")
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"{where}: {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key in ("input_shape", "layers"):
            if key not in data:
                raise ValueError(f"{where}: {name}: missing key {key!r}")
        shape = _input_shape(name, data, where)
        raw = data["layers"]
        tokens = raw.split() if isinstance(raw, str) else list(raw)
        layers = tuple(parse_layer(t) for t in tokens)
        if not layers or not isinstance(layers[-1], DenseSpec):
            raise ValueError(f"{where}: {name}: the last layer must be dense d(C) (the classifier head)")
        seen_dense = False
        for layer in layers:
            if isinstance(layer, DenseSpec):
                seen_dense = True
            elif seen_dense:
                raise ValueError(f"{where}: {name}: convolution {layer} after a dense layer")
            elif len(shape) != 3:
                raise ValueError(f"{where}: {name}: convolutions need a [C, H, W] input_shape")
        if layers[-1].features < 2:
            raise ValueError(f"{where}: {name}: the classifier needs at least 2 outputs")
        activation, init = _activation_slot(name, data, len(layers) - 1, where)
        return cls(name=name, input_shape=shape, layers=layers, reference=str(data.get("reference", "")),
                   activation=activation, activation_init=init)

    @classmethod
    def _family_from_dict(cls, name: str, data: dict, where: str) -> "ArchitectureSpec":
        family = data["family"]
        if family not in FAMILY_BUILDERS:
            raise ValueError(f"{where}: {name}: unknown family {family!r}; known: {sorted(FAMILY_BUILDERS)} or 'layers'")
        allowed = {"input_shape", "classes", "options", "reference", "family"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"{where}: {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key in ("input_shape", "classes"):
            if key not in data:
                raise ValueError(f"{where}: {name}: missing key {key!r}")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"{where}: {name}: options must be a mapping, got {options!r}")
        classes = int(data["classes"])
        if classes < 2:
            raise ValueError(f"{where}: {name}: the classifier needs at least 2 outputs")
        return cls(name=name, input_shape=_input_shape(name, data, where), reference=str(data.get("reference", "")),
                   family=family, options=tuple(sorted(options.items())), classes=classes)

    @property
    def num_classes(self) -> int:
        if self.family != "layers":
            return self.classes
        return self.layers[-1].features  # type: ignore[union-attr]


def _activation_slot(name: str, data: dict, n_hidden: int, where: str) -> tuple[str, tuple[float, ...]]:
    """``activation`` (after every layer but the last; default MinMax) and ``activation_init``: one number for all
    layers or one per hidden layer (ReLUθ thresholds, clipped-MaxMin caps; seed 004, table B.1.4 of the notes)."""
    activation = data.get("activation", "minmax")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{where}: {name}: unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    raw = data.get("activation_init", 1.0)
    values = [raw] * n_hidden if isinstance(raw, (int, float)) and not isinstance(raw, bool) else raw
    if not isinstance(values, list) or len(values) != n_hidden \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"{where}: {name}: activation_init must be a number >= 0 or a list of {n_hidden} of them "
                         f"(one per layer but the last), got {raw!r}")
    return activation, tuple(float(v) for v in values)


def _input_shape(name: str, data: dict, where: str) -> tuple[int, ...]:
    shape = tuple(int(v) for v in data["input_shape"])
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(f"{where}: {name}: input_shape must be [features] or [C, H, W], got {list(shape)}")
    return shape


def default_architectures_path() -> Path:
    """``params/architectures.yaml`` of the project (override with ``LIPCERT_PARAMS_DIR``)."""
    root = os.environ.get("LIPCERT_PARAMS_DIR")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "params"
    return base / "architectures.yaml"


def load_architectures(path: str | os.PathLike | None = None) -> dict[str, ArchitectureSpec]:
    """Read and validate every architecture of a YAML file."""
    p = Path(path) if path is not None else default_architectures_path()
    if not p.is_file():
        raise FileNotFoundError(f"architecture file not found: {p} (set LIPCERT_PARAMS_DIR or pass a path)")
    data = yaml.safe_load(p.read_text()) or {}
    return {name: ArchitectureSpec.from_dict(name, spec, where=str(p)) for name, spec in data.items()}


def _kaiming_(layer: nn.Module, generator: torch.Generator) -> None:
    nn.init.kaiming_normal_(layer.weight, generator=generator)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


HEADS = ("linear", "lln", "pooling_linear")

# family name -> builder(input_shape, num_classes, generator, head, **options) -> LipschitzClassifier
FAMILY_BUILDERS: dict = {
    "lipconvnet": lipconvnet.build,    # SOC (Singla & Feizi 2021), LipConvnet-n
    "cpl": cpl_net.build,              # CPL (Meunier et al. 2022)
    "sll": sll_net.build,              # SLL (Araujo et al. 2023)
    "sandwich": sandwich_net.build,    # LBDN (Wang & Manchester 2023)
}
# family name -> count_parameters(input_shape, num_classes, head=..., **options) -> int (nothing allocated)
FAMILY_PARAMETER_COUNTS: dict = {
    "lipconvnet": lipconvnet.count_parameters,
    "cpl": cpl_net.count_parameters,
    "sll": sll_net.count_parameters,
    "sandwich": sandwich_net.count_parameters,
}


def build_from_spec(spec: ArchitectureSpec, seed: int = 0, head: str = "linear") -> LipschitzClassifier:
    """Instantiate ``spec`` with Kaiming-normal weights, zero biases and random power-iteration vectors.

    Everything random is drawn from a generator seeded with ``seed``; torch's default initialisation in
    the layer constructors runs under a forked RNG, so the global RNG is left untouched.  ``head`` is the
    last layer: ``"linear"`` (unconstrained, as CLL uses on every model, supplement B) or ``"lln"``
    (last-layer normalisation, as SOC/SLL use with their own losses; 1-Lipschitz families only).
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    with torch.random.fork_rng(devices=[]):
        if spec.family != "layers":
            g = torch.Generator().manual_seed(int(seed))
            model = FAMILY_BUILDERS[spec.family](spec.input_shape, spec.num_classes, g, head, **dict(spec.options))
            model.name = spec.name
            return model
        if head != "linear":
            raise ValueError(f"{spec.name}: head {head!r} is only available for the 1-Lipschitz families")
        return _build(spec, seed)


def _build(spec: ArchitectureSpec, seed: int) -> LipschitzClassifier:
    """Layer construction; each spectral layer's iterate gets its true input shape."""
    g = torch.Generator().manual_seed(int(seed))
    body: list[nn.Module] = []
    shape = spec.input_shape
    *hidden, last = spec.layers
    inits = spec.activation_init or (1.0,) * len(hidden)
    for layer, init in zip(hidden, inits):
        if isinstance(layer, ConvSpec):
            conv = SpectralConv2d(shape[0], layer.channels, layer.kernel, layer.stride, layer.padding)
            _kaiming_(conv, g)
            conv.set_input_shape(shape, generator=g)
            shape = (layer.channels, *conv.output_hw(shape[1:]))
            body.append(conv)
        else:
            if len(shape) > 1:
                body.append(nn.Flatten())
                shape = (math.prod(shape),)
            lin = SpectralLinear(shape[0], layer.features)
            _kaiming_(lin, g)
            lin.reset_power_iteration(generator=g)
            shape = (layer.features,)
            body.append(lin)
        try:
            body.append(make_activation(spec.activation, shape, init))
        except ValueError as error:
            raise ValueError(f"{spec.name}: layer {layer}: {error}") from None
    if len(shape) > 1:
        body.append(nn.Flatten())
        shape = (math.prod(shape),)
    head = nn.Linear(shape[0], last.features)  # type: ignore[union-attr]
    _kaiming_(head, g)
    return LipschitzClassifier(nn.Sequential(*body), head, spec.input_shape, name=spec.name)


def build_model(name: str, seed: int = 0, architectures: str | os.PathLike | None = None,
                head: str = "linear") -> LipschitzClassifier:
    """Build the named architecture from ``params/architectures.yaml`` (or the given file)."""
    specs = load_architectures(architectures)
    if name not in specs:
        raise ValueError(f"unknown architecture {name!r}; available: {sorted(specs)}")
    return build_from_spec(specs[name], seed=seed, head=head)
