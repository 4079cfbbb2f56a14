"""Channel (structured) pruning: MACs targets, the network quirks, safe files, speed options."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib.flops import count_macs
from dreamlib.models import restore
from dreamlib.prune import channels as C

NAMES = ("hinet", "mprnet", "durn", "agan")


@pytest.fixture(scope="module")
def small():
    out = {}
    for n in NAMES:
        torch.manual_seed(0)
        out[n] = models.build(n, "small").eval()
    return out


def _x(side=64, seed=1):
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed))


# MPRNet is left out here (a minute of CI on 2 cores); its students hit their targets in the speed runs,
# which check the same tolerance when they prune (channel_prune raises otherwise)
@pytest.mark.parametrize("name,strategy", [("hinet", "uniform"), ("durn", "uniform"), ("agan", "uniform"),
                                           ("hinet", "lamp"), ("durn", "lamp"), ("agan", "lamp")])
def test_target_macs_hit_within_1_percent(small, name, strategy):
    teacher = small[name]
    dense = count_macs(teacher)
    student, rep = C.channel_prune(teacher, strategy, target_macs=0.5 * dense, progress=False)
    assert abs(count_macs(student) - 0.5 * dense) <= 0.01 * 0.5 * dense  # counted independently of the report
    assert rep.macs == count_macs(student) and rep.dense_macs == dense
    assert rep.params < rep.dense_params
    # still an image-to-image network of the same kind, any size
    with torch.no_grad():
        assert restore(student, torch.rand(1, 3, 45, 70)).shape == (1, 3, 45, 70)
    # the teacher is untouched
    assert count_macs(teacher) == dense


def test_image_layers_keep_three_channels(small):
    student = C.prune_channels(small["hinet"], 0.5)
    w0, w1 = C.channel_widths(small["hinet"]), C.channel_widths(student)
    assert all(w1[k] == w0[k] for k in w0 if w0[k] <= 3)
    assert sum(w1[k] < w0[k] for k in w0) > len(w0) // 2


@pytest.mark.parametrize("name", ["hinet", "mprnet", "agan"])
def test_each_network_quirk_is_needed(small, name, monkeypatch):
    """Without dreamlib's handling Torch-Pruning cannot cut the network; with it, it can."""
    monkeypatch.delitem(C.QUIRKS, name)
    with pytest.raises(C.ChannelPruningError, match="keep="):
        C.prune_channels(small[name], 0.3)
    monkeypatch.undo()
    student = C.prune_channels(small[name], 0.3)
    with torch.no_grad():
        assert restore(student, _x()).shape == (1, 3, 64, 64)


def test_hinet_half_instance_norm_convs_keep_their_width(small):
    t = small["hinet"]
    s = C.prune_channels(t, 0.4)
    hin = [n for n, m in t.named_modules() if getattr(m, "use_hin", False)]
    assert hin
    w0, w1 = C.channel_widths(t), C.channel_widths(s)
    for n in hin:
        assert w1[f"{n}.conv_1"] == w0[f"{n}.conv_1"]
        assert w1[f"{n}.conv_2"] < w0[f"{n}.conv_2"]


def test_mprnet_prelu_untied_without_changing_outputs(small):
    t = small["mprnet"]
    prelus = lambda m: {id(p) for p in m.modules() if isinstance(p, nn.PReLU)}  # noqa: E731
    assert len(prelus(t)) == 1  # the official model shares one
    m, _, quirks = C.prepare(t)
    assert "prelu_untied" in quirks
    cabs = sum(1 for mod in m.modules() if type(mod).__name__ == "CAB")
    assert len(prelus(m)) == cabs
    with torch.no_grad():
        assert torch.equal(restore(m, _x()), restore(t, _x()))
    assert len(prelus(t)) == 1  # the teacher is not changed


def test_agan_attention_branch_kept_whole(small):
    t = small["agan"]
    s = C.prune_channels(t, 0.4)
    w0, w1 = C.channel_widths(t), C.channel_widths(s)
    branch = [k for k in w0 if k.split(".")[0].startswith(C._AGAN_RECURRENT)]
    assert branch and all(w1[k] == w0[k] for k in branch)
    assert any(w1[k] < w0[k] for k in w0 if k not in branch)


def test_keep_names_modules_for_your_own_network(small):
    s = C.prune_channels(small["durn"], 0.4, keep=["conv1"])
    assert C.channel_widths(s)["conv1"] == C.channel_widths(small["durn"])["conv1"]
    with pytest.raises(ValueError, match="no module named"):
        C.prune_channels(small["durn"], 0.4, keep=["nope"])


@pytest.mark.parametrize("name", NAMES)
def test_saved_student_loads_with_identical_outputs(small, name, tmp_path):
    student, _ = C.channel_prune(small[name], "lamp", ratio=0.4, progress=False)
    with torch.no_grad():  # move weights off their initial values so a fresh build cannot match by chance
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = C.save_pruned(student, tmp_path / "s.pt")
    raw = torch.load(path, weights_only=True)  # plain tensors and values only
    assert raw["format"].startswith("dreamlib-channel-pruned")
    loaded = C.load_pruned(path)
    x = _x(72)
    with torch.no_grad():
        assert torch.equal(restore(loaded, x), restore(student, x))
    assert C.channel_widths(loaded) == C.channel_widths(student)


def test_load_errors_name_the_problem(small, tmp_path):
    student = C.prune_channels(small["durn"], 0.3)
    path = C.save_pruned(student, tmp_path / "s.pt")
    raw = torch.load(path, weights_only=True)
    # a teacher checkpoint is not a pruned student
    torch.save(small["durn"].state_dict(), tmp_path / "teacher.pt")
    with pytest.raises(C.PrunedFileError, match="not a channel-pruned"):
        C.load_pruned(tmp_path / "teacher.pt")
    # shapes that do not fit the weights
    bad = dict(raw, shapes={**raw["shapes"], "conv1": {**raw["shapes"]["conv1"], "out_channels": 5}})
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(C.PrunedFileError, match="does not fit"):
        C.load_pruned(tmp_path / "bad.pt")
    # another network's layers
    other = dict(raw, shapes={**raw["shapes"], "not_a_layer": {"out_channels": 3}})
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(C.PrunedFileError, match="does not have"):
        C.load_pruned(tmp_path / "other.pt")


def test_ratios_at_walks_each_curve_and_interpolates():
    curves = {"a": [(0.2, 60.0), (0.4, 40.0), (0.6, 55.0)],  # fails at 0.4: 0.6 is never reached
              "b": [(0.2, 30.0), (0.4, 20.0)]}
    r = C.ratios_at(curves, 50.0)
    assert r["a"] == pytest.approx(0.2 + 0.2 * (60 - 50) / (60 - 40))
    assert r["b"] == pytest.approx(0.0 + 0.2 * (120 - 50) / (120 - 30))
    assert C.ratios_at(curves, 10.0) == {"a": 0.6, "b": 0.4}
    assert C.ratios_at(curves, 130.0) == {"a": 0.0, "b": 0.0}


def test_adaptive_prunes_insensitive_modules_more_and_hits_target(small):
    t = small["durn"]
    X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    curves = C.module_curves(t, X, grid=[0.3, 0.6], progress=False)
    assert set(curves) == set(models.prunable_modules(t))
    target = 0.6 * count_macs(t)
    s, rep = C.channel_prune(t, "adaptive", target_macs=target, curves=curves, progress=False)
    assert abs(rep.macs - target) <= 0.01 * target and rep.tp is not None
    # the ratios are what the curves give at the threshold found (each module judged alone)
    expect = C.ratios_at(curves, rep.tp)
    assert all(abs(rep.ratio[k] - expect[k]) < 1e-3 for k in expect)


def test_bad_arguments_fail_before_compute(small):
    t = small["durn"]
    with pytest.raises(ValueError, match="unknown channel strategy"):
        C.channel_prune(t, "random", ratio=0.3)
    with pytest.raises(ValueError, match="exactly one"):
        C.channel_prune(t, "uniform")
    with pytest.raises(ValueError, match="dreamed images"):
        C.channel_prune(t, "adaptive", target_macs=1e8)
    with pytest.raises(ValueError, match=r"fraction of channels in \[0, 0.9\]"):
        C.prune_channels(t, 0.95)
    with pytest.raises(ValueError, match="target_macs must be in"):
        C.channel_prune(t, "uniform", target_macs=10 * count_macs(t))


# ---------------------------------------------------------------------------- speed options
def test_channels_last_and_masks_stripped_keep_outputs(small):
    from dreamlib import prune as P
    from dreamlib import speed

    t = small["hinet"]
    masked, _ = P.prune(t, "lamp", sparsity=0.5)
    x = _x(64)
    for m in (t, C.prune_channels(t, 0.3), masked):
        f = speed.fast(m, "channels_last")
        assert speed.same_outputs(m, f, x) <= 1e-5
    stripped = speed.fast(masked, "eager")
    assert not any(hasattr(mod, "weight_mask") for mod in stripped.modules())
    assert speed.same_outputs(masked, stripped, x) == 0.0
    with pytest.raises(ValueError, match="unknown speed option"):
        speed.fast(t, "onnx")


def test_same_outputs_catches_a_changed_model(small):
    from dreamlib import speed

    t = small["durn"]
    other = C.prune_channels(t, 0.3)
    with pytest.raises(AssertionError, match="outputs differ"):
        speed.same_outputs(t, other, _x())


def test_compiled_equals_eager_on_a_tiny_net():
    from dreamlib import describe, speed

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    describe(net)
    f = speed.fast(net, "compiled")
    assert speed.same_outputs(net, f, _x(32)) <= 1e-5


def test_latency_reports_a_median():
    from dreamlib import speed

    net = nn.Conv2d(3, 3, 3, padding=1)
    r = speed.latency(net, _x(32), iters=3, warmup=1, n_threads=1)
    assert r["min"] <= r["median"] <= r["max"] and len(r["times"]) == 3 and r["threads"] == 1


# ---------------------------------------------------------------------------- benchmark and runner
def test_bench_latency_tiny_prints_ratios(tmp_path, capsys):
    import importlib.util

    from dreamlib.settings import REPO_ROOT

    spec = importlib.util.spec_from_file_location("bench_latency", REPO_ROOT / "benchmarks" / "bench_latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--tiny", "--out", str(tmp_path / "b.md")]) == 0
    text = (tmp_path / "b.md").read_text()
    rows = [r for r in text.splitlines() if r.startswith("| durn")]
    assert len(rows) == 6  # dense / masked / channels x eager / channels_last
    assert rows[0].split("|")[6].strip() == "1.00x"  # dense eager is the reference
    gmacs = {r.split("|")[2].strip(): float(r.split("|")[3]) for r in rows}
    assert abs(gmacs["channels"] / gmacs["dense"] - 0.5) <= 0.01 and abs(gmacs["masked"] / gmacs["dense"] - 0.5) <= 0.01


def test_reproduce_speed_rejects_bad_arguments_before_compute(capsys):
    from dreamlib.cli import main

    assert main(["reproduce", "speed", "--macs", "1.5"]) == 2
    assert "--macs 1.5" in capsys.readouterr().err
    assert main(["reproduce", "speed", "--macs", "half"]) == 2
    assert main(["reproduce", "table1", "--macs", "0.5"]) == 2
    assert "only apply to `reproduce speed`" in capsys.readouterr().err
    assert main(["reproduce", "speed", "--target-gflops", "1"]) == 2


def _speed_cfg():
    from dreamlib.experiments.tables import CONFIG_DIR, load_config

    return load_config(CONFIG_DIR / "quick.yaml", dream_x={"batch_size": 2, "steps": 2}, adaptive={"eps": 0.2},
                       distill={"steps": 3, "reinit_every": 2, "batch_size": 2}, eval_limit=1)


def test_speed_runner_end_to_end_and_resume_only_retimes(tmp_path, monkeypatch):
    import json

    from dreamlib.distill import ResumeMismatchError
    from dreamlib.experiments import speed as S

    cfg = _speed_cfg()
    kw = dict(config=cfg, fractions=[0.5], out_dir=tmp_path, progress=False, compile_=False, iters=1,
              strategies=("uniform", "lamp"), device="cpu")
    p = S.run_speed("durn", **kw)
    point = p["points"][0]
    assert set(point["rows"]) == {"masked", "channel-uniform", "channel-lamp"}
    chosen = point["rows"][f"channel-{point['chosen']}"]
    # the strategy recovered is the one closest to the teacher on the dreamed X (no test image decides)
    assert chosen["psnr_on_X"] == max(point["rows"][f"channel-{s}"]["psnr_on_X"] for s in ("uniform", "lamp"))
    assert "after" in chosen and "after" not in point["rows"]["masked"]  # no committed table in quick runs
    for r in point["rows"].values():
        assert abs(r["gmacs"] * 1e9 / p["teacher_macs"] - 0.5) <= 0.01
        assert r["latency"]["eager"]["t1"] > 0
    md = (tmp_path / "speed_durn.md").read_text()
    assert "50.0 % of the teacher's MACs" in md and "(chosen on X)" in md
    student = C.load_pruned(tmp_path / "speed_durn_macs500.pt")
    assert abs(count_macs(student) / p["teacher_macs"] - 0.5) <= 0.01
    # --resume of a finished run re-times it without pruning, dreaming or distilling again
    import dreamlib.distill as D
    import dreamlib.prune.channels as CH

    monkeypatch.setattr(D, "distill", lambda *a, **k: (_ for _ in ()).throw(AssertionError("distilled again")))
    monkeypatch.setattr(CH, "channel_prune", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pruned again")))
    q = S.run_speed("durn", **kw, resume=True)
    assert q["points"][0]["rows"]["channel-lamp"]["before"] == point["rows"]["channel-lamp"]["before"]
    monkeypatch.undo()
    # another configuration does not continue this run
    other = dict(kw, config=dict(cfg, seed=1))
    with pytest.raises(ResumeMismatchError, match="another run"):
        S.run_speed("durn", **other, resume=True)
    assert json.loads((tmp_path / "speed_durn.partial.json").read_text())["fingerprint"]["config"]["seed"] == 0


def test_interleaved_times_each_model_every_round():
    import time as _t

    from dreamlib import speed

    calls = []

    class Slow(nn.Module):
        def __init__(self, tag, pause):
            super().__init__()
            self.tag, self.pause = tag, pause

        def forward(self, x):
            calls.append(self.tag)
            _t.sleep(self.pause)
            return x

    ts = speed.interleaved([Slow("a", 0.0), Slow("b", 0.01)], _x(8), iters=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then the models take turns
    assert [len(t) for t in ts] == [3, 3] and min(ts[1]) > max(ts[0])
