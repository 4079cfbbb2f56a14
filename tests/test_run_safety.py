"""Runs that cannot lie: resume only continues its own run, and non-finite numbers stop a run
instead of becoming a table. Each case asserts the error class and the field or step it names."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dreamlib import models
from dreamlib import prune as P
from dreamlib.distill import DistillConfig, ResumeMismatchError, distill
from dreamlib.guards import NonFiniteError

IMAGES = {"a": np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return models.build("hinet", "small").eval()


def cfg(**kw):
    return DistillConfig(**{**dict(steps=4, reinit_every=4, batch_size=2, crop=32, lr_student=1e-3, seed=3), **kw})


def _state(teacher, tmp_path, student, **kw):
    state = tmp_path / "state.pt"
    distill(teacher, P.copy_model(student), cfg(), images=IMAGES, state_path=state, stop_at=2, progress=False, **kw)
    return state


class _Obj:
    """Any pickled object that is not a tensor or a plain value."""


# ------------------------------------------------------------------ fingerprinted resume

def test_resume_with_another_teacher_is_refused(teacher, tmp_path):
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    state = _state(teacher, tmp_path, student)
    other = models.build("hinet", "small").eval()
    with torch.no_grad():
        next(other.parameters()).add_(0.01)  # one weight tensor differs
    with pytest.raises(ResumeMismatchError, match="teacher differs"):
        distill(other, P.copy_model(student), cfg(), images=IMAGES, state_path=state, resume=True, progress=False)


def test_resume_with_other_masks_is_refused(teacher, tmp_path):
    """Another MACs target (or method) prunes other weights: the student it starts from differs."""
    a, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    b, _ = P.prune(teacher, "l1-uniform", sparsity=0.6)
    state = _state(teacher, tmp_path, a)
    with pytest.raises(ResumeMismatchError, match="student_start differs"):
        distill(teacher, P.copy_model(b), cfg(), images=IMAGES, state_path=state, resume=True, progress=False)


def test_resume_with_another_caller_field_is_refused_and_names_it(teacher, tmp_path):
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    state = _state(teacher, tmp_path, student, fingerprint={"target_macs": 100, "data": "synthetic"})
    with pytest.raises(ResumeMismatchError, match=r"target_macs differs \(saved 100, now 120\)"):
        distill(teacher, P.copy_model(student), cfg(), images=IMAGES, state_path=state, resume=True,
                progress=False, fingerprint={"target_macs": 120, "data": "synthetic"})
    # the same run continues
    _, log = distill(teacher, P.copy_model(student), cfg(), images=IMAGES, state_path=state, resume=True,
                     progress=False, fingerprint={"target_macs": 100, "data": "synthetic"})
    assert log.rows["step"] == [0, 1, 2, 3]


def test_a_state_without_fingerprint_is_refused(teacher, tmp_path):
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    state = _state(teacher, tmp_path, student)
    st = torch.load(state, weights_only=True)
    del st["fingerprint"]
    torch.save(st, state)
    with pytest.raises(ResumeMismatchError, match="older dreamlib"):
        distill(teacher, P.copy_model(student), cfg(), images=IMAGES, state_path=state, resume=True, progress=False)


# ------------------------------------------------------------------ non-finite guards

def test_a_nan_teacher_weight_stops_dreaming_with_the_step(tmp_path):
    from dreamlib.dream import dream, make_targets

    bad = models.build("hinet", "small").eval()
    with torch.no_grad():
        next(bad.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"dreaming loss .* step 0.*teacher's weights"):
        dream(bad, make_targets(2, 32, seed=0, images=IMAGES), steps=3, progress=False)


@pytest.mark.parametrize("field,value", [("lambda_orth", math.inf), ("lr_student", -1.0), ("lr_x", float("nan")),
                                         ("lambda_kd", "abc"), ("steps", 0), ("crop", 0), ("batch_size", 2.5)])
def test_bad_distill_settings_are_refused_before_any_step(field, value):
    with pytest.raises(ValueError, match=field):
        cfg(**{field: value})


def test_a_diverging_student_stops_distillation_and_writes_no_state(teacher, tmp_path):
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    state = tmp_path / "state.pt"
    with pytest.raises(NonFiniteError, match="lr_student"):
        distill(teacher, P.copy_model(student), cfg(steps=40, reinit_every=40, lr_student=1e6), images=IMAGES,
                state_path=state, checkpoint_every=1, progress=False)
    if state.exists():  # states written before it diverged hold finite weights only
        st = torch.load(state, weights_only=True)
        assert all(bool(torch.isfinite(v).all()) for v in st["student"].values() if v.is_floating_point())


def test_evaluation_refuses_non_finite_outputs(teacher):
    from dreamlib.evaluate import evaluate

    bad = P.copy_model(teacher)
    with torch.no_grad():
        for p in bad.parameters():
            p.fill_(float("nan"))
    item = {"input": torch.rand(3, 32, 32), "target": torch.rand(3, 32, 32)}
    with pytest.raises(NonFiniteError, match="NaN/Inf"):
        evaluate(bad, {"set": [item]}, progress=False)
    with pytest.raises(ValueError, match="limit"):
        evaluate(teacher, {"set": [item]}, progress=False, limit=0)


def test_results_json_never_holds_nan(tmp_path):
    from dreamlib.io import atomic_write_json

    path = atomic_write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.5}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": 2.5}}


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    from dreamlib.models.checkpoint import CheckpointError, read_checkpoint

    net = models.build("hinet", "small")
    sd = net.state_dict()
    sd[next(iter(sd))] = sd[next(iter(sd))].clone().fill_(float("inf"))
    torch.save({"params": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="non-finite"):
        read_checkpoint(tmp_path / "bad.pth")


def test_unreadable_checkpoints_raise_checkpoint_error(tmp_path):
    from dreamlib.models.checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint
    from dreamlib.prune import load_pruned

    text = tmp_path / "model.pth"
    text.write_text("hello, this is not a checkpoint\n")  # torch.load raised a bare KeyError: 101 here
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoint(text)
    with pytest.raises(CheckpointError):
        load_pruned(text)

    evil = tmp_path / "evil.pth"
    torch.save({"params": {}, "x": _Obj()}, evil)
    with pytest.raises(UnsafeCheckpointError, match="not load for safety.*Weights only load failed"):
        read_checkpoint(evil)


# ------------------------------------------------------------------ SIGKILL, then the same run resumes

_KILLED_RUN = r"""
import os, signal, sys
import numpy as np, torch
sys.path.insert(0, {root!r})
from dreamlib import models
from dreamlib import prune as P
from dreamlib.distill import DistillConfig, distill
torch.set_num_threads(1)
torch.manual_seed(0)
teacher = models.build("hinet", "small").eval()
student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
images = {{"a": np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)}}
cfg = DistillConfig(steps=6, reinit_every=4, batch_size=2, crop=32, lr_student=1e-3, seed=3)
def die(rec, runner):
    if runner.t == 3:
        os.kill(os.getpid(), signal.SIGKILL)
distill(teacher, student, cfg, images=images, state_path={state!r}, checkpoint_every=1, progress=False,
        callback=die, fingerprint={{"target_macs": 7}})
"""


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    import signal
    import subprocess
    import sys

    from dreamlib import settings

    state = tmp_path / "state.pt"
    p = subprocess.run([sys.executable, "-c", _KILLED_RUN.format(root=str(settings.REPO_ROOT), state=str(state))],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert state.is_file() and not list(tmp_path.glob("*.tmp"))  # the state is whole, no partial file
    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = models.build("hinet", "small").eval()
    images = {"a": np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)}
    c = dict(steps=6, reinit_every=4, batch_size=2, crop=32, lr_student=1e-3, seed=3)
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.5)
    full, _ = distill(teacher, P.copy_model(student), DistillConfig(**c), images=images, progress=False)
    resumed, log = distill(teacher, P.copy_model(student), DistillConfig(**c), images=images, state_path=state,
                           resume=True, progress=False, fingerprint={"target_macs": 7})
    assert log.rows["step"] == list(range(6))
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_zero_is_never_unset():
    """None means 'use the default'; 0 is a value, refused where it makes no sense (it used to mean unset)."""
    from dreamlib.dream import make_targets
    from dreamlib.experiments.tables import run_table

    with pytest.raises(ValueError, match="target_gflops must be > 0"):
        run_table("table1", "hinet", target_gflops=0.0)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        make_targets(batch_size=0, crop=32, images=IMAGES)
