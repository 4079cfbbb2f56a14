"""Pruning methods at the paper's FLOPs, before any fine-tuning, and the two readings of Algorithm 1.

    python -m dreamlib prune-table --model hinet --config configs/small_cpu.yaml --out results/prune_before_finetune

Steps, all seeded:

1. load the small teacher (:func:`dreamlib.teachers.load_teacher`);
2. dream the batch X that the adaptive scheme measures PSNR on, exactly as the Table 1/2
   runner does (:func:`dreamlib.experiments.tables.dream_x`, the config's ``dream_x``), so
   the rows here are the Table runner's rows before fine-tuning;
3. prune with every method to the paper's MACs ratio (HINet 100.0/170.5, MPRNet
   87.9/141.0, nni convention at 256x256) with :func:`dreamlib.prune.compare_methods`,
   the adaptive scheme in the config's reading (``adaptive.order``, independent by default);
4. the adaptive scheme once more in the *other* reading of Algorithm 1 on the same X and
   target (row ``adaptive (<order>)``), so both readings are measured side by side;
5. evaluate each pruned copy on the teacher's synthetic benchmark (config convention),
   and write a markdown table, the full JSON (per-layer and per-module sparsities, search
   details), a per-layer sparsity chart and a per-module chart of the two readings.
"""
from __future__ import annotations

import json
import time

from .. import settings
from ..io import atomic_savefig, atomic_write_json, atomic_write_text
from ..provenance import provenance

__all__ = ["before_finetune_table", "plot_readings"]

from ..train import EVAL_FAMILY as FAMILY  # benchmark family each teacher is evaluated on

DEFAULT_METHODS = ("l1-uniform", "l1-global", "erk", "lamp", "adaptive", "dream-budget")


def before_finetune_table(name: str, *, out_dir=None, config: dict | None = None, limit: int | None = None,
                          methods=DEFAULT_METHODS, both_readings: bool = True, progress: bool = True,
                          command: str | None = None):
    """Run the comparison for one teacher and write ``<out_dir>/<name>.{md,json}``,
    ``<name>_layers.png`` and (with ``both_readings``) ``<name>_readings.png``.

    Args:
        config: the runner config (:func:`dreamlib.experiments.tables.load_config`): seed,
            convention, ``dream_x`` (the batch X), ``adaptive`` (eps, order), ``dream-budget``.
        limit: evaluate only the first ``limit`` images of each set (default: the config's
            ``eval_limit``).
        both_readings: also run the adaptive scheme in the other reading of Algorithm 1.

    Returns the :class:`dreamlib.prune.Comparison` (the other reading as an extra row
    ``adaptive (<order>)`` in ``table``, ``reports`` and ``layers``).
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    from ..data.benchmark import benchmark_sets
    from ..prune import compare_methods, paper_ratio, paper_target_macs, plot_layer_sparsity
    from ..prune.adaptive import ORDERS
    from ..teachers import load_teacher
    from .run import default_run_dir, prepare_out_dir
    from .tables import dream_x, resolve_config

    cfg = resolve_config(config)
    settings.seed_everything(cfg["seed"])
    out_dir = prepare_out_dir(out_dir if out_dir else default_run_dir(f"prune-table_{name}"))
    limit = cfg.get("eval_limit") if limit is None else limit
    teacher = load_teacher(name)
    from ..protocols import convention_for

    protocol = cfg["protocol"]
    convention = convention_for(teacher, protocol, cfg["convention"])  # a wrong protocol fails before any compute
    t0 = time.perf_counter()
    x_info: dict = {}
    X = dream_x(teacher, cfg, progress=progress, info=x_info)
    dream_s = time.perf_counter() - t0
    sets = benchmark_sets(family=FAMILY[name])
    target = paper_target_macs(teacher, name)
    options = {"adaptive": dict(cfg.get("adaptive") or {}), "dream-budget": dict(cfg.get("dream-budget") or {})}
    comp = compare_methods(teacher, X, sets, target_macs=target, methods=methods, convention=convention,
                           protocol=protocol,
                           method_options=options, limit=limit, progress=progress)
    both_readings = both_readings and "adaptive" in methods
    if both_readings:
        first = options["adaptive"].get("order", "independent")
        other = next(o for o in ORDERS if o != first)
        extra = compare_methods(teacher, X, sets, target_macs=target, methods=("adaptive",),
                                convention=convention, protocol=protocol, limit=limit, progress=progress,
                                include_original=False,  # comp has the teacher's row already
                                method_options={"adaptive": {**options["adaptive"], "order": other}})
        _merge_row(comp, extra, f"adaptive ({other})")

    cmd = command or f"python -m dreamlib prune-table --model {name}"
    head = (f"# {name} (small teacher): pruned to the paper's FLOPs ratio {paper_ratio(name):.4f}, "
            f"before fine-tuning\n\n"
            f"Target {target / 1e9:.4f} G-MACs (nni, 1x3x256x256). X for the adaptive scheme and dream-budget: "
            f"{len(X)} images of {X.shape[-1]} px dreamed in {cfg['dream_x']['steps']} steps ({dream_s:.0f} s), "
            f"the Table runner's batch. Metrics: {convention} convention"
            f"{' (official protocol, dreamlib.protocols)' if protocol == 'official' else ''} "
            f"on the synthetic {FAMILY[name]} "
            f"benchmark; `psnr_X` is the PSNR of the pruned model's output vs the teacher's on X. "
            f"`adaptive` is Algorithm 1 in the {options['adaptive'].get('order', 'independent')} reading"
            + (f", `adaptive ({other})` the other reading on the same X" if both_readings else "") + ".\n\n"
            f"Command: `{cmd}`{' (quick mode)' if settings.QUICK else ''}\n\n")
    cols = ["gmacs", "macs_error_pct", "sparsity", "psnr_X", "seconds"]
    extra_md = comp.table[cols].to_markdown(floatfmt=".4g") if _has_tabulate() else comp.table[cols].to_string()
    payload = {
        "model": name, "quick": settings.QUICK, "seed": cfg["seed"], "config": cfg, "target_macs": target,
        "protocol": protocol, "convention": convention,
        "X_shape": list(X.shape), "dream_steps": cfg["dream_x"]["steps"], "dream_seconds": dream_s,
        "dream_residual_floor": x_info["residual_floor"], "dream_coverage_X": x_info["coverage"],
        "table": json.loads(comp.table.to_json(orient="index")),
        "layers": json.loads(comp.layers.to_json(orient="records")),
        "reports": {m: r.to_card() for m, r in comp.reports.items()},
        "command": cmd,
        "provenance": provenance(config=cfg, seed=cfg["seed"], device=next(teacher.parameters()).device,
                                 teacher=teacher),
    }
    atomic_write_json(out_dir / f"{name}.json", payload)
    atomic_write_text(out_dir / f"{name}.md", head + comp.markdown() + "\n\n" + extra_md + "\n")
    n_layers = comp.layers["layer"].nunique()
    ax = plot_layer_sparsity(comp.layers, ax=Figure(figsize=(max(8, 0.25 * n_layers + 2), 4)).subplots())
    ax.set_title(f"{name}: per-layer sparsity of each method at {target / 1e9:.3f} G-MACs")
    atomic_savefig(ax.figure, out_dir / f"{name}_layers.png")
    if both_readings:
        n_mod = len(comp.reports["adaptive"].module_sparsity)
        ax = plot_readings(payload, ax=Figure(figsize=(max(8, 0.3 * n_mod + 2), 4)).subplots())
        atomic_savefig(ax.figure, out_dir / f"{name}_readings.png")
    return comp


def _merge_row(comp, extra, label: str) -> None:
    """Append ``extra``'s adaptive row to ``comp`` under ``label``."""
    import pandas as pd

    row = extra.table.loc[["adaptive"]].rename(index={"adaptive": label})
    comp.table = pd.concat([comp.table, row])
    comp.table.index.name = "method"
    comp.reports[label] = extra.reports["adaptive"]
    comp.results[label] = extra.results.get("adaptive")
    comp.models[label] = extra.models.get("adaptive")
    comp.layers = pd.concat([comp.layers, extra.layers.assign(method=label)], ignore_index=True)


def readings(payload: dict) -> dict:
    """``{row label: report card}`` of the adaptive rows (both readings) of a prune-table payload."""
    return {m: r for m, r in payload["reports"].items() if m == "adaptive" or m.startswith("adaptive (")}


def plot_readings(payload: dict, ax=None):
    """Per-module sparsity of the adaptive rows of a prune-table payload (one bar per reading),
    modules in forward (= visiting) order, with the MACs each reading keeps and its average PSNR."""
    import numpy as np

    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(12, 4))
    reps = readings(payload)
    modules = list(next(iter(reps.values()))["module_sparsity"])
    width = 0.8 / len(reps)
    for k, (label, rep) in enumerate(reps.items()):
        order = rep["details"]["order"]
        avg = payload["table"][label].get("average/psnr")
        ax.bar(np.arange(len(modules)) + (k - (len(reps) - 1) / 2) * width,
               [rep["module_sparsity"][m] for m in modules], width,
               label=f"{order}: tp {rep['details']['tp']:.1f} dB" + (f", {avg:.2f} dB average" if avg else ""))
    ax.set_xticks(range(len(modules)))
    ax.set_xticklabels(modules, rotation=90, fontsize=7)
    ax.set_xlabel("module (forward order = the order the search visits them)")
    ax.set_ylabel("sparsity (fraction of weights zeroed)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"{payload['model']}: Algorithm 1's two readings at the same "
                 f"{payload['target_macs'] / 1e9:.3f} G-MACs (before fine-tuning)")
    ax.figure.tight_layout()
    return ax


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
