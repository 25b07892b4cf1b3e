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
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from .activations import MinMax
from .bounds import pairwise_constants, per_logit_constants, product
from .power_iteration import LayerConvergence, SpectralConv2d, SpectralLinear

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
    """A validated architecture: input shape (without batch) and table-B2 layers."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[ConvSpec | DenseSpec, ...]
    reference: str = ""

    @classmethod
    def from_dict(cls, name: str, data: dict, where: str = "architectures") -> "ArchitectureSpec":
        allowed = {"input_shape", "layers", "reference"}
        if not isinstance(data, dict):
            raise ValueError(f"{where}: {name}: expected a mapping with keys {sorted(allowed)}")
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"{where}: {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key in ("input_shape", "layers"):
            if key not in data:
                raise ValueError(f"{where}: {name}: missing key {key!r}")
        shape = tuple(int(v) for v in data["input_shape"])
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ValueError(f"{where}: {name}: input_shape must be [features] or [C, H, W], got {list(shape)}")
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
        return cls(name=name, input_shape=shape, layers=layers, reference=str(data.get("reference", "")))

    @property
    def num_classes(self) -> int:
        return self.layers[-1].features  # type: ignore[union-attr]


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


@dataclass(frozen=True)
class ConvergenceReport:
    """Result of :meth:`LipschitzClassifier.converge` (float64)."""

    layers: tuple[LayerConvergence, ...]
    k_body: float
    k_global: float
    tol: float
    seconds: float

    @property
    def iterations(self) -> int:
        """Total power-iteration steps over all layers."""
        return sum(layer.iterations for layer in self.layers)

    @property
    def converged(self) -> bool:
        return all(layer.converged for layer in self.layers)


class LipschitzClassifier(nn.Module):
    """``f = head o body`` with tracked per-layer spectral norms.

    Training uses :meth:`body_lipschitz` (few differentiable power-iteration steps); evaluation and
    certification use :meth:`converge` and the frozen float64 values of :meth:`pairwise_lipschitz`.
    """

    def __init__(self, body: nn.Sequential, head: nn.Linear, input_shape: tuple[int, ...], name: str = "") -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.input_shape = tuple(input_shape)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def spectral_layers(self) -> list[SpectralConv2d | SpectralLinear]:
        """The layers of the body whose norms enter K_body, in order."""
        return [m for m in self.body if isinstance(m, (SpectralConv2d, SpectralLinear))]

    # --- training-time bound ------------------------------------------------------------------
    def body_lipschitz(self, n_iter: int = 5, update: bool = True, grad_through_iterates: bool = True) -> torch.Tensor:
        """K_body from ``n_iter`` warm-started power-iteration steps per layer, differentiable.

        A (slightly low) training-time estimate; the lambda*K^2 term and GloRo backpropagate through it.
        """
        return product([layer.power_sigma(n_iter, update, grad_through_iterates) for layer in self.spectral_layers()])

    # --- converged bound ----------------------------------------------------------------------
    def converge(self, tol: float = 1e-9, max_iter: int = 100_000, method: str = "lanczos",
                 block_size: int = 4) -> ConvergenceReport:
        """Converge every layer in float64 so that the global bound's relative error is below ``tol``.

        Each of the L layers is iterated to an estimated relative error below tol / L, which bounds the
        relative error of the product by tol (``method``: Lanczos or block power iteration, see
        :meth:`SpectralLinear.converge_sigma`).  Afterwards the norms are frozen for evaluation.
        """
        start = time.perf_counter()
        layers = self.spectral_layers()
        per_layer_tol = tol / max(1, len(layers))
        results = tuple(layer.converge_sigma(per_layer_tol, max_iter, method, block_size) for layer in layers)
        k_body = math.prod(r.sigma for r in results)
        k_global = k_body * float(self._head_pairwise().max()) if k_body > 0 else 0.0
        return ConvergenceReport(results, k_body, k_global, tol, time.perf_counter() - start)

    def converged_body_lipschitz(self) -> torch.Tensor:
        """Frozen float64 K_body from the last :meth:`converge` (raises if stale or missing)."""
        return product([layer.converged_sigma() for layer in self.spectral_layers()]).to(torch.float64)

    def _head_pairwise(self) -> torch.Tensor:
        return pairwise_constants(torch.ones((), dtype=torch.float64), self.head.weight.detach().to(torch.float64))

    @torch.no_grad()
    def pairwise_lipschitz(self) -> torch.Tensor:
        """(C, C) float64 matrix K_ij = K_body * ||W_i - W_j|| from the converged bound (eq. (18))."""
        return pairwise_constants(self.converged_body_lipschitz(), self.head.weight.detach().to(torch.float64))

    @torch.no_grad()
    def logit_lipschitz(self) -> torch.Tensor:
        """(C,) float64 per-logit constants K_body * ||W_i|| from the converged bound."""
        return per_logit_constants(self.converged_body_lipschitz(), self.head.weight.detach().to(torch.float64))

    def global_lipschitz(self) -> float:
        """K(f) = max_ij K_ij from the converged bound."""
        return float(self.pairwise_lipschitz().max())


def _kaiming_(layer: nn.Module, generator: torch.Generator) -> None:
    nn.init.kaiming_normal_(layer.weight, generator=generator)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def build_from_spec(spec: ArchitectureSpec, seed: int = 0) -> LipschitzClassifier:
    """Instantiate ``spec`` with Kaiming-normal weights, zero biases and random power-iteration vectors.

    Everything random is drawn from a generator seeded with ``seed``; torch's default initialisation in
    the layer constructors runs under a forked RNG, so the global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        return _build(spec, seed)


def _build(spec: ArchitectureSpec, seed: int) -> LipschitzClassifier:
    """Layer construction; each spectral layer's iterate gets its true input shape."""
    g = torch.Generator().manual_seed(int(seed))
    body: list[nn.Module] = []
    shape = spec.input_shape
    *hidden, last = spec.layers
    for layer in hidden:
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
        if shape[0] % 2:
            raise ValueError(f"{spec.name}: MinMax needs an even width, layer {layer} has {shape[0]}")
        body.append(MinMax())
    if len(shape) > 1:
        body.append(nn.Flatten())
        shape = (math.prod(shape),)
    head = nn.Linear(shape[0], last.features)  # type: ignore[union-attr]
    _kaiming_(head, g)
    return LipschitzClassifier(nn.Sequential(*body), head, spec.input_shape, name=spec.name)


def build_model(name: str, seed: int = 0, architectures: str | os.PathLike | None = None) -> LipschitzClassifier:
    """Build the named architecture from ``params/architectures.yaml`` (or the given file)."""
    specs = load_architectures(architectures)
    if name not in specs:
        raise ValueError(f"unknown architecture {name!r}; available: {sorted(specs)}")
    return build_from_spec(specs[name], seed=seed)
