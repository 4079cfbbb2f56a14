"""``dreamlib reproduce speed``: quality after recovery against measured latency, at equal MACs.

For one model and each MACs fraction of the teacher (default: the paper's ratio):

1. X: the dreamed batch of the Table 1/2 runners (same config, same seed: the same images);
2. the paper's student: adaptive **masks** at the target (Algorithm 1, each module alone);
   its dream-distilled quality is read from the committed Table 1/2 result when that run
   used the same target and settings (else it is distilled here with ``distill_masked``);
3. **channel** students at the same MACs: ``uniform``, ``lamp`` and ``adaptive``
   (:mod:`dreamlib.prune.channels`); the one whose output on X is closest to the teacher's
   (PSNR on X: dreams only, no test image) is recovered by dream-distillation (Eq. 7, the
   same loop and settings as the masked student);
4. every model is evaluated on the test sets, and timed (:mod:`dreamlib.speed`): median
   latency at 1x3x256x256 on 1 thread and on all threads, eager / channels_last / compiled.

Writes ``<out>/speed_<model>.{json,md}`` and the recovered student (``.pt``,
:func:`dreamlib.prune.channels.save_pruned`). Latencies are only comparable within a run;
the machine's load is not controlled here (run it alone for numbers you report).
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch

from .. import __version__, settings
from ..io import atomic_write_json, atomic_write_text
from ..provenance import provenance
from .run import default_run_dir, prepare_out_dir

__all__ = ["run_speed", "markdown", "SPEED_GOAL"]

#: The goal the issue set for HINet and MPRNet: eager speed-up, compiled speed-up, dB lost after recovery.
SPEED_GOAL = {"eager": 1.5, "compiled": 2.0, "db": 0.5}
_OPTIONS = ("eager", "channels_last", "compiled")


def _time_all(entries: list, x, *, iters: int, compile_: bool, progress: bool) -> None:
    """Time every ``(row, model, may_compile)`` of ``entries`` and store ``row["latency"]``:
    ``{option: {"t1": s, "t<all>": s, "max_abs_diff": float}}`` for eager / channels_last /
    compiled on 1 thread and on all threads. The models take turns call by call (round r times
    every model once), so a change of the machine's load hits all of them alike; the median
    over the rounds is kept."""
    import statistics

    from ..speed import fast, interleaved, same_outputs

    n_all = torch.get_num_threads()
    for e in entries:
        e[0]["latency"] = {}
    for opt in _OPTIONS:
        todo = [(row, m) for row, m, may in entries if opt != "compiled" or (compile_ and may)]
        if not todo:
            continue
        fasts = []
        for row, m in todo:
            f = fast(m, opt)
            row["latency"][opt] = {"max_abs_diff": same_outputs(m, f, x, atol=1e-5) if opt != "eager" else 0.0}
            fasts.append(f)
        for n in sorted({1, n_all}):
            # warm-up 2 (compilation already happened in same_outputs)
            times = interleaved(fasts, x, iters=iters, warmup=2, n_threads=n)
            for (row, _), ts in zip(todo, times):
                row["latency"][opt][f"t{n}"] = statistics.median(ts)
        if progress:
            print(f"  timed {opt}: " + ", ".join(f"{1e3 * row['latency'][opt]['t1']:.1f} ms" for row, _ in todo),
                  flush=True)


def _masked_from_table(path, name: str, target: int, cfg: dict) -> dict | None:
    """The committed dream-distilled masked row, if that run used this target and these settings."""
    path = Path(path) if path else None
    if path is None or not path.is_file():
        return None
    d = json.loads(path.read_text())
    dis = dict(d.get("config", {}).get("distill") or {})
    mine = dict(cfg["distill"])
    # the same run but for the distillation length: used, and the length is shown next to it
    ok = (d.get("model") == name and abs(d.get("target_macs", 0) - target) <= 0.002 * target
          and {k: v for k, v in dis.items() if k != "steps"} == {k: v for k, v in mine.items() if k != "steps"}
          and d.get("config", {}).get("dream_x") == cfg["dream_x"] and d.get("config", {}).get("seed") == cfg["seed"]
          and bool(d.get("quick")) == bool(settings.QUICK))
    row = d.get("rows", {}).get("ours: adaptive + dream-distill")
    try:
        source = str(Path(path).resolve().relative_to(settings.REPO_ROOT))
    except ValueError:
        source = str(path)
    return {"row": row, "source": source, "steps": dis.get("steps")} if ok and row else None


def run_speed(name: str, *, variant: str = "small", config: dict | None = None, checkpoint=None, data_root=None,
              fractions=None, out_dir=None, resume: bool = False, device=None, progress: bool = True,
              command: str | None = None, compile_: bool = True, iters: int = 10, masked_table=None,
              distill_masked: bool = False, strategies=("uniform", "lamp", "adaptive")) -> dict:
    """Run the speed protocol for ``name`` and write ``<out_dir>/speed_<name>.{json,md}``.

    Args:
        fractions: MACs of the students as fractions of the teacher's (default: the paper's ratio).
        masked_table: a finished ``table1_<name>.json`` / ``table2_<name>.json`` whose dream-distilled
            adaptive row is reused when its target and settings match (default: the committed
            ``results/table{1,2}_small`` file).
        distill_masked: distil the masked student here when no matching table row exists.
        compile_: also time ``torch.compile`` (tens of seconds of compilation per model).
        iters: timed calls per measurement (median).
    """
    from ..data.benchmark import benchmark_sets
    from ..data.datasets import open_sets
    from ..distill import distill
    from ..evaluate import evaluate
    from ..flops import count_macs, count_params
    from ..metrics import psnr_torch
    from ..models import restore
    from ..prune import copy_model, paper_target_macs, prune
    from ..prune.channels import STRATEGIES, channel_prune, load_pruned, module_curves, save_pruned
    from ..protocols import convention_for
    from ..train import EVAL_FAMILY
    from .tables import TABLE_MODELS, _row, _teacher, distill_config, dream_x, resolve_config

    cfg = resolve_config(config)
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"unknown channel strategies {bad}; choose from {', '.join(STRATEGIES)}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1 (timed calls per measurement), got {iters}")
    fr = list(fractions) if fractions else [None]
    for f in fr:
        if f is not None and not 0.05 <= float(f) < 1.0:
            raise ValueError(f"MACs fractions must be in [0.05, 1), got {f}")
    device = torch.device(device) if device else settings.pick_device()
    settings.seed_everything(cfg["seed"])
    out_dir = prepare_out_dir(out_dir or default_run_dir(f"speed_{name}"), resume=resume)
    table = next(t for t, ms in TABLE_MODELS.items() if name in ms)
    if masked_table is None and variant == "small" and not settings.QUICK:
        masked_table = settings.REPO_ROOT / "results" / f"{table}_small" / f"{table}_{name}.json"

    t_all = time.perf_counter()
    teacher = _teacher(name, variant, checkpoint, device)
    protocol = cfg["protocol"]
    convention = convention_for(teacher, protocol, cfg["convention"])
    sets = open_sets(data_root) if data_root else benchmark_sets(family=EVAL_FAMILY[name])
    set_names = list(sets)
    dense = count_macs(teacher)
    # what is done is kept: rows (everything but the latencies) and the models, so --resume only
    # does what is missing and re-times a finished run without recomputing it
    from ..io import atomic_torch_save
    from ..models.checkpoint import safe_load
    from ..prune.masks import apply_masks, masks as mask_dict
    from ..provenance import module_hash

    partial_path = Path(out_dir) / f"speed_{name}.partial.json"
    # the distillation length is not part of it: a longer --resume continues the recoveries (each row
    # records its steps)
    same_cfg = {**cfg, "distill": {k: v for k, v in cfg["distill"].items() if k != "steps"}}
    prints = {"teacher": module_hash(teacher), "config": same_cfg, "variant": variant,
              "quick": bool(settings.QUICK), "strategies": list(strategies)}
    partial = {"fingerprint": prints, "points": {}}
    if resume and partial_path.is_file():
        saved = json.loads(partial_path.read_text())
        fp = saved.get("fingerprint") or {}
        (fp.get("config") or {}).get("distill", {}).pop("steps", None)  # files that still recorded it
        if fp != json.loads(json.dumps(prints)):
            from ..distill import ResumeMismatchError

            raise ResumeMismatchError(f"{partial_path} belongs to another run (teacher, config or strategies "
                                      "differ); run without --resume into a new folder")
        partial = saved

    x_path = Path(out_dir) / f"speed_{name}.X.pt"
    if resume and x_path.is_file() and partial["points"]:
        saved_x = safe_load(x_path)  # the dreamed batch of this run (the fingerprint above matched)
        X, x_info = saved_x["X"].to(device), saved_x["info"]
    else:
        x_info: dict = {}
        X = dream_x(teacher, cfg, device=device, progress=progress, info=x_info)
        atomic_torch_save({"X": X.detach().cpu(), "info": x_info}, x_path)
    with torch.no_grad():
        ref = restore(teacher, X).clamp(0, 1)

    def on_x(m) -> float:
        with torch.no_grad():
            return float(psnr_torch(restore(m, X).clamp(0, 1), ref))

    def score(m) -> dict:
        res = evaluate(m, sets, convention=convention, progress=False, limit=cfg["eval_limit"], protocol=protocol)
        return _row(res, set_names)

    probe = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(device)
    dcfg = distill_config(cfg, x_info)

    def keep(key, point):
        partial["points"][key] = {k: v for k, v in point.items() if k != "models"}
        atomic_write_json(partial_path, partial)

    if progress:
        print(f"[speed] {name}: teacher {dense / 1e9:.3f} G-MACs", flush=True)
    rows = {"dense teacher": partial.get("dense") or {"kind": "dense", "fraction": 1.0, "gmacs": dense / 1e9,
                                                       "params": count_params(teacher), **score(teacher)}}
    partial["dense"] = dict(rows["dense teacher"])
    curves = partial.get("curves")
    points, models_ = [], {}
    for f in fr:
        target = paper_target_macs(teacher, name) if f is None else int(round(float(f) * dense))
        frac = target / dense
        key = f"{100 * frac:.1f}%"
        stem = Path(out_dir) / f"speed_{name}_macs{round(1000 * frac)}"  # files: <stem>.<what>.pt
        point = partial["points"].get(key) or {"fraction": frac, "target_macs": target, "rows": {}}
        run_print = {"speed": name, "variant": variant, "target_macs": int(target), "quick": bool(settings.QUICK)}
        ms = models_[key] = {}
        # the paper's student: adaptive masks
        if "masked" in point["rows"] and Path(f"{stem}.masks.pt").is_file():
            masked = copy_model(teacher)
            apply_masks(masked, safe_load(Path(f"{stem}.masks.pt")))
        else:
            masked, _ = prune(teacher, "adaptive", X=X, target_macs=target, **cfg["adaptive"])
            r = {"kind": "masked", "method": "adaptive", "fraction": frac,
                 "gmacs": count_macs(masked) / 1e9, "params": count_params(teacher), "psnr_on_X": on_x(masked),
                 "before": score(masked)}
            committed = _masked_from_table(masked_table, name, target, cfg)
            if committed:
                r["after"] = {k: v for k, v in committed["row"].items() if "/" in k}
                r["after_source"] = committed["source"]
                r["after_steps"] = committed["steps"]
            elif distill_masked:
                mstate = Path(f"{stem}.masked.distill-state.pt")
                st, _ = distill(teacher, copy_model(masked), dcfg, state_path=mstate,
                                resume=resume and mstate.is_file(), progress=progress,
                                fingerprint={**run_print, "student": "masked adaptive"})
                r["after"] = score(st)
                r["after_source"] = "distilled in this run"
                r["after_steps"] = dcfg.steps
            point["rows"]["masked"] = r
            atomic_torch_save(mask_dict(masked), Path(f"{stem}.masks.pt"))
            keep(key, point)
        ms["masked"] = masked
        # channel students at the same MACs; the one closest to the teacher on X is recovered
        for s in strategies:
            file = Path(f"{stem}.channel-{s}.pt")
            if f"channel-{s}" in point["rows"] and file.is_file():
                ms[s] = load_pruned(file)
                continue
            if s == "adaptive" and curves is None:
                curves = module_curves(teacher, X, progress=progress)
                partial["curves"] = curves
            st, rep = channel_prune(teacher, s, target_macs=target, X=X if s == "adaptive" else None,
                                    curves=curves if s == "adaptive" else None, progress=False)
            ms[s] = st
            point["rows"][f"channel-{s}"] = {
                "kind": "channel", "method": s, "fraction": frac, "gmacs": rep.macs / 1e9, "params": rep.params,
                "psnr_on_X": on_x(st), "before": score(st),
                "report": {k: v for k, v in rep.to_dict().items() if k != "curves"}}
            save_pruned(st, file, extra={"strategy": s, "fraction": frac, "recovered": None})
            keep(key, point)
        chosen = point.get("chosen") or max(strategies, key=lambda s: point["rows"][f"channel-{s}"]["psnr_on_X"])
        point["chosen"] = chosen
        final = Path(f"{stem}.pt")
        crow = point["rows"][f"channel-{chosen}"]
        if "after" in crow and final.is_file() and crow.get("after_steps") == dcfg.steps:
            student = load_pruned(final)
        else:
            state = Path(f"{stem}.channel-{chosen}.distill-state.pt")
            student, _ = distill(teacher, copy_model(ms[chosen]), dcfg, state_path=state,
                                 resume=resume and state.is_file(), progress=progress,
                                 fingerprint={**run_print, "student": f"channel {chosen}"})
            crow["after"] = score(student)
            crow["after_source"] = "distilled in this run"
            crow["after_steps"] = dcfg.steps
            save_pruned(student, final, extra={"strategy": chosen, "fraction": frac, "recovered": "dream-distill"})
            keep(key, point)
        ms["recovered"] = student
        points.append(point)
    # latencies last, all in one stretch (the machine's load should be the same for every model)
    if progress:
        print("[speed] timing", flush=True)
    entries = [(rows["dense teacher"], teacher, True)]
    for point in points:
        ms = models_[f"{100 * point['fraction']:.1f}%"]
        entries.append((point["rows"]["masked"], ms["masked"], True))
        for s in strategies:
            chosen = s == point["chosen"]
            entries.append((point["rows"][f"channel-{s}"], ms["recovered"] if chosen else ms[s], chosen))
    _time_all(entries, probe, iters=iters, compile_=compile_, progress=progress)
    wall = time.perf_counter() - t_all
    payload = {
        "runner": "speed", "model": name, "variant": variant, "teacher_macs": dense, "rows": rows, "points": points,
        "data": str(data_root) if data_root else f"synthetic benchmark ({EVAL_FAMILY[name]}, "
                                                  f"{'quick' if settings.QUICK else 'full'})",
        "convention": convention, "protocol": protocol, "config": cfg, "probe": [1, 3, 256, 256],
        "threads_all": torch.get_num_threads(), "iters": iters, "compiled": compile_, "quick": settings.QUICK,
        "dreamlib": __version__, "torch": torch.__version__, "device": str(device), "cpu": platform.processor() or
        platform.machine(), "python": platform.python_version(), "wall_s": wall, "command": command,
        "goal": SPEED_GOAL,
        "provenance": provenance(config=cfg, seed=cfg["seed"], device=device, teacher=teacher, checkpoint=checkpoint,
                                 data_root=data_root),
    }
    _check_finite(payload)
    stem = Path(out_dir) / f"speed_{name}"
    atomic_write_json(stem.with_suffix(".json"), payload)
    atomic_write_text(stem.with_suffix(".md"), markdown(payload))
    return payload


def _check_finite(payload: dict) -> None:
    bad = []

    def walk(v, path):
        if isinstance(v, dict):
            for k, w in v.items():
                walk(w, f"{path}/{k}")
        elif isinstance(v, float) and not math.isfinite(v) and "psnr" in path:
            bad.append(path)

    walk({"rows": payload["rows"], "points": payload["points"]}, "")
    if bad:
        raise FloatingPointError(f"non-finite results ({', '.join(bad[:3])}): nothing was written")


def speedups(payload: dict, row: dict, option: str = "eager", threads: int = 1, base: str = "eager") -> float | None:
    """The dense teacher's latency in mode ``base`` (default eager: what runs without any option) / this
    row's latency with ``option``, same thread count, both measured in this run (None if not timed)."""
    d = payload["rows"]["dense teacher"]["latency"].get(base, {}).get(f"t{threads}")
    m = row.get("latency", {}).get(option, {}).get(f"t{threads}")
    return d / m if d and m else None


def verdicts(payload: dict) -> list[dict]:
    """For each MACs point: the recovered channel student against :data:`SPEED_GOAL`."""
    teacher = payload["rows"]["dense teacher"]["average/psnr"]
    out = []
    for p in payload["points"]:
        row = p["rows"][f"channel-{p['chosen']}"]
        eager = speedups(payload, row, "eager", 1)
        comp = speedups(payload, row, "compiled", 1)
        loss = teacher - row["after"]["average/psnr"]
        out.append({"fraction": p["fraction"], "strategy": p["chosen"], "eager": eager, "compiled": comp,
                    "db_lost": loss,
                    "holds": bool(eager and eager >= SPEED_GOAL["eager"] and loss <= SPEED_GOAL["db"] and
                                  (comp is None or comp >= SPEED_GOAL["compiled"]))})
    return out


def markdown(payload: dict) -> str:
    """The speed table: FLOPs against seconds, quality before and after recovery."""
    n_all = payload["threads_all"]
    dense = payload["rows"]["dense teacher"]
    t1 = dense["latency"]["eager"]["t1"]
    lines = [f"# speed: {payload['model']} ({payload['variant']})", "",
             f"Data: {payload['data']}. Metric: average PSNR (dB, `{payload['convention']}`) over the sets. "
             f"Latency: median of {payload['iters']} calls at 1x3x256x256, the models taking turns call by call, "
             f"on {payload['cpu']} ({payload['device']}, torch {payload['torch']}); speed-ups are the dense teacher's "
             f"eager time / the model's time with the option, measured in the same run. Wall time of the last invocation {payload['wall_s'] / 60:.1f} min.", "",
             f"Dense teacher: {dense['gmacs']:.3f} G-MACs, {dense['params']:,} params, {dense['average/psnr']:.2f} dB, "
             f"eager {1e3 * t1:.1f} ms on 1 thread.", ""]
    hdr = ("| student | G-MACs (% of teacher) | params | PSNR on X (dB) | avg PSNR before | after dream-distill | "
           "eager 1 thr | channels_last 1 thr | compiled 1 thr |" + (f" eager {n_all} thr |" if n_all > 1 else ""))
    ncol = 10 if n_all > 1 else 9
    for p in payload["points"]:
        lines += [f"## {100 * p['fraction']:.1f} % of the teacher's MACs", "", hdr, "|" + "---|" * ncol]
        for key, r in p["rows"].items():
            def sp(opt, thr=1):
                v = speedups(payload, r, opt, thr)
                return "" if v is None else f"{v:.2f}x"

            after = r.get("after", {}).get("average/psnr")
            src = f" ({r['after_steps']} steps{', Table run' if r.get('after_source', '').endswith('.json') else ''})" \
                if r.get("after_steps") else ""
            name = ("masks: adaptive (the paper)" if r["kind"] == "masked" else f"channels: {r['method']}"
                    + (" (chosen on X)" if r["method"] == p["chosen"] else ""))
            lines.append(f"| {name} | {r['gmacs']:.3f} ({100 * r['gmacs'] / dense['gmacs']:.1f} %) | {r['params']:,} | "
                         f"{r['psnr_on_X']:.2f} | {r['before']['average/psnr']:.2f} | "
                         f"{'' if after is None else f'{after:.2f}{src}'} | {sp('eager')} | {sp('channels_last')} | "
                         f"{sp('compiled')} |" + (f" {sp('eager', n_all)} |" if n_all > 1 else ""))
        lines.append("")
    lines.append("Goal (HINet, MPRNet): a channel-pruned student >= "
                 f"{SPEED_GOAL['eager']}x faster eager (>= {SPEED_GOAL['compiled']}x compiled) on 1 thread, within "
                 f"{SPEED_GOAL['db']} dB of the teacher after dream-distillation.")
    for v in verdicts(payload):
        comp = "not timed" if v["compiled"] is None else f"{v['compiled']:.2f}x"
        lines.append(f"- {100 * v['fraction']:.1f} %: channels {v['strategy']}: eager {v['eager']:.2f}x, compiled "
                     f"{comp}, {v['db_lost']:.2f} dB below the teacher after recovery -> "
                     f"{'meets the goal' if v['holds'] else 'does not meet the goal'}.")
    src = {r.get("after_source") for p in payload["points"] for r in p["rows"].values() if r.get("after_source")}
    src = sorted(s for s in src if s.endswith(".json"))
    if src:
        lines.append(f"\nThe masked student's recovered PSNR is read from {', '.join(src)} (same target, dreamed X "
                     "and distillation settings; its number of distillation steps is given next to it).")
    lines.append(f"\nCommand: `{payload.get('command') or 'dreamlib reproduce speed --model ' + payload['model']}`")
    return "\n".join(lines) + "\n"
