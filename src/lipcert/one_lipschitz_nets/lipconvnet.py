"""LipConvnet-n (Singla & Feizi, ICML 2021, sec. 6), the "LipConv" model of CLL tables 1, 2, B3, B4 and D6-D8.

Architecture, from the SOC code (singlasahil14/SOC ``lip_convnets.py``; the same in the CLL fork
mlosch/CLL ``soc/lip_convnets.py``): 5 stages ("blocks") of ``block_size = n / 5`` SOC convolutions each,
every convolution followed by MaxMin.  Stage s has ``planes`` = init_channels * 2^(s-1) channels:

    (block_size - 1) x [SOC(in, planes, 3x3), MinMax]                 stride 1
    1 x [SpaceToDepth(2), SOC(4 * in, 2 * planes, 3x3), MinMax]         stride 2 (1x1 kernel in stage 5)
    ... stage 5 ends with init_channels * 32 channels at H/32 x W/32
    flatten, last layer

The SOC code's stride 2 is an einops space-to-depth inside the SOC layer; here it is the
:class:`~lipcert.one_lipschitz.reshaping.SpaceToDepth` permutation in front of a stride-1 SOC layer (the
same map).  ``n`` = ``depth`` is 5 * block_size; the SOC code allows block sizes 1-8 (LipConv-5 ... -40),
the CLL fork also 10 and 12.

Input sizes.  32 x 32 (CIFAR) ends at 1 x 1 x 1024 features.  For 64 x 64 (Tiny-ImageNet) the CLL fork keeps
the same five stages and flattens the final 2 x 2 x 1024 map into 4096 features (``flat_features *= 4`` for
200 classes in mlosch/CLL ``soc/lip_convnets.py``; no extra stage, no pooling): we do the same for every
input whose height and width are multiples of 2^blocks.  ``blocks`` (default 5, the paper's value) exists so
that tests can build the same structure on tiny inputs.

Last layer (``head``): ``"linear"`` (unconstrained ``nn.Linear``, what CLL trains with, supplement B and the
fork's ``soc_fc=False``) or ``"lln"`` (last-layer normalisation, the SOC code's ``--lln``, used by the SOC
baselines on CIFAR-100 and Tiny-ImageNet).  The SOC code's third option, a 1x1 SOC layer as an orthogonal
last layer (its CIFAR-10 default), is not built.  MinMax here pairs adjacent channels where the SOC code's
MaxMin splits the channels into halves (a channel permutation, equally 1-Lipschitz).  The CLL fork's
LipConv runs use the HouseHolder activation ``hh1`` (its ``train_*.sh``); this builder uses MinMax as the
CLL supplement B states for all models.
"""

from __future__ import annotations

import torch
from torch import nn

from ..activations import MinMax
from ..classifier import LipschitzClassifier
from ..one_lipschitz.base import make_head
from ..one_lipschitz.reshaping import SpaceToDepth
from ..one_lipschitz.skew_orthogonal import SkewOrthogonalConv2d
from .options import merge_size_options

__all__ = ["DEFAULTS", "HEADS", "SIZES", "build", "count_parameters", "layer_plan", "resolve_options"]

#: Named depths (LipConvnet-n, n = 5 * block size; SOC code ``--block-size`` 1-8).
SIZES: dict[str, dict[str, int]] = {f"LipConv-{5 * b}": {"depth": 5 * b} for b in range(1, 9)}
#: Options shared by every size (SOC code: 32 initial channels, 5 stages, 5 / 12 Taylor terms, SOC scaling).
DEFAULTS: dict[str, object] = {
    "init_channels": 32,
    "blocks": 5,
    "train_terms": 5,
    "eval_terms": 12,
    "correction": 0.7,
    "init_iters": 50,
    "update_iters": 1,
    "update_freq": 200,
}
HEADS = ("linear", "lln")

_INT_OPTIONS = ("depth", "init_channels", "blocks", "train_terms", "eval_terms", "init_iters", "update_iters",
                "update_freq")
_ALLOWED = {"size", "depth", *DEFAULTS}


def resolve_options(options: dict) -> dict:
    """Merge ``size`` (a key of :data:`SIZES`), :data:`DEFAULTS` and explicit options; validate them.

    Explicit options override the preset.  Raises ValueError naming an unknown, missing or bad option.
    """
    resolved = merge_size_options(options, SIZES, DEFAULTS, _ALLOWED, "LipConvnet")
    if "depth" not in resolved:
        raise ValueError(f"missing LipConvnet option 'depth'; give it or a size from {sorted(SIZES)}")
    for key in _INT_OPTIONS:
        value = resolved[key]
        minimum = 0 if key == "update_iters" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    correction = resolved["correction"]
    if isinstance(correction, bool) or not isinstance(correction, (int, float)) or not 0 < correction < float("inf"):
        raise ValueError(f"correction must be a finite number > 0, got {correction!r}")
    if resolved["depth"] % resolved["blocks"]:
        raise ValueError(f"depth ({resolved['depth']}) must be a multiple of blocks ({resolved['blocks']})")
    if resolved["init_channels"] % 2:
        raise ValueError(f"init_channels must be even (MinMax pairs channels), got {resolved['init_channels']}")
    return resolved


def _check_input(input_shape: tuple[int, ...], num_classes: int, head: str, blocks: int) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    if min(c, h, w) < 1:
        raise ValueError(f"input_shape must be positive, got {tuple(input_shape)}")
    factor = 2 ** blocks
    if h % factor or w % factor:
        raise ValueError(f"input height and width must be multiples of 2^blocks = {factor}, got {h}x{w}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    return c, h, w


def layer_plan(input_shape: tuple[int, ...], opts: dict) -> tuple[list[tuple[bool, int, int, int]], int]:
    """The SOC layers as (space_to_depth_first, in_channels, out_channels, kernel_size), and the features.

    Follows ``LipConvNet._make_layer`` of the SOC code: in each stage the stride-1 layers map to ``planes``
    channels, the last (strided) layer maps 4 * in -> 2 * planes, with a 1x1 kernel in the last stage.
    """
    c, h, w = (int(v) for v in input_shape)
    per_stage = opts["depth"] // opts["blocks"]
    plan = []
    in_planes = c
    planes = opts["init_channels"]
    for stage in range(opts["blocks"]):
        for _ in range(per_stage - 1):
            plan.append((False, in_planes, planes, 3))
            in_planes = planes
        last_kernel = 1 if stage == opts["blocks"] - 1 else 3
        plan.append((True, 4 * in_planes, 2 * planes, last_kernel))
        in_planes = 2 * planes
        planes = in_planes
    side = 2 ** opts["blocks"]
    return plan, in_planes * (h // side) * (w // side)


def build(input_shape: tuple[int, ...], num_classes: int, generator: torch.Generator, head: str = "linear",
          **options) -> LipschitzClassifier:
    """LipConvnet-n (module docstring) as a :class:`LipschitzClassifier`; K_body is the product of the SOC
    layers' certified constants (1 + Taylor tail each).

    Options: ``size`` (a key of :data:`SIZES`), ``depth``, ``init_channels``, ``blocks``, ``train_terms``,
    ``eval_terms``, ``correction``, ``init_iters``, ``update_iters``, ``update_freq`` (see
    :class:`~lipcert.one_lipschitz.skew_orthogonal.SkewOrthogonalConv2d`).  All random initialisation is
    drawn from ``generator`` in layer order.
    """
    opts = resolve_options(options)
    _check_input(input_shape, num_classes, head, opts["blocks"])
    plan, features = layer_plan(input_shape, opts)
    body: list[nn.Module] = []
    for space_to_depth, c_in, c_out, k in plan:
        if space_to_depth:
            body.append(SpaceToDepth(2))
        body.append(SkewOrthogonalConv2d(
            c_in, c_out, k, train_terms=opts["train_terms"], eval_terms=opts["eval_terms"],
            correction=1.0 if k == 1 else float(opts["correction"]), init_iters=opts["init_iters"],
            update_iters=opts["update_iters"], update_freq=opts["update_freq"], generator=generator))
        body.append(MinMax())
    body.append(nn.Flatten())
    last = make_head(features, num_classes, head, generator)
    name = options.get("size") or f"LipConv-{opts['depth']}"
    return LipschitzClassifier(nn.Sequential(*body), last, tuple(input_shape), name=str(name))


def count_parameters(input_shape: tuple[int, ...], num_classes: int, head: str = "linear", **options) -> int:
    """Number of parameters of :func:`build` with the same arguments, without allocating anything.

    Per SOC layer c^2 k^2 (kernel, c = max(in, out)) + out (bias); head features * classes + classes.
    """
    opts = resolve_options(options)
    _check_input(input_shape, num_classes, head, opts["blocks"])
    plan, features = layer_plan(input_shape, opts)
    convs = sum(max(c_in, c_out) ** 2 * k * k + c_out for _, c_in, c_out, k in plan)
    return convs + features * num_classes + num_classes
