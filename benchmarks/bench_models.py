"""Inference time per 256x256 image for each network, and the cost of counting MACs.

    python benchmarks/bench_models.py              # small teachers + official configurations
    python benchmarks/bench_models.py --skip-official

Prints one line per model: parameters, G-MACs (nni), seconds per forward of one
1x3x256x256 image (median of --repeats after one warm-up, no grad), and the time of
the first (shape-probing) and of a cached ``count_macs`` call. Numbers depend on the
machine; the README quotes the ones measured on the project's 2-core CPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from dreamlib import models
from dreamlib.flops import _DENSE_CACHE, count_macs
from dreamlib.settings import DATA_SAMPLES


def _load(name: str, variant: str) -> tuple[torch.nn.Module, str]:
    path = Path(DATA_SAMPLES) / "teachers" / f"{name}_{variant}.pt"
    if variant == "small" and path.is_file():
        return models.from_checkpoint(path), "shipped teacher"
    return models.build(name, variant), "random init"


def bench(name: str, variant: str, repeats: int) -> str:
    model, origin = _load(name, variant)
    model.eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    _DENSE_CACHE.clear()
    t = time.perf_counter()
    macs = count_macs(model)
    first = time.perf_counter() - t
    t = time.perf_counter()
    count_macs(model)
    cached = time.perf_counter() - t
    times = []
    with torch.no_grad():
        models.restore(model, x)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            models.restore(model, x)
            times.append(time.perf_counter() - t)
    return (f"{name:7s} {variant:9s} {origin:15s} {models.count_parameters(model):>11,d} "
            f"{macs / 1e9:9.3f} {statistics.median(times):9.3f} {first:10.3f} {cached * 1e3:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input 1x3x256x256")
    print(f"{'model':7s} {'variant':9s} {'weights':15s} {'params':>11s} {'G-MACs':>9s} {'s/image':>9s} "
          f"{'macs 1st s':>10s} {'cached ms':>10s}")
    variants = ["small"] + ([] if args.skip_official else ["official"])
    for variant in variants:
        for name in models.MODEL_NAMES:
            print(bench(name, variant, args.repeats), flush=True)


if __name__ == "__main__":
    main()
