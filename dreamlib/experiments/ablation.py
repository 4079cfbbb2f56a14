"""The paper's Fig. 6 (ablation) and Fig. 1 (self-collected data) as runners.

    python -m dreamlib reproduce ablation --model hinet     # l1 -> +AP -> +KD -> +L_orth, per set
    python -m dreamlib reproduce selfdata --model hinet     # fine-tune on one rain kind / noise / dreams

Fig. 6: at the paper's FLOPs ratio, ``l1`` (uniform l1, no data), ``+AP``
(adaptive pruning, Algorithm 1, no fine-tuning), ``+AP +KD`` (distilled on images
dreamed *without* L_orth), ``+AP +KD +L_orth`` (the full method).

Fig. 1: the teacher pruned by l1 at 30 % of its weights (the paper's example),
then fine-tuned from the teacher's outputs on three sources with the same
budget: "self-collected" rainy images of one kind (``light``, like Rain100L),
undreamed uniform noise, and dreamed images. The paper's point is that one rain
kind does not generalise to the others (Rain100H).

Both write ``results/<run>/<figure>_<model>.{md,json,png}`` with the config, seed,
version and wall time.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import __version__, settings
from ..io import atomic_savefig, atomic_write_json, atomic_write_text
from ..provenance import provenance

__all__ = ["ablation", "selfdata", "plot_per_set", "ABLATION_STEPS", "SELFDATA_SOURCES"]

ABLATION_STEPS = ("l1", "+AP", "+AP +KD", "+AP +KD +L_orth")
SELFDATA_SOURCES = {"self-collected (light rain only)": "self", "noise (undreamed)": "noise", "dreamed (ours)": "dream"}


def _setup(name, config: dict, device, sets):
    from ..data.benchmark import benchmark_sets
    from ..teachers import load_teacher
    from ..train import EVAL_FAMILY
    cfg = config  # resolved by the caller (tables.resolve_config)
    settings.seed_everything(cfg["seed"])
    device = torch.device(device) if device else settings.pick_device()
    teacher = load_teacher(name, device=device)
    return cfg, teacher, sets if sets is not None else benchmark_sets(family=EVAL_FAMILY[name])


def _evaluate(model, sets, cfg, progress):
    from ..evaluate import evaluate

    return evaluate(model, sets, convention=cfg["convention"], progress=progress, limit=cfg["eval_limit"],
                    protocol=cfg.get("protocol", "dreamlib"))


def _convention(result: dict) -> str:
    """The convention the rows were scored in (``null`` in the config: the official protocol's)."""
    from ..protocols import OFFICIAL

    return result["config"]["convention"] or OFFICIAL[result["model"]].convention


def _table_rows(table, cfg, name: str) -> dict:
    """The l1 / +AP / full-method / original rows of a finished Table 1/2 run made with the same settings."""
    import json

    payload = json.loads(Path(table).read_text()) if not isinstance(table, dict) else table
    if not str(payload.get("data", "")).startswith("synthetic benchmark"):
        raise ValueError(f"--from-table: the table was evaluated on {payload.get('data')!r}, this ablation on the "
                         "synthetic benchmark; give a table run on the synthetic benchmark, or drop --from-table")
    for key, want in (("model", name), ("variant", "small"), ("quick", settings.QUICK), ("checkpoint", None)):
        if payload.get(key) != want:
            raise ValueError(f"--from-table: the table was made with {key} = {payload.get(key)!r}, this ablation "
                             f"needs {want!r}; give the table of the same model and mode, or drop --from-table")
    keys = ("seed", "convention", "dream_x", "adaptive", "distill", "eval_limit")
    diff = [k for k in keys if payload["config"].get(k) != cfg.get(k)]
    if payload["config"].get("protocol", "dreamlib") != cfg.get("protocol", "dreamlib"):  # older tables: dreamlib
        diff.append("protocol")
    if diff:
        raise ValueError(f"the table run used other settings for {diff}; run the ablation without "
                         f"--from-table, or with the table's config file")
    labels = {"l1": "l1-uniform", "+AP": "adaptive (before distillation)",
              ABLATION_STEPS[-1]: "ours: adaptive + dream-distill", "original": "original"}
    out = {}
    for step, label in labels.items():
        row = payload["rows"][label]
        sets = [k[:-5] for k in row if k.endswith("/psnr")]
        out[step] = {s: {"psnr": row[f"{s}/psnr"], "ssim": row[f"{s}/ssim"]} for s in sets}
    return out


def ablation(name: str = "hinet", *, config: dict | None = None, sets: dict | None = None, device=None,
             progress: bool = True, state_dir=None, resume: bool = False, from_table=None) -> dict:
    """Fig. 6: ``{"rows": {step: evaluate(...)}, "config", "wall_s", ...}`` for :data:`ABLATION_STEPS`.

    Args:
        state_dir: where each distillation writes its resumable state (none if ``None``).
        resume: continue the distillations that have a state in ``state_dir``.
        from_table: a ``table1_<model>.json`` (or its payload) made with the same settings: its
            l1, adaptive, full-method and original rows are taken as they are (same seed, same
            protocol), so only the ``+AP +KD`` (no L_orth) student is distilled here.
    """
    from ..distill import distill
    from ..prune import copy_model, paper_target_macs, prune
    from .tables import distill_config, dream_x, resolve_config

    t0 = time.perf_counter()
    cfg = resolve_config(config)
    reused = _table_rows(from_table, cfg, name) if from_table is not None else {}  # checked before any work
    cfg, teacher, sets = _setup(name, cfg, device, sets)
    target = paper_target_macs(teacher, name)
    # the same X as the table runner, so +AP is the table's adaptive student
    x_info: dict = {}
    X = dream_x(teacher, cfg, progress=progress, info=x_info)
    rows, resumed = {}, []
    if "l1" in reused:
        rows["l1"] = reused["l1"]
    else:
        l1, _ = prune(teacher, "l1-uniform", target_macs=target)
        rows["l1"] = _evaluate(l1, sets, cfg, progress)
    ap, _ = prune(teacher, "adaptive", X=X, target_macs=target, **cfg["adaptive"])
    rows["+AP"] = reused.get("+AP") or _evaluate(ap, sets, cfg, progress)
    for label, lam in (("+AP +KD", 0.0), ("+AP +KD +L_orth", cfg["distill"]["lambda_orth"])):
        if label in reused:
            rows[label] = reused[label]
            continue
        dcfg = distill_config(cfg, x_info, lambda_orth=lam)
        state = Path(state_dir) / f"fig6_{name}_lorth{lam:g}.distill-state.pt" if state_dir else None
        go_on = bool(resume and state and state.is_file())
        resumed += [label] if go_on else []
        student, _ = distill(teacher, copy_model(ap), dcfg, state_path=state, resume=go_on, progress=progress,
                             fingerprint={"figure": "fig6", "model": name, "target_macs": int(target),
                                          "quick": bool(settings.QUICK)})
        rows[label] = _evaluate(student, sets, cfg, progress)
    rows["original"] = reused.get("original") or _evaluate(teacher, sets, cfg, progress)
    return {"figure": "fig6_ablation", "model": name, "rows": rows, "target_macs": target, "config": cfg,
            "seed": cfg["seed"], "dreamlib": __version__, "quick": settings.QUICK,
            "reused_from_table": sorted(reused) if reused else [], "resumed_from_state": resumed,
            "dream_residual_floor": x_info["residual_floor"], "dream_coverage_X": x_info["coverage"],
            "table_source": str(from_table) if isinstance(from_table, (str, Path)) else None,
            "provenance": provenance(config=cfg, seed=cfg["seed"], device=next(teacher.parameters()).device,
                                     teacher=teacher),
            "wall_s": time.perf_counter() - t0}


def selfdata(name: str = "hinet", *, sparsity: float = 0.3, kind: str = "light", config: dict | None = None,
             sets: dict | None = None, device=None, progress: bool = True, state_dir=None,
             resume: bool = False) -> dict:
    """Fig. 1: l1 at ``sparsity``, then the same distillation budget on each of :data:`SELFDATA_SOURCES`.

    ``state_dir`` / ``resume`` as in :func:`ablation` (one state file per source and
    sparsity). At a sparsity other than the paper's 30 % the result carries a ``tag``
    (``l1-50`` for 50 %), so :func:`write` gives it its own files.
    """
    from ..distill import distill
    from ..prune import copy_model, prune
    from .tables import distill_config, dream_x, resolve_config

    t0 = time.perf_counter()
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity is the fraction of weights l1 removes, in (0, 1); got {sparsity}")
    pct = round(100 * sparsity)
    tag = None if pct == 30 else f"l1-{pct}"
    suffix = f"_{tag}" if tag else ""
    cfg, teacher, sets = _setup(name, resolve_config(config), device, sets)
    pruned, _ = prune(teacher, "l1-uniform", sparsity=sparsity)
    rows = {"original": _evaluate(teacher, sets, cfg, progress),
            f"l1 {pct} % (no fine-tuning)": _evaluate(pruned, sets, cfg, progress)}
    resumed = []
    x_info = {"residual_floor": None}
    if cfg["distill"].get("residual_floor") == "auto":  # decided on the table runner's X
        dream_x(teacher, cfg, progress=progress, info=x_info)
    for label, source in SELFDATA_SOURCES.items():
        dcfg = distill_config(cfg, x_info, source=source, self_kind=kind)
        state = Path(state_dir) / f"fig1_{name}{suffix}_{source}.distill-state.pt" if state_dir else None
        go_on = bool(resume and state and state.is_file())
        resumed += [f"fine-tuned on {label}"] if go_on else []
        student, _ = distill(teacher, copy_model(pruned), dcfg, state_path=state, resume=go_on, progress=progress,
                             fingerprint={"figure": "fig1", "model": name, "sparsity": float(sparsity),
                                          "source": source, "quick": bool(settings.QUICK)})
        rows[f"fine-tuned on {label}"] = _evaluate(student, sets, cfg, progress)
    return {"figure": "fig1_selfdata", "model": name, "tag": tag, "rows": rows, "sparsity": sparsity, "self_kind": kind,
            "config": cfg, "seed": cfg["seed"], "dreamlib": __version__, "quick": settings.QUICK,
            "resumed_from_state": resumed, "wall_s": time.perf_counter() - t0,
            "provenance": provenance(config=cfg, seed=cfg["seed"], device=next(teacher.parameters()).device,
                                     teacher=teacher)}


def plot_per_set(result: dict, ax=None, metric: str = "psnr"):
    """Grouped bars: one group per set (plus the average), one bar per row of ``result``."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result["rows"]
    sets = list(next(iter(rows.values())))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(7, 1.6 * len(sets)), 3.8))
    width = 0.8 / len(rows)
    for i, (label, res) in enumerate(rows.items()):
        vals = [res[s][metric] for s in sets]
        ax.bar(np.arange(len(sets)) + (i - (len(rows) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets)
    ax.set_ylabel(f"{metric.upper()} ({'dB, ' if metric == 'psnr' else ''}{_convention(result)})")
    lo = min(res[s][metric] for res in rows.values() for s in sets)
    hi = max(res[s][metric] for res in rows.values() for s in sets)
    ax.set_ylim(lo - 0.1 * (hi - lo) - (1 if metric == "psnr" else 0.02), hi + 0.05 * (hi - lo))
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"{result['model']}: {result['figure']}" + (f" ({result['tag']})" if result.get("tag") else ""))
    ax.figure.tight_layout()
    return ax


def write(result: dict, out_dir) -> Path:
    """Write ``<figure>_<model>.{json,md,png}`` (atomically) and return the markdown path."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (f"{result['figure']}_{result['model']}" + (f"_{result['tag']}" if result.get("tag") else ""))
    atomic_write_json(stem.with_suffix(".json"), result)
    sets = list(next(iter(result["rows"].values())))
    lines = [f"# {result['figure']}: {result['model']} (PSNR dB / SSIM, {_convention(result)})", "",
             "| | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for label, res in result["rows"].items():
        lines.append(f"| {label} | " + " | ".join(f"{res[s]['psnr']:.2f} / {res[s]['ssim']:.4f}" for s in sets) + " |")
    lines += ["", f"Seed {result['seed']}, dreamlib {result['dreamlib']}, wall time {result['wall_s'] / 60:.1f} min"
              + (" (quick mode)" if result["quick"] else "") + "."]
    if result.get("reused_from_table"):
        lines += ["", f"Rows {', '.join(result['reused_from_table'])} are taken from "
                      f"`{result.get('table_source') or 'a Table 1 run'}` (same seed and settings; the wall time "
                      f"above does not include them); the other rows were computed by this run."]
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    if result.get("resumed_from_state"):
        lines += ["", f"Rows {', '.join(result['resumed_from_state'])} continued an interrupted distillation "
                      "from its state file (`--resume`); the wall time above covers only the last invocation."]
    md = stem.with_suffix(".md")
    atomic_write_text(md, "\n".join(lines) + "\n")
    sets_n = len(next(iter(result["rows"].values())))
    ax = plot_per_set(result, ax=Figure(figsize=(max(7, 1.6 * sets_n), 3.8)).subplots())
    atomic_savefig(ax.figure, stem.with_suffix(".png"), dpi=90)
    return md
