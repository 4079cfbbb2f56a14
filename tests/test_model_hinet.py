"""Tests of dreamlib.models.hinet against facts of the official megvii-model/HINet code.

The official model (88.7M parameters) is only built for real once (module fixture)
and only run at 32x32 / 48x64; parameter and MAC counts at 256x256 use the meta
device, so no real 256x256 forward happens here.
"""
import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.models import hinet

torch.set_num_threads(1)

OFFICIAL_PARAMS = 88_669_702


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return models.build("hinet", "official").eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return models.build("hinet", "small")


def _meta_official():
    with torch.device("meta"):
        return hinet.build(**hinet.CONFIGS["official"])


def _hook_macs(model, size, convention):
    """MACs of conv / transposed-conv weights (bias excluded), REFERENCE.md §2 conventions."""
    total = [0]

    def hook(m, args, out):
        per_pos = m.weight.numel() // m.groups  # cin * cout * kh * kw / groups
        if isinstance(m, nn.ConvTranspose2d) and convention == "exact":
            total[0] += per_pos * args[0].shape[-2] * args[0].shape[-1]
        else:  # Conv2d, or nni's transposed-conv rule on the OUTPUT size
            total[0] += per_pos * out.shape[-2] * out.shape[-1]

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def test_official_config_is_the_papers():
    assert hinet.CONFIGS["official"] == dict(
        in_chn=3, wf=64, depth=5, relu_slope=0.2, hin_position_left=0, hin_position_right=4)


def test_official_parameter_count():
    model = _meta_official()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS
    # HINet has no running statistics: the state_dict is parameters only.
    assert sum(t.numel() for t in model.state_dict().values()) == OFFICIAL_PARAMS
    assert len(model.state_dict()) == 198


@pytest.mark.parametrize("key, shape", [
    ("conv_01.weight", (64, 3, 3, 3)),
    ("conv_02.bias", (64,)),
    ("down_path_1.0.identity.weight", (64, 64, 1, 1)),
    ("down_path_1.0.norm.weight", (32,)),           # half instance norm: out // 2
    ("down_path_1.0.downsample.weight", (64, 64, 4, 4)),
    ("down_path_1.4.conv_1.weight", (1024, 512, 3, 3)),
    ("down_path_1.4.norm.bias", (512,)),
    ("down_path_2.0.csff_enc.weight", (64, 64, 3, 3)),
    ("down_path_2.3.csff_dec.bias", (512,)),
    ("up_path_1.0.up.weight", (1024, 512, 2, 2)),   # ConvTranspose2d: (cin, cout, k, k)
    ("up_path_1.0.up.bias", (512,)),
    ("up_path_2.3.conv_block.conv_1.weight", (64, 128, 3, 3)),
    ("up_path_2.0.conv_block.identity.weight", (512, 1024, 1, 1)),
    ("skip_conv_1.0.weight", (512, 512, 3, 3)),
    ("skip_conv_2.3.weight", (64, 64, 3, 3)),
    ("sam12.conv2.weight", (3, 64, 3, 3)),
    ("sam12.conv3.weight", (64, 3, 3, 3)),
    ("cat12.weight", (64, 128, 1, 1)),
    ("last.weight", (3, 64, 3, 3)),
    ("last.bias", (3,)),
])
def test_official_state_dict_keys(key, shape):
    sd = _meta_official().state_dict()
    assert key in sd
    assert tuple(sd[key].shape) == shape


@pytest.mark.parametrize("key", [
    "down_path_1.0.downsample.bias",       # conv_down has no bias
    "down_path_1.4.downsample.weight",     # bottom level does not downsample
    "down_path_1.0.csff_enc.weight",       # CSFF only in stage 2
    "down_path_2.4.csff_enc.weight",       # ... and only on downsampling levels
    "up_path_1.0.conv_block.norm.weight",  # up blocks never use HIN
    "down_path_1.0.norm.running_mean",     # InstanceNorm keeps no running stats
])
def test_official_state_dict_absent_keys(key):
    assert key not in _meta_official().state_dict()


@pytest.mark.parametrize("convention, expected", [("nni", 170.486), ("exact", 157.60)])
def test_official_macs_at_256(convention, expected):
    model = _meta_official()
    assert _hook_macs(model, (1, 3, 256, 256), convention) / 1e9 == pytest.approx(expected, abs=0.05)


def test_official_forward_structure(official):
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        out = official(x)
    assert isinstance(out, list) and len(out) == 2
    assert all(isinstance(o, torch.Tensor) and o.shape == x.shape for o in out)
    assert hinet.final_image(out) is out[1]
    assert torch.isfinite(out[1]).all()


def test_pad_multiple_and_restore_odd_size(official, small):
    assert models.pad_multiple(official) == 16
    assert models.pad_multiple(small) == 2 ** (hinet.CONFIGS["small"]["depth"] - 1)
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        assert models.restore(official, x).shape == (1, 3, 37, 53)
        assert models.restore(small, x).shape == (1, 3, 37, 53)
        assert models.restore(small, torch.rand(2, 3, 61, 47)).shape == (2, 3, 61, 47)


def test_feature_layer(official, small):
    for model, channels in ((official, 64), (small, hinet.CONFIGS["small"]["wf"])):
        layer = model.get_submodule(hinet.FEATURE_LAYER)
        seen = []
        handle = layer.register_forward_hook(lambda m, a, o: seen.append(o.shape))
        with torch.no_grad():
            model(torch.rand(1, 3, 32, 32))
        handle.remove()
        assert seen == [torch.Size([1, channels, 32, 32])]


def test_prunable_modules_cover_all_convs_once():
    model = _meta_official()
    names = hinet.prunable_modules(model)
    assert names[0] == "conv_01" and names[-1] == "last"
    for n in ("sam12", "cat12", "down_path_1.0", "down_path_2.4", "up_path_1.3", "up_path_2.0"):
        assert n in names
    assert names.index("sam12") < names.index("cat12") < names.index("down_path_2.0")
    assert len(names) == len(set(names))
    convs = (nn.Conv2d, nn.ConvTranspose2d)
    seen = set()
    for n in names:
        ids = {id(m) for m in model.get_submodule(n).modules() if isinstance(m, convs)}
        assert ids, f"{n} has no conv"
        assert not ids & seen, f"{n} overlaps an earlier entry"
        seen |= ids
    assert seen == {id(m) for m in model.modules() if isinstance(m, convs)}


def test_residual_outputs(small):
    """out_2 = last(x2) + image and out_1 = sam12.conv2(x1) + image (both residual)."""
    model = hinet.build(**hinet.CONFIGS["small"])
    with torch.no_grad():
        for conv in (model.last, model.sam12.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
        x = torch.rand(1, 3, 16, 24)
        out_1, out_2 = model(x)
    assert torch.equal(out_1, x) and torch.equal(out_2, x)


def test_small_variant_forward_backward(small):
    n_params = sum(p.numel() for p in small.parameters())
    assert 50_000 < n_params < 1_000_000
    small.train()
    small.zero_grad()
    x = torch.rand(4, 3, 32, 32)
    out = small(x)
    loss = sum((o - x).abs().mean() for o in out)
    loss.backward()
    grads = [p.grad for p in small.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert small.conv_01.weight.grad.abs().sum() > 0
    assert small.down_path_2[0].csff_enc.weight.grad.abs().sum() > 0
    small.zero_grad()


def test_output_depends_on_input(small):
    small.eval()
    with torch.no_grad():
        a = hinet.final_image(small(torch.rand(1, 3, 32, 32)))
        b = hinet.final_image(small(torch.rand(1, 3, 32, 32)))
    assert not torch.allclose(a, b)
    assert a.std() > 0


def test_strict_state_dict_round_trip():
    torch.manual_seed(1)
    a = hinet.build(**hinet.CONFIGS["small"]).eval()
    torch.manual_seed(2)
    b = hinet.build(**hinet.CONFIGS["small"]).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(a(x)[1], b(x)[1])
        b.load_state_dict(a.state_dict(), strict=True)
        for oa, ob in zip(a(x), b(x)):
            assert torch.equal(oa, ob)

