"""Multi-process dream + distill (dreamlib.distributed): 2 processes on CPU (gloo) equal 1 process.

Both runs train the pruned small HINet for 4 steps on a global batch of 4 dreamed 32x32 images
(tests/dist_worker.py): the 2-process run with ``python -m torch.distributed.run --standalone
--nproc_per_node 2`` (what ``torchrun`` is), each rank dreaming 2 of the 4 images.

What must agree, and the tolerance:

- the dreamed batch (the state's global x, gathered from both ranks): exactly (measured 0.0):
  every rank draws the same global noise and computes the same per-image gradients;
- the logged L_KD of every step: relative 1e-5;
- the student's restored images of a fixed probe batch: 1e-5 (0-1 pixel units). The
  gradients of the two runs differ in the last bits only (the all-reduce adds the two halves'
  mean gradients in another order than one mean over 4 images), but Adam turns a gradient
  that is zero in exact arithmetic (the conv bias in front of HINet's instance norm) into a
  full lr step of noise-given sign, so such weights differ by up to 2 x lr per step (5e-4 was
  measured at lr 1e-3) while the outputs cannot see them. The student's weights change by
  about 4e-3 over the run, and a rank dreaming the wrong images changes the outputs by far
  more than 1e-5.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import dist_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "dist_worker.py"


def torchrun(out: Path, *args, nproc: int = 2, timeout: int = 240) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("DREAMLIB_DEVICE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
           str(nproc), str(WORKER), str(out), *args]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"torchrun failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process, the whole batch of 4."""
    out = tmp_path_factory.mktemp("one")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dist_worker.run(out)
    finally:
        torch.set_num_threads(threads)
    return out


def load(out: Path) -> dict:
    st = torch.load(out / "state.pt", map_location="cpu", weights_only=False)
    return {"x": st["dreamer"]["z"], "log": torch.load(out / "log.pt"), "outputs": torch.load(out / "outputs.pt"),
            "t": st["t"]}


def assert_same_run(a: dict, b: dict) -> None:
    assert a["t"] == b["t"] == dist_worker.CONFIG["steps"]
    assert a["x"].shape == b["x"].shape == (dist_worker.CONFIG["batch_size"], 3, 32, 32)
    dx = float((a["x"] - b["x"]).abs().max())
    assert dx <= 1e-6, f"dreamed batches differ by {dx:.3g} (max abs)"
    la, lb = torch.tensor(a["log"]["l_kd"]), torch.tensor(b["log"]["l_kd"])
    assert torch.allclose(la, lb, rtol=1e-5, atol=0), f"L_KD logs differ: {la.tolist()} vs {lb.tolist()}"
    do = float((a["outputs"] - b["outputs"]).abs().max())
    assert do <= 1e-5, f"students' outputs differ by {do:.3g} (max abs, 0-1 units; tolerance 1e-5)"


def test_two_processes_equal_one(one_process, tmp_path):
    torchrun(tmp_path)
    assert_same_run(load(one_process), load(tmp_path))


def test_two_processes_resume(one_process, tmp_path):
    """Stopped after 2 steps and resumed by 2 processes; the same state also resumes in 1 process."""
    torchrun(tmp_path, "--stop-at", "2")
    st = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=False)
    assert st["t"] == 2 and st["dreamer"]["z"].shape[0] == dist_worker.CONFIG["batch_size"]  # the global batch
    single = tmp_path / "single"
    single.mkdir()
    (single / "state.pt").write_bytes((tmp_path / "state.pt").read_bytes())
    torchrun(tmp_path, "--resume")
    assert_same_run(load(one_process), load(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dist_worker.run(single, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert_same_run(load(one_process), load(single))


def test_uneven_batch_is_refused():
    from dreamlib.distributed import BatchShare

    share = BatchShare(rank=1, world=2, total=4)
    assert (share.lo, share.hi, share.n, share.frac) == (2, 4, 2, 0.5)
    import dreamlib.distributed as D

    orig = D.active, D.world_size
    D.active, D.world_size = (lambda: True), (lambda: 3)
    try:
        with pytest.raises(ValueError, match=r"batch_size 20 does not split evenly over 3 processes: use a "
                                             r"multiple of 3 \(e.g. 18 or 21\)"):
            D.batch_share(20)
    finally:
        D.active, D.world_size = orig
