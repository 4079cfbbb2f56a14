"""Tests of dreamlib.prune's baselines, masks, MACs targets and files (REFERENCE.md §5).

LAMP and ERK are checked on hand-worked examples; l1 against torch.nn.utils.prune;
MACs targets on the small teachers (shipped ones when present, else seeded random
initialisations of the same architectures).
"""
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from dreamlib import models
from dreamlib import prune as P
from dreamlib.flops import count_macs
from dreamlib.settings import DATA_SAMPLES

torch.set_num_threads(1)


def small_teacher(name, seed=0):
    path = Path(DATA_SAMPLES) / "teachers" / f"{name}_small.pt"
    if path.is_file():
        return models.from_checkpoint(path).eval()
    torch.manual_seed(seed)
    return models.build(name, "small").eval()


@pytest.fixture(scope="module")
def hinet():
    return small_teacher("hinet")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _weight_masks(model):
    return {n: m.weight_mask.bool() for n, m in model.named_modules() if hasattr(m, "weight_mask")}


# ---------------------------------------------------------------- LAMP: hand-worked

def test_lamp_scores_hand_example():
    # w^2 sorted: 0.01, 0.04, 0.09 -> 0.01/0.14, 0.04/0.13, 0.09/0.09
    w = torch.tensor([[0.1, -0.3, 0.2]])
    s = P.lamp_scores(w)
    torch.testing.assert_close(s, torch.tensor([[0.01 / 0.14, 1.0, 0.04 / 0.13]], dtype=torch.float64))


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 1, bias=False)
        self.b = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[0.1, 0.2, 0.3]]))
            self.b.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 4.0]]))

    def forward(self, x):
        return self.a(x[:, :3]) + self.b(x[:, 3:])


def test_lamp_allocation_hand_example_differs_from_global_magnitude():
    # 7 weights, amount 0.5 -> keep round(3.5) = 4 scores. Scores: a: .0714 .3077 1 ; b: .0333 .1379 .36 1
    # top-4 = {a:1, b:1, b:.36, a:.3077}: a keeps 0.2, 0.3; b keeps 3, 4.
    model = TwoLinear()
    assert P.allocate(model, "lamp", 0.5) == {"a": pytest.approx(1 / 3), "b": pytest.approx(0.5)}
    # global magnitude prunes the 4 smallest |w|: all of a and b's 1.0
    assert P.allocate(model, "l1-global", 0.5) == {"a": pytest.approx(1.0), "b": pytest.approx(0.25)}
    pruned, report = P.prune(model, "lamp", sparsity=0.5, input_size=(1, 7))
    assert pruned.a.weight.tolist() == [[0.0, pytest.approx(0.2), pytest.approx(0.3)]]
    assert pruned.b.weight.tolist() == [[0.0, 0.0, 3.0, 4.0]]
    assert report.kept_weights == 4
    assert model.a.weight.tolist() == [[pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3)]]  # untouched


# ---------------------------------------------------------------- ERK

def test_erk_hand_example_with_dense_iteration():
    # raw: L1 (10x10) 20/100 = 0.2, L2 (100x100) 200/1e4 = 0.02. S = 0.5 of 10100 weights:
    # eps = 5050 / (0.2*100 + 0.02*1e4) = 22.95 -> L1 density 4.59 > 1 -> L1 dense;
    # again: eps = (5000 - 50) / (0.02 * 1e4) = 24.75 -> L2 density 0.495; 100 + 4950 = 5050.
    d, dense = P.erk_densities({"l1": (10, 10), "l2": (100, 100)}, 0.5)
    assert dense == {"l1"}
    assert d["l1"] == 1.0 and d["l2"] == pytest.approx(0.495, abs=1e-12)


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.8, 0.97])
def test_erk_meets_budget_exactly_and_no_density_above_one(hinet, sparsity):
    layers = P.prunable_layers(hinet)
    shapes = {n: tuple(l.module.weight.shape) for n, l in layers.items()}
    d, dense = P.erk_densities(shapes, sparsity)
    n = {k: math.prod(s) for k, s in shapes.items()}
    total = sum(n.values())
    assert sum(d[k] * n[k] for k in d) == pytest.approx((1 - sparsity) * total, rel=1e-12)
    assert max(d.values()) <= 1.0 + 1e-12 and min(d.values()) >= 0.0
    raw = {k: sum(s) / math.prod(s) for k, s in shapes.items()}
    free = [k for k in d if k not in dense]
    ratios = [d[k] / raw[k] for k in free]  # one eps for every non-dense layer
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-12)
    if sparsity == 0.2:
        assert dense  # the iteration was exercised
    # integer counts of allocate(): within half a weight per layer of the float budget
    alloc = P.allocate(hinet, "erk", sparsity)
    pruned = sum(alloc[k] * layers[k].numel for k in alloc)
    assert abs(pruned - sparsity * total) <= len(alloc) / 2 + 1e-6


# ---------------------------------------------------------------- l1 vs torch.nn.utils.prune

def test_l1_global_equals_torch_global_unstructured(hinet):
    pruned, _ = P.prune(hinet, "l1-global", sparsity=0.6)
    ref = copy.deepcopy(hinet)
    params = [(m, "weight") for m in ref.modules() if isinstance(m, P.PRUNABLE_TYPES)]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=0.6)
    ours, theirs = _weight_masks(pruned), _weight_masks(ref)
    assert ours.keys() == theirs.keys() and len(ours) == len(params)
    # Trained weights can share a magnitude exactly; torch's topk and our flat-index rule
    # may then keep different members of a tie. Masks must agree everywhere else, and
    # keep the same number of weights.
    weights = {n: m.weight.detach().abs() for n, m in hinet.named_modules() if isinstance(m, P.PRUNABLE_TYPES)}
    kept_ours = sum(int(m.sum()) for m in ours.values())
    assert kept_ours == sum(int(m.sum()) for m in theirs.values())
    pruned_max = max(float(weights[k][~ours[k]].max()) for k in ours if (~ours[k]).any())
    for k in ours:
        differ = ours[k] != theirs[k]
        assert torch.all(weights[k][differ] == pruned_max), k


def test_l1_uniform_equals_torch_l1_unstructured(hinet):
    pruned, report = P.prune(hinet, "l1-uniform", sparsity=0.37)
    ref = copy.deepcopy(hinet)
    for m in ref.modules():
        if isinstance(m, P.PRUNABLE_TYPES):
            tprune.l1_unstructured(m, "weight", amount=0.37)
    ours, theirs = _weight_masks(pruned), _weight_masks(ref)
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]), k
    assert all(abs(s - 0.37) < 0.5 / hinet.get_submodule(k).weight.numel() + 1e-12
               for k, s in report.layer_sparsity.items())


# ---------------------------------------------------------------- equal-MACs targets

@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_target_macs_within_0p1_percent_for_every_baseline(name):
    teacher = small_teacher(name)
    before = _state(teacher)
    target = P.paper_target_macs(teacher)
    for method in P.BASELINES:
        pruned, report = P.prune(teacher, method, target_macs=target)
        macs = count_macs(pruned)
        assert macs == report.macs_after == report.search["predicted_macs"], method
        assert abs(macs - target) <= 1e-3 * target, (method, macs, target)
        assert report.search["hit"] and 0 < report.search["steps"] <= 40
    after = teacher.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(hasattr(m, "weight_mask") for m in teacher.modules())


def test_paper_targets():
    assert P.PAPER_FLOPS["hinet"] == (100.0, 170.5) and P.PAPER_FLOPS["agan"] == (41.8, 89.4)
    m = models.build("durn", "small")
    assert P.paper_target_macs(m) == round(count_macs(m) * 34.7 / 55.9)
    with pytest.raises(ValueError, match="no paper FLOPs"):
        P.paper_ratio("unet")


def test_allocate_matches_prune_and_report(hinet):
    for method in P.BASELINES:
        alloc = P.allocate(hinet, method, 0.55)
        pruned, report = P.prune(hinet, method, sparsity=0.55)
        assert alloc.keys() == report.layer_sparsity.keys()
        for k, v in alloc.items():
            assert report.layer_sparsity[k] == pytest.approx(v, abs=1e-12), (method, k)


def test_bad_arguments(hinet):
    with pytest.raises(ValueError, match="exactly one"):
        P.prune(hinet, "lamp", sparsity=0.5, target_macs=1e9)
    with pytest.raises(ValueError, match="exactly one"):
        P.prune(hinet, "erk")
    with pytest.raises(ValueError, match="outside"):
        P.prune(hinet, "lamp", target_macs=2 * count_macs(hinet))
    with pytest.raises(ValueError, match="unknown allocation method"):
        P.allocate(hinet, "random", 0.5)
    with pytest.raises(ValueError, match="needs X"):
        P.prune(hinet, "adaptive")


def test_bisect_target_on_a_step_function():
    res = P.bisect_target(lambda x: 1000 - math.floor(800 * x), 500, 0.0, 1.0, rtol=1e-3)
    assert res.hit and abs(res.value - 500) <= 0.5 and res.steps == len(res.trace) - 0
    with pytest.raises(ValueError, match="not bracketed"):
        P.bisect_target(lambda x: 10.0, 5.0, 0.0, 1.0)


# ---------------------------------------------------------------- masks: fine-tuning, finalize, sharing

def test_masked_weights_stay_zero_after_optimizer_steps(hinet):
    pruned, _ = P.prune(hinet, "lamp", sparsity=0.6)
    pruned.train()
    masked = [m for m in pruned.modules() if hasattr(m, "weight_mask")]
    orig_before = [m.weight_orig.detach().clone() for m in masked]
    opt = torch.optim.Adam(pruned.parameters(), lr=1e-2, weight_decay=1e-2)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        opt.zero_grad()
        models.restore(pruned, x).sub(x).pow(2).mean().backward()
        opt.step()
    with torch.no_grad():
        models.restore(pruned, x)  # the pre-hook recomputes weight = mask * orig
    assert any(not torch.equal(m.weight_orig, b) for m, b in zip(masked, orig_before))  # it did train
    for m in masked:
        assert torch.all(m.weight[m.weight_mask == 0] == 0)
        assert torch.all(m.weight_orig.grad[m.weight_mask == 0] == 0)
    macs = count_macs(pruned)
    P.finalize(pruned)
    assert not any(hasattr(m, "weight_mask") or hasattr(m, "weight_orig") for m in pruned.modules())
    assert all(isinstance(m.weight, nn.Parameter) for m in pruned.modules() if isinstance(m, P.PRUNABLE_TYPES))
    assert count_macs(pruned) == macs  # zeros are kept


def test_in_place_mask_change_is_seen_at_once(hinet):
    """The search loops change masks in place and count MACs without a forward in between."""
    from dreamlib.prune.masks import set_mask

    model = copy.deepcopy(hinet)
    layer = P.prunable_layers(model)["conv_01"]
    w = layer.module.weight.detach().clone()
    set_mask(layer, torch.ones_like(w))
    full = count_macs(model)
    half = torch.ones_like(w).flatten()
    half[: w.numel() // 2] = 0
    set_mask(layer, half.view_as(w))  # second call: in-place path
    assert torch.count_nonzero(layer.module.weight) == w.numel() - w.numel() // 2
    assert count_macs(model) < full
    assert len([h for h in layer.module._forward_pre_hooks.values()]) == 1  # no hook stacking


class Tied(nn.Module):
    """Two convs sharing one weight tensor (parameter tying)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2.weight = self.c1.weight
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.head(self.c2(torch.relu(self.c1(x))))


def test_shared_weight_is_pruned_once():
    torch.manual_seed(0)
    model = Tied()
    layers = P.prunable_layers(model)
    assert list(layers) == ["c1", "head"] and [n for n, _ in layers["c1"].tied] == ["c2"]
    assert set(P.allocate(model, "l1-global", 0.5)) == {"c1", "head"}
    pruned, report = P.prune(model, "l1-global", sparsity=0.5, input_size=(1, 4, 8, 8))
    assert torch.equal(pruned.c1.weight_mask, pruned.c2.weight_mask)
    assert pruned.c1.weight_orig is pruned.c2.weight_orig
    n = 4 * 4 * 9 + 4 * 4
    assert report.prunable_weights == n and report.kept_weights == n - round(0.5 * n)
    # MACs count both uses of the shared weight, at its density
    d = report.layer_sparsity["c1"]
    dense = 4 * 8 * 8 * 36
    assert report.macs_after == 2 * round(dense * (1 - d)) + round(4 * 8 * 8 * 4 * (1 - report.layer_sparsity["head"]))
    # one shared weight is worth 2 x 64 MACs here: a 1 % tolerance is reachable, 0.1 % is not
    target = int(0.6 * count_macs(model, (1, 4, 8, 8)))
    _, rep = P.prune(model, "lamp", target_macs=target, input_size=(1, 4, 8, 8), rtol=1e-2)
    assert abs(rep.macs_after - target) <= 1e-2 * target and rep.search["hit"]


# ---------------------------------------------------------------- files

@pytest.mark.parametrize("sparse", [False, True])
def test_save_load_roundtrip_bitwise(hinet, tmp_path, sparse):
    pruned, report = P.prune(hinet, "lamp", sparsity=0.7)
    path = P.save_pruned(pruned, tmp_path / "student.pt", card={"note": "test"}, sparse=sparse)
    loaded = P.load_pruned(path)
    x = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(models.restore(pruned.eval(), x), models.restore(loaded.eval(), x))
    a, b = P.masks(pruned), P.masks(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fa, fb = P.finalized_state_dict(pruned), P.finalized_state_dict(loaded)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    card = loaded.dreamlib_card
    assert card["note"] == "test" and card["stored"] == ("sparse" if sparse else "dense")
    assert P.PruneReport.from_card(card["pruning"]) == P.PruneReport.from_card(report.to_card())
    assert count_macs(loaded) == report.macs_after
    sizes = card["storage"]
    assert sizes["kept_weights"] == report.kept_weights
    assert sizes["sparse_bytes"] < sizes["dense_bytes"] and sizes["bitmask_bytes"] < sizes["sparse_bytes"]
    if not sparse:  # a densely stored pruned file is still a plain dreamlib checkpoint
        plain = models.from_checkpoint(path)
        with torch.no_grad():
            assert torch.equal(models.restore(plain.eval(), x), models.restore(loaded, x))


def test_sparse_file_is_smaller(hinet, tmp_path):
    pruned, _ = P.prune(hinet, "l1-global", sparsity=0.8)
    dense = P.save_pruned(pruned, tmp_path / "d.pt").stat().st_size
    sparse = P.save_pruned(pruned, tmp_path / "s.pt", sparse=True).stat().st_size
    sizes = P.storage_size(pruned)
    assert sparse < 0.6 * dense
    assert abs(sparse - sizes["sparse_bytes"]) < 0.25 * sizes["sparse_bytes"] + 200_000  # + pickle/zip overhead
    with pytest.raises(ValueError, match="not a pruned dreamlib file"):
        models.save_checkpoint(models.build("hinet", "small"), tmp_path / "plain.pt")
        P.load_pruned(tmp_path / "plain.pt")


def test_module_sparsity_table_is_the_fraction_of_each_modules_weights():
    import pandas as pd

    layers = pd.DataFrame([
        {"method": "a", "layer": "m1.0", "order": 0, "numel": 100, "dense_macs": 1, "sparsity": 0.5},
        {"method": "a", "layer": "m1.1", "order": 1, "numel": 300, "dense_macs": 1, "sparsity": 0.1},
        {"method": "a", "layer": "m2.0", "order": 2, "numel": 50, "dense_macs": 1, "sparsity": 1.0},
        {"method": "b", "layer": "m1.0", "order": 0, "numel": 100, "dense_macs": 1, "sparsity": 0.0},
        {"method": "b", "layer": "m1.1", "order": 1, "numel": 300, "dense_macs": 1, "sparsity": 0.0},
        {"method": "b", "layer": "m2.0", "order": 2, "numel": 50, "dense_macs": 1, "sparsity": 0.2},
        {"method": "b", "layer": "other", "order": 3, "numel": 9, "dense_macs": 1, "sparsity": 0.9},
    ])
    t = P.module_sparsity_table(layers, {"m2": ["m2.0"], "m1": ["m1.0", "m1.1"]})
    assert list(t.index) == ["a", "b"] and list(t.columns) == ["m2", "m1"]  # the groups' order
    assert t.loc["a", "m1"] == pytest.approx((50 + 30) / 400)  # weighted by weight counts, not averaged
    assert t.loc["a", "m2"] == 1.0 and t.loc["b", "m2"] == pytest.approx(0.2) and t.loc["b", "m1"] == 0.0
    ax = P.plot_module_sparsity(t)
    assert len(ax.texts) == 4  # one label per cell
