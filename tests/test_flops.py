"""Tests of dreamlib.flops: hand-worked MACs in both conventions, the sparsity rule,
pruning masks, repeated modules, the shape cache and the official models' numbers
(REFERENCE.md §2).

The official models are never run for real: their layer shapes are measured with a
forward on the meta device (which warms dreamlib.flops' architecture-keyed cache),
and the count is then taken on an uninitialised CPU copy filled with ones.
"""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from dreamlib import flops, models
from dreamlib.flops import count_macs, count_params, macs_breakdown

torch.set_num_threads(1)

# ---------------------------------------------------------------- a hand-worked toy model
# input 1 x 3 x 16 x 16
#   conv1  Conv2d(3, 8, 3, pad 1)            -> 8x16x16:  8*16*16 * 3*3*3          = 55,296
#   up     ConvTranspose2d(8, 4, 2, stride 2) -> 4x32x32:
#            nni   (output size): 4*32*32 * 2*2*8                                  = 131,072
#            exact (input size):  8*16*16 * 2*2*4                                  =  32,768
#   down   Conv2d(4, 6, 3, stride 2, pad 1)   -> 6x16x16:  6*16*16 * 3*3*4         = 55,296
#   group  Conv2d(6, 6, 3, pad 1, groups 3)   -> 6x16x16:  6*16*16 * 3*3*6 / 3     = 27,648
#   fc     Linear(6, 10) after global pooling:  6*10                               =     60
CONV1, UP_NNI, UP_EXACT, DOWN, GROUP, FC = 55_296, 131_072, 32_768, 55_296, 27_648, 60
TOY_NNI = CONV1 + UP_NNI + DOWN + GROUP + FC
TOY_EXACT = CONV1 + UP_EXACT + DOWN + GROUP + FC
SIZE = (1, 3, 16, 16)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.down = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.group = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.up(x))
        x = self.group(self.down(x))
        return self.fc(x.mean((2, 3)))


class Twice(nn.Module):
    """The same conv applied twice (like AGAN's recurrent steps)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


def _nonzero_toy(seed=0):
    torch.manual_seed(seed)
    m = Toy()
    with torch.no_grad():
        for p in m.parameters():  # no accidental exact zeros
            p.copy_(p.sign() * (p.abs() + 0.01))
    return m


# ---------------------------------------------------------------- hand-worked counts

def test_toy_nni_and_exact():
    m = _nonzero_toy()
    assert count_macs(m, SIZE, "nni") == TOY_NNI
    assert count_macs(m, SIZE, "exact") == TOY_EXACT
    assert count_macs(m, SIZE) == TOY_NNI  # the paper's convention is the default


def test_toy_breakdown_per_layer():
    m = _nonzero_toy()
    rows = macs_breakdown(m, SIZE, "nni")
    assert [(r.name, r.kind) for r in rows] == [
        ("conv1", "Conv2d"), ("up", "ConvTranspose2d"), ("down", "Conv2d"), ("group", "Conv2d"), ("fc", "Linear")]
    assert [r.dense for r in rows] == [CONV1, UP_NNI, DOWN, GROUP, FC]
    assert all(r.density == 1.0 and r.macs == r.dense for r in rows)
    exact = macs_breakdown(m, SIZE, "exact")
    assert [r.dense for r in exact] == [CONV1, UP_EXACT, DOWN, GROUP, FC]
    for conv in ("nni", "exact"):
        assert sum(r.macs for r in macs_breakdown(m, SIZE, conv)) == count_macs(m, SIZE, conv)


def test_counts_are_per_sample():
    m = _nonzero_toy()
    assert count_macs(m, (3, 3, 16, 16), "nni") == TOY_NNI
    assert count_macs(m, (3, 3, 16, 16), "exact") == TOY_EXACT


def test_counts_scale_with_resolution():
    m = _nonzero_toy()
    # every conv map doubles in both sides: 4x the MACs; the Linear stays 60
    assert count_macs(m, (1, 3, 32, 32), "nni") == 4 * (TOY_NNI - FC) + FC


def test_unknown_convention_raises():
    with pytest.raises(ValueError, match="convention"):
        count_macs(_nonzero_toy(), SIZE, "thop")


# ---------------------------------------------------------------- sparsity

def test_zeroing_half_a_conv_halves_its_macs():
    m = _nonzero_toy()
    with torch.no_grad():
        m.conv1.weight.view(-1)[: m.conv1.weight.numel() // 2] = 0  # 108 of 216
    rows = {r.name: r for r in macs_breakdown(m, SIZE, "nni")}
    assert rows["conv1"].density == 0.5 and rows["conv1"].macs == CONV1 // 2
    assert count_macs(m, SIZE, "nni") == TOY_NNI - CONV1 // 2
    assert count_macs(m, SIZE, "exact") == TOY_EXACT - CONV1 // 2
    # bias zeros do not count (bias is excluded)
    with torch.no_grad():
        m.down.bias.zero_()
    assert count_macs(m, SIZE, "nni") == TOY_NNI - CONV1 // 2


def test_sparse_transposed_conv():
    m = _nonzero_toy()
    with torch.no_grad():
        m.up.weight[:, :, 0, 0] = 0  # a quarter of the taps
    assert count_macs(m, SIZE, "nni") == TOY_NNI - UP_NNI // 4
    assert count_macs(m, SIZE, "exact") == TOY_EXACT - UP_EXACT // 4


def test_l1_unstructured_masks_are_honoured():
    m = _nonzero_toy()
    prune.l1_unstructured(m.conv1, "weight", amount=0.25)  # 54 of 216 weights masked
    prune.l1_unstructured(m.fc, "weight", amount=0.5)      # 30 of 60
    assert hasattr(m.conv1, "weight_mask") and hasattr(m.conv1, "weight_orig")
    assert count_macs(m, SIZE, "nni") == TOY_NNI - CONV1 // 4 - FC // 2
    assert count_macs(m, SIZE, "exact") == TOY_EXACT - CONV1 // 4 - FC // 2
    prune.remove(m.conv1, "weight")  # mask made permanent: same count
    assert count_macs(m, SIZE, "nni") == TOY_NNI - CONV1 // 4 - FC // 2


def test_global_unstructured_matches_density():
    m = _nonzero_toy()
    params = [(m.conv1, "weight"), (m.up, "weight"), (m.down, "weight"), (m.group, "weight")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.6)
    expected = sum(r.dense * float((getattr(m, r.name).weight != 0).float().mean())
                   for r in macs_breakdown(m, SIZE, "nni"))
    assert abs(count_macs(m, SIZE, "nni") - expected) <= 5  # per-layer rounding only
    assert count_macs(m, SIZE, "nni") < 0.6 * TOY_NNI


# ---------------------------------------------------------------- repeated modules and the cache

def test_module_called_twice_is_counted_twice():
    m = Twice()
    once = 3 * 16 * 16 * 3 * 3 * 3  # 20,736
    assert count_macs(m, SIZE, "nni") == 2 * once
    rows = macs_breakdown(m, SIZE, "exact")
    assert len(rows) == 1 and rows[0].dense == 2 * once


def test_cache_avoids_second_forward_and_is_shared_by_copies():
    class CacheProbeNet(Toy):  # a class name no other test uses: the cache starts cold
        pass

    m = CacheProbeNet()
    calls = []
    m.register_forward_pre_hook(lambda mod, args: calls.append(1))
    size = (1, 3, 20, 24)
    first = count_macs(m, size, "nni")
    assert len(calls) == 1
    assert count_macs(m, size, "nni") == first
    assert count_macs(m, size, "exact") > 0
    assert macs_breakdown(m, size)
    assert len(calls) == 1
    # a pruned deep copy reuses the shapes (its hook list is copied too)
    twin = copy.deepcopy(m)
    with torch.no_grad():
        twin.conv1.weight.zero_()
    assert count_macs(twin, size, "nni") == first - 8 * 20 * 24 * 27
    assert len(calls) == 1
    # a new input size measures again
    count_macs(m, (1, 3, 24, 24), "nni")
    assert len(calls) == 2


def test_different_architecture_same_class_is_not_confused():
    a, b = Toy(), Toy()
    b.conv1 = nn.Conv2d(3, 8, 5, padding=2)  # same class, different layer shape
    assert count_macs(a, SIZE, "nni") != count_macs(b, SIZE, "nni")
    assert count_macs(b, SIZE, "nni") == TOY_NNI - CONV1 + 8 * 16 * 16 * 5 * 5 * 3


def test_counting_keeps_mode_and_batchnorm_stats():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count_macs(m, (2, 3, 8, 8))
    assert m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


# ---------------------------------------------------------------- parameters

def test_count_params_hand_worked():
    m = _nonzero_toy()
    n = (8 * 3 * 9 + 8) + (8 * 4 * 4 + 4) + (6 * 4 * 9 + 6) + (6 * 2 * 9 + 6) + (6 * 10 + 10)
    assert count_params(m) == n == sum(p.numel() for p in m.parameters())
    assert count_params(m, nonzero=True) == n
    prune.l1_unstructured(m.conv1, "weight", amount=0.25)
    assert count_params(m) == n  # masks do not remove parameters
    assert count_params(m, nonzero=True) == n - 54
    with torch.no_grad():
        m.fc.bias.zero_()
    assert count_params(m, nonzero=True) == n - 54 - 10


# ---------------------------------------------------------------- the official models (meta-device shapes)

@pytest.mark.parametrize("name, nni, exact", [
    ("hinet", 170.486, 157.60),
    ("mprnet", 140.982, 140.98),
    ("durn", 55.970, 46.31),
    ("agan", 89.388, 76.50),
])
def test_official_macs_at_256(name, nni, exact):
    size = (1, 3, 256, 256)
    with torch.device("meta"):
        meta = models.build(name, "official")
    dense = flops._dense_macs(meta, size)  # shape-only forward, warms the cache
    assert sum(v[0] for v in dense.values()) / 1e9 == pytest.approx(nni, abs=0.05)
    assert sum(v[1] for v in dense.values()) / 1e9 == pytest.approx(exact, abs=0.05)
    # the public API on a real (uninitialised, dense) copy of the same architecture
    real = meta.to_empty(device="cpu")
    with torch.no_grad():
        for p in real.parameters():
            p.fill_(1.0)
    calls = []
    real.register_forward_pre_hook(lambda mod, args: calls.append(1))
    assert count_macs(real, size, "nni") / 1e9 == pytest.approx(nni, abs=0.05)
    assert count_macs(real, size, "exact") / 1e9 == pytest.approx(exact, abs=0.05)
    assert not calls  # served from the cache, no 256x256 forward on the CPU
    # with every counted weight zeroed nothing is left to count
    with torch.no_grad():
        for m in real.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                m.weight.zero_()
    assert count_macs(real, size, "nni") == 0
