"""Pruning methods at the paper's FLOPs, before any fine-tuning (paper Fig. 6, Table 1's baselines).

    python -m dreamlib prune-table --model hinet          # writes results/prune_before_finetune/hinet.{md,json}

Steps, all seeded:

1. load the small teacher (:func:`dreamlib.teachers.load_teacher`);
2. dream the batch X that the adaptive scheme measures PSNR on (``dream_batch``
   crops of ``dream_crop`` px from the dream-role images, ``dream_steps`` steps,
   lambda_orth 0.05 annealed, see :func:`dreamlib.dream.dream`);
3. prune with every method to the paper's MACs ratio (HINet 100.0/170.5, MPRNet
   87.9/141.0, nni convention at 256x256) with :func:`dreamlib.prune.compare_methods`;
4. evaluate each pruned copy on the five SynRain13k-like sets (basicsr convention),
   and write a markdown table, the full JSON (per-layer sparsities, search details),
   and a per-layer sparsity chart.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import settings
from ..io import atomic_write_json, atomic_write_text

__all__ = ["before_finetune_table"]

from ..train import EVAL_FAMILY as FAMILY  # benchmark family each teacher is evaluated on


def before_finetune_table(name: str, *, out_dir=None, dream_batch: int | None = None, dream_crop: int | None = None,
                          dream_steps: int | None = None, seed: int = 0, limit: int | None = None,
                          methods=("l1-uniform", "l1-global", "erk", "lamp", "adaptive"), progress: bool = True):
    """Run the comparison for one teacher and write ``<out_dir>/<name>.{md,json,png}``.

    Returns the :class:`dreamlib.prune.Comparison`. Defaults: X = 8 dreamed 64 px
    images after 150 steps (quick mode: 4 images, 30 steps); the full benchmark
    (quick mode: the quick one).
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    from ..data.benchmark import benchmark_sets
    from ..dream import dream, make_targets
    from ..prune import compare_methods, paper_ratio, paper_target_macs, plot_layer_sparsity
    from ..teachers import load_teacher

    settings.seed_everything(seed)
    out_dir = Path(out_dir) if out_dir else settings.REPO_ROOT / "results" / "prune_before_finetune"
    teacher = load_teacher(name)
    t0 = time.perf_counter()
    y = make_targets(dream_batch or settings.quick(8, 4), dream_crop or 64, seed=seed)
    steps = dream_steps or settings.quick(150, 30)
    X = dream(teacher, y, steps=steps, lambda_orth=0.05, orth_schedule="cosine", seed=seed, progress=progress).x
    dream_s = time.perf_counter() - t0
    sets = benchmark_sets(family=FAMILY[name])
    target = paper_target_macs(teacher, name)
    comp = compare_methods(teacher, X, sets, target_macs=target, methods=methods, limit=limit, progress=progress)

    out_dir.mkdir(parents=True, exist_ok=True)
    head = (f"# {name} (small teacher): pruned to the paper's FLOPs ratio {paper_ratio(name):.4f}, "
            f"before fine-tuning\n\n"
            f"Target {target / 1e9:.4f} G-MACs (nni, 1x3x256x256). X for the adaptive scheme: {len(X)} images of "
            f"{X.shape[-1]} px dreamed in {steps} steps ({dream_s:.0f} s). Metrics: basicsr convention (RGB, "
            f"no border crop) on the synthetic {FAMILY[name]} benchmark; `psnr_X` is the PSNR of the pruned "
            f"model's output vs the teacher's on X.\n\nCommand: `python -m dreamlib prune-table --model {name}`"
            f"{' (quick mode)' if settings.QUICK else ''}\n\n")
    cols = ["gmacs", "macs_error_pct", "sparsity", "psnr_X", "seconds"]
    extra = comp.table[cols].to_markdown(floatfmt=".4g") if _has_tabulate() else comp.table[cols].to_string()
    atomic_write_text(out_dir / f"{name}.md", head + comp.markdown() + "\n\n" + extra + "\n")
    atomic_write_json(out_dir / f"{name}.json", {
        "model": name, "quick": settings.QUICK, "seed": seed, "target_macs": target, "X_shape": list(X.shape),
        "dream_steps": steps, "dream_seconds": dream_s,
        "table": json.loads(comp.table.to_json(orient="index")),
        "layers": json.loads(comp.layers.to_json(orient="records")),
        "reports": {m: r.to_card() for m, r in comp.reports.items()},
    })
    n_layers = comp.layers["layer"].nunique()
    ax = plot_layer_sparsity(comp.layers, ax=Figure(figsize=(max(8, 0.25 * n_layers + 2), 4)).subplots())
    ax.set_title(f"{name}: per-layer sparsity of each method at {target / 1e9:.3f} G-MACs")
    ax.figure.savefig(out_dir / f"{name}_layers.png", dpi=90)
    return comp


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
