"""Tests of dreamlib.dream: Eq. 4 by hand, and the dreaming loop on a tiny frozen HINet.

The teacher is a 2-level, width-4 HINet (random init, ~5k parameters) so every
dreaming run here takes well under a second on one core; the properties tested
(L_inv decreases, x stays an image, teacher untouched, determinism, one teacher
forward per step whose output is handed out) do not depend on the weights.
"""
import math

import pytest
import torch

from dreamlib import models
from dreamlib.observe import extract_features
from dreamlib.dream import (Dreamer, Priors, batch_psnr, diversity, dream, make_targets,
                            orthogonality_loss, teacher_change)

torch.set_num_threads(1)

B, S = 4, 32


def tiny_teacher(seed: int = 0):
    torch.manual_seed(seed)
    return models.build("hinet", "small", wf=4, depth=2)


@pytest.fixture
def teacher():
    return tiny_teacher()


@pytest.fixture(scope="module")
def targets():
    return make_targets(B, S, seed=0)


def _manual_orth(pooled: torch.Tensor) -> float:
    f = pooled / pooled.norm(dim=1, keepdim=True)
    g = f @ f.t() - torch.eye(len(f))
    return float(torch.sqrt((g ** 2).sum()))


# ------------------------------------------------------------------ Eq. 4

def test_orth_identical_rows_give_sqrt12():
    row = torch.tensor([0.3, -1.2, 2.0, 0.5, 0.1])
    feats = torch.stack([row, 2 * row, 0.5 * row, 7 * row])  # same direction, any length
    assert orthogonality_loss(feats).item() == pytest.approx(math.sqrt(12), rel=1e-6)


def test_orth_orthonormal_rows_give_zero():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))
    feats = q[:4] * torch.tensor([[1.0], [3.0], [0.2], [5.0]])  # orthogonal rows, unequal norms
    assert orthogonality_loss(feats).item() == pytest.approx(0.0, abs=1e-5)


def test_orth_hand_worked_pair():
    # two rows at 60 degrees: cos = 1/2, off-diagonal entries 1/2 twice -> sqrt(1/2)
    feats = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert orthogonality_loss(feats).item() == pytest.approx(math.sqrt(0.5), rel=1e-6)


def test_orth_pools_feature_maps_by_their_mean():
    fmap = torch.randn(5, 7, 6, 9, generator=torch.Generator().manual_seed(2)) + 0.3
    assert orthogonality_loss(fmap).item() == pytest.approx(_manual_orth(fmap.mean(dim=(2, 3))), rel=1e-5)
    assert orthogonality_loss(fmap).item() == pytest.approx(orthogonality_loss(fmap.mean(dim=(2, 3))).item(),
                                                            rel=1e-6)


def test_orth_gradient_reaches_the_input():
    fmap = torch.randn(4, 8, 5, 5, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    orthogonality_loss(fmap).backward()
    assert fmap.grad is not None and torch.isfinite(fmap.grad).all() and fmap.grad.abs().sum() > 0


def test_batch_psnr_known_value():
    y = torch.full((2, 3, 8, 8), 0.5)
    assert batch_psnr(y + 0.1, y) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB


# ------------------------------------------------------------------ dreaming

# sigmoid steps are at most 1/4 as large in pixel space, so it gets a looser bar
@pytest.mark.parametrize("param,ratio", [("clamp", 0.6), ("sigmoid", 0.9)])
def test_dreaming_lowers_l_inv_and_keeps_an_image(teacher, targets, param, ratio):
    steps = []
    res = dream(teacher, targets, steps=15, seed=0, param=param, progress=False, callback=steps.append)
    assert len(res.log["l_inv"]) == 15 and res.steps == 15
    assert res.final_l_inv < ratio * res.log["l_inv"][0]
    assert res.log["psnr"][-1] > res.log["psnr"][0]
    for x in [res.x] + [s.x for s in steps]:
        assert x.shape == targets.shape
        assert x.min() >= 0.0 and x.max() <= 1.0


def test_teacher_is_left_untouched(teacher, targets):
    teacher.train()
    frozen_param = next(teacher.parameters())
    frozen_param.requires_grad_(False)  # a caller's own setting must survive
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    flags = [p.requires_grad for p in teacher.parameters()]
    dream(teacher, targets, steps=5, progress=False)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in teacher.parameters())
    assert [p.requires_grad for p in teacher.parameters()] == flags
    assert teacher.training


def test_dreaming_is_deterministic_for_a_seed(teacher, targets):
    a = dream(teacher, targets, steps=6, seed=5, progress=False)
    b = dream(teacher, targets, steps=6, seed=5, progress=False)
    c = dream(teacher, targets, steps=6, seed=6, progress=False)
    assert torch.equal(a.x, b.x) and a.log == b.log
    assert not torch.allclose(a.x, c.x)


def test_step_hands_out_the_teacher_forward_it_used(teacher, targets):
    calls = []
    handle = teacher.register_forward_hook(lambda *a: calls.append(1))
    try:
        d = Dreamer(teacher, targets, seed=0)
        d.step()
        rec = d.step()
    finally:
        handle.remove()
    assert len(calls) == 2, "the teacher must run exactly once per step"
    assert rec.step == 1 and rec.teacher_in is rec.x  # no augmentation: fed x itself
    # the recorded output belongs to x *before* the update, not to the updated d.x
    with torch.no_grad():
        fresh = models.restore(teacher.eval(), rec.x)
        after = models.restore(teacher, d.x)
    assert torch.allclose(rec.teacher_out, fresh, atol=1e-5)
    assert not torch.allclose(rec.teacher_out, after, atol=1e-4)
    assert rec.l_inv == pytest.approx(float((fresh - targets).abs().mean()), rel=1e-4)
    assert not rec.teacher_out.requires_grad and not rec.x.requires_grad
    res = dream(teacher, targets, steps=3, progress=False)
    with torch.no_grad():
        assert torch.allclose(res.teacher_out, models.restore(teacher, res.x), atol=1e-5)


def test_jitter_and_flip_pair_input_output_and_target(teacher, targets):
    d = Dreamer(teacher, targets, seed=0, priors=Priors(jitter=3, flip=True, tv=1e-3, l2=1e-4))
    recs = [d.step() for _ in range(6)]
    assert any(not torch.equal(r.teacher_in, r.x) for r in recs), "jitter/flip never changed the input"
    for r in recs:
        with torch.no_grad():
            assert torch.allclose(models.restore(teacher.eval(), r.teacher_in), r.teacher_out, atol=1e-5)
        # the target went through the same transform as the input: the roll/flip that maps
        # targets -> r.target maps x -> teacher_in
        matches = [(sh, fl) for sh in [(i, j) for i in range(-3, 4) for j in range(-3, 4)] for fl in (0, 1)
                   if torch.equal(_tf(targets, sh, fl), r.target)]
        assert any(torch.equal(_tf(r.x, sh, fl), r.teacher_in) for sh, fl in matches)


def _tf(t, shift, flip):
    t = torch.roll(t, shift, dims=(2, 3))
    return t.flip(3) if flip else t


def test_orthogonality_term_lowers_l_orth():
    # At random init the pooled features are dominated by the biases (all images give
    # nearly the same vector); with biases zeroed and width 8 they follow the input.
    one = make_targets(B, S, seed=0, repeat_one=True)  # Fig. 7 setting: one target, B times
    for seed in (1, 2):
        torch.manual_seed(seed)
        teacher = models.build("hinet", "small", wf=8, depth=2)
        with torch.no_grad():
            for name, p in teacher.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
        final = {}
        for lam in (0.0, 0.5):
            res = dream(teacher, one, steps=25, seed=0, lambda_orth=lam, progress=False)
            final[lam] = orthogonality_loss(extract_features(teacher, None, res.x, progress=False)).item()
        assert final[0.0] > 3.3  # the one repeated target gives (nearly) identical features ...
        assert final[0.5] < final[0.0] - 0.5, (seed, final)  # ... unless L_orth spreads them


def test_cosine_schedules_reach_their_ends(teacher, targets):
    res = dream(teacher, targets, steps=5, lr=0.05, lambda_orth=0.2, lr_schedule="cosine", orth_schedule="cosine",
                progress=False)
    assert res.log["lr"][0] == pytest.approx(0.05) and res.log["lr"][-1] == pytest.approx(0.05 * 0.02)
    assert res.log["lambda_orth"][0] == pytest.approx(0.2) and res.log["lambda_orth"][-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(res.log["lr"], res.log["lr"][1:]))
    const = dream(teacher, targets, steps=3, lambda_orth=0.2, progress=False)
    assert const.log["lr"] == [0.05] * 3 and const.log["lambda_orth"] == [0.2] * 3
    with pytest.raises(ValueError):
        Dreamer(teacher, targets, orth_schedule="cosine")  # no total_steps


# ------------------------------------------------------------------ targets and diversity

def test_make_targets_shapes_repeat_and_determinism():
    a = make_targets(7, 48, seed=1)  # more targets than the 3 dream images: pictures repeat
    assert a.shape == (7, 3, 48, 48) and a.dtype == torch.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, make_targets(7, 48, seed=1))
    assert not torch.equal(a, make_targets(7, 48, seed=2))
    assert len({tuple(t.flatten()[:64].tolist()) for t in a}) == 7  # different crops
    one = make_targets(5, 48, seed=1, repeat_one=True, image="tulips")
    assert all(torch.equal(one[0], t) for t in one)
    with pytest.raises(ValueError):
        make_targets(2, 48, repeat_one=True, image="no-such-picture")


def test_diversity_zero_for_identical_and_translation_invariant(teacher):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 32, 32, generator=g).repeat(4, 1, 1, 1)
    rain = torch.zeros(1, 3, 32, 32)
    rain[..., ::5, :] = 0.4  # horizontal lines
    same = torch.cat([y[:1] + torch.roll(rain, (k, 2 * k), dims=(2, 3)) for k in range(4)])
    assert diversity(same.clamp(0, 1), y) < 0.02  # shifted copies of one rain layer
    vertical = rain.transpose(2, 3)
    mixed = torch.cat([y[:1] + rain, y[:1] + vertical, y[:1] + rain, y[:1] + vertical])
    assert diversity(mixed.clamp(0, 1), y) > 0.1
    assert diversity(y, teacher=teacher) == pytest.approx(0.0, abs=1e-5)
    assert diversity(torch.rand(4, 3, 32, 32, generator=g), teacher=teacher) > 0.0
    with pytest.raises(ValueError):
        diversity(same)


# ------------------------------------------------------------ coverage and the residual floor

def near_identity_teacher(scale: float = 0.3):
    """A tiny HINet whose last residual conv is shrunk: it changes its dreams little,
    like the small DuRN whose plain dreams collapse to x = y."""
    t = tiny_teacher()
    with torch.no_grad():
        t.last.weight.mul_(scale)
        t.last.bias.zero_()
    return t


def test_teacher_change_counts_pixels_like_a_direct_count(teacher):
    x = torch.rand(5, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    got = teacher_change(teacher, x, threshold=20, batch_size=2)  # chunks of 2, 2, 1
    with torch.no_grad():
        d = (models.restore(teacher, x).clamp(0, 1) - x).abs()
    frac = float((d.max(dim=1).values > 20 / 255).float().mean())
    assert 0.0 < frac < 1.0  # the threshold cuts somewhere, so the count is informative
    assert got["changed_frac"] == pytest.approx(frac, abs=1e-9)
    assert got["mean_abs"] == pytest.approx(float(d.mean()), rel=1e-5)
    assert teacher_change(teacher, x, threshold=256)["changed_frac"] == 0.0
    assert teacher_change(teacher, x, threshold=-1)["changed_frac"] == 1.0
    with pytest.raises(ValueError, match="B,3,H,W"):
        teacher_change(teacher, x[0])


def test_no_residual_floor_is_plain_eq5_and_an_inactive_floor_changes_nothing(targets):
    t = near_identity_teacher()
    plain = dream(t, targets, steps=8, seed=0, progress=False)
    assert plain.log["l_res"] == [0.0] * 8
    # a floor below every image's change from the first step on never acts: same dreams, bit for bit
    tiny_floor = dream(t, targets, steps=8, seed=0, progress=False, residual_floor=1e-6)
    assert torch.equal(plain.x, tiny_floor.x)


def test_residual_floor_penalty_value_and_effect(targets):
    t = near_identity_teacher()
    d = Dreamer(t, targets, residual_floor=0.1, lambda_res=20.0, seed=0)
    step = d.step()
    change = (step.teacher_out - step.teacher_in).abs().flatten(1).mean(1)
    assert step.l_res == pytest.approx(float(torch.relu(0.1 - change).mean()), rel=1e-5)
    assert step.l_res > 0
    plain = dream(t, targets, steps=60, seed=0, progress=False)
    floored = dream(t, targets, steps=60, seed=0, progress=False, residual_floor=0.1, lambda_res=20.0)
    before, after = teacher_change(t, plain.x), teacher_change(t, floored.x)
    # measured: 1.1 % -> 21 % of pixels changed by more than 30/255
    assert after["changed_frac"] > 5 * before["changed_frac"] + 0.05
    assert floored.log["l_res"][-1] < floored.log["l_res"][0]


@pytest.mark.parametrize("bad", [dict(residual_floor=0.0), dict(residual_floor=1.5),
                                 dict(residual_floor=0.1, lambda_res=-1.0),
                                 dict(residual_floor=0.1, lambda_res=float("nan"))])
def test_residual_floor_bad_values_raise(targets, bad):
    with pytest.raises(ValueError, match="residual_floor|lambda_res"):
        Dreamer(tiny_teacher(), targets, **bad)
