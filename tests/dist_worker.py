"""One dream+distill run of the small HINet, for tests/test_distributed.py.

    python tests/dist_worker.py OUT [--steps N] [--stop-at K] [--resume]
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py OUT ...

Under torchrun it joins the process group from the environment exactly as the command line
does (:func:`dreamlib.distributed.init_from_env`, gloo on CPU). Rank 0 (or the single
process) writes ``OUT/student.pt`` (the student's state dict), ``OUT/log.pt`` (the
DistillLog rows), ``OUT/outputs.pt`` (the student's restored images of a fixed probe batch)
and the distillation state ``OUT/state.pt``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

#: Global batch, crop, steps: a few seconds on one CPU core.
CONFIG = dict(batch_size=4, crop=32, steps=4, reinit_every=3, seed=0, lr_student=1e-3, lambda_orth=0.05)


def probe_outputs(student) -> torch.Tensor:
    """The student's restored images (2, 3, 32, 32) of a fixed batch of clean crops (seed 99)."""
    from dreamlib.dream import make_targets
    from dreamlib.models import restore

    with torch.no_grad():
        return restore(student.eval(), make_targets(2, CONFIG["crop"], seed=99))


def run(out: Path, steps: int = CONFIG["steps"], stop_at: int | None = None, resume: bool = False) -> None:
    from dreamlib import distributed
    from dreamlib import prune as P
    from dreamlib.distill import DistillConfig, distill
    from dreamlib.teachers import load_teacher

    torch.manual_seed(0)
    teacher = load_teacher("hinet", progress=False)
    student, _ = P.prune(teacher, "l1-uniform", target_macs=P.paper_target_macs(teacher, "hinet"))
    cfg = DistillConfig(**{**CONFIG, "steps": steps})
    out.mkdir(parents=True, exist_ok=True)
    student, log = distill(teacher, student, cfg, state_path=out / "state.pt", checkpoint_every=2, resume=resume,
                           stop_at=stop_at, progress=False)
    if distributed.is_main():
        torch.save(student.state_dict(), out / "student.pt")
        torch.save(log.rows, out / "log.pt")
        torch.save(probe_outputs(student), out / "outputs.pt")
    distributed.barrier()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=CONFIG["steps"])
    ap.add_argument("--stop-at", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dreamlib import distributed

    distributed.init_from_env()
    try:
        run(args.out, args.steps, args.stop_at, args.resume)
    finally:
        distributed.shutdown()
    print(f"rank {os.environ.get('RANK', 0)} done")


if __name__ == "__main__":
    main()
