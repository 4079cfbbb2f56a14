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
from ..io import atomic_write_json, atomic_write_text

__all__ = ["PAPER_TABLES", "DEFAULT_CONFIG", "load_config", "run_table", "TABLE_MODELS", "markdown", "save_examples"]

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

#: Full settings for the small teachers on a CPU (configs/table1_small.yaml holds the same).
DEFAULT_CONFIG = {
    "seed": 0,
    "convention": "basicsr",
    "methods": ["l1-uniform", "erk", "lamp", "adaptive"],
    "dream_x": {"batch_size": 8, "crop": 64, "steps": 150},
    "adaptive": {"eps": 1e-3},
    "distill": {"steps": 1800, "reinit_every": 600, "batch_size": 8, "crop": 64, "lr_x": 5e-2,
                "lambda_orth": 0.05, "orth_schedule": "cosine", "lr_student": 1e-4, "lambda_kd": 1.0},
    # which pruned students are distilled by dreaming: the paper distils the adaptive one;
    # adding "lamp" asks how much of the result is the allocation and how much the dreaming
    "distill_from": ["adaptive"],
    "eval_limit": None,
}

#: The row label of a student distilled from each pruning method.
DISTILLED_LABEL = {"adaptive": "ours: adaptive + dream-distill"}


def distilled_label(method: str) -> str:
    return DISTILLED_LABEL.get(method, f"{method} + dream-distill")


#: Folder of the shipped YAML configs.
CONFIG_DIR = settings.REPO_ROOT / "configs"


def load_config(path=None, **overrides) -> dict:
    """DEFAULT_CONFIG updated (one level deep) by a YAML file and keyword overrides.

    Without ``path``, quick mode reads ``configs/quick.yaml``.
    """
    import copy

    import yaml

    cfg = copy.deepcopy(DEFAULT_CONFIG)
    layers = []
    if path is None and settings.QUICK:
        path = CONFIG_DIR / "quick.yaml"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found (see configs/ for examples)")
        layers.append(yaml.safe_load(path.read_text()) or {})
    layers.append(overrides)
    for layer in layers:
        unknown = set(layer) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
        for k, v in layer.items():
            if isinstance(cfg.get(k), dict) and isinstance(v, dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
    return cfg


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


def dream_x(teacher, cfg: dict, *, device=None, progress: bool = False):
    """The batch X that the adaptive search measures PSNR on: ``cfg["dream_x"]``
    (batch_size, crop, steps) dreamed from ``teacher`` with seed ``cfg["seed"]``.
    Returns a (batch_size, 3, crop, crop) tensor on ``device``."""
    from ..dream import dream, make_targets

    dx = cfg["dream_x"]
    targets = make_targets(dx["batch_size"], dx["crop"], seed=cfg["seed"])
    if device is not None:
        targets = targets.to(device)
    return dream(teacher, targets, steps=dx["steps"], lambda_orth=0.05, orth_schedule="cosine",
                 seed=cfg["seed"], progress=progress).x


def run_table(table: str, name: str, *, variant: str = "small", config: dict | None = None, checkpoint=None,
              data_root=None, target_gflops: float | None = None, out_dir=None, resume: bool = False,
              device=None, progress: bool = True, command: str | None = None) -> dict:
    """Run the protocol for one model and write ``<out_dir>/<table>_<name>.{md,csv,json}``.

    Returns the JSON payload (rows keyed by method). ``resume`` continues an
    interrupted distillation from its state file. ``command`` is the command line
    recorded in the report (the CLI passes its own, ``--config`` included); without
    it the report shows the equivalent ``reproduce`` command, which cannot name a
    config file.
    """
    from ..data.benchmark import benchmark_sets
    from ..data.datasets import open_sets
    from ..distill import DistillConfig, distill
    from ..evaluate import evaluate
    from ..flops import count_macs
    from ..prune import compare_methods, paper_target_macs
    from ..train import EVAL_FAMILY

    if table not in TABLE_MODELS:
        raise ValueError(f"unknown table {table!r}; choose table1 or table2")
    if name not in TABLE_MODELS[table]:
        raise ValueError(f"{table} covers {', '.join(TABLE_MODELS[table])}, not {name!r}")
    cfg = config or load_config()
    unknown = [m for m in cfg.get("distill_from", ["adaptive"]) if m not in cfg["methods"]]
    if unknown:
        raise ValueError(f"distill_from {unknown}: not among the pruned methods {cfg['methods']}; "
                         f"add them to the config's methods")
    device = torch.device(device) if device else settings.pick_device()
    settings.seed_everything(cfg["seed"])
    out_dir = Path(out_dir) if out_dir else settings.REPO_ROOT / "results" / f"{table}_{variant}"
    out_dir.mkdir(parents=True, exist_ok=True)
    wall = {}
    t_all = time.perf_counter()

    teacher = _teacher(name, variant, checkpoint, device)
    sets = (open_sets(data_root) if data_root else benchmark_sets(family=EVAL_FAMILY[name]))
    set_names = list(sets)
    dense = count_macs(teacher)
    target = int(round(target_gflops * 1e9)) if target_gflops else paper_target_macs(teacher, name)

    t0 = time.perf_counter()
    X = dream_x(teacher, cfg, device=device, progress=progress)
    wall["dream_X"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    comp = compare_methods(teacher, X, sets, target_macs=target, methods=tuple(cfg["methods"]),
                           convention=cfg["convention"], method_options={"adaptive": dict(cfg["adaptive"])},
                           limit=cfg["eval_limit"], progress=progress)
    wall["prune_and_evaluate"] = time.perf_counter() - t0

    rows = {}
    for method in ["original"] + list(cfg["methods"]):
        label = {"adaptive": "adaptive (before distillation)"}.get(method, method)
        rows[label] = {"gmacs": float(comp.table.loc[method, "gmacs"]), "fine_tuned": False,
                       **_row(comp.results[method], set_names)}

    dcfg = DistillConfig(**cfg["distill"], seed=cfg["seed"])
    students, logs, resumed = {}, {}, []
    for method in cfg.get("distill_from", ["adaptive"]):
        # the adaptive student keeps the original state-file name, so older runs resume
        suffix = "" if method == "adaptive" else f".{method}"
        state = out_dir / f"{table}_{name}{suffix}.distill-state.pt"
        t0 = time.perf_counter()
        # resume continues the students that have a state; a newly listed one starts afresh
        cont = resume and state.is_file()
        resumed += [method] if cont else []
        student, mlog = distill(teacher, comp.models[method], dcfg, resume=cont, state_path=state,
                                progress=progress)
        wall["distill" if method == "adaptive" else f"distill_{method}"] = time.perf_counter() - t0
        logs[method] = mlog
        res = evaluate(student, sets, convention=cfg["convention"], progress=progress, limit=cfg["eval_limit"])
        rows[distilled_label(method)] = {"gmacs": count_macs(student) / 1e9, "fine_tuned": True,
                                         **_row(res, set_names)}
        students[method] = student
    wall["total"] = time.perf_counter() - t_all

    payload = {
        "table": table, "model": name, "variant": variant, "checkpoint": str(checkpoint) if checkpoint else None,
        "data": str(data_root) if data_root else f"synthetic benchmark ({EVAL_FAMILY[name]}, "
                                                  f"{'quick' if settings.QUICK else 'full'})",
        "convention": cfg["convention"], "target_macs": target, "teacher_macs": dense, "config": cfg,
        "seed": cfg["seed"], "dreamlib": __version__, "torch": torch.__version__, "device": str(device),
        "python": platform.python_version(), "quick": settings.QUICK, "wall_s": wall, "rows": rows,
        # wall_s only covers this invocation: a resumed distillation's earlier steps are not in it
        "resumed_from_state": resumed,
        "distill_log_tail": {m: {k: v[-5:] for k, v in lg.rows.items()} for m, lg in logs.items()},
        "reports": {m: r.to_card() for m, r in comp.reports.items()},
        "paper": PAPER_TABLES[name],
        "command": command,
    }
    stem = out_dir / f"{table}_{name}"
    models_ = {"teacher": teacher, **{m: comp.models[m] for m in ("lamp", "adaptive") if m in comp.models}}
    for method, student in students.items():
        models_["ours" if method == "adaptive" else f"{method}+distill"] = student
    save_examples(models_, sets, stem.parent / f"{stem.name}_examples.png", title=f"{table}: {name} ({variant})")
    atomic_write_json(stem.with_suffix(".json"), payload)
    atomic_write_text(stem.with_suffix(".csv"), _csv(rows, set_names))
    atomic_write_text(stem.with_suffix(".md"), markdown(payload))
    return payload


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
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)
    return path


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
             f"Data: {payload['data']}. Metric convention: `{payload['convention']}`. "
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
