"""How much work does a teacher do on its dreams, next to real rainy images?

The adaptive pruning search and the dream-distillation only see the dreamed batch
X. If the teacher barely changes X, the modules that remove rain are never
exercised there, and the search may prune them away (README, Table 2 AGAN row).
This script dreams X exactly as ``reproduce table1/table2`` does (same config,
same seed) and prints, for X and for each rainy benchmark set, the fraction of
pixels the teacher changes by more than ``--threshold`` (in 0-255 units, any
channel) and the mean absolute change.

    python scripts/dream_coverage.py --model agan --config configs/small_cpu.yaml
"""
from __future__ import annotations

import argparse

import torch

from dreamlib.data.benchmark import benchmark_sets
from dreamlib.dream import teacher_change
from dreamlib.experiments.tables import dream_x, load_config
from dreamlib.train import EVAL_FAMILY
from dreamlib.teachers import load_teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, choices=sorted(EVAL_FAMILY))
    ap.add_argument("--config", default=None, help="the reproduce config whose dream_x settings to use")
    ap.add_argument("--threshold", type=float, default=30.0, help="change threshold, 0-255 units (default 30)")
    args = ap.parse_args()

    cfg = load_config(args.config)
    teacher = load_teacher(args.model).eval()
    info: dict = {}
    X = dream_x(teacher, cfg, info=info)  # the batch run_table's adaptive search sees
    n, _, h, w = X.shape
    floor = info.get("residual_floor")
    label = f"dreamed X ({n} x {h}x{w})" + (f", residual floor {floor:g}" if floor else "")

    def change(xs):
        c = teacher_change(teacher, xs, args.threshold)
        return c["changed_frac"], c["mean_abs"]

    rows = [(label, *change(X))]
    for name, ds in benchmark_sets(family=EVAL_FAMILY[args.model]).items():
        xs = torch.stack([ds[i]["input"] for i in range(len(ds))])
        rows.append((f"rainy {name} ({len(ds)} images)", *change(xs)))
    print(f"{args.model} teacher: pixels changed by more than {args.threshold:g}/255")
    for label, frac, mean in rows:
        print(f"  {label:44s} {100 * frac:6.2f} %   mean |change| {mean:.4f}")


if __name__ == "__main__":
    main()
