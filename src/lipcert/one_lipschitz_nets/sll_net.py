"""The SLL network (Araujo et al., ICLR 2023), the "(SLL-)XL" model of CLL tables 1, 2, B4, D6 and D7.

Architecture, from the SLL code (araujoalexandre/Lipschitz-SLL-Networks ``core/models/model.py``,
``main.py``, ``reproduce_tables.py``; the same in the CLL fork mlosch/CLL ``sll/``):

    zero channel padding 3 -> num_channels          (isometry; the only first layer the code builds)
    depth x SLL convolution (num_channels, inner dim conv_size = 5, 3x3, padding 1)
    4x4 average pooling times 4                    (``AvgPool2d(4, divisor_override=4)``: norm 1)
    flatten                                         (num_channels * H/4 * W/4 features)
    depth_linear x SLL dense layer (features, inner dim n_features = 2048)
    last layer                                      (see ``head`` below)

Sizes (``--model-name`` small / medium / large / xlarge): depth 20 / 30 / 50 / 70, num_channels 45 / 60 /
90 / 120, depth_linear 7 / 10 / 10 / 15, n_features 2048.  XL therefore has 70 + 15 = 85 SLL layers (the
CLL paper: "XL 85").  The convolutions' inner dimension is 5 for every size: ``main.py`` defaults
``--conv_inner_dim`` to 5 and ``reproduce_tables.py`` sets 5; the CLL fork passes its ``--conv_size``
(default 5) into the same position.  The option names follow the CLL fork (``num_channels``, ``conv_size``
= inner channel count of the convolutions), as :mod:`lipcert.one_lipschitz_nets.cpl_net` does.

Last layers of the SLL code (``--last_layer``) map to ``head``: ``"lln"`` (last-layer normalisation; the
only one of the final SLL repository), ``"pooling_linear"`` (the CLL fork's default: keep the first
num_classes features, a parameter-free projection, here :class:`TruncationHead`) and ``"linear"``
(``vanilla``; what CLL trains with, supplement B).  With ``"pooling_linear"`` every pairwise constant
is ||e_i - e_j|| = sqrt(2), the K(f) = sqrt(2) that CLL table 2 prints for SLL on CIFAR-10.

Not built here: the SLL code's input normalisation ``(x - mean) / std`` in front of the network (the
pipeline feeds [0, 1] data, CLL supplement B; a per-channel division by std < 1 would scale the Lipschitz
constant by 1 / min std) and the CLL fork's soft-constrained ``--mlp`` / ``--liplin`` variants.
"""

from __future__ import annotations

import torch
from torch import nn

from ..classifier import LipschitzClassifier
from ..one_lipschitz.base import make_head
from ..one_lipschitz.reshaping import NormPreservingAvgPool, PadChannels
from ..one_lipschitz.sdp_lipschitz import SDPLipschitzConv2d, SDPLipschitzLinear
from .options import merge_size_options

__all__ = ["DEFAULTS", "HEADS", "SIZES", "TruncationHead", "build", "count_parameters", "resolve_options"]

#: Named sizes of the SLL code (small, medium, large, xlarge).
SIZES: dict[str, dict[str, int]] = {
    "S": {"depth": 20, "num_channels": 45, "depth_linear": 7, "n_features": 2048},
    "M": {"depth": 30, "num_channels": 60, "depth_linear": 10, "n_features": 2048},
    "L": {"depth": 50, "num_channels": 90, "depth_linear": 10, "n_features": 2048},
    "XL": {"depth": 70, "num_channels": 120, "depth_linear": 15, "n_features": 2048},
}
#: Options shared by every size (SLL code: conv inner dim 5, 3x3 kernels, 4x4 pooling).
DEFAULTS: dict[str, int] = {"conv_size": 5, "kernel_size": 3, "pool": 4}
#: Last layers: ``make_head`` kinds plus the SLL code's truncation ("pooling_linear").
HEADS = ("linear", "lln", "pooling_linear")

_REQUIRED = ("depth", "num_channels", "depth_linear", "n_features")
_ALLOWED = {"size", *_REQUIRED, *DEFAULTS}


class TruncationHead(nn.Linear):
    """The SLL code's ``PoolingLinear(agg="trunc")``: logits are the first ``out_features`` features.

    A linear map with the fixed weight [I 0] (a non-persistent buffer, no parameters, no bias), so
    ``weight`` gives the certification its rows e_i (pairwise distances sqrt(2)); it is an orthogonal
    projection, hence 1-Lipschitz.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        if out_features > in_features:
            raise ValueError(f"a truncation head needs out_features <= in_features, got {out_features} > {in_features}")
        super().__init__(in_features, out_features, bias=False, device="meta")
        del self.weight
        self.register_buffer("weight", torch.eye(out_features, in_features), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.out_features]


def resolve_options(options: dict) -> dict[str, int]:
    """Merge ``size`` (a key of :data:`SIZES`), :data:`DEFAULTS` and explicit options; validate them.

    Explicit options override the preset.  Raises ValueError naming an unknown, missing or bad option.
    """
    resolved = merge_size_options(options, SIZES, DEFAULTS, _ALLOWED, "SLL")
    missing = [k for k in _REQUIRED if k not in resolved]
    if missing:
        raise ValueError(f"missing SLL option(s) {missing}; give them or a size from {sorted(SIZES)}")
    for key, value in resolved.items():
        minimum = 0 if key in ("depth", "depth_linear") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    if resolved["kernel_size"] % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {resolved['kernel_size']}")
    return resolved


def _features(input_shape: tuple[int, ...], num_classes: int, head: str, opts: dict[str, int]) -> int:
    """Validate the input shape, classes and head; return the flattened feature count."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    if min(c, h, w) < 1:
        raise ValueError(f"input_shape must be positive, got {tuple(input_shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    if opts["num_channels"] < c:
        raise ValueError(
            f"num_channels ({opts['num_channels']}) must be >= the input channels ({c}): the first layer pads")
    pool = opts["pool"]
    if h % pool or w % pool:
        raise ValueError(f"pool ({pool}) must divide the input height and width, got {h}x{w}")
    features = opts["num_channels"] * (h // pool) * (w // pool)
    if head == "pooling_linear" and features < num_classes:
        raise ValueError(f"head 'pooling_linear' needs at least num_classes={num_classes} features, got {features}")
    return features


def build(input_shape: tuple[int, ...], num_classes: int, generator: torch.Generator, head: str = "linear",
          **options) -> LipschitzClassifier:
    """The SLL network (module docstring) as a :class:`LipschitzClassifier`; every layer is 1-Lipschitz.

    Options: ``size`` ("S", "M", "L", "XL"), ``depth``, ``num_channels``, ``depth_linear``, ``n_features``,
    ``conv_size``, ``kernel_size``, ``pool`` (see :func:`resolve_options`).  All random
    initialisation is drawn from ``generator`` in layer order.
    """
    opts = resolve_options(options)
    features = _features(input_shape, num_classes, head, opts)
    body: list[nn.Module] = [PadChannels(opts["num_channels"])]
    body += [SDPLipschitzConv2d(opts["num_channels"], opts["conv_size"], opts["kernel_size"], generator=generator)
             for _ in range(opts["depth"])]
    body += [NormPreservingAvgPool(opts["pool"]), nn.Flatten()]
    body += [SDPLipschitzLinear(features, opts["n_features"], generator=generator) for _ in range(opts["depth_linear"])]
    if head == "pooling_linear":
        last: nn.Linear = TruncationHead(features, num_classes)
    else:
        last = make_head(features, num_classes, head, generator)
    name = f"sll_{options['size']}" if options.get("size") else "sll"
    return LipschitzClassifier(nn.Sequential(*body), last, tuple(input_shape), name=name)


def count_parameters(input_shape: tuple[int, ...], num_classes: int, head: str = "linear", **options) -> int:
    """Number of parameters of :func:`build` with the same arguments, without allocating anything.

    Per SLL convolution inner * num_channels * k^2 + 2 * inner (kernel, bias, log q); per SLL dense layer
    n_features * features + 2 * n_features; head features * classes + classes ("linear", "lln") or 0
    ("pooling_linear").
    """
    opts = resolve_options(options)
    features = _features(input_shape, num_classes, head, opts)
    inner, k = opts["conv_size"], opts["kernel_size"]
    conv = opts["depth"] * (inner * opts["num_channels"] * k * k + 2 * inner)
    dense = opts["depth_linear"] * (opts["n_features"] * features + 2 * opts["n_features"])
    last = 0 if head == "pooling_linear" else features * num_classes + num_classes
    return conv + dense + last
