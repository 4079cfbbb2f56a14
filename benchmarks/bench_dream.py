"""Cost of dreaming: one Dreamer step vs one teacher forward+backward, images per minute, steps to 30 dB.

    python benchmarks/bench_dream.py                     # small HINet, B=8, 64x64, 1 thread
    python benchmarks/bench_dream.py --batch 4 --crop 128 --steps 200

Prints:

- the median time of one :meth:`dreamlib.dream.Dreamer.step` (teacher forward
  with the feature hook, L_inv + L_orth, backward to x, Adam, clamp, log record)
  and of one bare ``restore(teacher, x)`` forward + L1 backward to x on the same
  batch with frozen weights, and their ratio (target: <= 1.1x, i.e. dreaming
  adds at most 10 % on top of the unavoidable teacher pass);
- a dreaming run of ``--steps`` steps (default: the paper's Adam lr 5e-2 and
  lambda_orth 0.05, with lambda annealed to 0 by a cosine, which is what gets
  the small teachers past 30 dB; ``--orth-schedule constant`` for the paper's
  constant lambda): the first step at which the teacher output reaches 30 dB
  (float-RGB PSNR, :func:`dreamlib.dream.batch_psnr`) against the targets, the
  final PSNR (also basicsr-Y), and the images dreamed per minute on this
  machine when a batch is stopped at 30 dB and when it runs all ``--steps``.

The teacher is ``data_samples/teachers/<model>_small.pt`` when it exists
("shipped teacher"), else the small configuration with random init, and the
output says which. Numbers depend on the machine; the README quotes the ones
measured on the project's 2-core CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from dreamlib import models
from dreamlib.dream import Dreamer, dream, frozen, make_targets
from dreamlib.metrics import psnr
from dreamlib.settings import DATA_SAMPLES, quick


def load_teacher(name: str) -> tuple[torch.nn.Module, str]:
    path = Path(DATA_SAMPLES) / "teachers" / f"{name}_small.pt"
    if path.is_file():
        return models.from_checkpoint(path), f"shipped teacher {path.name}"
    torch.manual_seed(0)
    return models.build(name, "small"), "random init (no shipped teacher found)"


def _median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function, calls interleaved so that load from other
    processes on a shared machine hits all of them alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="hinet")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=quick(15, 3))
    ap.add_argument("--steps", type=int, default=quick(150, 10), help="steps of the dreaming run")
    ap.add_argument("--lr", type=float, default=5e-2)
    ap.add_argument("--lambda-orth", type=float, default=0.05)
    ap.add_argument("--schedule", default="constant", choices=["cosine", "constant"], help="lr schedule")
    ap.add_argument("--orth-schedule", default="cosine", choices=["cosine", "constant"],
                    help="lambda_orth schedule (cosine: annealed to 0 over --steps)")
    ap.add_argument("--target-db", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    teacher, origin = load_teacher(args.model)
    y = make_targets(args.batch, args.crop, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.model}-small, {origin}; "
          f"batch {args.batch} x 3 x {args.crop} x {args.crop}")

    # one teacher forward + backward to the input, weights frozen (the floor of any inversion step)
    x = torch.rand_like(y).requires_grad_(True)

    def fwd_bwd():
        with frozen(teacher):
            x.grad = None
            torch.nn.functional.l1_loss(models.restore(teacher, x), y).backward()

    d = Dreamer(teacher, y, lr=args.lr, seed=0)
    base, step = _median_times([fwd_bwd, d.step], args.repeats)
    print(f"teacher forward+backward : {base * 1e3:8.1f} ms")
    print(f"Dreamer.step             : {step * 1e3:8.1f} ms   ratio {step / base:.3f}x (target <= 1.1x)")

    t = time.perf_counter()
    res = dream(teacher, y, steps=args.steps, lr=args.lr, lambda_orth=args.lambda_orth, seed=0, progress=False,
                lr_schedule=None if args.schedule == "constant" else "cosine",
                orth_schedule=None if args.orth_schedule == "constant" else "cosine")
    per_step = (time.perf_counter() - t) / res.steps
    first = next((i + 1 for i, p in enumerate(res.log["psnr"]) if p >= args.target_db), None)
    y_db = sum(psnr(res.teacher_out[i], y[i], "basicsr") for i in range(len(y))) / len(y)
    print(f"dreaming {res.steps} steps (lr {args.lr:g} {args.schedule}, lambda_orth {args.lambda_orth:g} "
          f"{args.orth_schedule}): {per_step * 1e3:.0f} ms/step, final teacher-output PSNR {res.final_psnr:.2f} dB "
          f"(float RGB) / {y_db:.2f} dB (basicsr Y)")
    full = 60 * args.batch / (res.steps * per_step)
    if first is not None:
        print(f"first step at >= {args.target_db:g} dB (float RGB): {first}   -> {60 * args.batch / (first * per_step):.1f} "
              f"images/min if stopped there, {full:.1f} images/min for all {res.steps} steps")
    else:
        print(f"{args.target_db:g} dB (float RGB) not reached in {res.steps} steps; {full:.1f} images/min")

if __name__ == "__main__":
    main()
