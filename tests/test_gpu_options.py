"""The options that fit the paper's configuration on a GPU (dreamlib.memory), tested on CPU:
teacher activation checkpointing (same gradients), bf16/fp16 autocast (runs, x stays fp32),
the out-of-memory message, the config keys, and benchmarks/bench_gpu.py in tiny mode."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from dreamlib import models
from dreamlib.distill import DistillConfig, DreamDistiller, ResumeMismatchError, distill
from dreamlib.dream import Dreamer, make_targets
from dreamlib.memory import (DistillOutOfMemoryError, autocast, checkpoint_blocks, checkpointed, oom_message)
from dreamlib.teachers import load_teacher

ROOT = Path(__file__).resolve().parents[1]


def _grads(teacher, checkpoint: bool, steps: int = 2):
    y = make_targets(2, 32, seed=3)
    d = Dreamer(teacher, y, seed=1, checkpoint=checkpoint)
    grads = []
    for _ in range(steps):
        d.step()
        grads.append(d.z.grad.detach().clone())
    return grads, d.x


@pytest.mark.parametrize("name", ["hinet", "mprnet", "durn", "agan"])
def test_checkpointing_gives_the_same_gradients(name):
    teacher = load_teacher(name, progress=False)
    teacher.train()  # the recomputation must still run in eval mode (Dreamer keeps `frozen` around the backward)
    plain, x_plain = _grads(teacher, False)
    ckpt, x_ckpt = _grads(teacher, True)
    for a, b in zip(plain, ckpt):
        scale = float(a.abs().max())
        assert scale > 0
        assert float((a - b).abs().max()) <= 1e-5 * scale, "checkpointed gradients to x differ"
    assert float((x_plain - x_ckpt).abs().max()) <= 1e-5
    assert teacher.training and all(p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all("forward" not in vars(teacher.get_submodule(n)) for n in checkpoint_blocks(teacher))  # unpatched


@pytest.mark.parametrize("name", ["hinet", "mprnet"])
def test_student_checkpointing_gives_the_same_weight_gradients(name):
    from dreamlib import prune as P

    teacher = load_teacher(name, progress=False)
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.4)
    grads = []
    for ckpt in (False, True):
        s = P.copy_model(student)
        runner = DreamDistiller(teacher, s, DistillConfig(steps=2, batch_size=2, crop=32, checkpoint_student=ckpt))
        runner.step()
        grads.append({n: p.grad.detach().clone() for n, p in s.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n, g in grads[0].items():
        assert float((g - grads[1][n]).abs().max()) <= 1e-5 * max(float(g.abs().max()), 1e-12), n


def test_checkpoint_blocks_of_hinet():
    net = models.build("hinet", "small")
    blocks = checkpoint_blocks(net)
    assert "down_path_1.0" in blocks and "sam12" in blocks and "cat12" in blocks and "down_path_1" not in blocks
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    with checkpointed(net):
        out = models.restore(net, x)
    out.mean().backward()
    assert x.grad is not None and all("forward" not in vars(net.get_submodule(n)) for n in blocks)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_dreaming_and_distillation_run(precision):
    teacher = load_teacher("hinet", progress=False)
    student = models.build("hinet", "small")
    student.load_state_dict(teacher.state_dict())
    runner = DreamDistiller(teacher, student, DistillConfig(steps=3, batch_size=2, crop=32, precision=precision))
    for _ in range(3):
        rec = runner.step()
        assert torch.isfinite(torch.tensor([rec.l_kd, rec.l_inv, rec.l_orth])).all()
    assert runner.dreamer.z.dtype == torch.float32  # the dreamed images stay fp32
    assert (runner.dreamer.scaler is not None) == (precision == "fp16") == (runner.scaler is not None)
    assert all(p.dtype == torch.float32 for p in student.parameters())


def test_autocast_is_a_no_op_in_fp32():
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_precision_settings_are_checked():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        DistillConfig(precision="fp8")
    with pytest.raises(ValueError, match="amp .* and precision 'bf16' are both set: keep precision only"):
        DistillConfig(amp=True, precision="bf16")
    from dreamlib.experiments.config import ConfigError, validate

    cfg = validate([("my.yaml", {"distill": {"precision": "bf16", "checkpoint_teacher": True}})])
    assert cfg.distill["precision"] == "bf16" and cfg.distill["checkpoint_teacher"] is True
    with pytest.raises(ConfigError, match=r"my.yaml: distill.precision must be one of fp32, bf16, fp16"):
        validate([("my.yaml", {"distill": {"precision": "half"}})])


def test_resume_accepts_other_checkpointing_but_not_other_precision(tmp_path):
    teacher = load_teacher("hinet", progress=False)

    def student():
        s = models.build("hinet", "small")
        s.load_state_dict(teacher.state_dict())
        return s

    state = tmp_path / "state.pt"
    base = dict(steps=4, batch_size=2, crop=32)
    distill(teacher, student(), DistillConfig(**base), state_path=state, stop_at=2, progress=False)
    _, log = distill(teacher, student(), DistillConfig(**base, checkpoint_teacher=True), state_path=state,
                     resume=True, progress=False)
    assert log.rows["step"] == [0, 1, 2, 3]
    with pytest.raises(ResumeMismatchError, match="precision: saved 'fp32', now 'bf16'"):
        distill(teacher, student(), DistillConfig(**base, precision="bf16"), state_path=state, resume=True,
                progress=False)


def test_out_of_memory_is_one_line_with_a_smaller_batch(monkeypatch):
    teacher = load_teacher("hinet", progress=False)
    student = models.build("hinet", "small")

    def boom(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                          "capacity of 15.77 GiB of which 1.2 GiB is free.")

    monkeypatch.setattr(DreamDistiller, "step", boom)
    with pytest.raises(DistillOutOfMemoryError) as e:
        distill(teacher, student, DistillConfig(steps=2, batch_size=8, crop=32), progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert "CUDA out of memory at dream+distill step 0 with a batch of 8 x 3 x 32 x 32" in msg
    assert "distill.batch_size 4 or smaller" in msg and "distill.precision: bf16" in msg
    assert "distill.checkpoint_teacher: true" in msg and "torchrun --nproc_per_node" in msg


def test_oom_suggestion_is_a_multiple_of_the_processes():
    msg = oom_message(batch_size=20, per_process=10, crop=256, precision="bf16", checkpoint_teacher=True,
                      world=4, step=3)
    assert re.search(r"distill.batch_size (\d+) or smaller", msg).group(1) == "8"
    assert "precision: bf16" not in msg and "checkpoint_teacher: true" not in msg


def test_cli_prints_the_out_of_memory_advice_on_one_line(monkeypatch, capsys):
    from dreamlib import cli

    def boom(args):
        raise DistillOutOfMemoryError("CUDA out of memory at dream+distill step 0 with a batch of 20; try less")

    monkeypatch.setattr(cli, "cmd_info", boom)  # build_parser reads it when main() runs
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dreamlib info: error: CUDA out of memory") and "\n" not in err


def test_bench_gpu_tiny_runs_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.md"
    report = bench.main(["--tiny", "--out", str(out)])
    assert report["device"] == "cpu" and report["mode"] == "tiny"
    rows = report["timings"]
    assert {r["precision"] for r in rows} == {"fp32", "bf16"}
    assert {r["checkpoint"] for r in rows} == {"off", "teacher", "student", "both"}
    est = {r["checkpoint"]: r for r in report["estimate"]}
    assert est["student"]["student_phase_gib_per_image"] < est["off"]["student_phase_gib_per_image"]
    assert est["teacher"]["teacher_phase_gib_per_image"] < est["off"]["teacher_phase_gib_per_image"]
    assert all(r["s_per_iter"] > 0 for r in rows)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "tiny" in out.read_text()


def test_paper_16gb_config_is_the_paper_config_with_the_memory_switches():
    from dreamlib.experiments.tables import CONFIG_DIR, load_config

    paper, small = load_config(CONFIG_DIR / "paper.yaml"), load_config(CONFIG_DIR / "paper_16gb.yaml")
    assert {k for k in paper if paper[k] != small[k]} == {"distill"}
    diff = {k for k in set(paper["distill"]) | set(small["distill"])
            if paper["distill"].get(k) != small["distill"].get(k)}
    assert diff == {"precision", "checkpoint_teacher", "checkpoint_student"}
    assert small["distill"]["batch_size"] == 20 and small["distill"]["crop"] == 256
