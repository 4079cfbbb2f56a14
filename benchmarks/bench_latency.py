"""FLOPs vs seconds: median CPU latency of dense, masked and channel-pruned networks.

    python benchmarks/bench_latency.py                       # all models, 256x256, compile included
    python benchmarks/bench_latency.py --models hinet mprnet --no-compile
    python benchmarks/bench_latency.py --tiny                # what CI runs: 64x64, 1 call, no compile
    python benchmarks/bench_latency.py --out results/speed_small/bench_latency.md

For each network (the four small teachers, shipped weights; official HINet and MPRNet with
random weights: timing does not depend on the values) and a MACs fraction (default 0.5):

- dense: the network as it is;
- masked: LAMP masks at the target MACs (the paper's kind of student: unstructured), timed
  with the masks folded into the weights (zeros), the fastest a masked model runs;
- channels: :func:`dreamlib.prune.channels.channel_prune` (LAMP allocation) at the same MACs.

each eager, channels_last and compiled (``torch.compile``), on 1 thread and on all threads.
Every number printed is a ratio to the dense eager time of the same network, measured in this
run (plus the milliseconds): the three students take turns call by call, and the median is kept. Run it alone on an idle machine: the load of other
processes changes the times, ratios far less.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from dreamlib import models
from dreamlib import prune as P
from dreamlib.flops import count_macs
from dreamlib.prune.channels import channel_prune
from dreamlib.speed import OPTIONS, fast, interleaved, same_outputs

SMALL = ("hinet", "mprnet", "durn", "agan")
OFFICIAL = ("hinet", "mprnet")


def network(name: str, variant: str):
    if variant == "small":
        from dreamlib.teachers import load_teacher

        return load_teacher(name).eval(), "shipped small teacher"
    torch.manual_seed(0)
    return models.build(name, variant).eval(), "official size, random weights (seed 0)"


def bench(name, variant, args) -> list[dict]:
    t0 = time.perf_counter()
    dense, origin = network(name, variant)
    size = (1, 3, args.size, args.size)
    target = args.fraction * count_macs(dense, size)
    masked, _ = P.prune(dense, "lamp", target_macs=target, input_size=size)
    channels, rep = channel_prune(dense, "lamp", target_macs=target, input_size=size, progress=False)
    x = torch.rand(*size, generator=torch.Generator().manual_seed(0))
    rows = []
    n_all = torch.get_num_threads()
    threads = sorted({1, n_all}) if not args.one_thread else [1]
    kinds = (("dense", dense), ("masked", masked), ("channels", channels))
    for opt in OPTIONS:
        if opt == "compiled" and args.no_compile:
            continue
        fasts = [fast(m, opt) for _, m in kinds]
        batch = [{"model": f"{name} ({variant})", "kind": k, "option": opt, "gmacs": count_macs(m, size) / 1e9,
                  "diff": same_outputs(m, f, x) if opt != "eager" else 0.0} for (k, m), f in zip(kinds, fasts)]
        for n in threads:
            # the three take turns call by call: a change of load hits them alike
            ts = interleaved(fasts, x, iters=args.iters, warmup=args.warmup, n_threads=n)
            for r, t in zip(batch, ts):
                r[f"t{n}"] = statistics.median(t)
        for r in batch:
            print(f"  {name} {variant} {r['kind']:8s} {opt:13s} " +
                  " ".join(f"{n} thr {1e3 * r[f't{n}']:8.1f} ms" for n in threads), flush=True)
        rows += batch
    base = {n: next(r[f"t{n}"] for r in rows if r["kind"] == "dense" and r["option"] == "eager") for n in threads}
    for r in rows:
        for n in threads:
            r[f"x{n}"] = base[n] / r[f"t{n}"]
    print(f"  ({origin}; channels: {rep.macs / rep.dense_macs:.1%} of the MACs, {rep.params:,} of "
          f"{rep.dense_params:,} params; {time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def table(rows, threads) -> str:
    hdr = "| network | student | G-MACs | option | " + " | ".join(
        f"{n} thr: ms | {n} thr: speed-up" for n in threads) + " | max abs diff |"
    out = [hdr, "|" + "---|" * (5 + 2 * len(threads))]
    for r in rows:
        out.append(f"| {r['model']} | {r['kind']} | {r['gmacs']:.3f} | {r['option']} | " + " | ".join(
            f"{1e3 * r[f't{n}']:.1f} | {r[f'x{n}']:.2f}x" for n in threads) + f" | {r['diff']:.1e} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(SMALL), choices=SMALL)
    ap.add_argument("--official", nargs="*", default=list(OFFICIAL), choices=OFFICIAL,
                    help="official-size networks to time too (random weights); none: --official")
    ap.add_argument("--fraction", type=float, default=0.5, help="MACs of the pruned students / dense (default 0.5)")
    ap.add_argument("--size", type=int, default=256, help="input side in px (default 256)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--one-thread", action="store_true", help="only time 1 thread")
    ap.add_argument("--tiny", action="store_true", help="CI: 64x64, 1 call, no compile, the small DuRN only")
    ap.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = ap.parse_args(argv)
    if not 0.05 <= args.fraction < 1:
        ap.error(f"--fraction must be in [0.05, 1), got {args.fraction}")
    if args.tiny:
        args.size, args.iters, args.warmup, args.no_compile, args.one_thread = 64, 1, 0, True, True
        args.models, args.official = ["durn"], []
    threads = [1] if args.one_thread else sorted({1, torch.get_num_threads()})
    print(f"bench_latency: torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, "
          f"input 1x3x{args.size}x{args.size}, median of {args.iters}, students at {args.fraction:.0%} of the MACs")
    rows = []
    for name in args.models:
        rows += bench(name, "small", args)
    for name in args.official:
        rows += bench(name, "official", args)
    text = table(rows, threads)
    print(text)
    if args.out:
        from dreamlib.io import atomic_write_text

        head = (f"# bench_latency\n\n`python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}`\n\n"
                f"torch {torch.__version__} on {platform.machine()} ({platform.processor() or '?'}), "
                f"{torch.get_num_threads()} threads available; input 1x3x{args.size}x{args.size}; median of "
                f"{args.iters} calls after {args.warmup} warm-up; students at {args.fraction:.0%} of the dense MACs "
                "(masked: LAMP masks folded into the weights; channels: LAMP channel allocation). Speed-up = dense "
                "eager time / this time, same thread count, same run.\n\n")
        atomic_write_text(args.out, head + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
