"""Your own network: dreamlib on networks it does not ship (tests/own_networks.py), through one spec.

Tiny sizes throughout: the point is that every part of dreamlib accepts a foreign model, that the
inferred description is the documented one, and that masks, MACs and saved students are right.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import dreamlib
from dreamlib import models
from dreamlib import prune as P
from dreamlib.flops import count_macs
from dreamlib.spec import ImageShapeError, describe, spec_of, unwrap

sys.path.insert(0, str(Path(__file__).parent))
from own_networks import DnCNN, NotAnImageNet, PReNetLike, TinyRestormer  # noqa: E402


def _net(cls, **kw):
    torch.manual_seed(0)
    return cls(**kw).eval()


def small_dncnn():
    return _net(DnCNN, depth=5, width=8)


def small_prenet():
    return _net(PReNetLike, width=8, stages=2, blocks=2)


def small_restormer():
    return _net(TinyRestormer, width=8, blocks=1, heads=2)


X = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ the inferred interface

def test_prenet_interface_is_inferred():
    net = small_prenet()
    spec = describe(net)
    assert spec.output == "first"            # (final image, [stage images])
    assert spec.multiple == 1
    assert spec.feature_layer == "res.1"     # the last wide map before conv (the output layer)
    assert spec.module_names == ["conv0", "conv_i", "conv_f", "conv_g", "conv_o", "res", "conv"]
    assert set(spec.inferred) == {"output", "multiple", "feature_layer", "modules"}
    assert spec_of(net) is spec             # attached
    y = models.restore(net, X)
    assert torch.equal(y, net(X)[0])


def test_restormer_interface_is_inferred():
    net = small_restormer()
    spec = describe(net)
    assert spec.output == "tensor" and spec.multiple == 2  # the stride-2 conv needs even sizes
    assert spec.feature_layer == "refine"
    # top-level weighted children, in forward order
    assert spec.module_names == ["embed", "down", "blocks", "up", "refine", "out"]
    y = models.restore(net, torch.rand(1, 3, 23, 25))       # odd sizes are padded and cropped back
    assert y.shape == (1, 3, 23, 25)


def test_dncnn_interface_is_inferred_through_a_single_container():
    net = small_dncnn()
    spec = describe(net)
    # the only weighted child (body) is opened: one module per conv, in forward order
    assert spec.module_names == ["body.0", "body.2", "body.5", "body.8", "body.11"]
    assert spec.feature_layer == "body.10"  # the ReLU before the last conv


def test_many_modules_are_grouped_by_macs():
    net = _net(DnCNN, depth=16, width=8)
    spec = describe(net)
    assert len(spec.modules) == 12
    layers = [n for n in P.prunable_layers(net)]
    covered = [n for prefixes in spec.groups.values() for p in prefixes for n in layers if n == p]
    assert covered == layers                 # every conv in exactly one group, in order
    assert any(".." in g for g in spec.groups)
    student, report = P.prune(net, "adaptive", X=X, tp=30, eps=0.2, input_size=(1, 3, 24, 24))
    assert list(report.module_sparsity) == list(spec.groups)
    assert report.details["uncovered_layers"] == []  # a group prunes all of its modules


def test_a_network_that_is_not_image_to_image_is_refused_with_its_shapes():
    with pytest.raises(ImageShapeError, match=r"returned a tensor of shape \(1, 1, 25, 25\)"):
        describe(NotAnImageNet())
    with pytest.raises(ValueError, match=r"\(1, 1, 25, 25\)"):
        dreamlib.compress(NotAnImageNet(), tiny=True, progress=False)


def test_ambiguous_tuple_output_asks_which():
    class TwoImages(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, 1, 1)

        def forward(self, x):
            y = self.conv(x)
            return y, x + y

    with pytest.raises(ValueError, match="several elements are image-shaped"):
        describe(TwoImages())
    spec = describe(TwoImages(), output="last")
    assert spec.output == "last" and "output" not in spec.inferred


def test_given_fields_win_and_range_and_channel_order_are_applied():
    class Seen(nn.Module):
        """Identity that records the input it saw."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

        def forward(self, x):
            self.seen = x.detach()
            return self.conv(x)

    net = Seen()
    spec = describe(net, input_range=(-1, 1), channel_order="bgr", modules={"all": ["conv"]},
                    feature_layer="conv")
    assert spec.input_range == (-1.0, 1.0) and spec.groups == {"all": ("conv",)}
    x = torch.rand(1, 3, 8, 8)
    y = models.restore(net, x)
    assert torch.allclose(y, x, atol=1e-6)                          # mapped there and back
    assert torch.allclose(net.seen, (2 * x - 1).flip(1), atol=1e-6)  # the net saw BGR in [-1, 1]


# ------------------------------------------------------------------ shipped networks

def test_shipped_networks_keep_their_interface():
    for name in models.MODEL_NAMES:
        net = models.build(name, "small")
        spec = spec_of(net)
        mod = models._spec(name)
        assert spec.builtin and spec.variant == "small"
        assert spec.feature_layer == mod.FEATURE_LAYER
        assert spec.module_names == list(mod.prunable_modules(net))
        assert models.feature_layer(net) == mod.FEATURE_LAYER
    # the older attributes alone still describe a network
    net = models.build("durn", "official")
    legacy = models._spec("durn").build(**models._spec("durn").CONFIGS["official"])
    legacy.dreamlib_name, legacy.dreamlib_variant, legacy.dreamlib_channel_order = "durn", "official", "BGR"
    assert spec_of(legacy).channel_order == "bgr" == spec_of(net).channel_order


# ------------------------------------------------------------------ wrappers

@pytest.mark.parametrize("wrap", ["dataparallel", "compile"])
def test_wrapped_models_keep_working(wrap):
    net = small_dncnn()
    wrapped = nn.DataParallel(net) if wrap == "dataparallel" else torch.compile(net, backend="eager")
    assert unwrap(wrapped) is net
    spec = spec_of(wrapped)
    assert spec is spec_of(net)
    with torch.no_grad():
        assert torch.allclose(models.restore(wrapped, X), net(X), atol=1e-6)
    assert count_macs(wrapped, (1, 3, 24, 24)) == count_macs(net, (1, 3, 24, 24))
    student, report = P.prune(wrapped, "l1-global", sparsity=0.5, input_size=(1, 3, 24, 24))
    assert set(P.masks(student)) == set(P.prunable_layers(net))  # names of the network inside
    from dreamlib.observe import extract_features

    feats = extract_features(wrapped, None, X, progress=False)
    assert feats.shape == (2, 8)


# ------------------------------------------------------------------ every public function, foreign model

def test_models_functions_accept_a_foreign_model():
    net = small_prenet()
    assert models.model_name(net) == "PReNetLike"
    assert models.pad_multiple(net) == 1
    assert models.feature_layer(net) == "res.1"
    assert models.prunable_modules(net)[0] == "conv0"
    out = net(X)
    assert models.final_image(net, out) is out[0]


def test_evaluate_accepts_a_foreign_model():
    from dreamlib.compression import PairSet
    from dreamlib.evaluate import evaluate

    net = small_dncnn()
    sets = {"s": PairSet([X[0]], [X[1]])}
    r = evaluate(net, sets, progress=False)
    assert r["s"]["n"] == 1 and r["average"]["psnr"] > 0


def test_observe_functions_accept_a_foreign_model():
    from dreamlib.observe import cross_model_features, extract_features

    net = small_restormer()
    f = extract_features(net, None, X, progress=False)
    assert f.shape == (2, 8)
    feats, labels = cross_model_features(X, net, progress=False)
    assert feats.shape == (2, 8) and labels == ["dreamed", "dreamed"]


def test_dream_functions_accept_a_foreign_model():
    from dreamlib.dream import Dreamer, diversity, dream, make_targets, teacher_change

    net = small_prenet()
    y = make_targets(2, 24, seed=0)
    res = dream(net, y, steps=2, progress=False)
    assert res.x.shape == (2, 3, 24, 24) and len(res.log["l_orth"]) == 2
    d = Dreamer(net, y, lr=0.05)
    assert d.step().features.shape == (2, 8)
    assert 0.0 <= teacher_change(net, res.x)["changed_frac"] <= 1.0
    assert diversity(res.x, teacher=net) >= 0.0


def test_prune_functions_accept_a_foreign_model(tmp_path):
    net = small_restormer()
    size = (1, 3, 24, 24)
    assert set(P.allocate(net, "erk", 0.5)) == set(P.prunable_layers(net))
    for method in ("l1-uniform", "lamp"):
        s, r = P.prune(net, method, target_macs=0.6 * count_macs(net, size), input_size=size)
        assert abs(r.macs_after / (0.6 * count_macs(net, size)) - 1) < 2e-3
    s, r = P.prune(net, "adaptive", X=X, target_macs=0.6 * count_macs(net, size), input_size=size, eps=0.1,
                   max_sweeps=3)
    assert list(r.module_sparsity) == spec_of(net).module_names
    s2, r2 = P.prune(net, "dream-budget", X=X, target_macs=0.6 * count_macs(net, size), input_size=size,
                     grid=(0.25, 0.5, 0.75))
    assert r2.macs_after <= 0.6 * count_macs(net, size) * 1.01
    df = P.sensitivity_map(net, X, sparsities=[0.5], progress=False)
    assert list(df.columns) == spec_of(net).module_names
    comp = P.compare_methods(net, X, None, target_macs=0.6 * count_macs(net, size), methods=("l1-global",),
                             input_size=size, progress=False)
    assert "l1-global" in comp.table.index
    with pytest.raises(ValueError, match="no FLOPs ratio"):
        P.paper_target_macs(net)
    assert P.paper_target_macs(net, "hinet", input_size=size) == round(count_macs(net, size) * P.paper_ratio("hinet"))
    # save / load: rebuilt from an instance, the spec comes back with the file
    P.save_pruned(s, tmp_path / "s.pt")
    fresh = small_restormer()
    loaded = P.load_pruned(tmp_path / "s.pt", model=fresh)
    assert spec_of(loaded).module_names == spec_of(net).module_names
    with torch.no_grad():
        assert torch.equal(models.restore(loaded, X), models.restore(s, X))
    assert P.storage_size(loaded)["kept_weights"] < P.storage_size(loaded)["masked_weights"]
    with pytest.raises(Exception, match="model=MyNet"):
        P.load_pruned(tmp_path / "s.pt")  # no importable class recorded: say how to load it


def test_distill_accepts_a_foreign_model(tmp_path):
    from dreamlib.distill import DistillConfig, distill

    net = small_dncnn()
    student, _ = P.prune(net, "l1-global", sparsity=0.5, input_size=(1, 3, 24, 24))
    masks = P.masks(student)
    cfg = DistillConfig(steps=2, reinit_every=2, batch_size=2, crop=24, lr_student=1e-3)
    student, log = distill(net, student, cfg, state_path=tmp_path / "st.pt", progress=False)
    assert len(log.rows["l_kd"]) == 2
    assert all(torch.equal(P.masks(student)[k], v) for k, v in masks.items())
    assert all(float(m.weight.detach().abs()[~masks[n]].sum()) == 0 for n, m in student.named_modules()
               if n in masks)


def test_checkpoints_of_a_foreign_model_rebuild_from_its_class(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    net = small_dncnn()
    describe(net, arch="own_networks:DnCNN", config={"depth": 5, "width": 8})
    models.save_checkpoint(net, tmp_path / "n.pt")
    again = models.from_checkpoint(tmp_path / "n.pt").eval()
    assert type(again).__name__ == "DnCNN" and spec_of(again).feature_layer == spec_of(net).feature_layer
    with torch.no_grad():
        assert torch.equal(again(X), net(X))
    other = DnCNN(depth=5, width=8)
    models.load_checkpoint(other, tmp_path / "n.pt")


# ------------------------------------------------------------------ compress, one call

@pytest.mark.parametrize("make", [small_prenet, small_restormer, small_dncnn], ids=["prenet", "restormer", "dncnn"])
def test_compress_tiny_on_networks_dreamlib_does_not_ship(make, tmp_path):
    from dreamlib.compression import gaussian_noise

    net = make()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    r = dreamlib.compress(net, None, target=0.6, tiny=True, progress=False, out_dir=tmp_path / "run",
                          degrade=gaussian_noise(25), eval_images=torch.rand(2, 3, 24, 24))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the teacher is untouched
    size = tuple(r.report["input_size"])
    macs_t, macs_s = count_macs(net, size), count_macs(r.student, size)
    assert r.report["macs"] == {"teacher": macs_t, "target": round(0.6 * macs_t), "student": macs_s}
    assert abs(macs_s / (0.6 * macs_t) - 1) < 2e-3                      # at the target
    mk = P.masks(r.student)
    assert mk and set(mk) <= set(P.prunable_layers(net))
    for name, m in r.student.named_modules():                           # masks = the zeros, nothing else
        if name in mk:
            assert torch.equal(m.weight.detach() == 0, ~mk[name]) or bool((m.weight.detach()[~mk[name]] == 0).all())
    assert list(r.report["pruning"]["module_sparsity"]) == spec_of(net).module_names
    assert set(r.report["eval"]["psnr"]) == {"input", "teacher", "pruned", "student"}
    run = tmp_path / "run"
    for f in ("student.pt", "card.json", "report.json", "dreams.pt", "pruned.pt", "distill.state.pt"):
        assert (run / f).is_file(), f
    card = json.loads((run / "card.json").read_text())
    assert card["spec"]["name"] == type(net).__name__ and card["provenance"]["teacher_hash"]
    loaded = P.load_pruned(run / "student.pt", model=make())
    with torch.no_grad():
        assert torch.equal(models.restore(loaded, X), models.restore(r.student, X))
    assert {k: v for k, v in P.masks(loaded).items()}.keys() == mk.keys()
    assert all(torch.equal(P.masks(loaded)[k], mk[k]) for k in mk)


def test_compress_resumes_in_its_run_folder(tmp_path):
    net = small_dncnn()
    a = dreamlib.compress(net, None, tiny=True, progress=False, out_dir=tmp_path / "run")
    b = dreamlib.compress(net, None, tiny=True, progress=False, out_dir=tmp_path / "run", resume=True)
    with torch.no_grad():
        assert torch.equal(models.restore(a.student, X), models.restore(b.student, X))
    with pytest.raises(ValueError, match="other settings"):
        dreamlib.compress(net, None, tiny=True, progress=False, out_dir=tmp_path / "run", resume=True, seed=3)


def test_compress_command(tmp_path, monkeypatch, capsys):
    from dreamlib.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    net = small_dncnn()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    rc = main(["compress", "--arch", "own_networks:DnCNN", "--arch-kwargs", '{"depth": 5, "width": 8}',
               "--checkpoint", str(tmp_path / "w.pth"), "--target", "0.6", "--tiny", "--no-progress",
               "--out", str(tmp_path / "run")])
    assert rc == 0
    assert "60.0 %" in capsys.readouterr().out
    # the run folder's student rebuilds itself from the recorded class
    student = P.load_pruned(tmp_path / "run" / "student.pt")
    assert type(student).__name__ == "DnCNN" and P.masks(student)
    rc = main(["compress", "--arch", "own_networks:NotAnImageNet", "--tiny", "--no-progress",
               "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "(1, 1, 25, 25)" in err and err.count("\n") == 1
    assert main(["compress", "--arch", "no_such_module:Net", "--tiny"]) == 2
