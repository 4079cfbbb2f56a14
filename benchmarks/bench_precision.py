"""Does mixed precision change the results? bf16 / fp16 autocast vs fp32 on the small teachers (CPU proxy).

    python benchmarks/bench_precision.py --out results/gpu/precision_cpu.md
    python benchmarks/bench_precision.py --tiny          # seconds: one teacher, 2 images per set, 4 steps

Two measures, each in fp32, bf16 and fp16 (``dreamlib.memory.autocast``):

1. **teachers**: the test PSNR (basicsr) of each shipped small teacher on its family of the
   full synthetic benchmark, its forward run under autocast;
2. **distillation**: the small HINet's LAMP-pruned student (the paper's FLOPs ratio) dream-
   distilled for ``--steps`` iterations (batch 4 x 64 px) with ``DistillConfig(precision=...)``
   (teacher forward in dreaming and student forward under autocast), then evaluated in
   fp32: its PSNR, and the difference to the fp32 run.

This runs on the CPU: CPU autocast (oneDNN bf16/fp16 kernels) is a *proxy* for the GPU's.
Both round to the same formats, but the op lists that autocast casts and the kernels'
accumulation differ, so a GPU run can differ; ``benchmarks/bench_gpu.py`` on a GPU does not
measure PSNR. A distillation difference mixes the precision's effect with the run-to-run
spread of a short training; both are printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dreamlib import prune as P  # noqa: E402
from dreamlib.data.benchmark import benchmark_sets, write_benchmark  # noqa: E402
from dreamlib.distill import DistillConfig, distill  # noqa: E402
from dreamlib.evaluate import evaluate  # noqa: E402
from dreamlib.memory import autocast  # noqa: E402
from dreamlib.teachers import load_teacher  # noqa: E402
from dreamlib.train import EVAL_FAMILY  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")


@contextmanager
def autocast_outputs_float(model, precision: str):
    """``model``'s forwards under autocast, their floating outputs cast back to fp32 (the metrics' input)."""
    from torch.utils._pytree import tree_map

    def hook(_m, _i, out):
        return tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t, out)

    handle = model.register_forward_hook(hook)
    try:
        with autocast("cpu", precision):
            yield model
    finally:
        handle.remove()


def teachers(names, limit, root) -> list[dict]:
    rows = []
    for name in names:
        teacher = load_teacher(name, progress=False)
        sets = benchmark_sets(root, family=EVAL_FAMILY[name])
        res = {}
        for precision in PRECISIONS:
            with autocast_outputs_float(teacher, precision):
                res[precision] = evaluate(teacher, sets, convention="basicsr", progress=False, limit=limit)["average"]
        rows.append({"model": name, "images": res["fp32"]["n"],
                     **{f"psnr_{p}": res[p]["psnr"] for p in PRECISIONS},
                     **{f"diff_{p}": res[p]["psnr"] - res["fp32"]["psnr"] for p in PRECISIONS if p != "fp32"}})
        print(rows[-1], flush=True)
    return rows


def distillation(steps: int, limit, root, seeds) -> list[dict]:
    teacher = load_teacher("hinet", progress=False)
    student, _ = P.prune(teacher, "lamp", target_macs=P.paper_target_macs(teacher, "hinet"))
    sets = benchmark_sets(root, family=EVAL_FAMILY["hinet"])
    rows = []
    for seed in seeds:
        res = {}
        for precision in PRECISIONS:
            cfg = DistillConfig(steps=steps, reinit_every=max(steps // 2, 1), batch_size=4, crop=64, seed=seed,
                                precision=precision)
            t = time.perf_counter()
            s, _ = distill(teacher, P.copy_model(student), cfg, progress=False)
            res[precision] = (evaluate(s, sets, convention="basicsr", progress=False, limit=limit)["average"]["psnr"],
                              time.perf_counter() - t)
        rows.append({"seed": seed, "steps": steps, **{f"psnr_{p}": res[p][0] for p in PRECISIONS},
                     **{f"diff_{p}": res[p][0] - res["fp32"][0] for p in PRECISIONS if p != "fp32"},
                     **{f"s_{p}": res[p][1] for p in PRECISIONS}})
        print(rows[-1], flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = ["# Mixed precision vs fp32 on the small teachers (CPU autocast, a proxy for the GPU)", "",
             f"Written by `{report['command']}` on {report['date']} (torch {report['torch']}, "
             f"{report['threads']} thread(s)). PSNR in dB, basicsr convention, average over the sets of each "
             f"model's family of the {report['benchmark']} synthetic benchmark"
             + (f" (first {report['limit']} images per set)" if report["limit"] else "") + ".", "",
             "## Teachers: forward under autocast", "",
             "| teacher | images | fp32 | bf16 | fp16 | bf16 - fp32 | fp16 - fp32 |", "|---|---|---|---|---|---|---|"]
    for r in report["teachers"]:
        lines.append(f"| {r['model']} (small) | {r['images']} | {r['psnr_fp32']:.3f} | {r['psnr_bf16']:.3f} | "
                     f"{r['psnr_fp16']:.3f} | {r['diff_bf16']:+.3f} | {r['diff_fp16']:+.3f} |")
    lines += ["", f"## Distillation: small HINet, LAMP student, {report['distillation'][0]['steps']} dream+distill "
              "steps (batch 4 x 64 px), `DistillConfig(precision=...)`, evaluated in fp32", "",
              "| seed | fp32 | bf16 | fp16 | bf16 - fp32 | fp16 - fp32 |", "|---|---|---|---|---|---|"]
    for r in report["distillation"]:
        lines.append(f"| {r['seed']} | {r['psnr_fp32']:.3f} | {r['psnr_bf16']:.3f} | {r['psnr_fp16']:.3f} | "
                     f"{r['diff_bf16']:+.3f} | {r['diff_fp16']:+.3f} |")
    lines += ["", "CPU autocast is a proxy: the same number formats as a GPU's, not the same kernels or cast "
              "lists. No GPU PSNR has been measured."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.tiny
    root = write_benchmark(quick=quick, progress=False)
    limit = 2 if quick else args.limit
    report = {"command": "python benchmarks/bench_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "benchmark": "quick" if quick else "full", "limit": limit}
    report["teachers"] = teachers(["hinet"] if quick else ["hinet", "mprnet", "durn", "agan"], limit, root)
    report["distillation"] = distillation(4 if quick else args.steps, limit, root, args.seeds)
    text = markdown(report)
    print(text)
    if args.out is not None:
        from dreamlib.io import atomic_write_json, atomic_write_text

        atomic_write_text(args.out, text)
        atomic_write_json(args.out.with_suffix(".json"), report)
    return report


if __name__ == "__main__":
    main()
