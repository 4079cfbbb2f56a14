"""PSNR and SSIM with the conventions the papers used (REFERENCE.md §3).

The three reference code bases disagree by a few hundredths to tenths of a dB,
so every number dreamlib reports names its convention:

``"basicsr"`` (HINet)
    uint8 by rounding; Y of MATLAB-style YCbCr (16-235) computed in float and
    *not* rounded; SSIM with an 11x11 Gaussian (sigma 1.5), border replicated,
    mean over the whole map.
``"matlab"`` (MPRNet's ``evaluate_PSNR_SSIM.m``)
    uint8 by rounding; Y from ``rgb2ycbcr`` on uint8, so Y is itself rounded to
    uint8; SSIM of Wang et al. with ``filter2(..., 'valid')``.
``"opencv"`` (DuRN / AGAN, RainDrop)
    uint8 by truncation; Y = OpenCV ``COLOR_BGR2YCrCb`` channel 0 (full range,
    fixed-point as OpenCV does it for uint8); scikit-image's default SSIM
    (7x7 uniform window, sample covariance).

Inputs: numpy uint8 arrays (H, W, 3) RGB, or float images in [0, 1] as torch
tensors (3, H, W) / (1, 3, H, W) or numpy (H, W, 3). Floats are clamped, scaled
by 255 and quantised (rounded, or truncated for ``opencv``) first, as the
reference code does after saving outputs as 8-bit images.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CONVENTIONS = ("basicsr", "matlab", "opencv")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")


def to_uint8(img, convention: str = "basicsr") -> np.ndarray:
    """(H, W, 3) uint8 RGB from any accepted input (see the module docstring)."""
    _check_convention(convention)
    if hasattr(img, "detach"):  # torch tensor, without importing torch here
        t = img.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {t.shape[0]}; loop over the batch "
                                 "(metrics are computed per image, then averaged per set)")
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3,H,W) or (1,3,H,W) RGB tensor, got shape {tuple(img.shape)}")
        arr = t.float().permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H,W,3), got shape {arr.shape}; "
                         "convert grayscale/RGBA images to RGB first")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected uint8 in [0,255] or floats in [0,1], got dtype {arr.dtype}")
    scaled = np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0
    # BasicSR/MPRNet save with rounding; the DuRN/AGAN scripts cast with truncation.
    q = np.floor(scaled) if convention == "opencv" else np.round(scaled)
    return q.astype(np.uint8)


def luma(img_u8: np.ndarray, convention: str = "basicsr") -> np.ndarray:
    """Y channel (float64, 0-255 scale) of a uint8 RGB image under ``convention``."""
    _check_convention(convention)
    rgb = img_u8.astype(np.float64)
    if convention == "opencv":
        # OpenCV's uint8 path: 14-bit fixed-point coefficients, rounded.
        r, g, b = (img_u8[..., i].astype(np.int64) for i in range(3))
        return ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14).astype(np.float64)
    if convention == "matlab":
        # uint8 Y rounded half away from zero, computed in exact integers (255000 * Y)
        # so that colours whose Y is exactly k + 0.5 round the same way on every machine.
        r, g, b = (img_u8[..., i].astype(np.int64) for i in range(3))
        num = 4_080_000 + 65_481 * r + 128_553 * g + 24_966 * b
        return ((2 * num + 255_000) // 510_000).astype(np.float64)
    return 16.0 + (rgb @ np.array([65.481, 128.553, 24.966])) / 255.0


def _prepare(pred, target, convention: str, crop_border: int):
    _check_convention(convention)
    a, b = to_uint8(pred, convention), to_uint8(target, convention)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: pred {a.shape} vs target {b.shape}; "
                         "crop or pad the prediction to the target's size first")
    if crop_border:
        if 2 * crop_border >= min(a.shape[:2]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {a.shape[:2]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return luma(a, convention), luma(b, convention)


def psnr(pred, target, convention: str = "basicsr", crop_border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB on the Y channel (peak 255); ``inf`` for identical images."""
    ya, yb = _prepare(pred, target, convention, crop_border)
    mse = np.mean((ya - yb) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * np.log10(255.0 / np.sqrt(mse)))


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    k = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return k / k.sum()


def _filter(img: np.ndarray, convention: str) -> np.ndarray:
    if convention == "opencv":
        return ndimage.uniform_filter(img, size=7, mode="reflect")
    k = _gaussian_1d()
    mode = "nearest"  # = OpenCV BORDER_REPLICATE; the matlab path crops the border away anyway
    return ndimage.correlate1d(ndimage.correlate1d(img, k, axis=0, mode=mode), k, axis=1, mode=mode)


def ssim(pred, target, convention: str = "basicsr", crop_border: int = 0) -> float:
    """Structural similarity on the Y channel (data range 255); 1.0 for identical images."""
    ya, yb = _prepare(pred, target, convention, crop_border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _filter(ya, convention), _filter(yb, convention)
    var_a = _filter(ya * ya, convention) - mu_a ** 2
    var_b = _filter(yb * yb, convention) - mu_b ** 2
    cov = _filter(ya * yb, convention) - mu_a * mu_b
    if convention == "opencv":
        n = 7 * 7
        norm = n / (n - 1)  # scikit-image's default sample covariance
        var_a, var_b, cov = var_a * norm, var_b * norm, cov * norm
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    if convention == "matlab":
        smap = smap[5:-5, 5:-5]  # filter2(..., 'valid') for an 11x11 window
    elif convention == "opencv":
        smap = smap[3:-3, 3:-3]  # scikit-image drops (win_size - 1) // 2 pixels
    return float(smap.mean())


def psnr_ssim(pred, target, convention: str = "basicsr", crop_border: int = 0) -> tuple[float, float]:
    """Both metrics, sharing the conversion work."""
    return psnr(pred, target, convention, crop_border), ssim(pred, target, convention, crop_border)


# ------------------------------------------------------------------ fast float PSNR (pruning search)

#: Floor of the per-image MSE in :func:`psnr_torch`: identical images score
#: ``10 log10(1 / 1e-12) = 120`` dB instead of infinity, so batch means stay finite.
PSNR_TORCH_MSE_FLOOR = 1e-12


def psnr_torch(pred, target, reduction: str = "mean"):
    """Fast PSNR between two float RGB batches: the measure the pruning search compares with tp.

    This is *not* a reportable test-set metric (use :func:`psnr` for that). It is
    the number ``PSNR(S(X), T(X))`` of the paper's Algorithm 1, computed on the
    networks' float outputs without leaving torch:

    1. both tensors are clamped to [0, 1] (the valid image range; peak = 1);
    2. per image b, ``MSE_b`` = mean of the squared differences over all its
       channels and pixels (RGB, no Y channel, no uint8 quantisation),
       accumulated in float64;
    3. ``PSNR_b = 10 log10(1 / max(MSE_b, 1e-12))`` dB, so identical images give
       120 dB (:data:`PSNR_TORCH_MSE_FLOOR`);
    4. ``reduction="mean"`` returns the mean of ``PSNR_b`` over the batch as a
       Python float; ``"none"`` returns the (B,) float64 tensor of ``PSNR_b``.

    Args:
        pred, target: tensors of the same shape, (B, C, H, W) or one image (C, H, W).
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"psnr_torch: shapes differ, pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"psnr_torch: reduction must be 'mean' or 'none', got {reduction!r}")
    p, t = pred.detach(), target.detach()
    if p.dim() == 3:
        p, t = p.unsqueeze(0), t.unsqueeze(0)
    diff = p.clamp(0, 1).double() - t.clamp(0, 1).double()
    mse = diff.pow(2).flatten(1).mean(1).clamp_min(PSNR_TORCH_MSE_FLOOR)
    per_image = -10.0 * mse.log10()
    return float(per_image.mean()) if reduction == "mean" else per_image
