"""Tests of dreamlib.metrics against independent references (REFERENCE.md §3).

scikit-image is the independent implementation for PSNR and for the MATLAB /
scikit-image SSIMs; the BasicSR SSIM (border replicate, no crop) is checked
against a small numpy reference written here (explicit loop over kernel offsets,
no scipy). Y channels are checked on hand-worked single pixels.
"""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dreamlib import metrics
from dreamlib.metrics import luma, psnr, psnr_ssim, ssim, to_uint8

CONVENTIONS = ("basicsr", "matlab", "opencv")


# ---------------------------------------------------------------- helpers (independent of the module)

def _rgb_u8(seed, shape=(40, 52)):
    """A smooth-ish random uint8 RGB image (so SSIM is not trivially ~0)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None] * np.array([1.0, 0.7, -0.5])
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).round().astype(np.uint8)


def _pair(seed=0, shape=(40, 52)):
    a = _untie(_rgb_u8(seed, shape))
    rng = np.random.default_rng(seed + 100)
    b = _untie(np.clip(a.astype(int) + rng.integers(-25, 26, a.shape), 0, 255).astype(np.uint8))
    return a, b


def _y_basicsr(u8):
    """MATLAB rgb2ycbcr Y in float, not rounded (BasicSR bgr2ycbcr(..., y_only=True) on [0,1])."""
    x = u8.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _y_matlab(u8):
    """MATLAB rgb2ycbcr on uint8: Y rounded half away from zero to uint8, in exact integer
    arithmetic: Y = 16 + (65481 R + 128553 G + 24966 B) / 255000."""
    r, g, b = (u8[..., i].astype(np.int64) for i in range(3))
    num = 16 * 255000 + 65481 * r + 128553 * g + 24966 * b
    return ((2 * num + 255000) // 510000).astype(np.uint8)


def _is_matlab_tie(u8):
    """Colours whose exact Y is k + 1/2: there the result depends on floating-point
    order (MATLAB's own imlincomb order is not reproducible here), so tests avoid them."""
    r, g, b = (u8[..., i].astype(np.int64) for i in range(3))
    num = 16 * 255000 + 65481 * r + 128553 * g + 24966 * b
    return (2 * num) % 510000 == 255000


def _untie(u8):
    u8 = u8.copy()
    for _ in range(3):
        tie = _is_matlab_tie(u8)
        if not tie.any():
            return u8
        u8[tie, 2] = np.where(u8[tie, 2] < 255, u8[tie, 2] + 1, 254)
    assert not _is_matlab_tie(u8).any()
    return u8


def _y_opencv(u8):
    """cv2.cvtColor(bgr, COLOR_BGR2YCrCb)[..., 0] for uint8: 14-bit fixed point."""
    r, g, b = (u8[..., i].astype(np.int64) for i in range(3))
    return ((r * 4899 + g * 9617 + b * 1868 + 8192) >> 14).astype(np.uint8)


def _gauss11():
    """fspecial('gaussian', 11, 1.5) built by hand."""
    k = np.empty((11, 11))
    for i in range(11):
        for j in range(11):
            k[i, j] = math.exp(-((i - 5) ** 2 + (j - 5) ** 2) / (2 * 1.5 ** 2))
    return k / k.sum()


def _filter_replicate(img, k):
    """Correlation with border replicate, as an explicit sum over the 121 kernel offsets."""
    h, w = img.shape
    p = np.pad(img, 5, mode="edge")
    out = np.zeros((h, w))
    for i in range(11):
        for j in range(11):
            out += k[i, j] * p[i:i + h, j:j + w]
    return out


def _ssim_basicsr_reference(y1, y2):
    k = _gauss11()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = _filter_replicate(y1, k), _filter_replicate(y2, k)
    s11 = _filter_replicate(y1 * y1, k) - mu1 ** 2
    s22 = _filter_replicate(y2 * y2, k) - mu2 ** 2
    s12 = _filter_replicate(y1 * y2, k) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
    return m.mean()


def _px(r, g, b):
    return np.array([[[r, g, b]]], dtype=np.uint8)


# ---------------------------------------------------------------- PSNR vs scikit-image

@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_basicsr_equals_skimage_on_float_y(seed):
    a, b = _pair(seed)
    expected = peak_signal_noise_ratio(_y_basicsr(b), _y_basicsr(a), data_range=255)
    assert psnr(a, b, "basicsr") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_matlab_equals_skimage_on_rounded_y(seed):
    a, b = _pair(seed)
    expected = peak_signal_noise_ratio(_y_matlab(b).astype(np.float64), _y_matlab(a).astype(np.float64),
                                       data_range=255)
    assert psnr(a, b, "matlab") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_opencv_equals_skimage_on_fixed_point_y(seed):
    a, b = _pair(seed)
    expected = peak_signal_noise_ratio(_y_opencv(b), _y_opencv(a), data_range=255)
    assert psnr(a, b, "opencv") == pytest.approx(expected, abs=1e-6)


def test_conventions_give_different_psnr():
    """The three conventions are different computations. basicsr's Y is 16 + 219/255 times the
    full-range luma (65.481 = 219 * 0.299, ...), so its PSNR exceeds opencv's by about
    20 log10(255/219) = 1.32 dB; matlab differs from basicsr only by Y's rounding."""
    a, b = _pair(3)
    vals = {c: psnr(a, b, c) for c in CONVENTIONS}
    assert len({round(v, 6) for v in vals.values()}) == 3
    assert vals["basicsr"] - vals["opencv"] == pytest.approx(20 * math.log10(255 / 219), abs=0.05)
    assert abs(vals["basicsr"] - vals["matlab"]) < 0.05


# ---------------------------------------------------------------- SSIM vs independent references

@pytest.mark.parametrize("seed", [0, 2])
def test_ssim_matlab_equals_skimage_gaussian_valid(seed):
    a, b = _pair(seed)
    expected = structural_similarity(_y_matlab(a).astype(np.float64), _y_matlab(b).astype(np.float64),
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
    assert ssim(a, b, "matlab") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 2])
def test_ssim_opencv_equals_skimage_defaults(seed):
    a, b = _pair(seed)
    expected = structural_similarity(_y_opencv(a), _y_opencv(b))  # uint8: data_range 255, 7x7, sample cov
    assert ssim(a, b, "opencv") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 2])
def test_ssim_basicsr_equals_loop_reference(seed):
    a, b = _pair(seed, shape=(33, 41))
    expected = _ssim_basicsr_reference(_y_basicsr(a), _y_basicsr(b))
    assert ssim(a, b, "basicsr") == pytest.approx(expected, abs=1e-6)


def test_ssim_basicsr_is_not_the_cropped_one():
    """basicsr keeps the border (replicate, no valid crop): it must differ from the matlab crop
    on an image whose border differs from its centre."""
    a, b = _pair(5, shape=(30, 30))
    b[:4] = 0  # damage only the border band
    assert abs(ssim(a, b, "basicsr") - ssim(a, b, "matlab")) > 1e-3


def test_psnr_ssim_returns_both():
    a, b = _pair(4)
    for c in CONVENTIONS:
        assert psnr_ssim(a, b, c) == (psnr(a, b, c), ssim(a, b, c))


# ---------------------------------------------------------------- hand-worked Y channels

@pytest.mark.parametrize("rgb, expected", [
    ((255, 0, 0), 16 + 65.481),                    # 81.481
    ((0, 255, 0), 16 + 128.553),                   # 144.553
    ((0, 0, 255), 16 + 24.966),                    # 40.966
    ((255, 255, 255), 235.0),                      # 16 + 219
    ((0, 0, 0), 16.0),
    ((128, 128, 128), 16 + 219 * 128 / 255),       # 125.929...
])
def test_luma_basicsr_single_pixels(rgb, expected):
    assert luma(_px(*rgb), "basicsr")[0, 0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("rgb, expected", [
    ((255, 0, 0), 81),       # round(81.481)
    ((0, 255, 0), 145),      # round(144.553)
    ((0, 0, 255), 41),       # round(40.966)
    ((255, 255, 255), 235),
    ((0, 0, 0), 16),
    ((128, 128, 128), 126),  # round(125.929)
    ((100, 100, 100), 102),  # round(101.882)
    ((110, 110, 110), 110),  # round(110.471)
])
def test_luma_matlab_single_pixels(rgb, expected):
    assert luma(_px(*rgb), "matlab")[0, 0] == expected


@pytest.mark.parametrize("rgb, expected", [
    ((255, 0, 0), 76),       # (255*4899 + 8192) >> 14 = 1257437 >> 14 = 76
    ((0, 255, 0), 150),      # (255*9617 + 8192) >> 14 = 2460527 >> 14 = 150
    ((0, 0, 255), 29),       # (255*1868 + 8192) >> 14 = 484532 >> 14 = 29
    ((255, 255, 255), 255),  # (255*16384 + 8192) >> 14 = 255
    ((0, 0, 0), 0),
    ((128, 128, 128), 128),  # grey stays grey: the coefficients sum to 2**14
    ((1, 2, 3), 2),          # (4899 + 19234 + 5604 + 8192) >> 14 = 37929 >> 14 = 2
])
def test_luma_opencv_single_pixels(rgb, expected):
    assert luma(_px(*rgb), "opencv")[0, 0] == expected


def test_luma_opencv_fixed_point_differs_from_float_rounding():
    """Somewhere the fixed-point value differs from round(0.299 R + 0.587 G + 0.114 B):
    the module must follow the fixed point (the hand formula) everywhere."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fixed = _y_opencv(img)
    flt = np.round(img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    assert (fixed != flt).any()
    assert np.array_equal(luma(img, "opencv"), fixed.astype(np.float64))


def test_luma_matlab_exact_on_all_colours_including_ties():
    """On 256 x 256 x 5 colours the rounded Y equals exact integer rounding; colours whose
    exact Y is k + 1/2 round up (half away from zero), identically on every machine."""
    r, g, b = np.meshgrid(np.arange(256), np.arange(256), np.array([0, 1, 77, 200, 255]), indexing="ij")
    img = np.stack([r, g, b], -1).reshape(-1, 1, 3).astype(np.uint8)
    tie = _is_matlab_tie(img)
    assert tie.any()
    assert np.array_equal(luma(img, "matlab"), _y_matlab(img).astype(np.float64))
    assert np.allclose(luma(img, "matlab")[tie] - _y_basicsr(img)[tie], 0.5, atol=1e-9, rtol=0)


def test_luma_full_images_match_hand_formulas():
    img = _untie(_rgb_u8(7))
    assert np.allclose(luma(img, "basicsr"), _y_basicsr(img), atol=1e-9, rtol=0)
    assert np.array_equal(luma(img, "matlab"), _y_matlab(img).astype(np.float64))


# ---------------------------------------------------------------- analytic PSNR

def test_psnr_constant_offset_analytic():
    target = np.full((16, 20, 3), 100, np.uint8)
    pred = np.full((16, 20, 3), 110, np.uint8)
    # opencv: grey v -> Y = v exactly, so the Y error is 10 everywhere
    assert psnr(pred, target, "opencv") == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)
    # basicsr: Y(v) = 16 + 219 v / 255, so the Y error is 10 * 219 / 255
    assert psnr(pred, target, "basicsr") == pytest.approx(20 * math.log10(255 / (10 * 219 / 255)), abs=1e-9)
    # matlab: Y(100) = round(101.882) = 102, Y(110) = round(110.471) = 110 -> error 8
    assert psnr(pred, target, "matlab") == pytest.approx(20 * math.log10(255 / 8), abs=1e-9)


def test_psnr_is_symmetric_and_decreases_with_error():
    a, b = _pair(1)
    for c in CONVENTIONS:
        assert psnr(a, b, c) == pytest.approx(psnr(b, a, c), abs=1e-12)
    t = np.full((8, 8, 3), 100, np.uint8)
    vals = [psnr(t + d, t, "opencv") for d in (1, 2, 5, 20)]
    assert vals == sorted(vals, reverse=True)
    # one gray level everywhere: MSE 1 -> 20 log10(255) = 48.1308 dB
    assert vals[0] == pytest.approx(20 * math.log10(255), abs=1e-9)


# ---------------------------------------------------------------- identities and errors

@pytest.mark.parametrize("convention", CONVENTIONS)
def test_identical_images(convention):
    a = _rgb_u8(9)
    assert psnr(a, a.copy(), convention) == float("inf")
    assert ssim(a, a.copy(), convention) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_ssim_bounds_and_symmetry(convention):
    a, b = _pair(6)
    s = ssim(a, b, convention)
    assert -1.0 <= s < 1.0
    assert s == pytest.approx(ssim(b, a, convention), abs=1e-12)


def test_shape_mismatch_names_both_shapes():
    a = np.zeros((10, 12, 3), np.uint8)
    b = np.zeros((10, 14, 3), np.uint8)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError) as e:
            fn(a, b)
        msg = str(e.value)
        assert "(10, 12, 3)" in msg and "(10, 14, 3)" in msg


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 1), np.uint8)])
def test_non_rgb_arrays_raise(bad):
    good = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        psnr(bad, good)
    with pytest.raises(ValueError, match="RGB"):
        ssim(good, bad)


def test_non_rgb_tensor_raises():
    with pytest.raises(ValueError, match="RGB"):
        psnr(torch.zeros(1, 10, 10), torch.zeros(1, 10, 10))
    with pytest.raises(ValueError, match="RGB"):
        psnr(torch.zeros(4, 10, 10), torch.zeros(4, 10, 10))


def test_batch_of_two_raises():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="batch"):
        psnr(x, x)
    with pytest.raises(ValueError, match="batch"):
        ssim(x, x)


def test_unknown_convention_raises():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="convention"):
        psnr(a, a, "matlabb")
    with pytest.raises(ValueError, match="convention"):
        luma(a, "yuv")


def test_integer_non_uint8_raises():
    a = np.zeros((8, 8, 3), np.int32)
    with pytest.raises(ValueError):
        psnr(a, a)


# ---------------------------------------------------------------- float / torch inputs

@pytest.mark.parametrize("convention", CONVENTIONS)
def test_torch_float_inputs_equal_uint8(convention):
    a, b = _pair(11, shape=(24, 28))
    ta = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1).float() / 255
    ref = (psnr(a, b, convention), ssim(a, b, convention))
    assert (psnr(ta, tb, convention), ssim(ta, tb, convention)) == ref
    assert (psnr(ta[None], tb[None], convention), ssim(ta[None], tb[None], convention)) == ref
    # numpy float (H,W,3) works the same way
    assert psnr(a / 255.0, b / 255.0, convention) == ref[0]


def test_float_quantisation_rounds_or_truncates():
    """A value (k + 0.6)/255 becomes k+1 under basicsr/matlab (rounding) but k under opencv (truncation)."""
    a, b = _pair(12, shape=(24, 28))
    a = np.minimum(a, 254)
    fa = torch.from_numpy((a.astype(np.float64) + 0.6) / 255).permute(2, 0, 1).float()
    assert np.array_equal(to_uint8(fa, "basicsr"), a + 1)
    assert np.array_equal(to_uint8(fa, "matlab"), a + 1)
    assert np.array_equal(to_uint8(fa, "opencv"), a)
    for c in ("basicsr", "matlab"):
        assert psnr(fa, b, c) == psnr(a + 1, b, c)
        assert ssim(fa, b, c) == ssim(a + 1, b, c)
    assert psnr(fa, b, "opencv") == psnr(a, b, "opencv")
    assert ssim(fa, b, "opencv") == ssim(a, b, "opencv")
    assert psnr(fa, b, "opencv") != psnr(fa, b, "basicsr")


def test_float_inputs_are_clamped():
    x = torch.tensor([-0.5, 0.0, 1.0, 1.7]).view(1, 1, 4).expand(3, 1, 4)
    assert to_uint8(x, "basicsr")[0, :, 0].tolist() == [0, 0, 255, 255]
    assert to_uint8(x, "opencv")[0, :, 0].tolist() == [0, 0, 255, 255]


def test_uint8_passes_through_unchanged():
    a = _rgb_u8(13)
    for c in CONVENTIONS:
        assert to_uint8(a, c) is a or np.array_equal(to_uint8(a, c), a)


# ---------------------------------------------------------------- crop_border

@pytest.mark.parametrize("convention", CONVENTIONS)
def test_crop_border_equals_manual_slicing(convention):
    a, b = _pair(14, shape=(36, 44))
    b[:3] = 255  # a border-only difference, so cropping changes the result
    c = 4
    sa, sb = a[c:-c, c:-c], b[c:-c, c:-c]
    assert psnr(a, b, convention, crop_border=c) == psnr(sa, sb, convention)
    assert ssim(a, b, convention, crop_border=c) == ssim(sa, sb, convention)
    assert psnr(a, b, convention, crop_border=c) > psnr(a, b, convention)


def test_crop_border_too_large_raises():
    a = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError):
        psnr(a, a, crop_border=5)


def test_conventions_constant():
    assert set(metrics.CONVENTIONS) == set(CONVENTIONS)
