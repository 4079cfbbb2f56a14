"""Command line: ``dreamlib <command>`` or ``python -m dreamlib <command>``.

Commands:
  demo            the main job on the shipped defaults (writes results/demo/)
  make-benchmark  write the synthetic benchmark in the real datasets' layouts
  rain-table      measure each rain kind's rainy-input PSNR/SSIM on the sample images
  info            versions, device and quick mode
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__, settings


def _rain_table(seeds: int = 3, convention: str = "basicsr") -> list[dict]:
    import numpy as np

    from .data.rain import RAIN_TYPES, synthesize
    from .data.samples import load_samples
    from .metrics import psnr_ssim

    images = load_samples()
    rows = []
    for kind in RAIN_TYPES:
        vals = np.array([psnr_ssim(synthesize(im, kind, seed=s), im, convention)
                         for im in images.values() for s in range(seeds)])
        rows.append({"kind": kind, "psnr": float(vals[:, 0].mean()), "psnr_std": float(vals[:, 0].std()),
                     "ssim": float(vals[:, 1].mean()), "n": len(vals)})
    return rows


def _markdown_rain_table(rows, convention: str) -> str:
    out = [f"| rain kind | rainy-input PSNR (dB, {convention}) | SSIM | images x seeds |",
           "|---|---|---|---|"]
    out += [f"| {r['kind']} | {r['psnr']:.2f} ± {r['psnr_std']:.2f} | {r['ssim']:.3f} | {r['n']} |" for r in rows]
    return "\n".join(out)


def cmd_rain_table(args) -> int:
    rows = _rain_table(args.seeds, args.convention)
    text = _markdown_rain_table(rows, args.convention)
    print(text)
    if args.out:
        from .io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


def cmd_make_benchmark(args) -> int:
    from .data.benchmark import write_benchmark

    quick = True if args.quick else None
    root = write_benchmark(args.out, quick=quick, seed=args.seed, force=args.force)
    print(f"benchmark written to {root}")
    return 0


def cmd_demo(args) -> int:
    """What exists end to end so far: rain synthesis on the sample images, the
    synthetic benchmark, and the metrics of its rainy inputs in all conventions."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from .data.benchmark import benchmark_sets, write_benchmark
    from .data.samples import load_samples
    from .figures import rain_gallery
    from .io import atomic_write_json, atomic_write_text
    from .metrics import CONVENTIONS, psnr_ssim

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings.seed_everything(args.seed)
    print(f"dreamlib {__version__} demo (quick={settings.QUICK}) -> {out}")
    clean = load_samples("test")["sail"]
    fig = rain_gallery(clean, seed=args.seed, title="The six synthetic rain kinds on a held-out image")
    fig.savefig(out / "rain_gallery.png", dpi=110)
    print(f"  wrote {out / 'rain_gallery.png'}")

    root = write_benchmark(seed=args.seed)
    sets = {**benchmark_sets(root, "SynRain13k"), **benchmark_sets(root, "SynRainDrop")}
    table = {}
    for name, ds in sets.items():
        vals = {c: [] for c in CONVENTIONS}
        for item in ds:
            for c in CONVENTIONS:
                vals[c].append(psnr_ssim(item["input"], item["target"], c))
        table[name] = {c: [float(np.mean([v[0] for v in vals[c]])), float(np.mean([v[1] for v in vals[c]]))]
                       for c in CONVENTIONS}
        table[name]["n"] = len(ds)
    lines = ["| set | n | " + " | ".join(f"PSNR/SSIM {c}" for c in CONVENTIONS) + " |",
             "|---|---|" + "---|" * len(CONVENTIONS)]
    for name, row in table.items():
        lines.append(f"| {name} | {row['n']} | " + " | ".join(f"{row[c][0]:.2f} / {row[c][1]:.4f}"
                                                            for c in CONVENTIONS) + " |")
    md = "Rainy input vs clean target on the synthetic benchmark (no model yet: this is the bar a deraining model must beat)\n\n" + "\n".join(lines)
    print(md)
    atomic_write_text(out / "benchmark_inputs.md", md + "\n")
    atomic_write_json(out / "benchmark_inputs.json", {"benchmark": str(root), "seed": args.seed,
                                                       "quick": settings.QUICK, "version": __version__,
                                                       "wall_s": round(time.time() - t0, 2), "sets": table})
    print(f"  wrote {out / 'benchmark_inputs.md'} ({time.time() - t0:.1f} s)")
    return 0


def cmd_info(args) -> int:
    import platform

    import torch

    info = {"dreamlib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "device": str(settings.pick_device()), "quick": settings.QUICK,
            "data_samples": str(settings.DATA_SAMPLES), "work_dir": str(settings.WORK_DIR)}
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamlib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dreamlib {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the main job on the shipped defaults")
    d.add_argument("--out", default=str(settings.REPO_ROOT / "results" / "demo"))
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("make-benchmark", help="write the synthetic benchmark")
    b.add_argument("--out", type=Path, default=None, help="default: work/benchmark/{full|quick}")
    b.add_argument("--quick", action="store_true", help="small sets (also via DREAMLIB_QUICK=1)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--force", action="store_true", help="rewrite even if up to date")
    b.set_defaults(func=cmd_make_benchmark)

    r = sub.add_parser("rain-table", help="rainy-input PSNR of each rain kind on the sample images")
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--convention", default="basicsr", choices=["basicsr", "matlab", "opencv"])
    r.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    r.set_defaults(func=cmd_rain_table)

    i = sub.add_parser("info", help="versions, device, quick mode")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
