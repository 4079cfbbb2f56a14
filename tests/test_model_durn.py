"""DuRN-S-P: official key names/shapes/parameter count, size handling, small variant.

Official facts come from liu-vis/DualResidualNetworks ``pietorch/DuRN_S_P.py``
(class ``cleaner``), ``pietorch/se_nets.py`` and ``pietorch/N_modules.py``.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.models import durn

torch.set_num_threads(1)

OFFICIAL_PARAMS = 10_176_964


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return models.build("durn", "official").eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return models.build("durn", "small")


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial running stats, so eval-mode outputs depend on them being loaded."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_official_parameter_count(official):
    assert sum(p.numel() for p in official.parameters()) == OFFICIAL_PARAMS
    assert models.count_parameters(official) == OFFICIAL_PARAMS


# (key, shape) pairs read off the official modules.
OFFICIAL_KEYS = {
    "conv1.weight": (64, 3, 5, 5),          # nn.Conv2d(3, 64, 5, 1, padding=1)
    "conv1.bias": (64,),
    "norm1.norm.running_var": (64,),        # FeatNorm('batch_norm', 64).norm
    "conv2.weight": (128, 64, 3, 3),
    "conv3.weight": (128, 128, 3, 3),
    "norm3.norm.num_batches_tracked": (),
    "rud1.conv1.conv2d.weight": (128, 128, 3, 3),   # ConvLayer(...).conv2d
    "rud1.up_conv.conv2d.weight": (128, 128, 3, 3),
    "rud1.se.conv1.weight": (128, 128, 3, 3),       # SEBasicBlock conv3x3, bias=False
    "rud1.se.se.fc.0.weight": (64, 128),            # SELayer(128, reduction=64)
    "rud1.se.se.fc.2.bias": (128,),
    "rud1.se.bn2.running_mean": (128,),
    "rud3.down_conv.conv2d.weight": (128, 128, 3, 3),  # DuRB-S: f2_size=3
    "rud4.down_conv.conv2d.weight": (128, 128, 5, 5),  # DuRB-P: kernel 5
    "rud5.up_conv.conv2d.weight": (128, 128, 5, 5),
    "rud7.up_conv.conv2d.weight": (128, 128, 7, 7),
    "rud9.up_conv.conv2d.weight": (128, 128, 7, 7),
    "rud9.down_norm.norm.weight": (128,),
    "deconv1.0.weight": (128, 128, 4, 4),           # ConvTranspose2d(128, 128, 4, 2, 1)
    "conv4.conv2d.weight": (128, 128, 3, 3),
    "norm4.norm.bias": (128,),
    "deconv2.0.weight": (128, 64, 4, 4),            # ConvTranspose2d(128, 64, 4, 2, 1)
    "end_conv.conv2d.weight": (3, 64, 5, 5),
    "end_conv.conv2d.bias": (3,),
    "prelu.weight": (1,),                           # unused in forward, but in the checkpoint
}


def test_official_state_dict_keys_and_shapes(official):
    sd = official.state_dict()
    for key, shape in OFFICIAL_KEYS.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    assert len(sd) == 335
    assert not any(k.startswith("rud10.") for k in sd)
    assert not any(k.startswith(("rud4.se.", "rud9.se.")) for k in sd)  # DuRB-P has no SE
    # Dilations of the up-convs (no trace in the state dict, but they set the receptive field).
    dil = [official.get_submodule(f"rud{i}.up_conv.conv2d").dilation[0] for i in range(1, 10)]
    assert dil == [12, 8, 6, 2, 1, 3, 1, 4, 1]
    assert official.conv1.padding == (1, 1)
    assert isinstance(official.norm1.norm, nn.BatchNorm2d)


def _macs_at(model_fn, size, transposed_on_input: bool) -> int:
    """Independent shape-only MAC count on the meta device (no real compute)."""
    with torch.device("meta"):
        model = model_fn().eval()
        total = [0]

        def hook(m, args, out):
            if isinstance(m, nn.Linear):
                total[0] += m.in_features * m.out_features
                return
            k = m.weight.shape[2] * m.weight.shape[3] * m.in_channels * m.out_channels // m.groups
            ref = args[0] if (isinstance(m, nn.ConvTranspose2d) and transposed_on_input) else out
            total[0] += k * ref.shape[2] * ref.shape[3]

        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                m.register_forward_hook(hook)
        model(torch.zeros(1, 3, *size))
    return total[0]


def test_official_macs_match_paper_convention():
    build = lambda: durn.build(**durn.CONFIGS["official"])  # noqa: E731
    nni = _macs_at(build, (256, 256), transposed_on_input=False)
    exact = _macs_at(build, (256, 256), transposed_on_input=True)
    assert abs(nni / 1e9 - 55.970) < 0.05
    assert abs(exact / 1e9 - 46.31) < 0.05


def test_forward_return_structure(official):
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        out = official(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == x.shape
    assert durn.final_image(out) is out
    assert models.final_image(official, out) is out


def test_output_is_input_minus_bounded_residual(official):
    # residual - tanh(...): the prediction never leaves input +- 1.
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = official(x)
    assert ((out - x).abs() <= 1).all()


@pytest.mark.parametrize("hw", [(16, 16), (20, 28), (32, 44)])
def test_multiples_of_four_keep_size(small, hw):
    with torch.no_grad():
        assert small.eval()(torch.rand(1, 3, *hw)).shape[-2:] == hw


def test_non_multiple_of_four_fails_raw_forward(small):
    # 4k+1 comes back as 4k: the reason PAD_MULTIPLE is 4.
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            small.eval()(torch.rand(1, 3, 33, 32))


def test_pad_multiple_and_required_input_size(official, small):
    assert models.pad_multiple(official) == 4 and models.pad_multiple(small) == 4
    assert durn.required_input_size(37, 53) == (40, 56)
    assert durn.required_input_size(64, 64) == (64, 64)
    assert durn.required_input_size(5, 13) == (16, 16)


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 61, 47)])
def test_restore_odd_sizes(small, shape):
    x = torch.rand(*shape)
    with torch.no_grad():
        y = models.restore(small.eval(), x)
    assert y.shape == x.shape


def test_restore_odd_size_official(official):
    with torch.no_grad():
        y = models.restore(official, torch.rand(1, 3, 37, 53))
    assert y.shape == (1, 3, 37, 53)


def test_output_depends_on_input(small):
    small.eval()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ya, yb = small(a), small(b)
    assert not torch.allclose(ya, yb)
    # and not only through the residual path: the predicted residual changes too
    assert not torch.allclose(ya - a, yb - b)


def test_small_variant_forward_backward(small):
    n = models.count_parameters(small)
    assert 100_000 <= n < 1_000_000
    assert n < OFFICIAL_PARAMS
    small.train()
    x = torch.rand(2, 3, 64, 64)
    out = small(x)
    assert out.shape == x.shape
    (out - torch.rand_like(x)).abs().mean().backward()
    no_grad = [name for name, p in small.named_parameters() if p.grad is None]
    assert no_grad == ["prelu.weight"]  # the official, unused PReLU
    assert all(torch.isfinite(p.grad).all() for p in small.parameters() if p.grad is not None)
    small.zero_grad(set_to_none=True)
    # same key pattern as the official model
    keys = set(small.state_dict())
    assert {"rud1.se.se.fc.0.weight", "rud2.up_conv.conv2d.weight", "deconv2.0.weight",
            "end_conv.conv2d.weight", "prelu.weight"} <= keys


@pytest.mark.parametrize("variant", ["small", "official"])
def test_strict_round_trip(variant):
    torch.manual_seed(0)
    a = models.build("durn", variant)
    _randomize_bn(a)
    torch.manual_seed(1)
    b = models.build("durn", variant)
    b.load_state_dict(a.state_dict(), strict=True)
    a.eval(), b.eval()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_feature_layer_and_prunable_modules(small, official):
    feats = []
    h = small.get_submodule(durn.FEATURE_LAYER).register_forward_hook(lambda m, i, o: feats.append(o))
    try:
        with torch.no_grad():
            small.eval()(torch.rand(1, 3, 32, 32))
    finally:
        h.remove()
    assert feats[0].shape == (1, 32, 16, 16)  # inner_width channels at half resolution

    names = models.prunable_modules(official)
    assert names[:3] == ["conv1", "conv2", "conv3"]
    assert names[3:12] == [f"rud{i}" for i in range(1, 10)]
    assert names[12:] == ["deconv1", "conv4", "deconv2", "end_conv"]
    layers = {n for n, m in official.named_modules()
              if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))}
    covered = {n for n in layers if any(n == p or n.startswith(p + ".") for p in names)}
    assert covered == layers
    for p in names:
        assert any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in official.get_submodule(p).modules())
    assert len(models.prunable_modules(small)) == 3 + 3 + 4
