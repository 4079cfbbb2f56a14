"""Initialisations for teacher training: He scale, identity kernels (dirac), and a deep ReLU stack that keeps its signal."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.train import DIRAC_NOISE, INITS, dirac_init_, identity_init_, kaiming_init_, train_teacher


def test_kaiming_weights_have_the_he_scale_and_zero_bias():
    torch.manual_seed(0)
    m = kaiming_init_(models.build("agan", "small"))
    conv = m.conv5[0]  # 64 -> 64, 3x3: 36,864 weights, enough for a tight std estimate
    fan_in = conv.in_channels * 9
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.03)
    assert all(float(c.bias.abs().max()) == 0.0 for c in m.modules() if isinstance(c, nn.Conv2d))


def test_bottleneck_signal_survives_with_kaiming_but_fades_by_default():
    stds = {}
    for init in ("default", "kaiming"):
        torch.manual_seed(0)
        m = models.build("agan", "small")
        if init == "kaiming":
            kaiming_init_(m)
        seen = {}
        m.conv1.register_forward_hook(lambda mod, i, o: seen.__setitem__("conv1", float(o.std())))
        m.conv6.register_forward_hook(lambda mod, i, o: seen.__setitem__("conv6", float(o.std())))
        with torch.no_grad():
            m(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
        stds[init] = seen["conv6"] / seen["conv1"]
    assert stds["default"] < 0.2      # five plain ReLU convs shrink the signal ~10x
    assert stds["kaiming"] > 0.4      # He scale keeps it within a factor ~2


def test_identity_init_still_exact_after_kaiming():
    torch.manual_seed(0)
    m = identity_init_(kaiming_init_(models.build("agan", "small"))).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y = models.restore(m, x)
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_unknown_init_is_a_clear_error(tmp_path):
    assert INITS == ("default", "kaiming", "dirac")
    with pytest.raises(ValueError, match="unknown init"):
        train_teacher("agan", steps=1, init="xavier", out_dir=tmp_path, evaluate=False, progress=False)


def test_identity_init_leaves_no_dead_channel():
    """deconv2's identity channels get gradients (a zero pre-activation behind a ReLU would not)."""
    torch.manual_seed(0)
    m = identity_init_(kaiming_init_(models.build("agan", "small")))
    x = torch.rand(2, 3, 32, 32)
    y = models.restore(m, x)
    ((y - x.flip(-1)) ** 2).mean().backward()
    g = m.deconv2[0].weight.grad  # (in, out, k, k)
    assert g[:, :3].abs().sum() > 0


def test_dirac_kernels_are_identity_plus_scaled_he_noise():
    torch.manual_seed(0)
    m = dirac_init_(models.build("agan", "small"))
    w = m.conv5[0].weight.detach()  # 64 -> 64, 3x3
    centre = w[torch.arange(64), torch.arange(64), 1, 1]
    off = w.clone()
    off[torch.arange(64), torch.arange(64), 1, 1] -= 1.0
    assert float(centre.mean()) == pytest.approx(1.0, abs=0.05)
    assert float(off.std()) == pytest.approx(DIRAC_NOISE * math.sqrt(2.0 / (64 * 9)), rel=0.05)
    # the stride-2 conv 16 -> 32 copies its 16 inputs into its first 16 outputs
    w2 = m.conv2[0].weight.detach()
    assert float(w2[torch.arange(16), torch.arange(16), 1, 1].mean()) == pytest.approx(1.0, abs=0.1)
    # the transposed conv gets the bilinear kernel, which sums to 4 (one input pixel feeds 2x2 outputs)
    d1 = m.deconv1[0].weight.detach()  # (in 64, out 32, 4, 4)
    assert float(d1[torch.arange(32), torch.arange(32)].sum((-1, -2)).mean()) == pytest.approx(4.0, abs=0.1)


def test_dirac_keeps_the_input_visible_through_a_plain_stack():
    """After the 1/4-resolution stack (conv5 ... conv8, 8 plain ReLU convs) the output still
    correlates with the input; with He weights alone it is unrelated to it."""
    x = torch.rand(1, 64, 16, 16, generator=torch.Generator().manual_seed(1))

    def corr_after_stack(init):
        torch.manual_seed(0)
        m = init(models.build("agan", "small"))
        stack = nn.Sequential(m.conv5, m.conv6, m.diconv1, m.diconv2, m.diconv3, m.diconv4, m.conv7, m.conv8)
        with torch.no_grad():
            y = stack(x)
        return float(torch.corrcoef(torch.stack([y.flatten(), x.flatten()]))[0, 1])

    assert corr_after_stack(dirac_init_) > 0.25
    assert abs(corr_after_stack(kaiming_init_)) < 0.05


def test_identity_init_still_exact_after_dirac():
    torch.manual_seed(0)
    m = identity_init_(dirac_init_(models.build("agan", "small"))).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(models.restore(m, x), x, atol=1e-6, rtol=0)
