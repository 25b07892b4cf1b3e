"""The LBDN Sandwich architectures (Wang & Manchester, ICML 2023; code acfr/LBDN, ``model.py``), the
"LBDN Sandwich" row of CLL table 1 (Tiny-ImageNet).

A body is a sequence of *stages* followed by dense sandwich layers, all 1-Lipschitz
(:mod:`lipcert.one_lipschitz.sandwich`; no separate activation, the relu is inside each layer):

* stage of width c: ``SandwichConv2d(prev, c, k)`` then ``SandwichConv2d(c, c, k, stride=2)`` (the stride-2
  layer is LBDN's space-to-depth + kernel ``k // 2``), halving the resolution;
* ``Flatten`` and ``SandwichLinear`` layers of the given widths;
* the head (:func:`~lipcert.one_lipschitz.base.make_head`): ``"lln"`` reproduces LBDN's ``LinearNormalized``
  last layer, ``"linear"`` is the unconstrained head CLL trains.

Sizes of the LBDN code:

* ``"S"``, ``"M"``, ``"L"``: its ``KWL`` model with ``--layer Sandwich`` and width 1, 2, 4 (stages 32w, 64w;
  dense 512w, 512w; LBDN's last layer ``SandwichLin`` replaced by the head);
* ``"CIFAR"``: its ``DNN`` model for 32 x 32 inputs (stages 64, 128, 256; dense 2048, 2048, 1024; LLN head);
* ``"TinyImageNet"``: its ``DNN`` model for 64 x 64 inputs (stages 64, 128, 256, 512; dense 2048, 2048, 1024;
  LLN head), the model of CLL table 1 (:data:`CLL_TABLE1_SIZE`).

All stride-1 convolutions use k = 3; the Fourier-domain layers fix the input size, so a built model only
accepts its ``input_shape``.

Training note: at initialisation these bodies pass little signal (pre-activations of the order of the biases),
so Adam steps that are large for the batch size kill the ReLU units and the network collapses to a constant
map.  LBDN's lr 1e-2 belongs to batch 256; the recipes therefore set ``optim.lr_reference_batch: 256`` so
smaller batches scale it down (docs/benchmarks.md section 4.4).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..classifier import LipschitzClassifier
from ..one_lipschitz.base import make_head
from ..one_lipschitz.sandwich import SandwichConv2d, SandwichLinear

__all__ = ["CLL_TABLE1_SIZE", "SIZES", "build", "count_parameters", "lbdn_reported_parameters"]

SIZES: dict[str, dict] = {
    "S": {"conv_channels": (32, 64), "dense_features": (512, 512)},
    "M": {"conv_channels": (64, 128), "dense_features": (1024, 1024)},
    "L": {"conv_channels": (128, 256), "dense_features": (2048, 2048)},
    "CIFAR": {"conv_channels": (64, 128, 256), "dense_features": (2048, 2048, 1024)},
    "TinyImageNet": {"conv_channels": (64, 128, 256, 512), "dense_features": (2048, 2048, 1024)},
}

#: The size of the "LBDN Sandwich" row of CLL table 1 (Tiny-ImageNet, 64 x 64, 200 classes).
CLL_TABLE1_SIZE = "TinyImageNet"


def _int_tuple(value, name: str) -> tuple[int, ...]:
    if value is None:
        raise ValueError(f"{name} is required (a sequence of positive ints, possibly empty)")
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of positive ints, got {value!r}")
    out = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ValueError(f"{name} must contain positive ints, got {value!r}")
    return out


def _plan(input_shape, num_classes, conv_channels, dense_features, kernel_size):
    """Validate the options; returns (input_shape, conv list, dense list, head features).

    conv list entries: (in_channels, out_channels, kernel_size, (H, W), stride).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    conv_channels = _int_tuple(conv_channels, "conv_channels")
    dense_features = _int_tuple(dense_features, "dense_features")
    shape = tuple(input_shape)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape) or len(shape) not in (1, 3):
        raise ValueError(f"input_shape must be (C, H, W) or (features,) of positive ints, got {input_shape!r}")
    if len(shape) == 1 and conv_channels:
        raise ValueError(f"conv_channels {conv_channels} need an image input_shape (C, H, W), got {shape}")
    convs = []
    if len(shape) == 3:
        c, h, w = shape
        for width in conv_channels:
            if h % 2 or w % 2:
                raise ValueError(f"input_shape {shape}: {len(conv_channels)} stride-2 stages need H and W divisible "
                                 f"by {2 ** len(conv_channels)}")
            if kernel_size > min(h, w):
                raise ValueError(f"kernel_size {kernel_size} exceeds the {h}x{w} feature map of input_shape {shape}")
            convs.append((c, width, kernel_size, (h, w), 1))
            convs.append((width, width, kernel_size, (h, w), 2))
            c, h, w = width, h // 2, w // 2
        features = c * h * w
    else:
        features = shape[0]
    dense = []
    for width in dense_features:
        dense.append((features, width))
        features = width
    return shape, convs, dense, features


def build(input_shape: tuple[int, ...], num_classes: int, generator: torch.Generator, head: str = "linear", *,
          conv_channels: Sequence[int] | None = None, dense_features: Sequence[int] | None = None,
          kernel_size: int = 3) -> LipschitzClassifier:
    """The LBDN Sandwich network (module docstring); all initial values are drawn from ``generator``."""
    shape, convs, dense, features = _plan(input_shape, num_classes, conv_channels, dense_features, kernel_size)
    body: list[nn.Module] = []
    for cin, cout, k, size, stride in convs:
        body.append(SandwichConv2d(cin, cout, k, size, generator, stride=stride))
    if len(shape) == 3:
        body.append(nn.Flatten())
    for fin, fout in dense:
        body.append(SandwichLinear(fin, fout, generator))
    head_layer = make_head(features, num_classes, head, generator)
    return LipschitzClassifier(nn.Sequential(*body), head_layer, shape, name="sandwich")


def count_parameters(input_shape: tuple[int, ...], num_classes: int, head: str = "linear", *,
                     conv_channels: Sequence[int] | None = None, dense_features: Sequence[int] | None = None,
                     kernel_size: int = 3) -> int:
    """Number of parameters of :func:`build` (the same for both heads), computed without allocating the model.

    Per ``SandwichConv2d`` (after the stride rewrite, in' and k'): out * (out + in') * k'^2 kernel entries,
    ``bias`` and ``psi`` (out each) and ``alpha`` (1); per ``SandwichLinear``: out * (out + in) + 2 out + 1;
    the head: features * classes + classes.
    """
    if head not in ("linear", "lln"):
        raise ValueError(f"unknown head {head!r}; expected 'linear' or 'lln'")
    _, convs, dense, features = _plan(input_shape, num_classes, conv_channels, dense_features, kernel_size)
    total = 0
    for cin, cout, k, _, stride in convs:
        if stride == 2:
            cin, k = 4 * cin, max(1, k // 2)
        total += cout * (cout + cin) * k * k + 2 * cout + 1
    for fin, fout in dense:
        total += fout * (fout + fin) + 2 * fout + 1
    return total + features * num_classes + num_classes


def lbdn_reported_parameters(input_shape: tuple[int, ...], num_classes: int, **options) -> int:
    """The count the LBDN training script prints: ours minus the conv layers' ``alpha`` (LBDN registers it
    at the first forward, after counting and after building the optimiser)."""
    _, convs, _, _ = _plan(input_shape, num_classes, options.get("conv_channels"), options.get("dense_features"),
                           options.get("kernel_size", 3))
    return count_parameters(input_shape, num_classes, **options) - len(convs)

