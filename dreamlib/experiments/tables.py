"""Tables 1 and 2 of the paper: every method at the same FLOPs, ours distilled by dreaming.

    python -m dreamlib reproduce table1 --model hinet               # small teacher, synthetic benchmark
    python -m dreamlib reproduce table1 --model hinet --config configs/quick.yaml
    python -m dreamlib reproduce table1 --model hinet --variant official \\
        --checkpoint HINet-Rain13k.pth --data-root /data/Rain13k/test --convention matlab

The protocol (as the paper, Sec. 4.2):

1. the teacher: a shipped small teacher, or ``--checkpoint`` (official formats);
2. the MACs target: the paper's ratio (HINet 100.0/170.5, MPRNet 87.9/141.0,
   DuRN 34.7/55.9, AGAN 41.8/89.4) of the teacher's nni MACs at 1x3x256x256,
   or ``--target-gflops``;
3. X: a batch dreamed from the teacher (the adaptive scheme's PSNR is measured on it);
4. l1 (uniform per-layer ratio, the paper's wording), ERK and LAMP are magnitude-
   pruned to the target and **not fine-tuned** (the paper's baselines are data-free
   magnitude pruning); the adaptive scheme (Algorithm 1, tp searched to hit the
   target) gives our student, which is then **distilled by one-stage dreaming**
   (:func:`dreamlib.distill.distill`);
5. every model is evaluated on the sets (synthetic benchmark by default,
   ``--data-root`` for the real ones) in the chosen convention.

Output in ``results/<run>/``: ``<table>.md`` (the paper's column layout, with the
paper's own numbers beside), ``<table>.csv``, ``<table>.json`` (config, seed,
versions, wall times, per-method reports), and the distillation state (resumable).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from .. import __version__, settings
from ..io import atomic_savefig, atomic_write_json, atomic_write_text
from ..provenance import provenance
from .config import ConfigError, DreamXConfig, RunConfig, validate
from .run import default_run_dir, prepare_out_dir

__all__ = ["PAPER_TABLES", "DEFAULT_CONFIG", "load_config", "resolve_config", "ConfigError", "run_table", "TABLE_MODELS",
           "markdown", "save_examples"]

#: Which models each table covers and the benchmark family they are evaluated on.
TABLE_MODELS = {"table1": ("hinet", "mprnet"), "table2": ("durn", "agan")}

#: The paper's Tables 1-2 (PSNR on Y / SSIM), for reference next to ours.
PAPER_TABLES = {
    "hinet": {"sets": ("Test2800", "Test1200", "Test100", "Rain100H", "Rain100L", "average"), "rows": {
        "l1": [29.34, .887, 27.49, .831, 24.92, .816, 18.66, .599, 29.49, .888, 25.98, .804],
        "erk": [32.37, .929, 31.09, .895, 25.30, .835, 23.46, .783, 28.74, .880, 28.19, .864],
        "lamp": [33.23, .936, 32.52, .912, 27.58, .872, 27.21, .862, 30.98, .919, 30.30, .900],
        "ours": [33.79, .940, 32.95, .919, 30.12, .906, 29.54, .890, 36.94, .969, 32.67, .925],
        "original": [33.91, .941, 33.05, .919, 30.29, .906, 30.65, .894, 37.28, .970, 33.03, .926]}},
    "mprnet": {"sets": ("Test2800", "Test1200", "Test100", "Rain100H", "Rain100L", "average"), "rows": {
        "l1": [27.81, .844, 26.32, .781, 24.41, .782, 16.07, .459, 27.72, .831, 24.47, .739],
        "erk": [32.84, .931, 31.82, .888, 28.44, .868, 27.76, .844, 34.32, .946, 31.04, .895],
        "lamp": [33.07, .934, 32.38, .899, 29.09, .879, 28.82, .864, 35.59, .957, 31.79, .907],
        "ours": [33.40, .938, 32.70, .912, 30.07, .894, 29.19, .874, 36.56, .965, 32.38, .917],
        "original": [33.64, .938, 32.91, .916, 30.27, .897, 30.41, .890, 36.40, .965, 32.73, .921]}},
    "durn": {"sets": ("test_a", "test_b"), "rows": {
        "l1": [24.52, .849, 21.81, .758], "erk": [28.63, .906, 24.07, .803], "lamp": [29.54, .908, 24.69, .807],
        "ours": [30.42, .918, 25.00, .813], "original": [31.24, .926, 25.32, .817]}},
    "agan": {"sets": ("test_a", "test_b"), "rows": {
        "l1": [14.61, .725, 13.77, .639], "erk": [17.83, .824, 16.68, .732], "lamp": [19.63, .822, 18.18, .731],
        "ours": [31.18, .921, 24.82, .808], "original": [31.51, .921, 24.92, .809]}},
}

#: Full settings for the small teachers on a CPU (configs/small_cpu.yaml holds the same): the
#: defaults of :class:`dreamlib.experiments.config.RunConfig`, as the plain dict the runners read.
#: ``dream_x.residual_floor`` / ``distill.residual_floor``: None = the paper's plain Eq. 5; a number =
#: the dreams' residual floor (dreamlib.dream, beyond the paper); "auto" = plain dreams, redreamed with
#: AUTO_FLOOR (and the distillation's dreams too) when the teacher changes under AUTO_MIN_CHANGE of their
#: pixels. ``distill_from``: the pruned students distilled by dreaming (the paper: adaptive; lamp asks how
#: much of the result is the allocation and how much the dreaming).
DEFAULT_CONFIG = RunConfig().to_dict()

#: The row label of a student distilled from each pruning method.
DISTILLED_LABEL = {"adaptive": "ours: adaptive + dream-distill",
                   "dream-budget": "dream-budget + dream-distill (beyond the paper)"}

#: "auto" residual floor: plain dreams that the teacher changes on fewer than this fraction of
#: pixels (by more than 30/255) carry no degradation; they are dreamed again with AUTO_FLOOR.
AUTO_MIN_CHANGE = 0.01
#: Mean |T(x) - x| asked of each dream then (0-1 units). Chosen on the small DuRN's dreams:
#: the smallest of 0.02 / 0.04 / 0.06 whose dreams the teacher changes about as much as the
#: rainy test inputs of its family (pixels changed > 30/255; 5.0 / 9.3 / 11.2 % vs 8.2 / 7.3 %).
AUTO_FLOOR = 0.04


def distilled_label(method: str) -> str:
    return DISTILLED_LABEL.get(method, f"{method} + dream-distill")


#: Folder of the shipped YAML configs.
CONFIG_DIR = settings.REPO_ROOT / "configs"


def load_config(path=None, **overrides) -> dict:
    """The runners' settings: :data:`DEFAULT_CONFIG` updated by a YAML file, then by keyword
    overrides (nested sections key by key), checked completely (:mod:`.config`): unknown keys,
    types and ranges raise :class:`ConfigError` naming the file and the key path.

    Without ``path``, quick mode reads ``configs/quick.yaml``.
    """
    import yaml

    layers = []
    if path is None and settings.QUICK:
        path = CONFIG_DIR / "quick.yaml"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found (see configs/ for examples)")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{path}: must hold a mapping of settings (key: value lines), got {type(raw).__name__}")
        layers.append((str(path), raw or {}))
    if overrides:
        layers.append(("overrides", overrides))
    return validate(layers).to_dict()


def resolve_config(config: dict | None) -> dict:
    """A config dict passed to a runner, checked and completed like a YAML file
    (``None``: :func:`load_config`'s default)."""
    if config is None:
        return load_config()
    return validate([("config", config)]).to_dict()


def _teacher(name, variant, checkpoint, device):
    from ..models import build, load_checkpoint
    from ..teachers import load_teacher

    if checkpoint:
        model = build(name, variant)
        load_checkpoint(model, checkpoint)
        return model.to(device).eval()
    if variant != "small":
        raise ValueError(f"variant {variant!r} needs --checkpoint (only the small teachers are shipped)")
    return load_teacher(name, device=device)


def _row(res: dict, sets) -> dict:
    out = {}
    for s in list(sets) + ["average"]:
        out[f"{s}/psnr"], out[f"{s}/ssim"] = res[s]["psnr"], res[s]["ssim"]
    return out


def dream_x(teacher, cfg: dict, *, device=None, progress: bool = False, info: dict | None = None):
    """The batch X that the adaptive search measures PSNR on: ``cfg["dream_x"]``
    (batch_size, crop, steps, residual_floor) dreamed from ``teacher`` with seed ``cfg["seed"]``,
    in the run's ``distill.precision`` and ``distill.checkpoint_teacher`` (GPU memory).
    Returns a (batch_size, 3, crop, crop) tensor on ``device``. ``info`` (a dict), if given,
    receives ``residual_floor`` (the floor used, or None) and ``coverage`` (:func:`teacher_change`
    of X; with ``"auto"`` also ``coverage_plain``, that of the plain dreams)."""
    from ..dream import dream, make_targets, teacher_change

    import dataclasses

    dx = {**dataclasses.asdict(DreamXConfig()), **cfg["dream_x"]}  # the keys a config leaves out: their defaults
    targets = make_targets(dx["batch_size"], dx["crop"], seed=cfg["seed"])
    if device is not None:
        targets = targets.to(device)
    floor = dx.get("residual_floor")
    info = {} if info is None else info

    # the run's GPU-memory switches (distill.precision, distill.checkpoint_teacher) apply to this dreaming too
    memory = {"precision": cfg["distill"].get("precision", "fp32"),
              "checkpoint": bool(cfg["distill"].get("checkpoint_teacher", False))}

    def run(f):
        return dream(teacher, targets, steps=dx["steps"], lr=dx["lr"], lambda_orth=dx["lambda_orth"],
                     orth_schedule=dx["orth_schedule"], seed=cfg["seed"], progress=progress, residual_floor=f,
                     **memory).x

    if floor == "auto":
        x = run(None)
        info["coverage_plain"] = teacher_change(teacher, x)
        floor = AUTO_FLOOR if info["coverage_plain"]["changed_frac"] < AUTO_MIN_CHANGE else None
        if floor is not None:
            x = run(floor)
    else:
        x = run(floor)
    info["residual_floor"] = floor
    info["coverage"] = teacher_change(teacher, x)
    return x


def distill_config(cfg: dict, x_info: dict, **overrides):
    """The run's :class:`dreamlib.distill.DistillConfig`: ``cfg["distill"]`` with the seed, and a
    ``residual_floor: auto`` resolved to the decision :func:`dream_x` recorded in ``x_info``."""
    from ..distill import DistillConfig

    opts = {**cfg["distill"], **overrides}
    if opts.get("residual_floor") == "auto":
        opts["residual_floor"] = x_info["residual_floor"]
    return DistillConfig(**opts, seed=cfg["seed"])


def set_coverage(teacher, sets: dict) -> dict:
    """:func:`dreamlib.dream.teacher_change` of the rainy inputs of every set (images cropped to their size)."""
    from ..dream import teacher_change

    out = {}
    for name, ds in sets.items():
        changed = mean = pixels = 0.0
        for i in range(len(ds)):
            item = ds[i]
            h, w = item.get("hw", item["input"].shape[-2:])
            c = teacher_change(teacher, item["input"][None, :, :h, :w])
            n = h * w
            changed, mean, pixels = changed + c["changed_frac"] * n, mean + c["mean_abs"] * n, pixels + n
        out[name] = {"changed_frac": changed / pixels, "mean_abs": mean / pixels}
    return out


def run_table(table: str, name: str, *, variant: str = "small", config: dict | None = None, checkpoint=None,
              data_root=None, target_gflops: float | None = None, out_dir=None, resume: bool = False,
              device=None, progress: bool = True, command: str | None = None) -> dict:
    """Run the protocol for one model and write ``<out_dir>/<table>_<name>.{md,csv,json}``.

    Returns the JSON payload (rows keyed by method). ``resume`` continues an
    interrupted distillation from its state file. ``command`` is the command line
    recorded in the report (the CLI passes its own, ``--config`` included); without
    it the report shows the equivalent ``reproduce`` command, which cannot name a
    config file.

    Under ``torchrun`` (a process group, :mod:`dreamlib.distributed`) every rank runs the
    steps before the distillation alike, the distillation is shared (each rank dreams its part
    of the batch), and rank 0 alone evaluates the students and writes the results; the other
    ranks return ``{}``.
    """
    from ..data.benchmark import benchmark_sets
    from ..data.datasets import open_sets
    from ..distill import distill
    from ..evaluate import evaluate
    from ..flops import count_macs
    from ..prune import compare_methods, copy_model, paper_target_macs, prune
    from ..train import EVAL_FAMILY

    if table not in TABLE_MODELS:
        raise ValueError(f"unknown table {table!r}; choose table1 or table2")
    if name not in TABLE_MODELS[table]:
        raise ValueError(f"{table} covers {', '.join(TABLE_MODELS[table])}, not {name!r}")
    cfg = resolve_config(config)
    if target_gflops is not None and not target_gflops > 0:  # None means "the paper's ratio", never 0
        raise ValueError(f"target_gflops must be > 0 (G-MACs of the pruned network), got {target_gflops}")
    device = torch.device(device) if device else settings.pick_device()
    settings.seed_everything(cfg["seed"])
    from ..distributed import broadcast_object, is_main

    # under torchrun every rank uses rank 0's folder; rank 0 alone evaluates the students and writes
    out_dir = prepare_out_dir(broadcast_object(out_dir if out_dir else default_run_dir(f"{table}_{name}")),
                              resume=resume)
    wall = {}
    t_all = time.perf_counter()

    teacher = _teacher(name, variant, checkpoint, device)
    from ..protocols import convention_for

    protocol = cfg["protocol"]
    convention = convention_for(teacher, protocol, cfg["convention"])  # a wrong protocol fails before any compute
    sets = (open_sets(data_root) if data_root else benchmark_sets(family=EVAL_FAMILY[name]))
    set_names = list(sets)
    dense = count_macs(teacher)
    target = int(round(target_gflops * 1e9)) if target_gflops is not None else paper_target_macs(teacher, name)

    t0 = time.perf_counter()
    x_info: dict = {}
    X = dream_x(teacher, cfg, device=device, progress=progress, info=x_info)
    wall["dream_X"] = time.perf_counter() - t0
    coverage = {"X": x_info["coverage"], **({"X_plain": x_info["coverage_plain"]} if "coverage_plain" in x_info
                                            else {}),
                "sets": set_coverage(teacher, sets), "threshold": x_info["coverage"]["threshold"]}

    t0 = time.perf_counter()
    comp = compare_methods(teacher, X, sets, target_macs=target, methods=tuple(cfg["methods"]),
                           convention=convention, protocol=protocol,
                           method_options={"adaptive": dict(cfg["adaptive"]),
                                           "dream-budget": dict(cfg.get("dream-budget") or {})},
                           limit=cfg["eval_limit"], progress=progress)
    wall["prune_and_evaluate"] = time.perf_counter() - t0

    # the paper's own protocol: tp fixed, FLOPs follow (reported beside, not in the equal-FLOPs rows)
    paper_protocol = None
    if "adaptive" in cfg["methods"] and cfg.get("paper_tp") is not None:
        t0 = time.perf_counter()
        fixed, rep = prune(teacher, "adaptive", X=X, tp=float(cfg["paper_tp"]), **cfg["adaptive"])
        res = evaluate(fixed, sets, convention=convention, progress=progress, limit=cfg["eval_limit"],
                       protocol=protocol)
        paper_protocol = {"tp": float(cfg["paper_tp"]), "order": cfg["adaptive"].get("order", "independent"),
                          "gmacs": rep.macs_after / 1e9, "macs_ratio": rep.macs_ratio,
                          "psnr_on_X": rep.details["psnr_on_X"], **_row(res, set_names),
                          "module_sparsity": rep.module_sparsity}
        wall["paper_protocol"] = time.perf_counter() - t0

    rows = {}
    for method in ["original"] + list(cfg["methods"]):
        label = {"adaptive": "adaptive (before distillation)",
                 "dream-budget": "dream-budget (before distillation, beyond the paper)"}.get(method, method)
        rows[label] = {"gmacs": float(comp.table.loc[method, "gmacs"]), "fine_tuned": False,
                       **_row(comp.results[method], set_names)}

    dcfg = distill_config(cfg, x_info)
    run_print = {"table": table, "model": name, "variant": variant, "target_macs": int(target),
                 "data": str(data_root) if data_root else f"synthetic {EVAL_FAMILY[name]}",
                 "quick": bool(settings.QUICK)}
    students, logs, resumed = {}, {}, []
    for method in cfg.get("distill_from", ["adaptive"]):
        # the adaptive student keeps the original state-file name, so older runs resume
        suffix = "" if method == "adaptive" else f".{method}"
        state = out_dir / f"{table}_{name}{suffix}.distill-state.pt"
        t0 = time.perf_counter()
        # resume continues the students that have a state; a newly listed one starts afresh
        cont = resume and state.is_file()
        resumed += [method] if cont else []
        # a copy: the pruned (not fine-tuned) models stay as they are for the examples figure
        student, mlog = distill(teacher, copy_model(comp.models[method]), dcfg, resume=cont, state_path=state,
                                progress=progress, fingerprint={**run_print, "method": method})
        wall["distill" if method == "adaptive" else f"distill_{method}"] = time.perf_counter() - t0
        logs[method] = mlog
        if not is_main():  # the other torchrun ranks only help distil (dreamlib.distributed)
            continue
        res = evaluate(student, sets, convention=convention, progress=progress, limit=cfg["eval_limit"],
                       protocol=protocol)
        rows[distilled_label(method)] = {"gmacs": count_macs(student) / 1e9, "fine_tuned": True,
                                         **_row(res, set_names)}
        students[method] = student
    if not is_main():
        return {}
    wall["total"] = time.perf_counter() - t_all
    _check_finite(rows)

    payload = {
        "table": table, "model": name, "variant": variant, "checkpoint": str(checkpoint) if checkpoint else None,
        "data": str(data_root) if data_root else f"synthetic benchmark ({EVAL_FAMILY[name]}, "
                                                  f"{'quick' if settings.QUICK else 'full'})",
        "convention": convention, "protocol": protocol, "target_macs": target, "teacher_macs": dense, "config": cfg,
        "seed": cfg["seed"], "dreamlib": __version__, "torch": torch.__version__, "device": str(device),
        "python": platform.python_version(), "quick": settings.QUICK, "wall_s": wall, "rows": rows,
        # wall_s only covers this invocation: a resumed distillation's earlier steps are not in it
        "resumed_from_state": resumed,
        "distill_log_tail": {m: {k: v[-5:] for k, v in lg.rows.items()} for m, lg in logs.items()},
        "reports": {m: r.to_card() for m, r in comp.reports.items()},
        "dream_residual_floor": x_info["residual_floor"], "dream_coverage": coverage,
        "paper_protocol": paper_protocol,
        "paper": PAPER_TABLES[name],
        "command": command,
        # one shape for every runner: argv, resolved config, versions, commit, weights and data hashes
        "provenance": provenance(config=cfg, seed=cfg["seed"], device=device, teacher=teacher, checkpoint=checkpoint,
                                 data_root=data_root or _benchmark_root(EVAL_FAMILY[name])),
    }
    stem = out_dir / f"{table}_{name}"
    models_ = {"teacher": teacher, **{m: comp.models[m] for m in ("lamp", "adaptive") if m in comp.models}}
    for method, student in students.items():
        models_["ours" if method == "adaptive" else f"{method}+distill"] = student
    models_ = dict(list(models_.items())[:6])  # a readable grid
    save_examples(models_, sets, stem.parent / f"{stem.name}_examples.png", title=f"{table}: {name} ({variant})")
    atomic_write_json(stem.with_suffix(".json"), payload)
    atomic_write_text(stem.with_suffix(".csv"), _csv(rows, set_names))
    atomic_write_text(stem.with_suffix(".md"), markdown(payload))
    return payload


def _benchmark_root(family: str) -> Path:
    """The folder of the synthetic benchmark the sets were read from (quick or full)."""
    return settings.WORK_DIR / "benchmark" / ("quick" if settings.QUICK else "full") / family


def _check_finite(rows: dict) -> None:
    """Refuse to write a table that holds NaN/Inf (a diverged run must not look like a result)."""
    import math

    bad = [f"{m}: {k}" for m, r in rows.items() for k, v in r.items()
           if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite results ({', '.join(bad[:4])}); the teacher or a setting "
                                 f"(learning rate, lambda) produced NaN/Inf: nothing was written")


def save_examples(models_: dict, sets: dict, path, title: str = "", per_set: int = 1, max_sets: int = 5) -> Path:
    """Fig. 5-style grid: for the first image(s) of each set, the rainy input, each model's
    output (with its PSNR, basicsr) and the clean target. ``models_`` maps column titles to models."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    from ..metrics import psnr
    from ..models import restore

    items = [(s, ds[i]) for s, ds in list(sets.items())[:max_sets] for i in range(min(per_set, len(ds)))]
    cols = ["rainy input"] + list(models_) + ["clean target"]
    fig = Figure(figsize=(2.1 * len(cols), 2.25 * len(items)))
    axes = fig.subplots(len(items), len(cols), squeeze=False)
    for r, (set_name, item) in enumerate(items):
        x, y = item["input"], item["target"]
        h, w = item.get("hw", y.shape[-2:])
        outs = [x]
        with torch.no_grad():
            for m in models_.values():
                dev = next(m.parameters()).device
                was = m.training
                m.eval()
                outs.append(restore(m, x[None].to(dev))[0].float().cpu().clamp(0, 1))
                m.train(was)
        outs.append(y)
        for c, (img, label) in enumerate(zip(outs, cols)):
            ax = axes[r, c]
            ax.imshow(img[:, :h, :w].permute(1, 2, 0).numpy())
            sub = "" if label == "clean target" else f"\n{psnr(img[:, :h, :w], y[:, :h, :w]):.2f} dB"
            ax.set_title((label if r == 0 else "") + sub, fontsize=8)
            ax.set_xticks([]); ax.set_yticks([])  # noqa: E702
        axes[r, 0].set_ylabel(set_name, fontsize=9)
    fig.suptitle(title + " (PSNR in dB, basicsr convention)", fontsize=10)
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=80)


def _csv(rows: dict, sets) -> str:
    cols = ["gmacs"] + [f"{s}/{m}" for s in list(sets) + ["average"] for m in ("psnr", "ssim")]
    lines = ["method," + ",".join(cols) + ",fine_tuned"]
    for method, r in rows.items():
        lines.append(f"{method}," + ",".join(f"{r[c]:.6g}" for c in cols) + f",{r['fine_tuned']}")
    return "\n".join(lines) + "\n"


def markdown(payload: dict) -> str:
    """The paper's layout: method, FLOPs, PSNR/SSIM per set, average; then the paper's numbers."""
    rows = payload["rows"]
    sets = [k[:-5] for k in next(iter(rows.values())) if k.endswith("/psnr")]
    head = ("| method | G-MACs | " + " | ".join(sets) + " |\n|---|---|" + "---|" * len(sets))
    lines = [f"# {payload['table']}: {payload['model']} ({payload['variant']})", "",
             f"Data: {payload['data']}. Metric convention: `{payload['convention']}`"
             f"{', protocol: `official` (dreamlib.protocols)' if payload.get('protocol') == 'official' else ''}. "
             f"Target {payload['target_macs'] / 1e9:.4f} G-MACs (teacher {payload['teacher_macs'] / 1e9:.4f} G, "
             f"nni at 1x3x256x256). Seed {payload['seed']}, dreamlib {payload['dreamlib']}, "
             f"torch {payload['torch']} on {payload['device']}; wall time {payload['wall_s']['total'] / 60:.1f} min"
             + (f" (the {', '.join(payload['resumed_from_state'])} distillation continued from its state file)"
                if payload.get("resumed_from_state") else "") + ".",
             "", "l1 (uniform ratio), ERK, LAMP and the adaptive scheme are pruned without data and **not "
             "fine-tuned**; only the rows marked *dream-distill* are distilled from the teacher on dreamed images.",
             "", head]
    for method, r in rows.items():
        cells = [f"{r[f'{s}/psnr']:.2f} / {r[f'{s}/ssim']:.4f}" for s in sets]
        lines.append(f"| {method} | {r['gmacs']:.3f} | " + " | ".join(cells) + " |")
    order = payload["config"].get("adaptive", {}).get("order", "cumulative")
    lines += ["", f"Adaptive search order: `{order}` (dreamlib.prune.adaptive)."]
    pp = payload.get("paper_protocol")
    if pp:
        lines += [f"The paper's protocol, tp fixed at {pp['tp']:g} dB (FLOPs follow): {pp['gmacs']:.3f} G-MACs "
                  f"({100 * pp['macs_ratio']:.1f} % of the teacher), PSNR(S(X), T(X)) {pp['psnr_on_X']:.2f} dB, "
                  f"average {pp['average/psnr']:.2f} dB before fine-tuning."]
    cov = payload.get("dream_coverage")
    if cov:
        th = cov["threshold"]
        sets_cov = ", ".join(f"{k} {100 * v['changed_frac']:.1f} %" for k, v in cov["sets"].items())
        floor = payload.get("dream_residual_floor")
        plain = (f" (plain Eq. 5 dreams: {100 * cov['X_plain']['changed_frac']:.2f} %, so X was dreamed again with "
                 f"the residual floor {floor:g}, beyond the paper)" if "X_plain" in cov and floor else "")
        lines += [f"Pixels the teacher changes by more than {th:g}/255: dreamed X {100 * cov['X']['changed_frac']:.2f} %"
                  f"{plain}; rainy inputs {sets_cov}."]
    paper = payload["paper"]
    lines += ["", f"The paper's numbers for the official {payload['model']} on the real sets (PSNR on Y / SSIM), "
              "for reference only (different networks, data and convention):", "",
              "| method | " + " | ".join(paper["sets"]) + " |", "|---|" + "---|" * len(paper["sets"])]
    for method, v in paper["rows"].items():
        lines.append(f"| {method} | " + " | ".join(f"{v[2 * i]:.2f} / {v[2 * i + 1]:.3f}"
                                                     for i in range(len(paper["sets"]))) + " |")
    command = payload.get("command")
    if not command:
        extra = payload["config"].get("distill_from", ["adaptive"])
        extra = "" if extra == ["adaptive"] else " --distill-from " + " ".join(extra)
        command = (f"python -m dreamlib reproduce {payload['table']} --model {payload['model']} "
                   f"--variant {payload['variant']}{extra}")
    lines += ["", f"Command: `{command}`" + (" (quick mode)" if payload["quick"] else "")]
    return "\n".join(lines) + "\n"
