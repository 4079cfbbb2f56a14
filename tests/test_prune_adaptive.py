"""Tests of the adaptive scheme (Algorithm 1), the sensitivity map and compare_methods.

The toy model's sensitivity is constructed by hand: two depthwise 1x1 convs ``a``
(1000 channels) and ``b`` (500 channels) on an all-ones input, so the output is the
weight vector itself and pruning a weight w changes one output value by w. With
1500 outputs, tp = 40 dB  <=>  MSE <= 1e-4  <=>  sum of removed w^2 <= 0.15.

a: 600 small weights, w^2 ~ 1.9e-4 (sum ~0.114), then 400 weights of 0.9 (w^2 = 0.81).
b: 150 small (w ~ 0.016, w^2 ~ 2.56e-4), 100 medium (0.02, w^2 = 4e-4), 250 of 0.9.
(The small weights are spread by 1e-6 relative so that the ranking is unique.)

- a first: its 600 small weights fit (0.114 <= 0.15), the 601st does not -> 0.6.
- b after a (cumulative order): budget 0.15 - 0.114 = 0.036 -> 0.036 / 2.56e-4 = 140.6 -> 140 weights -> 0.28.
- b alone (independent order): 150 small + 100 medium = 0.0384 + 0.04 = 0.0784 <= 0.15, the next is 0.81 -> 0.5.
- at the paper's tp = 50 dB the budget is 0.015: 0.015 / 1.9e-4 = 78.9 -> 78 weights of a; then none of b
  (cumulative), or b alone 0.015 / 2.56e-4 = 58.6 -> 58 weights (independent).

With eps = 1e-3 (< 1/1000) the bisection resolves single weights, so the counts are exact.
"""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamlib import models
from dreamlib import prune as P
from dreamlib.flops import count_macs
from dreamlib.metrics import psnr_torch
from dreamlib.settings import DATA_SAMPLES

torch.set_num_threads(1)

NA, NB = 1000, 500


def _ramp(n, value):
    """n distinct, increasing weights within 1e-6 relative of ``value``."""
    return value * (1 + 1e-6 * torch.arange(n, dtype=torch.float64)) if n else torch.zeros(0)


def toy_weights():
    a = torch.cat([_ramp(600, math.sqrt(1.9e-4)), torch.full((400,), 0.9, dtype=torch.float64)])
    b = torch.cat([_ramp(150, 0.016), _ramp(100, 0.02), torch.full((250,), 0.9, dtype=torch.float64)])
    g = torch.Generator().manual_seed(0)  # shuffle: the ranking, not the position, must matter
    return a[torch.randperm(NA, generator=g)], b[torch.randperm(NB, generator=g)]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(NA, NA, 1, groups=NA, bias=False)
        self.b = nn.Conv2d(NB, NB, 1, groups=NB, bias=False)
        wa, wb = toy_weights()
        with torch.no_grad():
            self.a.weight.copy_(wa.view(NA, 1, 1, 1))
            self.b.weight.copy_(wb.view(NB, 1, 1, 1))

    def forward(self, x):
        return torch.cat([self.a(x[:, :NA]), self.b(x[:, NA:])], 1)


X_TOY = torch.ones(1, NA + NB, 1, 1)
TOY_SIZE = (1, NA + NB, 1, 1)


def expected_psnr(removed_sq_sum):
    return 10 * math.log10((NA + NB) / removed_sq_sum)


def test_adaptive_finds_the_hand_made_breakpoints_with_accumulation():
    toy = Toy()
    student, report = P.prune(toy, "adaptive", X=X_TOY, tp=40.0, eps=1e-3, modules=["a", "b"],
                              input_size=TOY_SIZE, order="cumulative")
    assert report.details["order"] == "cumulative"
    assert report.module_sparsity == {"a": 0.6, "b": pytest.approx(140 / 500)}
    # exactly the smallest weights went: a's 600 small, b's 140 smallest
    wa, wb = toy.a.weight.detach().flatten(), toy.b.weight.detach().flatten()
    assert torch.equal(student.a.weight.flatten() == 0, wa < 0.5)
    assert torch.equal(student.b.weight.flatten() == 0, wb <= torch.sort(wb)[0][139])
    removed = float((wa[wa < 0.5].double() ** 2).sum() + (torch.sort(wb)[0][:140].double() ** 2).sum())
    assert report.details["psnr_on_X"] == pytest.approx(expected_psnr(removed), abs=1e-3)
    assert 40.0 <= report.details["psnr_on_X"] < 40.1
    # 10 trials per module (ceil(log2(1000))), plus one unpruned forward per sweep
    assert report.search["forwards"] == 2 * 10 + 1
    assert report.macs_after == count_macs(student, TOY_SIZE) == (NA + NB) - 600 - 140


def test_adaptive_independent_order_judges_each_module_alone():
    toy = Toy()
    student, report = P.prune(toy, "adaptive", X=X_TOY, tp=40.0, eps=1e-3, modules=["a", "b"], input_size=TOY_SIZE)
    assert report.details["order"] == "independent"  # the default
    # each module alone: a 600 (0.114), b 250 (0.0784); applied together they remove 0.1924 > 0.15,
    # so the student's PSNR is below tp: tp bounds each module, not the whole student
    assert report.module_sparsity == {"a": 0.6, "b": 0.5}
    wa, wb = (torch.sort(w)[0].double() for w in toy_weights())
    removed = float((wa[:600] ** 2).sum() + (wb[:250] ** 2).sum())
    assert report.details["psnr_on_X"] == pytest.approx(expected_psnr(removed), abs=1e-3)
    assert report.details["psnr_on_X"] < 40.0
    # 10 trials per module, one unpruned forward, one forward of the combined student
    assert report.search["forwards"] == 2 * 10 + 2
    assert report.macs_after == count_macs(student, TOY_SIZE) == (NA + NB) - 600 - 250


def test_adaptive_independent_order_does_not_depend_on_the_module_order():
    toy = Toy()
    _, ab = P.prune(toy, "adaptive", X=X_TOY, tp=43.0, modules=["a", "b"], input_size=TOY_SIZE)
    _, ba = P.prune(toy, "adaptive", X=X_TOY, tp=43.0, modules=["b", "a"], input_size=TOY_SIZE)
    assert ab.module_sparsity == ba.module_sparsity
    assert ab.layer_sparsity == ba.layer_sparsity
    # the cumulative reading does depend on it (the first module spends the budget)
    _, cab = P.prune(toy, "adaptive", X=X_TOY, tp=43.0, modules=["a", "b"], input_size=TOY_SIZE, order="cumulative")
    _, cba = P.prune(toy, "adaptive", X=X_TOY, tp=43.0, modules=["b", "a"], input_size=TOY_SIZE, order="cumulative")
    assert cab.module_sparsity != cba.module_sparsity


def test_adaptive_independent_macs_grow_with_tp_and_trials_are_reused():
    toy = Toy()
    probe = P.Probe(toy, X_TOY, ["a", "b"])
    cache: dict = {}
    macs = [P.sweep(probe, tp, 1e-3, input_size=TOY_SIZE, cache=cache).macs for tp in (35.0, 40.0, 45.0, 50.0, 60.0)]
    assert macs == sorted(macs)
    first = P.sweep(P.Probe(toy, X_TOY, ["a", "b"]), 41.0, 1e-3, input_size=TOY_SIZE)
    again = P.sweep(probe, 41.0, 1e-3, input_size=TOY_SIZE, cache=cache)
    assert again.counts == first.counts
    assert again.steps < first.steps  # bisection midpoints repeat across thresholds


def test_adaptive_rejects_an_unknown_order():
    with pytest.raises(ValueError, match="order must be one of"):
        P.prune(Toy(), "adaptive", X=X_TOY, modules=["a"], input_size=TOY_SIZE, order="forward")


def test_adaptive_module_alone_and_the_paper_threshold():
    toy = Toy()
    _, alone = P.prune(toy, "adaptive", X=X_TOY, tp=40.0, modules=["b"], input_size=TOY_SIZE)
    assert alone.module_sparsity == {"b": 0.5}
    assert alone.details["uncovered_layers"] == ["a"]
    # at the paper's 50 dB the budget is 1500 * 1e-5 = 0.015: 78 weights of a, then none of b (cumulative)
    # or b alone 58 (independent)
    _, strict = P.prune(toy, "adaptive", X=X_TOY, modules=["a", "b"], input_size=TOY_SIZE, order="cumulative")
    assert strict.details["tp"] == 50.0
    assert strict.module_sparsity == {"a": pytest.approx(78 / 1000), "b": 0.0}
    _, alone50 = P.prune(toy, "adaptive", X=X_TOY, modules=["a", "b"], input_size=TOY_SIZE)
    assert alone50.module_sparsity == {"a": pytest.approx(78 / 1000), "b": pytest.approx(58 / 500)}


def test_dream_budget_finds_the_least_damaging_allocation():
    """On the toy, the output error of pruning weight w is w^2 / 1500 and adds exactly, so the best
    way to save 800 MACs (one per weight) removes the 800 smallest weights of the two layers:
    all 600 small ones of a (0.6) and 200 of b (0.4), both on the default 1/40 grid."""
    toy = Toy()
    target = (NA + NB) - 800
    student, report = P.prune(toy, "dream-budget", X=X_TOY, target_macs=target, modules=["a", "b"],
                              input_size=TOY_SIZE)
    assert report.method == "dream-budget" and report.details["beyond_the_paper"]
    assert report.module_sparsity == {"a": pytest.approx(0.6), "b": pytest.approx(0.4)}
    assert report.macs_after == count_macs(student, TOY_SIZE) == target
    w_all = torch.sort(torch.cat(toy_weights()))[0].double()
    best = float((w_all[:800] ** 2).sum()) / (NA + NB)
    assert report.details["mse_on_X"] == pytest.approx(best, rel=1e-6)
    assert report.details["mse_predicted"] == pytest.approx(best, rel=1e-6)
    # uniform l1 at the same MACs cuts both layers at 53 %, so it removes 0.9-weights of b
    l1, _ = P.prune(toy, "l1-uniform", target_macs=target, input_size=TOY_SIZE)
    with torch.no_grad():
        err_l1 = float(((l1(X_TOY) - toy(X_TOY)) ** 2).mean())
    assert err_l1 > 5 * best


def test_dream_budget_hits_an_off_grid_target_within_0p1_percent():
    toy = Toy()
    target = (NA + NB) - 777
    student, report = P.prune(toy, "dream-budget", X=X_TOY, target_macs=target, modules=["a", "b"],
                              input_size=TOY_SIZE, grid=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert abs(count_macs(student, TOY_SIZE) - target) <= 1e-3 * target and report.search["hit"]


def test_dream_budget_needs_x_and_a_target():
    with pytest.raises(ValueError, match="needs X="):
        P.prune(Toy(), "dream-budget", target_macs=1000, modules=["a"], input_size=TOY_SIZE)
    with pytest.raises(ValueError, match="target_macs="):
        P.prune(Toy(), "dream-budget", X=X_TOY, modules=["a"], input_size=TOY_SIZE)


def test_sensitivity_map_of_the_toy():
    pytest.importorskip("pandas")
    toy = Toy()
    df = P.sensitivity_map(toy, X_TOY, ["a", "b"], [0.0, 0.3, 0.6, 0.61], progress=False)
    assert list(df.columns) == ["a", "b"] and list(df.index) == [0.0, 0.3, 0.6, 0.61]
    wa, wb = (torch.sort(w)[0].double() for w in toy_weights())
    for s in df.index:
        for col, w, n in (("a", wa, NA), ("b", wb, NB)):
            k = round(s * n)
            exp = 120.0 if k == 0 else expected_psnr(float((w[:k] ** 2).sum()))
            assert df.loc[s, col] == pytest.approx(exp, abs=1e-3), (s, col)
    assert df.attrs["forwards"] == 8  # student forwards; the teacher ran once, outside this count
    assert not any(hasattr(m, "weight_mask") for m in toy.modules())


def test_teacher_runs_once_and_is_untouched():
    toy = Toy()
    calls = []
    toy.register_forward_pre_hook(lambda m, args: calls.append(m is toy))
    before = {k: v.clone() for k, v in toy.state_dict().items()}
    student, _ = P.prune(toy, "adaptive", X=X_TOY, tp=40.0, eps=1e-2, modules=["a", "b"], input_size=TOY_SIZE)
    # the teacher itself ran once on X (+ once for the MACs shape probe); the student ran the trials
    assert calls.count(True) <= 2 and calls.count(False) > 10
    assert all(torch.equal(before[k], v) for k, v in toy.state_dict().items())
    assert student is not toy and hasattr(student.a, "weight_mask")


def _small(name):
    path = Path(DATA_SAMPLES) / "teachers" / f"{name}_small.pt"
    if path.is_file():
        return models.from_checkpoint(path).eval()
    torch.manual_seed(0)
    return models.build(name, "small").eval()


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_adaptive_target_macs_within_0p1_percent(name):
    teacher = _small(name)
    target = P.paper_target_macs(teacher)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    # coarse settings keep the test short: 4 trials per module (while r - l >= 1/8), at most 2 sweeps; the exact
    # adjustment (step 3) must still land within 0.1 %
    student, report = P.prune(teacher, "adaptive", X=x, target_macs=target, eps=1 / 8, max_sweeps=2)
    assert abs(count_macs(student) - target) <= 1e-3 * target
    assert report.macs_after == count_macs(student) and report.search["hit"]
    assert 1 <= report.search["steps"] <= 2
    assert report.details["tp"] in [s["tp"] for s in report.details["sweeps"]]
    with torch.no_grad():
        got = psnr_torch(models.restore(student.eval(), x), models.restore(teacher, x))
    assert got == pytest.approx(report.details["psnr_on_X"], abs=1e-6)


def test_compare_methods_small_hinet():
    pytest.importorskip("pandas")
    teacher = _small("hinet")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    sets = {"toy": [{"input": torch.rand(3, 32, 32, generator=g), "target": torch.rand(3, 32, 32, generator=g)}
                    for _ in range(2)]}
    target = P.paper_target_macs(teacher)
    comp = P.compare_methods(teacher, x, sets, target_macs=target, progress=False,
                             method_options={"adaptive": {"eps": 1 / 16, "max_sweeps": 2}})
    t = comp.table
    assert list(t.index) == ["original", "l1-uniform", "l1-global", "erk", "lamp", "adaptive"]
    assert (t.loc[t.index != "original", "macs_error_pct"].abs() <= 0.1).all()
    assert {"toy/psnr", "toy/ssim", "average/psnr", "psnr_X"} <= set(t.columns)
    assert t.loc["original", "psnr_X"] == pytest.approx(120.0)
    assert set(comp.layers["method"]) == set(t.index) - {"original"}
    assert len(comp.layers) == 5 * len(P.prunable_layers(teacher))
    assert "| adaptive |" in comp.markdown()
