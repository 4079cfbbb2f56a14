"""Tests of dreamlib.metrics.psnr_torch, the pruning search's float PSNR, against a numpy
computation written here from the definition (clamp to [0,1], per-image MSE over
C,H,W, 10 log10(1/MSE), MSE floored at 1e-12, mean over the batch) and hand values."""
import math

import numpy as np
import pytest
import torch

from dreamlib.metrics import PSNR_TORCH_MSE_FLOOR, psnr_torch


def _numpy_psnr(pred, target):
    p = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    t = np.clip(np.asarray(target, dtype=np.float64), 0.0, 1.0)
    out = []
    for a, b in zip(p, t):
        mse = max(float(np.mean((a - b) ** 2)), 1e-12)
        out.append(10.0 * math.log10(1.0 / mse))
    return out


def test_matches_numpy_per_image_and_mean():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(5, 3, 17, 23, generator=g)
    pred = target + 0.05 * torch.randn(5, 3, 17, 23, generator=g) * torch.arange(1, 6).view(5, 1, 1, 1)
    ref = _numpy_psnr(pred.numpy(), target.numpy())
    per = psnr_torch(pred, target, reduction="none")
    assert per.shape == (5,) and per.dtype == torch.float64
    np.testing.assert_allclose(per.numpy(), ref, rtol=0, atol=1e-9)
    assert psnr_torch(pred, target) == pytest.approx(float(np.mean(ref)), abs=1e-9)
    # a mean of per-image PSNRs, not the PSNR of the batch MSE
    batch_mse = float(((pred.clamp(0, 1) - target) ** 2).double().mean())
    assert abs(psnr_torch(pred, target) - 10 * math.log10(1 / batch_mse)) > 0.1


def test_hand_values_clamp_and_cap():
    t = torch.full((2, 3, 4, 4), 0.5)
    assert psnr_torch(t + 0.01, t) == pytest.approx(40.0, abs=1e-4)  # MSE 1e-4 (float32 inputs: 1e-4 dB slack)
    assert psnr_torch(t + 0.1, t) == pytest.approx(20.0, abs=1e-4)  # MSE 1e-2
    # values outside [0, 1] are clamped on both sides first: 1.7 -> 1 and -3 -> 0
    assert psnr_torch(torch.full((1, 3, 2, 2), 1.7), torch.ones(1, 3, 2, 2)) == pytest.approx(120.0)
    assert psnr_torch(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), -3.0)) == pytest.approx(120.0)
    assert psnr_torch(t, t) == pytest.approx(10 * math.log10(1 / PSNR_TORCH_MSE_FLOOR))
    # one (C,H,W) image works like a batch of one
    assert psnr_torch((t + 0.01)[0], t[0]) == pytest.approx(40.0, abs=1e-4)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_torch(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="reduction"):
        psnr_torch(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), reduction="sum")
