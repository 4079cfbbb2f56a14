"""Cost of one-stage dream + distill: one iteration vs teacher fwd+bwd plus student fwd+bwd.

    python benchmarks/bench_distill.py                   # small HINet, student = LAMP-pruned copy, B=8, 64x64
    python benchmarks/bench_distill.py --batch 4 --crop 128 --threads 2
    python benchmarks/bench_distill.py --table1-json results/table1_small/table1_hinet.json

Prints the median time of one :meth:`dreamlib.distill.DreamDistiller.step`
(dreaming step on x + student update on the same batch, one teacher pass) and of
the unavoidable floor: one teacher forward + backward to x (weights frozen) plus
one student forward + backward to its weights on the same batch, and their ratio
(target: <= 1.15x). With ``--table1-json`` it also prints the wall time of a
``dreamlib reproduce table1`` run, read from the results file it wrote.
The student is pruned at the paper's HINet/MPRNet FLOPs ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dreamlib import models
from dreamlib import prune as P
from dreamlib.distill import DistillConfig, DreamDistiller
from dreamlib.dream import frozen, make_targets
from dreamlib.settings import quick
from dreamlib.teachers import load_teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="hinet")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=quick(15, 3))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table1-json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    teacher = load_teacher(args.model)
    student, _ = P.prune(teacher, "lamp", target_macs=P.paper_target_macs(teacher, args.model))
    y = make_targets(args.batch, args.crop, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.model}-small teacher, "
          f"LAMP-pruned student ({100 * P.global_sparsity(student):.1f} % sparse); batch {args.batch} x 3 x "
          f"{args.crop} x {args.crop}")

    x = torch.rand_like(y).requires_grad_(True)
    floor_student = P.copy_model(student).train()
    opt = torch.optim.Adam(floor_student.parameters(), lr=1e-4)

    def floor():
        with frozen(teacher):
            x.grad = None
            out = models.restore(teacher, x)
            torch.nn.functional.l1_loss(out, y).backward()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(models.restore(floor_student, x.detach()), out.detach()).backward()
        opt.step()

    runner = DreamDistiller(teacher, P.copy_model(student), DistillConfig(batch_size=args.batch, crop=args.crop,
                                                                          reinit_every=10 ** 9))
    fns = [floor, runner.step]
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(args.repeats):  # interleaved so that load from other processes hits both alike
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    base, step = (statistics.median(ts) for ts in times)
    print(f"teacher fwd+bwd + student fwd+bwd : {base * 1e3:8.1f} ms")
    print(f"DreamDistiller.step               : {step * 1e3:8.1f} ms   ratio {step / base:.3f}x (target <= 1.15x)")
    print(f"-> {1800 * step / 60:.1f} min for the paper's 3 x 600 iterations at this batch size")
    if args.table1_json:
        p = json.loads(open(args.table1_json).read())
        w = p["wall_s"]
        print(f"reproduce {p['table']} --model {p['model']}: {w['total'] / 60:.1f} min in total "
              f"(dream X {w['dream_X']:.0f} s, prune+evaluate {w['prune_and_evaluate']:.0f} s, "
              f"distill {w['distill']:.0f} s) on {p['device']}")


if __name__ == "__main__":
    main()
