"""Tests for dreamlib.models.agan (AGAN generator of rui1996/DeRaindrop)."""
import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.models import agan

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return models.build("agan", "official").eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return models.build("agan", "small")


def test_official_parameter_count(official):
    assert models.count_parameters(official) == 6_244_362


# Shapes read from models/generator.py of rui1996/DeRaindrop.
OFFICIAL_SHAPES = {
    "det_conv0.0.weight": (32, 4, 3, 3),
    "det_conv1.0.weight": (32, 32, 3, 3),
    "det_conv5.2.weight": (32, 32, 3, 3),
    "det_conv5.2.bias": (32,),
    "conv_i.0.weight": (32, 64, 3, 3),
    "conv_o.0.bias": (32,),
    "det_conv_mask.0.weight": (1, 32, 3, 3),
    "conv1.0.weight": (64, 4, 5, 5),
    "conv2.0.weight": (128, 64, 3, 3),
    "conv4.0.weight": (256, 128, 3, 3),
    "diconv4.0.weight": (256, 256, 3, 3),
    "conv8.0.weight": (256, 256, 3, 3),
    "deconv1.0.weight": (256, 128, 4, 4),  # ConvTranspose2d: (cin, cout, k, k)
    "deconv2.0.weight": (128, 64, 4, 4),
    "conv10.0.weight": (32, 64, 3, 3),
    "outframe1.0.weight": (3, 256, 3, 3),
    "outframe2.0.weight": (3, 128, 3, 3),
    "output.0.weight": (3, 32, 3, 3),
    "output.0.bias": (3,),
}


def test_official_state_dict_keys(official):
    sd = official.state_dict()
    for key, shape in OFFICIAL_SHAPES.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    # 35 convs (16 in the attentive-recurrent part, 19 in the autoencoder),
    # each with weight and bias; no buffers.
    assert len(sd) == 70
    assert not any(k.startswith("det_conv6") or k.startswith("diconv5") for k in sd)
    assert sum(1 for k in sd if k.endswith(".weight")) == 35


def test_official_forward_structure(official):
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        out = official(x)
    assert isinstance(out, tuple) and len(out) == 4
    masks, frame1, frame2, img = out
    assert isinstance(masks, list) and len(masks) == 4
    assert all(m.shape == (1, 1, 24, 32) for m in masks)
    assert frame1.shape == (1, 3, 6, 8)
    assert frame2.shape == (1, 3, 12, 16)
    assert img.shape == (1, 3, 24, 32)
    assert agan.final_image(out) is img
    assert models.final_image(official, out) is img


def test_restore_odd_size(official):
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = models.restore(official, x)
    assert y.shape == (1, 3, 37, 53)
    assert torch.isfinite(y).all()


def test_pad_multiple_needed(official):
    assert models.pad_multiple(official) == 4
    # a size that is even but not a multiple of 4 breaks the additive skips
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            official(torch.rand(1, 3, 18, 20))


def test_output_depends_on_input(small):
    small.eval()
    with torch.no_grad():
        a = models.restore(small, torch.rand(1, 3, 32, 32))
        b = models.restore(small, torch.rand(1, 3, 32, 32))
    assert (a - b).abs().max() > 1e-6


def test_strict_round_trip(small):
    torch.manual_seed(1)
    other = models.build("agan", "small")
    other.load_state_dict(small.state_dict(), strict=True)
    small.eval()
    other.eval()
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        ya, yb = small(x), other(x)
    for p, q in zip(ya[0], yb[0]):
        assert torch.equal(p, q)
    for p, q in zip(ya[1:], yb[1:]):
        assert torch.equal(p, q)


def test_official_round_trip_strict(official):
    other = agan.build(**agan.CONFIGS["official"])
    other.load_state_dict(official.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(official(x)[-1], other(x)[-1])


def test_small_forward_backward(small):
    n = models.count_parameters(small)
    assert 50_000 < n < 1_000_000
    small.train()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = small(x)
    assert len(out[0]) == small.iterations
    # multi-scale loss as in training: attention maps, both side frames, final image
    loss = models.final_image(small, out).square().mean() + sum(m.mean() for m in out[0])
    loss = loss + out[1].mean() + out[2].mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in small.named_parameters():
        assert p.grad is not None, name
    small.zero_grad(set_to_none=True)


def test_device_dtype_agnostic(small):
    small.eval()
    net = agan.build(**agan.CONFIGS["small"]).double()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 16, 16, dtype=torch.float64))
    assert y[-1].dtype == torch.float64 and y[0][0].dtype == torch.float64


def test_feature_layer_and_prunable(official, small):
    for net, ch in ((official, 256), (small, agan.CONFIGS["small"]["widths"][2])):
        feats = []
        layer = net.get_submodule(models.feature_layer(net))
        h = layer.register_forward_hook(lambda m, i, o: feats.append(o))
        with torch.no_grad():
            net(torch.rand(1, 3, 16, 16))
        h.remove()
        assert len(feats) == 1 and feats[0].shape == (1, ch, 4, 4)

        names = models.prunable_modules(net)
        assert len(names) == len(set(names))
        covered = set()
        for name in names:
            mod = net.get_submodule(name)
            convs = [m for m in mod.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
            assert convs, name
            covered.update(id(m) for m in convs)
        all_convs = {id(m) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
        assert covered == all_convs
    assert len(models.prunable_modules(official)) == 30


def test_recurrent_modules_run_every_iteration(small):
    calls = []
    h = small.conv_i.register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():
        small(torch.rand(1, 3, 8, 8))
    h.remove()
    assert len(calls) == small.iterations
