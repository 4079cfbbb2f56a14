"""One-stage dream-and-distill: one teacher forward per step, masks hold, exact resume, KD helps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamlib import models
from dreamlib import prune as P
from dreamlib.distill import DistillConfig, DreamDistiller, ResumeMismatchError, distill
from dreamlib.metrics import psnr_torch

IMAGES = {"a": np.random.default_rng(0).random((48, 48, 3)).astype(np.float32),
          "b": np.random.default_rng(1).random((40, 56, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    teacher = models.build("hinet", "small").eval()
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    return teacher, student


def cfg(**kw):
    base = dict(steps=6, reinit_every=4, batch_size=2, crop=32, lr_student=1e-3, seed=3)
    return DistillConfig(**{**base, **kw})


def clone(m):  # a trained masked model cannot be deep-copied directly
    pass
    return P.copy_model(m)


def test_teacher_runs_once_per_step(pair):
    teacher, student = pair
    calls = []
    h = teacher.register_forward_hook(lambda *a: calls.append(1))
    try:
        runner = DreamDistiller(teacher, clone(student), cfg(), images=IMAGES)
        for _ in range(3):
            runner.step()
    finally:
        h.remove()
    assert len(calls) == 3


def test_masks_hold_and_teacher_untouched(pair):
    teacher, student = pair
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = clone(student)
    zero_before = {n: (m.weight_mask == 0) for n, m in s.named_modules() if hasattr(m, "weight_mask")}
    orig_before = {n: m.weight_orig.detach().clone() for n, m in s.named_modules() if hasattr(m, "weight_orig")}
    distill(teacher, s, cfg(), images=IMAGES, progress=False)
    moved = False
    for n, m in s.named_modules():
        if n in zero_before:
            assert torch.all(m.weight[zero_before[n]] == 0), n
            moved |= not torch.equal(m.weight_orig, orig_before[n])
    assert moved, "the student was not trained"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_resume_is_exact(pair, tmp_path):
    teacher, student = pair
    a, b = clone(student), clone(student)
    torch.set_num_threads(1)
    distill(teacher, a, cfg(), images=IMAGES, progress=False)
    state = tmp_path / "state.pt"
    distill(teacher, b, cfg(), images=IMAGES, state_path=state, stop_at=3, progress=False)
    c = clone(student)  # a fresh process would rebuild the student from the pruned file
    _, log = distill(teacher, c, cfg(), images=IMAGES, state_path=state, resume=True, progress=False)
    assert len(log.rows["step"]) == 6
    for (k, va), (_, vc) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(va, vc), k


def test_a_finished_shorter_run_continues_into_the_longer_one(pair, tmp_path):
    teacher, student = pair
    torch.set_num_threads(1)
    a = clone(student)
    distill(teacher, a, cfg(steps=8), images=IMAGES, progress=False)
    state = tmp_path / "state.pt"
    distill(teacher, clone(student), cfg(steps=4), images=IMAGES, state_path=state, progress=False)
    c = clone(student)
    _, log = distill(teacher, c, cfg(steps=8), images=IMAGES, state_path=state, resume=True, progress=False)
    assert len(log.rows["step"]) == 8
    for (k, va), (_, vc) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(va, vc), k
    # fewer steps than the state already ran is another run
    with pytest.raises(ResumeMismatchError, match="steps"):
        distill(teacher, clone(student), cfg(steps=2), images=IMAGES, state_path=state, resume=True,
                progress=False)


def test_resume_with_other_config_is_refused(pair, tmp_path):
    teacher, student = pair
    state = tmp_path / "state.pt"
    distill(teacher, clone(student), cfg(), images=IMAGES, state_path=state, stop_at=2, progress=False)
    with pytest.raises(ResumeMismatchError, match="lambda_kd"):
        distill(teacher, clone(student), cfg(lambda_kd=2.0), images=IMAGES, state_path=state, resume=True,
                progress=False)
    with pytest.raises(FileNotFoundError):
        distill(teacher, clone(student), cfg(), images=IMAGES, state_path=tmp_path / "none.pt", resume=True,
                progress=False)


@pytest.mark.parametrize("source", ["dream", "noise", "self"])
def test_kd_brings_student_closer_to_teacher(pair, source):
    teacher, student = pair
    s = clone(student)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        t_out = models.restore(teacher, x)
        before = psnr_torch(models.restore(s.eval(), x), t_out)
    distill(teacher, s, cfg(steps=30, reinit_every=10, source=source, lr_student=2e-3), images=IMAGES, progress=False)
    with torch.no_grad():
        after = psnr_torch(models.restore(s.eval(), x), t_out)
    assert after > before + 0.5, (before, after)


def test_dream_only_leaves_student_unchanged(pair):
    teacher, student = pair
    s = clone(student)
    ref = {k: v.clone() for k, v in s.state_dict().items()}
    _, log = distill(teacher, s, cfg(kd=False), images=IMAGES, progress=False)
    assert all(torch.equal(v, ref[k]) for k, v in s.state_dict().items())
    assert np.isnan(log.rows["l_kd"]).all() and np.isfinite(log.rows["l_inv"]).all()


def test_bad_config():
    with pytest.raises(ValueError, match="source"):
        DistillConfig(source="imagenet")
    with pytest.raises(ValueError, match="self_kind"):
        DistillConfig(source="self", self_kind="snow")


def test_copy_model_after_training_forward(pair):
    import copy
    teacher, student = pair
    s = P.copy_model(student)
    s.train()
    models.restore(s, torch.rand(1, 3, 32, 32)).mean().backward()  # weight is now a non-leaf product
    with pytest.raises(RuntimeError):
        copy.deepcopy(s)
    c = P.copy_model(s)
    for (k, a), (_, b) in zip(s.state_dict().items(), c.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("freeze", [True, False])
def test_batchnorm_statistics_frozen_by_default(freeze):
    # DuRN is the one network with BatchNorm: dreamed batches must not overwrite its running means
    torch.manual_seed(0)
    teacher = models.build("durn", "small").eval()
    assert DistillConfig().freeze_bn
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.3)
    stats = {k: v.clone() for k, v in student.state_dict().items() if k.endswith("running_mean")}
    weights = {k: v.clone() for k, v in student.state_dict().items() if k.endswith("weight_orig")}
    assert stats and weights
    distill(teacher, student, cfg(steps=2, crop=32, freeze_bn=freeze), images=IMAGES, progress=False)
    after = student.state_dict()
    same_stats = all(torch.equal(after[k], v) for k, v in stats.items())
    assert same_stats == freeze
    assert any(not torch.equal(after[k], v) for k, v in weights.items())  # the weights did train
