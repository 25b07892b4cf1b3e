"""The CPL architecture (Meunier et al., ICML 2022), built from :mod:`lipcert.one_lipschitz.convex_potential`.

Layout (facts from MILES-PSL/Convex-Potential-Layer ``model.py`` class ``ConvexPotentialLayerNetwork`` and
``main.py``; the CLL fork mlosch/CLL ``cpl/model.py`` is the same plus an unconstrained last layer):

1. zero-pad the input channels to ``num_channels`` (``PaddingChannels(..., "zero")``, an isometry);
2. ``depth`` convolutional CPL layers on (num_channels, H, W), each with a 3x3 inner convolution of
   ``conv_size`` channels;
3. norm-preserving average pooling ``AvgPool2d(4, divisor_override=4)`` (``pool``; 32x32 -> 8x8);
4. flatten (F = num_channels * H/pool * W/pool features);
5. ``depth_linear`` dense CPL layers on F features with ``n_features`` inner features;
6. the head (:func:`lipcert.one_lipschitz.base.make_head`): ``"linear"`` as in the CLL fork
   (``use_vanilla_linear``) or ``"lln"`` (the authors' ``LinearNormalized``).  The authors' default head on
   CIFAR-10, ``PoolingLinear(agg="trunc")`` (logits = the first C features, no parameters, K_ij = sqrt(2)),
   is not offered by ``make_head``.

Sizes (:data:`SIZES`).  The CPL code itself only has command-line defaults (``main.py``: depth 20,
depth-linear 7, num-channels 30, n-features 2048, conv-size 5).  The S/M/L/XL presets below are those of the
same group's SLL code, which reuses the CPL architecture (araujoalexandre/Lipschitz-SLL-Networks ``main.py``
``--model-name`` and ``reproduce_tables.py``: (conv layers, dense layers, width, dense inner dim) =
S (20, 7, 45, 2048), M (30, 10, 60, 2048), L (50, 10, 90, 2048), XL (70, 15, 120, 2048), conv inner dim 5).
The CLL paper's "CLL on CPL-XL" runs (mlosch/CLL ``cpl/train_cll_on_cifar10.sh``) use depth 70,
num-channels 120, depth-linear 15 but **n-features 4096** (conv-size left at its default 5): see
:data:`CLL_FORK_SIZES`.  The CLL paper's "XL contains 85 layers" is 70 + 15.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..classifier import LipschitzClassifier
from ..one_lipschitz.base import make_head
from ..one_lipschitz.convex_potential import CPL_EPSILON, ConvexPotentialConv2d, ConvexPotentialLinear
from ..one_lipschitz.reshaping import NormPreservingAvgPool, PadChannels

__all__ = ["CLL_FORK_SIZES", "DEFAULTS", "SIZES", "build", "count_parameters"]

#: Command-line defaults of the authors' ``main.py`` (conv_size is the inner channel count).
DEFAULTS: dict = {
    "depth": 20,
    "num_channels": 30,
    "conv_size": 5,
    "depth_linear": 7,
    "n_features": 2048,
    "pool": 4,
    "kernel_size": 3,
    "epsilon": CPL_EPSILON,
    "train_iterations": 1,
}

#: CPL-S/M/L/XL (see the module docstring for the sources).
SIZES: dict = {
    "S": {"depth": 20, "depth_linear": 7, "num_channels": 45, "n_features": 2048, "conv_size": 5},
    "M": {"depth": 30, "depth_linear": 10, "num_channels": 60, "n_features": 2048, "conv_size": 5},
    "L": {"depth": 50, "depth_linear": 10, "num_channels": 90, "n_features": 2048, "conv_size": 5},
    "XL": {"depth": 70, "depth_linear": 15, "num_channels": 120, "n_features": 2048, "conv_size": 5},
}

#: The XL model of the CLL paper's CPL runs (mlosch/CLL ``cpl/train_cll_on_cifar10.sh``): n_features 4096.
CLL_FORK_SIZES: dict = {
    "XL": {"depth": 70, "depth_linear": 15, "num_channels": 120, "n_features": 4096, "conv_size": 5},
}

_INT_OPTIONS = {  # name -> minimum
    "depth": 0, "num_channels": 1, "conv_size": 1, "depth_linear": 0, "n_features": 1, "pool": 1,
    "kernel_size": 1, "train_iterations": 1,
}


def _resolve(input_shape, num_classes, options: dict) -> dict:
    """Validate the arguments and options; returns the full option dict plus derived sizes."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown CPL option(s) {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    for name, minimum in _INT_OPTIONS.items():
        value = opts[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"CPL option {name} must be an integer >= {minimum}, got {value!r}")
    eps = opts["epsilon"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"CPL option epsilon must be a finite number >= 0, got {eps!r}")
    if opts["kernel_size"] % 2 == 0:
        raise ValueError(f"CPL option kernel_size must be odd, got {opts['kernel_size']}")
    shape = tuple(input_shape)
    if len(shape) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"input_shape must be (channels, height, width) of positive integers, got {input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    c, h, w = shape
    if opts["num_channels"] < c:
        raise ValueError(f"CPL option num_channels ({opts['num_channels']}) must be >= the input channels ({c})")
    pool = opts["pool"]
    if h % pool or w % pool:
        raise ValueError(f"CPL option pool ({pool}) must divide the input size {h}x{w}")
    opts["features"] = opts["num_channels"] * (h // pool) * (w // pool)
    return opts


def count_parameters(input_shape: tuple[int, int, int], num_classes: int, **options) -> int:
    """Number of parameters of :func:`build` with these options, computed without allocating the model.

    depth * (k^2 * num_channels * conv_size + conv_size) + depth_linear * (F * n_features + n_features)
    + num_classes * (F + 1), F = num_channels * (H / pool) * (W / pool).  (The authors' dense layer also
    registers an unused scalar ``alpha``: their count is larger by depth_linear.)
    """
    o = _resolve(input_shape, num_classes, options)
    k2 = o["kernel_size"] ** 2
    conv = k2 * o["num_channels"] * o["conv_size"] + o["conv_size"]
    dense = o["features"] * o["n_features"] + o["n_features"]
    head = num_classes * (o["features"] + 1)
    return o["depth"] * conv + o["depth_linear"] * dense + head


def build(input_shape: tuple[int, int, int], num_classes: int, generator: torch.Generator, head: str = "linear",
          **options) -> LipschitzClassifier:
    """The CPL network (module docstring) with all random initialisation drawn from ``generator``.

    Options (defaults :data:`DEFAULTS`, presets :data:`SIZES`): ``depth``, ``num_channels``, ``conv_size``,
    ``depth_linear``, ``n_features``, ``pool`` (norm-preserving average pooling kernel; must divide H and W),
    ``kernel_size`` (odd), ``epsilon`` (added to ||W||^2) and ``train_iterations`` (power-iteration steps
    per training forward pass; 1 in the authors' code).  The global RNG is left untouched.
    """
    o = _resolve(input_shape, num_classes, options)
    c, h, w = tuple(input_shape)
    width = o["num_channels"]
    layer_opts = {"epsilon": float(o["epsilon"]), "train_iterations": o["train_iterations"], "generator": generator}
    with torch.random.fork_rng(devices=[]):  # the layer constructors' default init uses the global RNG
        body: list[nn.Module] = []
        if width > c:
            body.append(PadChannels(width))
        for _ in range(o["depth"]):
            body.append(ConvexPotentialConv2d(width, o["conv_size"], (h, w), o["kernel_size"], **layer_opts))
        if o["pool"] > 1:
            body.append(NormPreservingAvgPool(o["pool"]))
        body.append(nn.Flatten())
        for _ in range(o["depth_linear"]):
            body.append(ConvexPotentialLinear(o["features"], o["n_features"], **layer_opts))
        last = make_head(o["features"], num_classes, head, generator)
    return LipschitzClassifier(nn.Sequential(*body), last, tuple(input_shape), name="cpl")
