"""Time of the adaptive pruning search and of one sensitivity map (small teachers, this CPU).

    python benchmarks/bench_prune.py                       # small HINet, X = 4 noise images 64x64
    python benchmarks/bench_prune.py --models hinet mprnet --target
    python benchmarks/bench_prune.py --x dream --dream-steps 100

For each model prints:

- each baseline (l1-uniform, l1-global, erk, lamp) at the paper's MACs ratio: achieved
  G-MACs, error vs target, bisection steps, seconds;
- the adaptive search at tp = 50 dB (one sweep of Algorithm 1): student forwards,
  seconds, seconds per forward, resulting G-MACs and PSNR on X;
- with ``--target``: the adaptive search at the paper's MACs ratio (tp searched, then
  the exact adjustment): sweeps, tp used, adjustment delta, forwards, seconds;
- one sensitivity map (every module of models.prunable_modules x ``--sparsities``).

X is uniform noise in [0, 1] by default (``--x noise``), or images dreamed by the
teacher (``--x dream``, dreamlib.dream; the dreaming time is not included).
Weights: data_samples/teachers/<model>_small.pt when present, else a seeded random
initialisation (said in the output). Numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dreamlib import models
from dreamlib import prune as P
from dreamlib.flops import count_macs
from dreamlib.settings import DATA_SAMPLES


def load_teacher(name: str):
    path = Path(DATA_SAMPLES) / "teachers" / f"{name}_small.pt"
    if path.is_file():
        return models.from_checkpoint(path).eval(), f"shipped teacher {path.name}"
    torch.manual_seed(0)
    return models.build(name, "small").eval(), "random init (seed 0; no shipped teacher yet)"


def make_x(teacher, kind: str, batch: int, size: int, dream_steps: int):
    if kind == "noise":
        return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)), \
            f"{batch} uniform-noise images {size}x{size}"
    from dreamlib.dream import dream, make_targets

    t = time.perf_counter()
    res = dream(teacher, make_targets(batch, size, seed=0), steps=dream_steps, progress=False)
    return res.x.detach(), (f"{batch} images {size}x{size} dreamed by the teacher ({dream_steps} steps, "
                            f"{time.perf_counter() - t:.1f} s, not counted)")


def bench(name: str, args) -> None:
    teacher, origin = load_teacher(name)
    x, x_desc = make_x(teacher, args.x, args.batch, args.size, args.dream_steps)
    target = P.paper_target_macs(teacher)
    print(f"\n== {name} small: {origin}; {models.count_parameters(teacher):,} parameters, "
          f"{count_macs(teacher) / 1e9:.4f} G-MACs (nni, 1x3x256x256)")
    print(f"   paper ratio {P.paper_ratio(name):.4f} -> target {target / 1e9:.4f} G-MACs; X = {x_desc}")
    print(f"   {'method':11s} {'G-MACs':>8s} {'err %':>8s} {'steps':>6s} {'seconds':>8s} {'sparsity':>9s}")
    for method in P.BASELINES:
        t = time.perf_counter()
        _, r = P.prune(teacher, method, target_macs=target)
        print(f"   {method:11s} {r.macs_after / 1e9:8.4f} {100 * r.macs_error:+8.4f} {r.search['steps']:6d} "
              f"{time.perf_counter() - t:8.2f} {r.sparsity:9.4f}")

    t = time.perf_counter()
    _, r = P.prune(teacher, "adaptive", X=x, tp=args.tp, eps=args.eps)
    dt = time.perf_counter() - t
    fw = r.search["forwards"]
    print(f"   adaptive tp={args.tp:g} dB, eps={args.eps:g}: {len(r.details['modules'])} modules, {fw} forwards "
          f"in {dt:.2f} s ({1e3 * dt / fw:.1f} ms/forward) -> {r.macs_after / 1e9:.4f} G-MACs "
          f"({100 * r.macs_ratio:.1f} %), sparsity {r.sparsity:.4f}, PSNR on X {r.details['psnr_on_X']:.2f} dB")

    if args.target:
        t = time.perf_counter()
        _, r = P.prune(teacher, "adaptive", X=x, target_macs=target, tp=args.tp, eps=args.eps)
        dt = time.perf_counter() - t
        s = r.search
        trace = ", ".join(f"{tp:g}:{m / 1e9:.3f}" for tp, m in s["trace"])
        print(f"   adaptive @ target: {s['steps']} sweeps [tp:G-MACs {trace}], tp used {s['value']:g}, "
              f"adjust delta {s['adjust_delta']:+.4f} ({s['adjust_steps']} steps), {s['forwards']} forwards, "
              f"{dt:.1f} s -> {r.macs_after / 1e9:.4f} G-MACs (err {100 * r.macs_error:+.4f} %), "
              f"sparsity {r.sparsity:.4f}, PSNR on X {r.details['psnr_on_X']:.2f} dB")

    sparsities = [float(v) for v in args.sparsities.split(",")]
    t = time.perf_counter()
    df = P.sensitivity_map(teacher, x, sparsities=sparsities, progress=False)
    dt = time.perf_counter() - t
    print(f"   sensitivity map: {df.shape[1]} modules x {df.shape[0]} sparsities = {df.attrs['forwards']} forwards "
          f"in {dt:.2f} s ({1e3 * dt / df.attrs['forwards']:.1f} ms/forward); PSNR range "
          f"{df.values.min():.1f}-{df.values.max():.1f} dB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["hinet"], choices=list(models.MODEL_NAMES))
    ap.add_argument("--x", choices=["noise", "dream"], default="noise")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dream-steps", type=int, default=100)
    ap.add_argument("--tp", type=float, default=50.0)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--target", action="store_true", help="also time the adaptive search at the paper's MACs ratio")
    ap.add_argument("--sparsities", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for name in args.models:
        bench(name, args)


if __name__ == "__main__":
    main()
