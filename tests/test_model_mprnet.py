"""Tests of dreamlib.models.mprnet against facts of the official swz30/MPRNet
``Deraining/MPRNet.py``.

The official model (3.6M parameters) is run for real only at small sizes; the
256x256 MAC counts use the meta device, so no real 256x256 forward happens here.
"""
import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.models import mprnet

torch.set_num_threads(1)

OFFICIAL_PARAMS = 3_637_249


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return models.build("mprnet", "official").eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return models.build("mprnet", "small")


def _meta_official():
    with torch.device("meta"):
        return mprnet.build(**mprnet.CONFIGS["official"])


def _hook_macs(model, size):
    """Conv2d weight MACs (bias excluded) per sample; MPRNet has no transposed conv,
    so the nni and exact conventions coincide."""
    total = [0]

    def hook(m, args, out):
        total[0] += m.weight.numel() // m.groups * out.shape[-2] * out.shape[-1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def test_official_config_is_the_papers():
    assert mprnet.CONFIGS["official"] == dict(
        in_c=3, out_c=3, n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16,
        num_cab=8, kernel_size=3, reduction=4, bias=False)


def test_official_parameter_count():
    model = _meta_official()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS
    # 316 keys; the one shared PReLU appears under every CAB's body.1.weight
    sd = model.state_dict()
    assert len(sd) == 316
    prelu_keys = [k for k in sd if k.endswith("body.1.weight") and sd[k].shape == (1,)]
    # 3 shallow CABs + 2 encoders x 6 + 2 decoders x (6 + 2 skip) + 3 ORBs x 8
    assert len(prelu_keys) == 3 + 2 * 6 + 2 * 8 + 3 * 8
    assert "stage3_orsnet.orb1.body.0.body.1.weight" in prelu_keys


def test_prelu_is_shared_like_official():
    model = _meta_official()
    prelus = {id(m) for m in model.modules() if isinstance(m, nn.PReLU)}
    assert len(prelus) == 1


@pytest.mark.parametrize("key, shape", [
    ("shallow_feat1.0.weight", (40, 3, 3, 3)),
    ("shallow_feat1.1.CA.conv_du.0.weight", (10, 40, 1, 1)),
    ("shallow_feat3.1.body.2.weight", (40, 40, 3, 3)),
    ("stage1_encoder.encoder_level3.1.body.0.weight", (80, 80, 3, 3)),
    ("stage1_encoder.down12.down.1.weight", (60, 40, 1, 1)),
    ("stage1_encoder.down23.down.1.weight", (80, 60, 1, 1)),
    ("stage2_encoder.csff_enc1.weight", (40, 40, 1, 1)),
    ("stage2_encoder.csff_dec3.weight", (80, 80, 1, 1)),
    ("stage1_decoder.skip_attn2.CA.conv_du.2.weight", (60, 15, 1, 1)),
    ("stage1_decoder.up32.up.1.weight", (60, 80, 1, 1)),
    ("stage2_decoder.up21.up.1.weight", (40, 60, 1, 1)),
    ("stage3_orsnet.orb1.body.7.CA.conv_du.0.weight", (14, 56, 1, 1)),
    ("stage3_orsnet.orb3.body.8.weight", (56, 56, 3, 3)),
    ("stage3_orsnet.up_enc1.up.1.weight", (40, 60, 1, 1)),
    ("stage3_orsnet.up_dec2.0.up.1.weight", (60, 80, 1, 1)),
    ("stage3_orsnet.up_enc2.1.up.1.weight", (40, 60, 1, 1)),
    ("stage3_orsnet.conv_dec3.weight", (56, 40, 1, 1)),
    ("sam12.conv1.weight", (40, 40, 1, 1)),
    ("sam23.conv2.weight", (3, 40, 1, 1)),
    ("sam23.conv3.weight", (40, 3, 1, 1)),
    ("concat12.weight", (40, 80, 3, 3)),
    ("concat23.weight", (56, 80, 3, 3)),
    ("tail.weight", (3, 56, 3, 3)),
])
def test_official_state_dict_keys(key, shape):
    sd = _meta_official().state_dict()
    assert key in sd
    assert tuple(sd[key].shape) == shape


def test_no_biases_and_no_csff_in_stage1():
    sd = _meta_official().state_dict()
    assert not any(k.endswith(".bias") for k in sd)
    assert not any(k.startswith("stage1_encoder.csff") for k in sd)
    assert "stage3_orsnet.orb1.body.9.weight" not in sd  # 8 CABs + 1 conv per ORB


def test_official_macs_at_256():
    macs = _hook_macs(_meta_official(), (1, 3, 256, 256))
    assert abs(macs / 1e9 - 140.982) < 0.05


def test_official_macs_with_flops_module(official):
    flops = pytest.importorskip("dreamlib.flops")
    if not hasattr(flops, "_dense_macs"):
        pytest.skip("dreamlib.flops has no architecture-keyed shape cache to warm on the meta device")
    # dreamlib.flops caches layer shapes per architecture: measure them with a meta
    # forward (no compute), then count the real (dense) model against that cache.
    flops._dense_macs(_meta_official(), (1, 3, 256, 256))
    nni = flops.count_macs(official, (1, 3, 256, 256), macs_convention="nni")
    exact = flops.count_macs(official, (1, 3, 256, 256), macs_convention="exact")
    assert abs(nni / 1e9 - 140.982) < 0.05
    assert abs(exact / 1e9 - 140.98) < 0.05


def test_official_forward_structure(official):
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        out = official(x)
    assert isinstance(out, list) and len(out) == 3
    for t in out:
        assert isinstance(t, torch.Tensor) and t.shape == x.shape
    assert mprnet.final_image(out) is out[0]
    assert models.final_image(official, out) is out[0]


def test_feature_layer_has_56_channels(official):
    feats = {}
    layer = official.get_submodule(models.feature_layer(official))
    handle = layer.register_forward_hook(lambda m, a, o: feats.__setitem__("f", o))
    try:
        with torch.no_grad():
            official(torch.rand(1, 3, 16, 24))
    finally:
        handle.remove()
    assert feats["f"].shape == (1, 56, 16, 24)


def test_restore_odd_size(official):
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = models.restore(official, x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_pad_multiple_is_needed(small):
    assert models.pad_multiple(small) == 8
    with torch.no_grad():
        small(torch.rand(1, 3, 16, 24))  # multiples of 8 run
        with pytest.raises(RuntimeError):
            small(torch.rand(1, 3, 20, 24))  # 20/2 = 10 is not a multiple of 4


def test_prunable_modules(official):
    names = models.prunable_modules(official)
    assert names[0] == "shallow_feat1" and names[-1] == "tail"
    assert "stage3_orsnet.orb3" in names and "sam23" in names
    assert len(names) == len(set(names)) == 15
    for n in names:
        mod = official.get_submodule(n)
        assert any(isinstance(m, nn.Conv2d) for m in mod.modules())
    # everything except ORSNet's 1x1 cross-scale fusion convs is covered
    convs = [n for n, m in official.named_modules() if isinstance(m, nn.Conv2d)]
    uncovered = [c for c in convs if not any(c == n or c.startswith(n + ".") for n in names)]
    assert len(uncovered) == 12
    assert all(c.startswith(("stage3_orsnet.up_", "stage3_orsnet.conv_")) for c in uncovered)


def test_small_forward_backward(small):
    n = sum(p.numel() for p in small.parameters())
    assert n < 1_000_000
    # same key pattern as the official model built at the small model's depth
    with torch.device("meta"):
        ref = mprnet.build(**{**mprnet.CONFIGS["official"], "num_cab": mprnet.CONFIGS["small"]["num_cab"]})
    assert list(small.state_dict()) == list(ref.state_dict())
    x = torch.rand(2, 3, 32, 32)
    out = small(x)
    assert len(out) == 3 and all(t.shape == x.shape for t in out)
    loss = sum(t.mean() for t in out)
    loss.backward()
    grads = [p.grad for p in small.parameters()]
    assert all(g is not None for g in grads)
    assert small.tail.weight.grad.abs().sum() > 0
    small.zero_grad(set_to_none=True)


def test_output_depends_on_input(small):
    torch.manual_seed(1)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ya, yb = models.restore(small, a), models.restore(small, b)
        # also the learned part (output minus the residual input) must vary
        da, db = ya - a, yb - b
    assert not torch.allclose(ya, yb)
    assert not torch.allclose(da, db, atol=1e-6)


def test_strict_state_dict_roundtrip(official):
    torch.manual_seed(2)
    other = models.build("mprnet", "official").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = other(x)[0]
        other.load_state_dict(official.state_dict(), strict=True)
        after = other(x)[0]
        ref = official(x)[0]
    assert not torch.equal(before, ref)
    assert torch.equal(after, ref)
