"""Interval (IBP) and BCP bound propagation through a table-B2 body (seed 004 appendix B, eqs. (21)-(23)).

For every input x and radius eps, :func:`propagate_bounds` carries three things through the body's layers (all but
the head), per sample:

* the clean activation mu (the centre of the ball),
* a box [lo, hi] that holds the layer's value for every x' with ||x' - x||_2 <= eps (IBP: the input box
  [x - eps, x + eps] through W and |W|, eq. (23) left),
* with ``ball=True`` (BCP) a ball radius rho = eps * prod_k ||W^k|| of the global spectral norms: every output i of
  a conv/linear layer then lies within ||W_i|| rho of its clean value (eq. (23) right; for a convolution W_i is the
  kernel of the output channel, whose patch is a part of the input, so the bound holds), and every activation
  output within rho of its clean value (the activations are 1-Lipschitz).  The box is intersected with these
  (eqs. (21)-(22)).

Both are sound by construction: each step maps a set that contains all reachable values to one that contains all
their images.  Alongside, the masks of the local bound are read off the pre-activation box (eq. (9) and the
clipped-MaxMin rule): a unit is *constant* on the ball when ReLU's input is <= 0 (or ReLUθ's >= theta), or a clipped
MaxMin branch is provably at its cap/floor.  Masks are element-wise tensors of the feature shape (True = varying).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..activations import ClippedMaxMin, MinMax, ReLUTheta
from ..power_iteration import SpectralConv2d, SpectralLinear

__all__ = ["ActivationBounds", "BodyBounds", "WeightLayerBounds", "propagate_bounds", "weight_layers"]

_WEIGHT_LAYERS = (SpectralConv2d, SpectralLinear)


@dataclass
class WeightLayerBounds:
    """One conv/linear layer of the body with the masks of its local norm ||R W C|| (eq. (6)).

    ``input_mask`` C: the varying outputs of the activation before it (None: all vary, e.g. the first layer or
    after MinMax); ``output_mask`` R: the varying inputs of the activation after it (ReLU, ReLUθ: its eq. (9) mask;
    None for MaxMin, whose outputs are masked as the next layer's C instead).  ``dtype``: the arithmetic used."""

    layer: nn.Module
    input_mask: torch.Tensor | None = None
    output_mask: torch.Tensor | None = None


@dataclass
class ActivationBounds:
    """An activation with its pre-activation box (for the sparsity loss (12))."""

    activation: nn.Module
    lower: torch.Tensor
    upper: torch.Tensor


@dataclass
class BodyBounds:
    """What :func:`propagate_bounds` returns: the weight layers with their masks, the activations with their
    pre-activation boxes, the clean penultimate features ``features`` (N, D), their box ``lower``/``upper`` and the
    ball radius ``radius`` (N,) of BCP (eps * prod of the global norms; +inf for IBP), ``eps`` (N,) and
    ``head_input_mask`` (N, D), the varying penultimate features (None: all vary)."""

    layers: list[WeightLayerBounds]
    activations: list[ActivationBounds]
    features: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    radius: torch.Tensor
    eps: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    head_input_mask: torch.Tensor | None = None


def weight_layers(body: nn.Module) -> list[nn.Module]:
    """The conv/linear layers of a table-B2 body, in order."""
    return [m for m in body if isinstance(m, _WEIGHT_LAYERS)]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


def _linear_map(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = layer.apply_operator(x, weight)
    if bias is not None:
        out = out + (bias.view(1, -1, 1, 1) if out.dim() == 4 else bias)
    return out


def _row_norms(layer: nn.Module, weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """||W_i|| per output unit, broadcastable to the layer's output (a conv: the kernel norm per output channel)."""
    norms = torch.linalg.vector_norm(weight.flatten(1), dim=1)
    return norms.view(1, -1, 1, 1) if like.dim() == 4 else norms.view(1, -1)


def _activation_box(act: nn.Module, lo: torch.Tensor, hi: torch.Tensor, center: torch.Tensor):
    """(new lo, new hi, new centre, input-side mask R, output-side mask C of the next layer)."""
    if isinstance(act, nn.ReLU):
        varying = hi > 0
        return lo.clamp_min(0), hi.clamp_min(0), center.clamp_min(0), varying, varying
    if isinstance(act, ReLUTheta):
        theta = act.theta.to(lo.dtype)
        varying = (hi > 0) & (lo < theta)
        return (torch.minimum(lo.clamp_min(0), theta), torch.minimum(hi.clamp_min(0), theta), act(center), varying,
                varying)
    if isinstance(act, MinMax):
        c = lo.shape[1]
        lo_pairs = lo.reshape(lo.shape[0], c // 2, 2, *lo.shape[2:]).unbind(2)
        hi_pairs = hi.reshape(hi.shape[0], c // 2, 2, *hi.shape[2:]).unbind(2)
        new_lo = torch.cat((torch.maximum(*lo_pairs), torch.minimum(*lo_pairs)), dim=1)
        new_hi = torch.cat((torch.maximum(*hi_pairs), torch.minimum(*hi_pairs)), dim=1)
        return new_lo, new_hi, act(center), None, None
    if isinstance(act, ClippedMaxMin):
        cap, floor = act.cap.to(lo.dtype), act.floor.to(lo.dtype)
        lo1, lo2 = lo.chunk(2, dim=1)
        hi1, hi2 = hi.chunk(2, dim=1)
        lo_max, hi_max = torch.maximum(lo1, lo2), torch.maximum(hi1, hi2)
        lo_min, hi_min = torch.minimum(lo1, lo2), torch.minimum(hi1, hi2)
        new_lo = torch.cat((torch.minimum(lo_max, cap), torch.maximum(lo_min, floor)), dim=1)
        new_hi = torch.cat((torch.minimum(hi_max, cap), torch.maximum(hi_min, floor)), dim=1)
        varying = torch.cat((lo_max < cap, hi_min > floor), dim=1)
        return new_lo, new_hi, act(center), None, varying
    raise TypeError(f"no bound propagation for activation {type(act).__name__} (ReLU, ReLUθ, MinMax, clipped MaxMin)")


def propagate_bounds(body: nn.Sequential, x: torch.Tensor, eps: float | torch.Tensor, *,
                     sigmas: list[torch.Tensor] | None = None, ball: bool = True,
                     dtype: torch.dtype | None = None) -> BodyBounds:
    """Boxes of every layer of ``body`` over the ℓ2 ball of radius ``eps`` around each row of ``x`` (IBP with
    ``ball=False``; BCP box ∩ ball with ``ball=True``, which needs ``sigmas``, an upper bound of the spectral norm of
    each conv/linear layer: converged ones for certification, the training-time estimates in training, as seed
    004's code does).  ``eps`` is a scalar or a per-sample (N,) tensor.  ``dtype`` (e.g. float64 for
    certification) casts weights and inputs; gradients flow to the weights and thresholds."""
    dtype = dtype or x.dtype
    z = x.to(dtype)
    n = z.shape[0]
    eps_t = torch.as_tensor(eps, dtype=dtype, device=z.device)
    eps_n = eps_t.expand(n) if eps_t.dim() == 0 else eps_t
    shape = (n,) + (1,) * (z.dim() - 1)
    lo, hi = z - eps_n.view(shape), z + eps_n.view(shape)
    rho = eps_n.clone() if ball else torch.full_like(eps_n, float("inf"))
    layers: list[WeightLayerBounds] = []
    activations: list[ActivationBounds] = []
    pending_input_mask: torch.Tensor | None = None
    k = 0
    if ball and sigmas is None:
        raise ValueError("BCP (ball=True) needs the layers' spectral norms (sigmas)")
    for module in body:
        if isinstance(module, _WEIGHT_LAYERS):
            w = module.weight.to(dtype)
            b = module.bias.to(dtype) if module.bias is not None else None
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            center = _linear_map(module, z, w, b)
            new_mid = _linear_map(module, mid, w, b)
            new_rad = module.apply_operator(rad, w.abs())
            lo, hi = new_mid - new_rad, new_mid + new_rad
            if ball:
                ball_rad = _row_norms(module, w, center) * rho.view((n,) + (1,) * (center.dim() - 1))
                lo, hi = torch.maximum(lo, center - ball_rad), torch.minimum(hi, center + ball_rad)
                rho = rho * sigmas[k].to(dtype)
            z = center
            layers.append(WeightLayerBounds(module, pending_input_mask, None))
            pending_input_mask = None
            k += 1
        elif isinstance(module, nn.Flatten):
            z, lo, hi = _flat(z), _flat(lo), _flat(hi)
            if pending_input_mask is not None:
                pending_input_mask = _flat(pending_input_mask)
        else:
            activations.append(ActivationBounds(module, lo, hi))
            lo, hi, z, r_mask, c_mask = _activation_box(module, lo, hi, z)
            if ball:
                r = rho.view((n,) + (1,) * (z.dim() - 1))
                lo, hi = torch.maximum(lo, z - r), torch.minimum(hi, z + r)
            if layers and r_mask is not None:
                layers[-1].output_mask = r_mask
            pending_input_mask = c_mask
    lo, hi, z = _flat(lo), _flat(hi), _flat(z)
    features_mask = _flat(pending_input_mask) if pending_input_mask is not None else None
    return BodyBounds(layers, activations, z, lo, hi, rho, eps_n, features_mask)
