"""Command line: ``dreamlib <command>`` or ``python -m dreamlib <command>``.

Commands:
  demo            the main job on the shipped defaults (writes results/demo/)
  make-benchmark  write the synthetic benchmark in the real datasets' layouts
  rain-table      measure each rain kind's rainy-input PSNR/SSIM on the sample images
  prune-table     every pruning method (both readings of Algorithm 1) at the paper's FLOPs, before fine-tuning
  reproduce       the paper's Table 1 / Table 2 protocol: prune, dream+distill, evaluate
  train-teacher   train a small deraining teacher on synthetic rain (checkpoints, --resume)
  compress        prune + dream-distill YOUR image-to-image network (--arch pkg.module:Class), no training data
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
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1 (rain draws per image), got {args.seeds}")
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
    """The main job on the shipped defaults: rain synthesis, the synthetic benchmark,
    what the shipped small teachers do, then the whole method on the small HINet
    (prune at the paper's FLOPs ratio, dream + distill, Table-1-style comparison and a
    before/after grid), about 10 minutes on a CPU (configs/demo.yaml)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from . import models
    from .data.benchmark import benchmark_sets, write_benchmark
    from .data.samples import load_samples
    from .evaluate import evaluate, format_table
    from .figures import rain_gallery
    from .io import atomic_write_json, atomic_write_text

    from .experiments.run import prepare_out_dir
    from .experiments.tables import CONFIG_DIR, load_config, markdown, run_table

    t0 = time.time()
    # checked before any work: the config of step 4 and a writable output folder
    cfg = load_config(CONFIG_DIR / ("quick.yaml" if settings.QUICK else "demo.yaml"))
    out = prepare_out_dir(args.out)
    settings.seed_everything(args.seed)
    print(f"dreamlib {__version__} demo (quick={settings.QUICK}) -> {out}")
    fig = rain_gallery(load_samples("test")["sail"], seed=args.seed,
                       title="The six synthetic rain kinds on a held-out image")
    fig.savefig(out / "rain_gallery.png", dpi=110)
    plt.close(fig)
    print(f"[1/4] rain kinds: wrote {out / 'rain_gallery.png'}")

    root = write_benchmark(seed=args.seed)
    families = {"SynRain13k": ("hinet", "mprnet"), "SynRainDrop": ("durn", "agan")}
    report = {"benchmark": str(root), "seed": args.seed, "quick": settings.QUICK, "version": __version__,
              "convention": "basicsr", "tables": {}}
    md = []
    print(f"[2/4] benchmark: {root}")
    teacher_dir = settings.DATA_SAMPLES / "teachers"
    grid = []
    for family, names in families.items():
        sets = benchmark_sets(root, family)
        rows = {"rainy input": evaluate(None, sets, "basicsr", progress=False)}
        for name in names:
            path = teacher_dir / f"{name}_small.pt"
            if not path.is_file():
                print(f"      (no shipped teacher {path.name}; skipped)")
                continue
            net = models.from_checkpoint(path).eval()
            rows[f"{name} (small teacher)"] = evaluate(net, sets, "basicsr", progress=True)
            first = next(iter(sets.values()))[0]
            with torch.no_grad():
                pred = models.restore(net, first["input"][None])[0].clamp(0, 1)
            grid.append((name, first["input"], pred, first["target"]))
        table = format_table(rows)
        report["tables"][family] = rows
        md.append(f"### {family} (PSNR dB / SSIM, basicsr convention)\n\n{table}\n")
        print(f"\n{family} (PSNR dB / SSIM, basicsr convention)\n{table}\n")
    print("[3/4] teachers: figures and tables")
    if grid:
        fig, axes = plt.subplots(len(grid), 3, figsize=(7.5, 2.6 * len(grid)), squeeze=False)
        from .metrics import psnr

        for row, (name, x, pred, y) in zip(axes, grid):
            for ax, img, label in zip(row, (x, pred, y), ("rainy input", f"{name} teacher", "clean target")):
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(label + ("" if label == "clean target" else f" {psnr(img, y):.1f} dB"), fontsize=9)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / "teachers_before_after.png", dpi=110)
        plt.close(fig)
        print(f"      wrote {out / 'teachers_before_after.png'}")
    if not args.skip_method and (teacher_dir / "hinet_small.pt").is_file():
        print(f"[4/4] the method on the small HINet: prune at the paper's FLOPs ratio ({', '.join(cfg['methods'])}), "
              f"dream + distill ({', '.join(cfg['distill_from'])}) for {cfg['distill']['steps']} iterations, evaluate")
        payload = run_table("table1", "hinet", config=cfg, out_dir=out, progress=True)
        report["table1_hinet"] = payload["rows"]
        md.append(markdown(payload))
        print(markdown(payload))
        print(f"      wrote {out / 'table1_hinet.md'} and {out / 'table1_hinet_examples.png'}")
    report["wall_s"] = round(time.time() - t0, 2)
    from .provenance import provenance

    report["provenance"] = provenance(config=cfg, seed=args.seed)
    atomic_write_text(out / "demo.md", "\n".join(md))
    atomic_write_json(out / "demo.json", report)
    print(f"      wrote {out / 'demo.md'} and demo.json ({report['wall_s']:.1f} s)")
    return 0


def cmd_prune_table(args) -> int:
    from .experiments.before_finetune import before_finetune_table

    from .experiments.run import default_run_dir, prepare_out_dir
    from .experiments.tables import load_config
    from .train import command_line

    cfg = load_config(args.config, **({"seed": args.seed} if args.seed is not None else {}),
                      **_protocol_overrides(args.protocol, None))
    out = prepare_out_dir(args.out or default_run_dir("prune-table"))
    for name in args.model:
        comp = before_finetune_table(name, out_dir=out, config=cfg, progress=not args.no_progress,
                                     command=command_line())
        from .protocols import OFFICIAL

        conv = cfg["convention"] or OFFICIAL[name].convention
        print(f"\n{name}: pruned to the paper's FLOPs ratio, before fine-tuning ({conv} PSNR / SSIM)")
        print(comp.markdown())
    return 0


_PROTOCOL_HELP = ("how a network is run on a test image: dreamlib (reflect-pad) or official (each network's "
                  "official test script, scored in its official metric convention unless --convention is given; "
                  "dreamlib.protocols). Default: the config's protocol (dreamlib)")


def _protocol_overrides(protocol: str | None, convention: str | None) -> dict:
    """Config overrides of ``--protocol``: ``official`` without ``--convention`` also scores in each
    network's official convention (config ``convention: null``), whatever the config file says."""
    if protocol is None:
        return {}
    return {"protocol": protocol, **({"convention": None} if protocol == "official" and convention is None else {})}


class UsageError(ValueError):
    """A command-line mistake: printed as one line, exit code 2."""


def _check_reproduce(args) -> None:
    """Every name, number and path of ``reproduce`` checked before any work starts."""
    from .experiments.tables import TABLE_MODELS
    from .models import MODEL_NAMES, variants

    if args.sparsity is not None and args.table != "selfdata":
        raise UsageError("--sparsity only applies to `reproduce selfdata` (Fig. 1's l1 sparsity); Tables 1-2 "
                         "prune to --target-gflops")
    if args.sparsity is not None and not 0.0 < args.sparsity < 1.0:
        raise UsageError(f"--sparsity is the fraction of weights l1 removes, in (0, 1); got {args.sparsity}")
    if args.from_table and args.table != "ablation":
        raise UsageError("--from-table only applies to `reproduce ablation`")
    if args.from_table and not args.from_table.is_file():
        raise UsageError(f"--from-table {args.from_table}: no such file (a table1_<model>.json of a finished run)")
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out: name the folder of the interrupted run (without --out every "
                         "run writes a fresh runs/<table>_<model>_<time>/ folder)")
    if args.table != "speed" and (args.macs is not None or args.no_compile or args.distill_masked):
        raise UsageError("--macs, --no-compile and --distill-masked only apply to `reproduce speed`")
    if args.table == "speed":
        if args.target_gflops is not None:
            raise UsageError("`reproduce speed` takes --macs (fractions of the teacher's MACs), not --target-gflops")
        fracs = []
        for f in args.macs or []:
            try:
                v = None if f == "paper" else float(f)
            except ValueError:
                v = -1.0
            if v is not None and not 0.05 <= v < 1.0:
                raise UsageError(f"--macs {f}: a fraction of the teacher's MACs in [0.05, 1) or 'paper', "
                                 "e.g. --macs paper 0.45")
            fracs.append(v)
        args.macs = fracs or None
        if args.iters < 1:
            raise UsageError(f"--iters must be >= 1 (timed calls per latency), got {args.iters}")
    allowed = (MODEL_NAMES if args.table in ("ablation", "selfdata", "speed") else TABLE_MODELS[args.table])
    for name in args.model or []:
        if name not in allowed:
            raise UsageError(f"--model {name!r}: {args.table} covers {', '.join(allowed)}")
        if args.variant not in variants(name):
            raise UsageError(f"--variant {args.variant!r}: {name} has variants {', '.join(variants(name))}")
    if args.table in ("ablation", "selfdata") and args.variant != "small":
        raise UsageError(f"`reproduce {args.table}` runs on the shipped small teachers only (--variant small)")
    if args.variant != "small" and args.checkpoint is None:
        raise UsageError(f"--variant {args.variant} needs --checkpoint (only the small teachers are shipped)")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    if args.target_gflops is not None and not args.target_gflops > 0:
        raise UsageError(f"--target-gflops must be > 0 (G-MACs of the pruned network), got {args.target_gflops}; "
                         "leave it out for the paper's FLOPs ratio")
    if args.data_root is not None and not args.data_root.is_dir():
        raise UsageError(f"--data-root {args.data_root}: no such folder (the real test sets, layouts in the README)")


def cmd_reproduce(args) -> int:
    from .experiments.run import default_run_dir, prepare_out_dir
    from .experiments.tables import TABLE_MODELS, load_config, markdown, run_table
    from .train import command_line

    _check_reproduce(args)
    from . import distributed

    if distributed.torchrun_env():  # `torchrun --nproc_per_node N -m dreamlib reproduce table1 ...`
        if args.table not in ("table1", "table2"):
            raise UsageError(f"torchrun shares the dream+distill of `reproduce table1` / `table2`; run "
                             f"`reproduce {args.table}` as one process (python -m dreamlib ...)")
        distributed.init_from_env()
    overrides = {"convention": args.convention} if args.convention else {}
    overrides.update(_protocol_overrides(args.protocol, args.convention))
    if args.distill_from:
        overrides["distill_from"] = args.distill_from
    cfg = load_config(args.config, **overrides)  # the whole config is checked here, before any compute
    if args.data_root is not None:
        from .data.datasets import open_sets

        open_sets(args.data_root)  # a wrong layout fails now, with the layouts it expects
    if args.out is not None:
        prepare_out_dir(args.out, resume=args.resume)

    if args.table == "speed":
        from .experiments.speed import markdown as speed_md, run_speed

        for name in args.model or ["hinet", "mprnet"]:
            out = args.out or default_run_dir(f"speed_{name}")
            payload = run_speed(name, variant=args.variant, config=cfg, checkpoint=args.checkpoint,
                                data_root=args.data_root, fractions=args.macs, out_dir=out, resume=args.resume,
                                progress=not args.no_progress, command=command_line(),
                                compile_=not args.no_compile, iters=args.iters, distill_masked=args.distill_masked)
            print(speed_md(payload))
        return 0
    if args.table in ("ablation", "selfdata"):
        from .experiments import ablation as A

        sparsity = 0.3 if args.sparsity is None else args.sparsity
        for name in args.model or ["hinet"]:
            out = prepare_out_dir(args.out or default_run_dir(f"{args.table}_{name}"), resume=args.resume)
            kw = dict(config=cfg, progress=not args.no_progress, state_dir=out, resume=args.resume)
            if args.table == "ablation":
                result = A.ablation(name, from_table=args.from_table, **kw)
            else:
                result = A.selfdata(name, sparsity=sparsity, **kw)
            result["command"] = command_line()
            md = A.write(result, out)
            print(md.read_text())
        return 0
    for name in args.model or TABLE_MODELS[args.table]:
        payload = run_table(args.table, name, variant=args.variant, config=cfg, checkpoint=args.checkpoint,
                            data_root=args.data_root, target_gflops=args.target_gflops, out_dir=args.out,
                            resume=args.resume, progress=not args.no_progress and distributed.is_main(),
                            command=command_line().replace("python -m dreamlib", f"torchrun --nproc_per_node "
                                                           f"{distributed.world_size()} -m dreamlib", 1)
                            if distributed.active() else command_line())
        if distributed.is_main():  # under torchrun: rank 0 has the results, the other ranks return {}
            print(markdown(payload))
    distributed.shutdown()
    return 0


def cmd_info(args) -> int:
    import platform

    import torch

    info = {"dreamlib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "device": str(settings.pick_device()), "quick": settings.QUICK,
            "data_samples": str(settings.DATA_SAMPLES), "work_dir": str(settings.WORK_DIR)}
    print(json.dumps(info, indent=2))
    return 0


def cmd_compress(args) -> int:
    """``dreamlib compress``: any image-to-image network, pruned and dream-distilled (a run folder)."""
    import torch

    from .compression import CompressConfig, compress, gaussian_noise
    from .experiments.run import default_run_dir
    from .models.checkpoint import load_checkpoint
    from .spec import import_arch

    if not 0 < args.target:
        raise UsageError(f"--target is the fraction of the MACs kept, in (0, 1] (or MACs > 1); got {args.target}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    if args.images is not None and not args.images.exists():
        raise UsageError(f"--images {args.images}: no such folder")
    if args.eval_images is not None and not args.eval_images.exists():
        raise UsageError(f"--eval-images {args.eval_images}: no such folder")
    if (args.eval_noise is None) != (args.eval_images is None):
        raise UsageError("--eval-noise and --eval-images go together (held-out clean images, degraded with "
                         "Gaussian noise of that sigma, only to measure)")
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out: name the folder of the interrupted run")
    try:
        kwargs = json.loads(args.arch_kwargs) if args.arch_kwargs else {}
    except json.JSONDecodeError as e:
        raise UsageError(f"--arch-kwargs must be a JSON object, e.g. '{{\"width\": 32}}': {e}")
    if not isinstance(kwargs, dict):
        raise UsageError("--arch-kwargs must be a JSON object")
    sys.path.insert(0, str(Path.cwd()))
    model = import_arch(args.arch)(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--arch {args.arch} built a {type(model).__name__}, not a torch.nn.Module")
    if args.checkpoint is not None:
        load_checkpoint(model, args.checkpoint)
    spec = {k: v for k, v in {"output": _output_arg(args.output), "multiple": args.multiple,
                              "channel_order": args.channel_order,
                              "input_range": tuple(args.input_range) if args.input_range else None,
                              "feature_layer": args.feature_layer, "modules": args.modules}.items() if v is not None}
    from .spec import describe

    describe(model, arch=args.arch, config=kwargs, name=args.arch.rpartition(":")[2] or args.arch, **spec)
    base = CompressConfig.tiny() if args.tiny else CompressConfig()
    over = {k: v for k, v in {"method": args.method, "dream_steps": args.dream_steps,
                              "distill_steps": args.distill_steps, "batch_size": args.batch_size, "crop": args.crop,
                              "lr_student": args.lr_student, "seed": args.seed}.items() if v is not None}
    out = args.out or default_run_dir("compress")
    result = compress(model, args.images, target=args.target, config=base, out_dir=out, resume=args.resume,
                      degrade=None if args.eval_noise is None else gaussian_noise(args.eval_noise),
                      eval_images=args.eval_images, progress=not args.no_progress, **over)
    print(result.summary())
    return 0


def _output_arg(v):
    if v is None:
        return None
    return int(v) if v.lstrip("-").isdigit() else v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamlib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dreamlib {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the main job on the shipped defaults")
    d.add_argument("--out", default=str(settings.REPO_ROOT / "results" / "demo"))
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--skip-method", action="store_true", help="only rain, benchmark and teachers (seconds)")
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

    from .train import add_parser as _add_train; _add_train(sub)  # noqa: E702

    t = sub.add_parser("prune-table", help="every pruning method and both readings of Algorithm 1 at the paper's FLOPs, before fine-tuning")
    t.add_argument("--model", nargs="+", default=["hinet", "mprnet"], choices=["hinet", "mprnet", "durn", "agan"])
    t.add_argument("--out", type=Path, default=None, help="default: a fresh runs/prune-table_<time>/ (git-ignored); "
                   "name results/prune_before_finetune to replace the committed results")
    t.add_argument("--config", type=Path, default=None,
                   help="YAML with the runner settings (dream_x, adaptive, convention, eval_limit); default: the "
                        "built-in small-CPU settings (configs/small_cpu.yaml), configs/quick.yaml in quick mode")
    t.add_argument("--seed", type=int, default=None, help="default: the config's seed")
    t.add_argument("--protocol", default=None, choices=["dreamlib", "official"], help=_PROTOCOL_HELP)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_prune_table)

    rp = sub.add_parser("reproduce", help="the paper's Table 1 / Table 2 protocol (prune, dream+distill, evaluate)")
    rp.add_argument("table", choices=["table1", "table2", "ablation", "selfdata", "speed"],
                    help="table1/table2: the paper's tables; ablation: Fig. 6; selfdata: Fig. 1; speed: channel "
                         "pruning vs masks, quality after recovery vs measured CPU latency")
    rp.add_argument("--model", nargs="+", default=None, help="default: the table's two models")
    rp.add_argument("--variant", default="small", help="small (shipped teachers) or official (with --checkpoint)")
    rp.add_argument("--config", type=Path, default=None,
                    help="YAML (configs/small_cpu.yaml, paper.yaml, quick.yaml); default: built-in small-CPU "
                         "settings, or configs/quick.yaml in quick mode")
    rp.add_argument("--checkpoint", type=Path, default=None, help="official or dreamlib weights for --model")
    rp.add_argument("--data-root", type=Path, default=None, help="real Rain13k / RainDrop test folders")
    rp.add_argument("--target-gflops", type=float, default=None, help="default: the paper's FLOPs ratio")
    rp.add_argument("--convention", default=None, choices=["basicsr", "matlab", "opencv"])
    rp.add_argument("--protocol", default=None, choices=["dreamlib", "official"], help=_PROTOCOL_HELP)
    rp.add_argument("--out", type=Path, default=None, help="default: a fresh runs/<table>_<model>_<time>/ (git-ignored); name results/<table>_small to replace the committed results")
    rp.add_argument("--resume", action="store_true", help="continue interrupted distillations from their state files")
    rp.add_argument("--distill-from", nargs="+", default=None, metavar="METHOD",
                    help="table1/2: pruned students to distill by dreaming (default: adaptive; "
                         "e.g. adaptive lamp)")
    rp.add_argument("--sparsity", type=float, default=None,
                    help="selfdata: fraction of weights l1 removes before fine-tuning (default 0.3, the paper's)")
    rp.add_argument("--from-table", type=Path, default=None,
                    help="ablation: reuse the l1 / adaptive / full-method rows of a finished table1_<model>.json "
                         "made with the same config (only the no-L_orth student is distilled)")
    rp.add_argument("--macs", nargs="+", default=None, metavar="FRACTION",
                    help="speed: students' MACs as fractions of the teacher's, or 'paper' (the paper's ratio, "
                         "the default), e.g. --macs paper 0.45")
    rp.add_argument("--no-compile", action="store_true", help="speed: do not time torch.compile (saves minutes)")
    rp.add_argument("--iters", type=int, default=10, help="speed: timed calls per latency (median; default 10)")
    rp.add_argument("--distill-masked", action="store_true",
                    help="speed: distil the masked student here when no finished Table run has it at this target")
    rp.add_argument("--no-progress", action="store_true")
    rp.set_defaults(func=cmd_reproduce)

    c = sub.add_parser("compress", help="prune and dream-distill YOUR image-to-image network, without its "
                                       "training data (a run folder with the student, its card and a report)")
    c.add_argument("--arch", required=True, help="package.module:Class of the network (importable from here)")
    c.add_argument("--arch-kwargs", default=None, help="JSON keyword arguments of the class, e.g. '{\"width\": 32}'")
    c.add_argument("--checkpoint", type=Path, default=None, help="its weights (a state dict, or a dreamlib file)")
    c.add_argument("--images", type=Path, default=None,
                   help="folder of clean images the dreams aim at (default: the shipped samples)")
    c.add_argument("--target", type=float, default=0.6, help="fraction of the MACs the student keeps (default 0.6)")
    c.add_argument("--method", default=None, help="pruning method (default adaptive, the paper's Algorithm 1)")
    c.add_argument("--out", type=Path, default=None, help="run folder (default: a fresh runs/compress_<time>/)")
    c.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    c.add_argument("--tiny", action="store_true", help="seconds-long settings (tests, a first look)")
    c.add_argument("--dream-steps", type=int, default=None)
    c.add_argument("--distill-steps", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=None)
    c.add_argument("--crop", type=int, default=None)
    c.add_argument("--lr-student", type=float, default=None)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--output", default=None, help="which part of the forward's output is the image: first, last, "
                   "an index or key:NAME (default: inferred)")
    c.add_argument("--multiple", type=int, default=None, help="spatial multiple the input needs (default: inferred)")
    c.add_argument("--channel-order", default=None, choices=["rgb", "bgr"])
    c.add_argument("--input-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="pixel range the network expects (default 0 1)")
    c.add_argument("--feature-layer", default=None, help="module whose pooled output feeds L_orth (default: inferred)")
    c.add_argument("--modules", nargs="+", default=None, help="prunable modules (default: inferred)")
    c.add_argument("--eval-images", type=Path, default=None, help="held-out clean images to measure on ...")
    c.add_argument("--eval-noise", type=float, default=None, help="... degraded with Gaussian noise of this sigma "
                   "(0-255)")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_compress)

    i = sub.add_parser("info", help="versions, device, quick mode")
    i.set_defaults(func=cmd_info)
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


#: Errors that mean "the input is wrong", printed as one line (exit 2); anything else is a bug
#: and keeps its traceback. NonFiniteError (a diverged run) is a FloatingPointError.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
               FloatingPointError, MemoryError)  # MemoryError: dreamlib.memory.DistillOutOfMemoryError


def main(argv=None) -> int:
    """Run a command. A user error prints ``dreamlib <command>: error: <what is wrong; the fix>``
    and returns 2; ``--debug`` (anywhere on the line) shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"dreamlib {args.command}: interrupted; a run with --out continues with --resume", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"dreamlib {args.command}: error: {_one_line(e)} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
