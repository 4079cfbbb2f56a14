"""He initialisation for teacher training: the right weight scale, and a deep ReLU stack that keeps its signal."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.train import INITS, identity_init_, kaiming_init_, train_teacher


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
    assert INITS == ("default", "kaiming")
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
