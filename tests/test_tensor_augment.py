"""The device input path's augmentation on the CPU: parameter draws follow the declared policy and keep the
crop inside the image, a sample's view does not depend on its batch, and the geometry is what it says."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdengine.data.augment import PARAMS, POLICY, draw_params, train_transform, uniforms
from kdengine.data.tensor_augment import TensorAugment

COL = {name: i for i, name in enumerate(PARAMS)}


def test_parameter_draws_follow_the_declared_policy_and_stay_inside_the_image():
    n = 20000
    p = draw_params(seed=3, epoch=2, rows=np.arange(n)).astype(np.float64)
    w, h, cx, cy = (p[:, COL[k]] for k in ("crop_w", "crop_h", "crop_cx", "crop_cy"))
    # the crop window lies inside the image (sizes and centres are fractions of the side)
    assert (cx - w / 2 >= -1e-6).all() and (cx + w / 2 <= 1 + 1e-6).all()
    assert (cy - h / 2 >= -1e-6).all() and (cy + h / 2 <= 1 + 1e-6).all()
    # its area share and aspect ratio come from the policy (shrunk to fit only where the draw did not)
    area, ratio = w * h, w / h
    lo, hi = POLICY.crop_scale
    assert area.min() >= lo * (1 - 1e-5) ** 2 and area.max() <= hi + 1e-6
    unclipped = (w < 1) & (h < 1)
    assert unclipped.mean() > 0.5
    assert ratio[unclipped].min() >= POLICY.crop_ratio[0] - 1e-5 and ratio[unclipped].max() <= POLICY.crop_ratio[1] + 1e-5
    # uniform in [0.6, 1]: below 0.8 no draw is ever shrunk (0.8 x 1.25 = 1), so each tenth holds a quarter
    for a, b in ((0.6, 0.7), (0.7, 0.8)):
        share = ((area >= a) & (area < b)).mean()
        assert abs(share - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)

    def rate(mask, p_expected):  # a binomial proportion within 5 standard errors
        return abs(mask.mean() - p_expected) < 5 * np.sqrt(p_expected * (1 - p_expected) / n)

    assert set(np.unique(p[:, COL["flip"]])) == {0.0, 1.0} and rate(p[:, COL["flip"]] == 1, POLICY.flip_p)
    angle = p[:, COL["angle"]]
    assert np.abs(angle).max() <= POLICY.rotate_limit + 1e-5 and rate(angle != 0, POLICY.rotate_p)
    assert np.abs(angle[angle != 0]).max() > 0.95 * POLICY.rotate_limit  # the whole range is used
    b, c = p[:, COL["brightness"]], p[:, COL["contrast"]]
    assert np.abs(b).max() <= POLICY.brightness_limit + 1e-6 and np.abs(c).max() <= POLICY.contrast_limit + 1e-6
    assert rate((b != 0) | (c != 0), POLICY.brightness_contrast_p)
    assert np.array_equal(b != 0, c != 0)  # one draw decides both, as albumentations' transform does


def test_draws_are_a_pure_function_of_seed_epoch_and_row():
    rows = np.array([5, 900, 17, 3])
    a = draw_params(1, 4, rows)
    assert np.array_equal(a[1], draw_params(1, 4, np.array([900]))[0])  # whatever else is drawn with it
    assert not np.array_equal(a, draw_params(1, 5, rows)) and not np.array_equal(a, draw_params(2, 4, rows))
    u = uniforms(0, 0, np.arange(50000), 2)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.005
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.02 and len(np.unique(u[:, 0])) == 50000


def _identity(n: int) -> torch.Tensor:
    p = torch.zeros(n, len(PARAMS))
    p[:, COL["crop_w"]] = p[:, COL["crop_h"]] = 1.0
    p[:, COL["crop_cx"]] = p[:, COL["crop_cy"]] = 0.5
    return p


def test_the_geometry_crop_flip_rotation_and_intensity():
    size = 16
    aug = TensorAugment(size)
    img = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size).remainder(251).to(torch.uint8)
    same = aug(img, _identity(1))
    assert torch.equal(same, img.float())  # no crop, no flip, no turn: the image itself
    p = _identity(1)
    p[:, COL["flip"]] = 1
    assert torch.equal(aug(img, p), img.float().flip(-1))
    p = _identity(1)  # the left half, stretched to the full width
    p[:, COL["crop_w"]], p[:, COL["crop_cx"]] = 0.5, 0.25
    left = aug(img, p)
    assert torch.allclose(left[..., ::2], img[..., :8].float(), atol=1.0)
    p = _identity(1)
    p[:, COL["angle"]] = 90.0
    turned = aug(img, p)
    assert torch.allclose(turned, torch.rot90(img.float(), 1, (2, 3)), atol=1e-3) or \
        torch.allclose(turned, torch.rot90(img.float(), -1, (2, 3)), atol=1e-3)
    p = _identity(1)
    p[:, COL["angle"]] = 10.0
    tilted = aug(torch.full((1, 1, size, size), 200, dtype=torch.uint8), p)
    assert tilted[0, 0, 0, 0] == 0 and tilted[0, 0, size // 2, size // 2] == 200  # black corners, as albumentations
    p = _identity(1)
    p[:, COL["brightness"]], p[:, COL["contrast"]] = 0.1, -0.2
    lit = aug(torch.full((1, 1, size, size), 100, dtype=torch.uint8), p)
    assert torch.all(lit == round(100 * 0.8 + 25.5))


def test_a_samples_view_does_not_depend_on_its_batch():
    size = 24
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (6, 1, size, size), dtype=np.uint8))
    rows = np.array([11, 42, 7, 99, 3, 58])
    params = torch.from_numpy(draw_params(0, 1, rows))
    aug = TensorAugment(size)
    whole = aug(images, params)
    for order in ([3, 0, 5], [3], [5, 4, 3, 2, 1, 0]):
        part = aug(images[order], params[order])
        assert torch.equal(part[order.index(3)], whole[3])


@pytest.mark.parametrize("size", [32])
def test_both_paths_draw_views_of_the_same_kind(size):
    """albumentations' and the tensor path's views of one image: same shape and range, similar statistics."""
    from kdengine.data.augment import augment, sample_seed

    rng = np.random.default_rng(1)
    img = rng.integers(30, 220, (size, size), dtype=np.uint8)
    tf = train_transform(size)
    a = np.stack([augment(tf, img.copy(), sample_seed(0, 0, r)) for r in range(300)]).astype(np.float64)
    t = TensorAugment(size)(torch.from_numpy(img)[None, None].expand(300, 1, size, size).contiguous(),
                            torch.from_numpy(draw_params(0, 0, np.arange(300)))).numpy()[:, 0]
    assert a.shape == t.shape and t.min() >= 0 and t.max() <= 255
    assert abs(a.mean() - t.mean()) < 4 and abs(a.std() - t.std()) < 4
    assert abs((a == 0).mean() - (t == 0).mean()) < 0.02  # the black corners of rotations, as often
