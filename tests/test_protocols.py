"""Evaluation protocols (dreamlib.protocols): HINet's tiles, MPRNet unpadded, DuRN/AGAN crops,
checked on small hand-made images against direct computations; the default is unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dreamlib.evaluate import evaluate
from dreamlib.metrics import psnr_ssim
from dreamlib.protocols import (OFFICIAL, convention_for, crop_to_multiple, run, run_tiled, tile_positions,
                                tile_starts)
from dreamlib.spec import ModelSpec, attach_spec


class _Net(nn.Module):
    """A stand-in network dreamlib reads as ``name`` (no spec inference, no forward before use).

    ``kind``: ``"identity"``, ``"mean"`` (adds each image's own per-channel mean: the output of a
    pixel depends on the whole tile it is in), ``"double"`` (2x, leaves [0, 1]).
    Records the shape and the values of every input it receives.
    """

    def __init__(self, name: str, kind: str = "identity", multiple: int = 1, channel_order: str = "rgb"):
        super().__init__()
        self.kind = kind
        self.dummy = nn.Parameter(torch.zeros(()))  # evaluate() reads the device from a parameter
        self.seen: list[torch.Tensor] = []
        attach_spec(self, ModelSpec(name=name, variant="test", multiple=multiple, channel_order=channel_order))

    def forward(self, x):
        self.seen.append(x.detach().clone())
        if self.kind == "mean":
            return x + x.mean(dim=(-2, -1), keepdim=True)
        if self.kind == "double":
            return 2 * x
        return x.clone()


def _image(h, w, seed=0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g) * hi


def _sets(*items):
    return {"set": list(items)}


# ---------------------------------------------------------------- HINet: tiles

def test_tile_starts_follow_basicsr_grids():
    # count = ceil(n / 256), step = ceil((n - 256) / (count - 1)), the last tile ends at the border
    assert tile_starts(520, 256) == [0, 132, 264]
    assert tile_starts(300, 256) == [0, 44]
    assert tile_starts(768, 256) == [0, 256, 512]   # an exact fit: no overlap
    assert tile_starts(513, 256) == [0, 129, 257]
    assert tile_starts(257, 256) == [0, 1]
    assert tile_starts(256, 256) == [0]
    assert tile_starts(200, 256) == [0]             # shorter than a tile: one tile of the whole side
    assert tile_positions(300, 520, 256) == [(i, j, 256, 256) for i in (0, 44) for j in (0, 132, 264)]
    assert tile_positions(200, 300, 256) == [(0, 0, 200, 256), (0, 44, 200, 256)]


def test_tiles_averaged_back_equal_a_direct_computation():
    # a ramp (tile means differ by ~0.1) plus noise, under 0.5: + the tile mean stays under 1 (no clamp)
    r, c = torch.meshgrid(torch.linspace(0, 1, 300), torch.linspace(0, 1, 520), indexing="ij")
    x = (0.3 * r * c + 0.1 * _image(300, 520)).float()
    net = _Net("hinet", "mean")
    pred, _ = run(net, x, protocol="official")
    # by hand: every 256x256 tile at rows {0, 44} x cols {0, 132, 264} gives tile + its own mean;
    # each pixel is the mean over the tiles that cover it
    xs = x.double().numpy()
    acc, cnt = np.zeros_like(xs), np.zeros(xs.shape[1:])
    for i in (0, 44):
        for j in (0, 132, 264):
            t = xs[:, i:i + 256, j:j + 256]
            acc[:, i:i + 256, j:j + 256] += t + t.mean(axis=(1, 2), keepdims=True)
            cnt[i:i + 256, j:j + 256] += 1
    want = acc / cnt
    assert pred.shape == (3, 300, 520)
    np.testing.assert_allclose(pred.double().numpy(), want, atol=1e-6, rtol=0)
    assert {tuple(s.shape) for s in net.seen} <= {(k, 3, 256, 256) for k in range(1, 9)}
    assert sum(s.shape[0] for s in net.seen) == 6
    # the tiles matter: the whole image at once gives another result
    whole = (xs + xs.mean(axis=(1, 2), keepdims=True))
    assert np.abs(pred.double().numpy() - whole).max() > 1e-3


def test_tiled_identity_gives_the_input_back_exactly_and_the_output_is_clamped():
    x = _image(300, 520, seed=1)
    pred, _ = run(_Net("hinet"), x, protocol="official")
    assert torch.equal(pred, x)
    doubled, _ = run(_Net("hinet", "double"), x, protocol="official")
    assert doubled.max() == 1.0 and torch.equal(doubled, (2 * x).clamp(0, 1))  # BasicSR's tensor2img clamp
    assert torch.equal(run_tiled(_Net("hinet", "double"), x[None])[0], 2 * x)  # run_tiled itself: no clamp


# ---------------------------------------------------------------- MPRNet: whole image, no padding

def test_mprnet_official_feeds_exactly_the_original_size():
    x = _image(64, 96)
    net = _Net("mprnet", "mean", multiple=8)
    pred, _ = run(net, x, protocol="official")
    assert [tuple(s.shape) for s in net.seen] == [(1, 3, 64, 96)]
    assert torch.equal(net.seen[0][0], x)
    assert torch.equal(pred, (x + x.mean(dim=(-2, -1), keepdim=True)).clamp(0, 1))


def test_mprnet_official_refuses_a_size_it_cannot_run_unpadded():
    net = _Net("mprnet", multiple=8)
    with pytest.raises(ValueError, match=r"60x90.*protocol='dreamlib'"):
        run(net, _image(60, 90), protocol="official")
    assert net.seen == []
    run(net, _image(60, 90), protocol="dreamlib")  # the default pads (to 64x96)
    assert tuple(net.seen[0].shape) == (1, 3, 64, 96)


# ---------------------------------------------------------------- DuRN / AGAN: crop to a multiple of 4

def test_crop_to_multiple_of_4():
    img = _image(103, 98)
    assert crop_to_multiple(img, 4).shape == (3, 100, 96)
    assert torch.equal(crop_to_multiple(img, 4), img[:, :100, :96])  # top-left kept, last rows/cols dropped


@pytest.mark.parametrize("name", ["durn", "agan"])
def test_crop_protocol_crops_input_and_target_and_scores_the_crop(name):
    x = _image(103, 98, seed=2)
    y = x.clone()
    y[:, 100:, :] = 1 - y[:, 100:, :]  # the rows the crop drops differ: scored only if not cropped
    y[:, :, 96:] = 1 - y[:, :, 96:]
    net = _Net(name, "identity", multiple=4)
    pred, tgt = run(net, x, y, protocol="official")
    assert [tuple(s.shape) for s in net.seen] == [(1, 3, 100, 96)]
    assert pred.shape == tgt.shape == (3, 100, 96)
    res = evaluate(net, _sets({"input": x, "target": y}), protocol="official", progress=False)
    assert res["set"]["psnr"] == float("inf") and res["set"]["ssim"] == pytest.approx(1.0)
    assert convention_for(net, "official") == "opencv"
    # the default protocol pads instead, and scores the whole image (where the target differs)
    res_default = evaluate(net, _sets({"input": x, "target": y}), progress=False)
    assert res_default["set"]["psnr"] < 30


def test_durn_clips_and_agan_does_not():
    x = _image(40, 44, seed=3)
    durn, _ = run(_Net("durn", "double", multiple=4), x, protocol="official")
    agan, _ = run(_Net("agan", "double", multiple=4), x, protocol="official")
    assert durn.max() == 1.0 and torch.equal(durn, (2 * x).clamp(0, 1))
    assert agan.max() > 1.5 and torch.equal(agan, 2 * x)  # predict.py: out * 255 with no clip


def test_bgr_networks_are_fed_bgr_as_the_official_scripts_do():
    x = _image(40, 44, seed=4)
    net = _Net("durn", multiple=4, channel_order="bgr")
    pred, _ = run(net, x, protocol="official")
    assert torch.equal(net.seen[0][0], x.flip(0))  # OpenCV order in the network
    assert torch.equal(pred, x)                     # RGB again for the caller and the metrics
    for name in ("durn", "agan"):
        assert OFFICIAL[name].feeds == "bgr"
    from dreamlib.models import build
    from dreamlib.spec import spec_of
    assert spec_of(build("durn", "official")).channel_order == "bgr"  # the released weights get BGR


# ---------------------------------------------------------------- conventions, errors, the default

def test_official_conventions_and_an_explicit_one_wins():
    want = {"hinet": "basicsr", "mprnet": "matlab", "durn": "opencv", "agan": "opencv"}
    for name, conv in want.items():
        net = _Net(name)
        assert convention_for(net, "official") == conv
        assert convention_for(net, "dreamlib") == "basicsr"
        assert convention_for(net, "official", "basicsr") == "basicsr"
    # evaluate() scores an official MPRNet in the matlab convention unless told otherwise
    x, y = _image(32, 40, seed=5), _image(32, 40, seed=6)
    net = _Net("mprnet", multiple=8)
    got = evaluate(net, _sets({"input": x, "target": y}), protocol="official", progress=False)["set"]
    assert (got["psnr"], got["ssim"]) == psnr_ssim(x, y, "matlab")
    got = evaluate(net, _sets({"input": x, "target": y}), "opencv", protocol="official", progress=False)["set"]
    assert (got["psnr"], got["ssim"]) == psnr_ssim(x, y, "opencv")


def test_a_network_without_an_official_protocol_fails_before_any_compute():
    net = _Net("mynet", "mean")
    ds = _sets({"input": _image(16, 16), "target": _image(16, 16)})
    with pytest.raises(ValueError, match=r"^'mynet' has no official protocol .*; use protocol='dreamlib'$"):
        evaluate(net, ds, protocol="official", progress=False)
    assert net.seen == []
    with pytest.raises(ValueError, match="unknown protocol 'paper'; choose one of dreamlib, official"):
        evaluate(net, ds, protocol="paper", progress=False)
    with pytest.raises(ValueError, match="needs a model"):
        evaluate(None, ds, protocol="official", progress=False)
    assert net.seen == []


def test_the_default_protocol_leaves_results_unchanged():
    from dreamlib.models import restore

    # padded items (a loader's "hw"), a net that pads to 8 and depends on context
    items = []
    for k, (h, w) in enumerate([(37, 45), (40, 48)]):
        x, y = _image(h, w, seed=10 + k), _image(h, w, seed=20 + k)
        ph, pw = (-h) % 8, (-w) % 8
        pad = torch.nn.functional.pad
        items.append({"input": pad(x[None], (0, pw, 0, ph), mode="reflect")[0],
                      "target": pad(y[None], (0, pw, 0, ph), mode="reflect")[0], "hw": (h, w)})
    net = _Net("hinet", "mean", multiple=8)
    # what evaluate() computed before protocols existed: restore, crop to hw, basicsr
    old = []
    for it in items:
        h, w = it["hw"]
        pred = restore(net, it["input"][None])[0].float()
        old.append(psnr_ssim(pred[:, :h, :w], it["target"][:, :h, :w], "basicsr"))
    old = np.array(old)
    for kw in ({}, {"protocol": "dreamlib"}, {"convention": "basicsr", "protocol": "dreamlib"}):
        got = evaluate(net, _sets(*items), progress=False, **kw)["set"]
        assert (got["psnr"], got["ssim"]) == (float(old[:, 0].mean()), float(old[:, 1].mean())), kw


def test_shipped_small_mprnet_official_equals_restore_when_no_padding_is_needed():
    from dreamlib.models import build, restore

    torch.manual_seed(0)
    net = build("mprnet", "small").eval()
    x = _image(32, 48, seed=7)
    with torch.no_grad():
        pred, _ = run(net, x, protocol="official")
        assert torch.equal(pred, restore(net, x[None])[0].clamp(0, 1))


# ---------------------------------------------------------------- runner config and CLI

def test_config_protocol_and_convention():
    from dreamlib.experiments.config import ConfigError
    from dreamlib.experiments.tables import DEFAULT_CONFIG, load_config

    assert DEFAULT_CONFIG["protocol"] == "dreamlib" and DEFAULT_CONFIG["convention"] == "basicsr"
    cfg = load_config(None, protocol="official")
    assert cfg["protocol"] == "official" and cfg["convention"] is None  # each network's official convention
    assert load_config(None, protocol="official", convention="matlab")["convention"] == "matlab"
    with pytest.raises(ConfigError, match=r"overrides: protocol: must be one of dreamlib, official; got 'paper'"):
        load_config(None, protocol="paper")


def test_cli_protocol_flags():
    from dreamlib.cli import _protocol_overrides, build_parser

    p = build_parser()
    assert p.parse_args(["reproduce", "table1", "--protocol", "official"]).protocol == "official"
    assert p.parse_args(["prune-table", "--protocol", "official"]).protocol == "official"
    assert p.parse_args(["reproduce", "table1"]).protocol is None  # the config decides (dreamlib)
    assert _protocol_overrides("official", None) == {"protocol": "official", "convention": None}
    assert _protocol_overrides("official", "basicsr") == {"protocol": "official"}
    assert _protocol_overrides(None, None) == {}
    with pytest.raises(SystemExit):
        p.parse_args(["prune-table", "--protocol", "paper"])
