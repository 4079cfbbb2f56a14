"""Dead-leaves pictures and the procedural share of the teachers' training stream."""
from __future__ import annotations

import numpy as np
import pytest

from dreamlib.data.deadleaves import dead_leaves
from dreamlib.train import RainPairSampler


def test_same_generator_state_gives_the_same_picture():
    a = dead_leaves(64, np.random.default_rng(3))
    b = dead_leaves(64, np.random.default_rng(3))
    c = dead_leaves(64, np.random.default_rng(4))
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05


def test_without_shading_grain_or_blur_every_pixel_is_a_palette_colour():
    palette = np.array([[0.2, 0.4, 0.6], [0.9, 0.1, 0.3]], np.float32)
    img = dead_leaves(48, np.random.default_rng(0), palette=palette, shading=0, grain=0, blur=0,
                      coverage=1.0, max_leaves=20000)
    d = np.abs(img.reshape(-1, 1, 3) - palette[None]).max(-1).min(-1)
    assert d.max() < 1e-6
    # both colours appear: the leaves are not one big disk
    share = (np.abs(img.reshape(-1, 3) - palette[0]).max(-1) < 1e-6).mean()
    assert 0.05 < share < 0.95


def test_leaf_sizes_span_scales():
    """Power-law radii: hundreds of tiny visible leaves and, in the same picture, a few that
    each cover over 1 % of it (without shading, grain or blur, a leaf is one flat colour)."""
    img = dead_leaves(256, np.random.default_rng(1), shading=0, grain=0, blur=0)
    _, area = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    assert (area < 20).sum() > 300
    assert (area > 0.01 * img.shape[0] * img.shape[1]).sum() >= 3
    # a single-scale picture of large disks fails the first check
    big = dead_leaves(256, np.random.default_rng(1), shading=0, grain=0, blur=0, r_min=40)
    _, area_big = np.unique(big.reshape(-1, 3), axis=0, return_counts=True)
    assert (area_big < 20).sum() < 50


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="too small"):
        dead_leaves(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="r_min"):
        dead_leaves(32, np.random.default_rng(0), r_min=5, r_max=2)
    with pytest.raises(ValueError, match="procedural"):
        RainPairSampler([np.zeros((64, 64, 3), np.float32)], ("light",), 32, np.random.default_rng(0),
                        procedural=1.5)


def _is_window_of(crop, pictures):
    c = crop.shape[0]
    for pic in pictures:
        for view in (pic, pic[:, ::-1]):
            h, w = view.shape[:2]
            for top in range(h - c + 1):
                rows = np.where(np.all(np.abs(view[top, :, :] - crop[0, 0]) < 1e-7, -1))[0]
                for left in rows:
                    if left + c <= w and np.array_equal(view[top:top + c, left:left + c], crop):
                        return True
    return False


def test_procedural_fraction_decides_where_clean_crops_come_from():
    rng = np.random.default_rng(0)
    images = [rng.random((40, 40, 3)).astype(np.float32)]
    only_pool = RainPairSampler(images, ("light",), 16, np.random.default_rng(1), procedural=1.0)
    assert len(only_pool.pool) == RainPairSampler.POOL_SIZE
    for _ in range(4):
        _, clean = only_pool.sample()
        assert not _is_window_of(clean, images)
        assert _is_window_of(clean, only_pool.pool)
    never = RainPairSampler(images, ("light",), 16, np.random.default_rng(1))
    assert never.pool == []
    for _ in range(4):
        _, clean = never.sample()
        assert _is_window_of(clean, images)
