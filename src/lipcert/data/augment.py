"""Batched training augmentation on the training device (CLL supplement B, "Data preprocessing").

The paper (and the authors' torchvision pipeline, reference_implementation.md section 1.6) augments
CIFAR-10 training images with

1. random crop to 32 with zero padding 4 (Tiny-ImageNet: 64, padding 8),
2. random horizontal flip (p = 0.5),
3. colour jitter 0.25: brightness, contrast and saturation factors uniform in [0.75, 1.25] per image,
   applied in a random order per image, with torchvision ``ColorJitter`` semantics,
4. random rotation by an angle uniform in [-2, 2] degrees (zero fill).

Here all four act on a whole float batch (B, 3, H, W) in [0, 1] at once, with every random number drawn
from one ``torch.Generator`` on the batch's device, so a run's augmentation is reproducible from its
seed and needs no data-loader workers.  Rotation uses ``affine_grid`` + ``grid_sample``; its
interpolation is bilinear by default (torchvision's ``RandomRotation`` default is nearest; both are
available).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..tensor_checks import require

__all__ = [
    "GREY_WEIGHTS",
    "AugmentParams",
    "RandomImageAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "apply_color_jitter",
    "crop_padded",
    "grayscale",
    "make_augment",
    "rotate",
]

GREY_WEIGHTS = (0.2989, 0.587, 0.114)
"""ITU-R 601-2 luma weights of torchvision's ``rgb_to_grayscale`` (used by contrast and saturation)."""


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1] (see as_model_input), got dtype {x.dtype}")


def _per_image(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)


def crop_padded(x: torch.Tensor, pad: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Zero-pad every image by ``pad`` pixels and cut the (H, W) window at offsets (top[b], left[b]).

    Offsets lie in [0, 2 * pad]; ``top == left == pad`` returns the image unchanged.  This is
    torchvision's ``RandomCrop(size, padding=pad)`` with the offsets given (supplement B, item 1).
    """
    _check_batch(x)
    b, _, h, w = x.shape
    top, left = top.to(x.device).long(), left.to(x.device).long()
    if top.shape != (b,) or left.shape != (b,):
        raise ValueError(f"top/left must have shape ({b},), got {tuple(top.shape)} and {tuple(left.shape)}")
    if b:  # queued, not read back (lipcert.tensor_checks): no host synchronisation per training step
        offsets = torch.cat((top, left))
        require(((offsets >= 0) & (offsets <= 2 * pad)).all(), f"crop offsets must lie in [0, {2 * pad}] for pad={pad}")
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = top[:, None] + torch.arange(h, device=x.device)          # (B, H)
    cols = left[:, None] + torch.arange(w, device=x.device)         # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]      # (B, H, W, C): advanced indices first
    return out.permute(0, 3, 1, 2).contiguous()


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) = 0.2989 R + 0.587 G + 0.114 B, as torchvision's ``rgb_to_grayscale``."""
    r, g, b = x.unbind(dim=1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _per_image(factor, x)
    return (f * x + (1.0 - f) * other).clamp(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Brightness: ``clamp(f * x, 0, 1)`` per image (blend with black; torchvision ``adjust_brightness``)."""
    _check_batch(x)
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Contrast: blend every image with the mean of its greyscale image (torchvision ``adjust_contrast``)."""
    _check_batch(x)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Saturation: blend every image with its greyscale image (torchvision ``adjust_saturation``)."""
    _check_batch(x)
    return _blend(x, grayscale(x), factor)


def apply_color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Colour jitter with given per-image factors and order (supplement B, item 3).

    ``factors`` (B, 3) holds the brightness, contrast and saturation factor of each image; ``order``
    (B, 3) is a permutation of (0, 1, 2) per image (0 brightness, 1 contrast, 2 saturation) giving the
    order in which the three adjustments are applied, as torchvision's ``ColorJitter`` draws it.
    Every adjustment clamps to [0, 1].
    """
    _check_batch(x)
    b = x.shape[0]
    if factors.shape != (b, 3) or order.shape != (b, 3):
        raise ValueError(f"factors and order must have shape ({b}, 3), got {tuple(factors.shape)} and {tuple(order.shape)}")
    order = order.to(x.device)
    factors = factors.to(x.device)
    rows = torch.arange(b, device=x.device)
    for step in range(3):
        op = order[:, step]
        f = factors[rows, op]
        bright = adjust_brightness(x, f)
        contrast = adjust_contrast(x, f)
        saturation = adjust_saturation(x, f)
        sel = op.reshape(-1, 1, 1, 1)
        x = torch.where(sel == 0, bright, torch.where(sel == 1, contrast, saturation))
    return x


def rotate(x: torch.Tensor, degrees: torch.Tensor, interpolation: Literal["bilinear", "nearest"] = "bilinear") -> torch.Tensor:
    """Rotate every image about its centre by ``degrees[b]`` (counter-clockwise), filling with zeros.

    Implemented with ``affine_grid`` + ``grid_sample`` (align_corners=False, so pixel centres map
    exactly); the angle convention is torchvision's ``rotate`` (positive = counter-clockwise).
    """
    _check_batch(x)
    b, _, h, w = x.shape
    theta_rad = degrees.to(device=x.device, dtype=x.dtype) * (math.pi / 180.0)
    if theta_rad.shape != (b,):
        raise ValueError(f"degrees must have shape ({b},), got {tuple(degrees.shape)}")
    cos, sin = torch.cos(theta_rad), torch.sin(theta_rad)
    # output (x, y) in normalised coordinates -> input location; pixel offsets u = x W/2, v = y H/2.
    # A counter-clockwise rotation on screen (y down) samples the input at R(-angle) in (u, v) space.
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (h / w)
    theta[:, 1, 0] = sin * (w / h)
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class AugmentParams:
    """The random draws of one augmented batch (B images); see :meth:`RandomImageAugment.sample`."""

    top: torch.Tensor       # (B,) crop row offset in [0, 2 pad]
    left: torch.Tensor      # (B,) crop column offset in [0, 2 pad]
    flip: torch.Tensor      # (B,) bool, mirror horizontally
    factors: torch.Tensor   # (B, 3) brightness, contrast, saturation factors in [1 - jitter, 1 + jitter]
    order: torch.Tensor     # (B, 3) per-image permutation of (0, 1, 2): order of the three adjustments
    angles: torch.Tensor    # (B,) rotation in degrees, in [-rotation_degrees, rotation_degrees]


@dataclass(frozen=True)
class RandomImageAugment:
    """The training augmentation of CLL supplement B as a callable ``(x, generator) -> x``.

    ``x`` is a float batch (B, 3, image_size, image_size) in [0, 1] on the generator's device; the
    result has the same shape and lies in [0, 1].  Steps, in torchvision ``Compose`` order: crop
    (zero padding ``pad``), horizontal flip (p = 0.5), colour jitter (``jitter``), rotation
    (``rotation_degrees``).  ``pad = 0``, ``flip = False``, ``jitter = 0`` or ``rotation_degrees = 0``
    switch a step off.  All random numbers of a batch are drawn at once (:meth:`sample`), in a fixed
    order, from the one generator.
    """

    image_size: int
    pad: int
    flip: bool = True
    jitter: float = 0.25
    rotation_degrees: float = 2.0
    rotation_interpolation: Literal["bilinear", "nearest"] = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"pad must be a non-negative int, got {self.pad!r}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"rotation_degrees must be in [0, 180], got {self.rotation_degrees!r}")
        if self.rotation_interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"rotation_interpolation must be 'bilinear' or 'nearest', got {self.rotation_interpolation!r}")

    def sample(self, batch: int, generator: torch.Generator) -> AugmentParams:
        """Draw the parameters of ``batch`` images on the generator's device (crop, flip, jitter, order, angle)."""
        dev = generator.device
        top = torch.randint(0, 2 * self.pad + 1, (batch,), generator=generator, device=dev)
        left = torch.randint(0, 2 * self.pad + 1, (batch,), generator=generator, device=dev)
        flip = torch.rand(batch, generator=generator, device=dev) < 0.5
        factors = 1.0 + self.jitter * (2.0 * torch.rand(batch, 3, generator=generator, device=dev) - 1.0)
        order = torch.rand(batch, 3, generator=generator, device=dev).argsort(dim=1)
        angles = self.rotation_degrees * (2.0 * torch.rand(batch, generator=generator, device=dev) - 1.0)
        return AugmentParams(top, left, flip, factors, order, angles)

    def apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply the enabled steps with the given parameters (deterministic)."""
        _check_batch(x)
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {tuple(x.shape[2:])}")
        out = crop_padded(x, self.pad, params.top, params.left) if self.pad > 0 else x
        if self.flip:
            out = torch.where(params.flip.to(x.device).reshape(-1, 1, 1, 1), out.flip(-1), out)
        if self.jitter > 0:
            out = apply_color_jitter(out, params.factors, params.order)
        if self.rotation_degrees > 0:
            out = rotate(out, params.angles, self.rotation_interpolation).clamp(0.0, 1.0)
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(x)
        return self.apply(x, self.sample(x.shape[0], generator))


def make_augment(image_size: int, pad: int, *, flip: bool = True, jitter: float = 0.25,
                 rotation_degrees: float = 2.0,
                 rotation_interpolation: Literal["bilinear", "nearest"] = "bilinear") -> RandomImageAugment:
    """The paper's training augmentation (supplement B): crop ``image_size`` with ``pad``, flip, jitter 0.25, 2 degrees.

    CIFAR: ``make_augment(32, 4)``; Tiny-ImageNet: ``make_augment(64, 8)``.  Returns a callable
    ``(x, generator) -> x`` for :attr:`lipcert.data.tensor_data.TensorData.augment`.
    """
    return RandomImageAugment(image_size=image_size, pad=pad, flip=flip, jitter=float(jitter),
                              rotation_degrees=float(rotation_degrees), rotation_interpolation=rotation_interpolation)
