"""Batched training augmentation (CLL supplement B, "Data preprocessing"): crop, flip, jitter, rotation.

References: hand-written loops (crop/flip), torchvision's functional transforms (colour jitter and
rotation; an independent implementation), torch.rot90 (geometry and sign of the rotation).
"""

import itertools

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lipcert.data.augment import (
    RandomImageAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    apply_color_jitter,
    crop_padded,
    make_augment,
    rotate,
)
from lipcert.data.tensor_data import as_model_input


def _batch(b=8, size=32, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size,pad", [(32, 4), (64, 8)])
def test_shapes_dtype_and_range(size, pad):
    aug = make_augment(size, pad)
    x = _batch(16, size)
    y = aug(x, _gen(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)


def test_same_seed_same_output_different_seed_different_output():
    aug = make_augment(32, 4)
    x = _batch(16)
    a, b, c = aug(x, _gen(5)), aug(x, _gen(5)), aug(x, _gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = _gen(5)  # a generator advances: the next batch gets new draws
    first, second = aug(x, g), aug(x, g)
    assert torch.equal(first, a) and not torch.equal(first, second)


def _hand_crop_flip(img: np.ndarray, pad: int, top: int, left: int, flip: bool) -> np.ndarray:
    c, h, w = img.shape
    out = np.zeros_like(img)
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                src_i, src_j = top + i - pad, left + (w - 1 - j if flip else j) - pad
                if 0 <= src_i < h and 0 <= src_j < w:
                    out[ch, i, j] = img[ch, src_i, src_j]
    return out


def test_crop_and_flip_match_hand_loops():
    size, pad = 6, 2
    aug = RandomImageAugment(size, pad, flip=True, jitter=0.0, rotation_degrees=0.0)
    x = _batch(24, size, seed=1) + 0.01  # no exact zeros: padding is recognisable
    y = aug(x, _gen(3)).numpy()
    xs = x.numpy()
    for b in range(x.shape[0]):
        matches = [(t, l, f) for t, l, f in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (False, True))
                   if np.array_equal(y[b], _hand_crop_flip(xs[b], pad, t, l, f))]
        assert len(matches) == 1, (b, matches)
    params = aug.sample(x.shape[0], _gen(3))  # the same draws as aug(x, _gen(3))
    for b in range(x.shape[0]):
        expected = _hand_crop_flip(xs[b], pad, int(params.top[b]), int(params.left[b]), bool(params.flip[b]))
        assert np.array_equal(y[b], expected)


def test_crop_padded_centre_is_identity_and_offsets_shift():
    x = _batch(2, 5)
    assert torch.equal(crop_padded(x, 3, torch.tensor([3, 3]), torch.tensor([3, 3])), x)
    shifted = crop_padded(x, 1, torch.tensor([0, 2]), torch.tensor([2, 1]))
    # image 0: top 0 -> one zero row on top, left 2 -> content shifted left by one column
    assert torch.equal(shifted[0, :, 1:, :-1], x[0, :, :-1, 1:])
    assert torch.all(shifted[0, :, 0, :] == 0) and torch.all(shifted[0, :, :, -1] == 0)
    assert torch.equal(shifted[1, :, :-1, :], x[1, :, 1:, :]) and torch.all(shifted[1, :, -1, :] == 0)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        crop_padded(x, 1, torch.tensor([0, 3]), torch.tensor([0, 0]))


def test_all_offsets_and_both_flips_occur_with_fair_flip_rate():
    aug = make_augment(4, 1)  # jitter 0.25, rotation 2 degrees
    p = aug.sample(2000, _gen(0))
    assert set(zip(p.top.tolist(), p.left.tolist())) == set(itertools.product(range(3), range(3)))
    assert 0.45 < p.flip.float().mean().item() < 0.55
    assert torch.all((p.factors >= 0.75) & (p.factors <= 1.25))
    assert float(p.factors.min()) < 0.76 and float(p.factors.max()) > 1.24
    assert torch.all((p.angles >= -2.0) & (p.angles <= 2.0)) and float(p.angles.abs().max()) > 1.99
    assert torch.equal(p.order.sort(dim=1).values, torch.tensor([0, 1, 2]).expand(2000, 3))
    assert len({tuple(o) for o in p.order.tolist()}) == 6  # all six orders of the three adjustments


@pytest.mark.parametrize("name,ours,theirs", [
    ("brightness", adjust_brightness, TF.adjust_brightness),
    ("contrast", adjust_contrast, TF.adjust_contrast),
    ("saturation", adjust_saturation, TF.adjust_saturation),
])
def test_jitter_primitives_match_torchvision(name, ours, theirs):
    x = _batch(6, 8, seed=2)
    factors = torch.tensor([0.75, 0.9, 1.0, 1.1, 1.25, 1.2])
    expected = torch.stack([theirs(x[i], float(factors[i])) for i in range(6)])
    torch.testing.assert_close(ours(x, factors), expected, atol=1e-6, rtol=0)


def test_color_jitter_order_matches_sequential_torchvision():
    x = _batch(6, 8, seed=3)
    factors = torch.tensor([[1.25, 0.75, 1.2]] * 6)
    orders = torch.tensor(list(itertools.permutations(range(3))))
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    expected = []
    for i in range(6):
        img = x[i]
        for op in orders[i].tolist():
            img = ops[op](img, float(factors[i, op]))
        expected.append(img)
    out = apply_color_jitter(x, factors, orders)
    torch.testing.assert_close(out, torch.stack(expected), atol=1e-6, rtol=0)
    assert not torch.allclose(out[0], apply_color_jitter(x[:1], factors[:1], orders[1:2])[0])  # order matters


def test_jitter_on_grey_images_scales_by_the_brightness_factor_in_range():
    aug = RandomImageAugment(4, 0, flip=False, jitter=0.25, rotation_degrees=0.0)
    x = torch.full((2000, 3, 4, 4), 0.5)
    y = aug(x, _gen(1))
    ratio = y / 0.5  # contrast and saturation leave a constant grey image unchanged
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    assert float(ratio.min()) >= 0.75 - 1e-6 and float(ratio.max()) <= 1.25 + 1e-6
    assert float(ratio.min()) < 0.77 and float(ratio.max()) > 1.23


def test_rotation_geometry_and_torchvision_agreement():
    x = _batch(3, 8, seed=4)
    torch.testing.assert_close(rotate(x, torch.full((3,), 90.0)), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    assert torch.equal(rotate(x, torch.zeros(3)), x)
    angles = torch.tensor([2.0, -1.5, 0.7])
    expected = torch.stack([TF.rotate(x[i], float(angles[i]), interpolation=InterpolationMode.BILINEAR)
                            for i in range(3)])
    torch.testing.assert_close(rotate(x, angles), expected, atol=1e-5, rtol=0)
    expected_nearest = torch.stack([TF.rotate(x[i], float(angles[i]), interpolation=InterpolationMode.NEAREST)
                                    for i in range(3)])
    assert torch.equal(rotate(x, angles, "nearest"), expected_nearest)


def test_full_pipeline_equals_composition_of_steps():
    aug = make_augment(8, 2)
    x = _batch(10, 8, seed=5)
    p = aug.sample(10, _gen(9))
    step = crop_padded(x, 2, p.top, p.left)
    step = torch.where(p.flip.reshape(-1, 1, 1, 1), step.flip(-1), step)
    step = apply_color_jitter(step, p.factors, p.order)
    step = rotate(step, p.angles).clamp(0, 1)
    assert torch.equal(aug(x, _gen(9)), step)


def test_bad_inputs_raise_clear_errors():
    aug = make_augment(32, 4)
    with pytest.raises(ValueError, match="float images"):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), _gen(0))
    with pytest.raises(ValueError, match="32x32"):
        aug(torch.zeros(2, 3, 30, 30), _gen(0))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        aug(torch.zeros(3, 32, 32), _gen(0))
    with pytest.raises(ValueError, match="jitter"):
        make_augment(32, 4, jitter=1.5)
    with pytest.raises(ValueError, match="pad"):
        make_augment(32, -1)


def test_as_model_input_scales_uint8_and_passes_floats():
    x = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    assert torch.equal(as_model_input(x), torch.tensor([0, 1, 128, 255], dtype=torch.float32) / 255)
    f = torch.rand(3)
    assert as_model_input(f) is f
    with pytest.raises(ValueError, match="int64"):
        as_model_input(torch.zeros(2, dtype=torch.int64))
