"""Compress any image-to-image network without its training data, in one call.

>>> import dreamlib
>>> result = dreamlib.compress(my_net, "my_clean_photos/", target=0.6, out_dir="runs/my_net")
>>> result.student                 # pruned to 60 % of the MACs, then dream-distilled
>>> print(result.summary())        # MACs, sparsity, PSNR teacher / pruned / distilled

The pipeline is dreamlib's own, nothing re-implemented:

1. describe the network (:func:`dreamlib.spec.describe`: the spec given, the shipped one, or
   inferred; a network that does not map (B,3,H,W) images to (B,3,H,W) images is refused);
2. dream a batch from crops of the clean images (:func:`dreamlib.dream.dream`, Eqs. 3-5);
3. prune to ``target`` of the MACs (:func:`dreamlib.prune.prune`, adaptive = Algorithm 1);
4. dream-distill the pruned student (:func:`dreamlib.distill.distill`, Eqs. 6-7), with
   checkpoints and ``resume``;
5. evaluate teacher, pruned and distilled student (:func:`dreamlib.evaluate.evaluate`) on
   paired images, if any are given: ``eval_pairs`` or ``degrade`` (a function making the
   degraded input of a clean image). These pairs are only *measured*: the compression itself
   sees the network and clean images, never degraded training data.

With ``out_dir`` a run folder is written (atomically, file by file): ``student.pt``
(:func:`dreamlib.prune.save_pruned`: weights, masks, spec, card), ``card.json`` (provenance,
spec, settings, headline numbers), ``report.json`` (everything), plus ``dreams.pt``,
``pruned.pt`` and ``distill.state.pt`` that ``resume=True`` continues from.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import settings

__all__ = ["CompressConfig", "CompressResult", "compress", "load_images", "PairSet", "gaussian_noise"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class CompressConfig:
    """Settings of :func:`compress` (defaults: a few CPU minutes for a small network).

    Attributes:
        target: fraction of the teacher's MACs the student keeps (0 < target <= 1), or an
            absolute number of MACs per sample (> 1).
        method: any of :data:`dreamlib.prune.METHODS` (``adaptive``: the paper's Algorithm 1).
        dream_steps, batch_size, crop: the dreamed batch the pruning measures on
            (``batch_size`` x 3 x ``crop`` x ``crop``, rounded up to the network's multiple).
        lambda_orth, orth_schedule, lr_x: the dreaming (:class:`dreamlib.dream.Dreamer`).
        distill_steps, reinit_every, lr_student, lambda_kd: the dream-distillation
            (:class:`dreamlib.distill.DistillConfig`).
        residual_floor: beyond the paper (see :mod:`dreamlib.dream`); ``None`` = plain Eq. 5.
        input_size: where MACs are counted (the paper: 1x3x256x256).
        macs_convention: ``nni`` (the paper's) or ``exact``.
        convention: metric convention of the evaluation (:mod:`dreamlib.metrics`).
        eval_limit: evaluate at most this many pairs per set.
        prune_options: extra options of the pruning method (e.g. ``{"tp": 40, "eps": 1e-2}``).
        seed: dreams, targets and distillation all derive from it.
    """

    target: float = 0.6
    method: str = "adaptive"
    dream_steps: int = 200
    batch_size: int = 8
    crop: int = 64
    lambda_orth: float = 0.05
    orth_schedule: str | None = "cosine"
    lr_x: float = 5e-2
    distill_steps: int = 300
    reinit_every: int = 100
    lr_student: float = 1e-4
    lambda_kd: float = 1.0
    residual_floor: float | None = None
    input_size: tuple = (1, 3, 256, 256)
    macs_convention: str = "nni"
    convention: str = "basicsr"
    eval_limit: int | None = None
    prune_options: dict = field(default_factory=dict)
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self):
        from .guards import check_positive_int
        from .prune import METHODS

        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        t = float(self.target)
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"target must be a fraction of the MACs in (0, 1] or a number of MACs > 1, got "
                             f"{self.target!r}")
        for name in ("dream_steps", "batch_size", "crop", "distill_steps", "reinit_every", "checkpoint_every"):
            check_positive_int(name, getattr(self, name))
        self.input_size = tuple(int(v) for v in self.input_size)
        if len(self.input_size) != 4 or self.input_size[1] != 3:
            raise ValueError(f"input_size must be (1, 3, H, W), got {self.input_size}")

    @classmethod
    def tiny(cls, **overrides) -> "CompressConfig":
        """Seconds on a CPU: for tests and a first look (the numbers mean little)."""
        base = dict(dream_steps=4, batch_size=2, crop=32, distill_steps=2, reinit_every=2, input_size=(1, 3, 32, 32),
                    eval_limit=2, checkpoint_every=1, prune_options={"eps": 0.1, "max_sweeps": 2})
        return cls(**{**base, **overrides})

    @classmethod
    def quick(cls, **overrides) -> "CompressConfig":
        """The defaults, or :meth:`tiny` in quick mode (``DREAMLIB_QUICK=1``)."""
        return cls.tiny(**overrides) if settings.QUICK else cls(**overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        return d


@dataclass
class CompressResult:
    """What :func:`compress` returns: the distilled ``student``, the ``pruned`` student before
    distillation, the ``teacher`` (the network given, unwrapped), the dreamed batch ``X``, its
    ``spec``, the ``report`` (a dict, also ``report.json``) and the run folder (or ``None``)."""

    student: nn.Module
    pruned: nn.Module
    teacher: nn.Module
    X: torch.Tensor | None
    spec: object
    report: dict
    out_dir: Path | None = None

    def summary(self) -> str:
        r = self.report
        m = r["macs"]
        lines = [f"{r['spec']['name']}: {r['method']} to {m['student'] / 1e9:.4f} G-MACs of "
                 f"{m['teacher'] / 1e9:.4f} G ({100 * m['student'] / m['teacher']:.1f} %), "
                 f"sparsity {100 * r['sparsity']:.1f} %"]
        ev = r.get("eval")
        if ev:
            p = ev["psnr"]
            lines.append(f"PSNR ({ev['convention']}, {ev['n']} pairs): teacher {p['teacher']:.2f} dB, pruned "
                         f"{p['pruned']:.2f} dB, distilled {p['student']:.2f} dB; recovered "
                         f"{100 * ev['recovered']:.0f} % of the loss" if ev.get("recovered") is not None else
                         f"PSNR: teacher {p['teacher']:.2f}, pruned {p['pruned']:.2f}, distilled {p['student']:.2f}")
        if self.out_dir is not None:
            lines.append(f"run folder: {self.out_dir}")
        return "\n".join(lines)


# ------------------------------------------------------------------ inputs

def load_images(images) -> dict[str, np.ndarray]:
    """Clean images as ``{name: (H, W, 3) float32 array in [0, 1]}`` from: ``None`` (the shipped
    dream-role samples), a folder of image files, one file, a dict, a list of arrays / tensors,
    or a (N,3,H,W) / (3,H,W) tensor."""
    from .data.samples import load_image, load_samples

    if images is None:
        return load_samples("dream")
    if isinstance(images, (str, Path)):
        p = Path(images)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            return {q.stem: _rgb(load_image(q), q.name) for q in files}
        if p.is_file():
            return {p.stem: _rgb(load_image(p), p.name)}
        raise FileNotFoundError(f"{p}: no such folder or image file")
    if torch.is_tensor(images):
        t = images[None] if images.dim() == 3 else images
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"clean images as a tensor must be (N,3,H,W), got {tuple(images.shape)}")
        return {f"img{i:03d}": t[i].detach().permute(1, 2, 0).float().cpu().numpy() for i in range(len(t))}
    items = images.items() if isinstance(images, dict) else ((f"img{i:03d}", v) for i, v in enumerate(images))
    out = {}
    for k, v in items:
        if torch.is_tensor(v):
            v = v.detach().permute(1, 2, 0).cpu().numpy() if v.dim() == 3 and v.shape[0] == 3 else v.cpu().numpy()
        out[str(k)] = _rgb(np.asarray(v, dtype=np.float32), k)
    if not out:
        raise ValueError("no clean images given")
    return out


def _rgb(a: np.ndarray, name) -> np.ndarray:
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image {name} has shape {a.shape}; clean images must be RGB (H, W, 3)")
    a = np.asarray(a, dtype=np.float32)
    if a.max() > 1.0 + 1e-6:
        raise ValueError(f"image {name} has values up to {a.max():.1f}; give floats in [0, 1]")
    return a


class PairSet:
    """Paired (degraded, clean) images as a dataset :func:`dreamlib.evaluate.evaluate` reads."""

    def __init__(self, inputs, targets):
        self.inputs, self.targets = list(inputs), list(targets)
        if len(self.inputs) != len(self.targets) or not self.inputs:
            raise ValueError(f"eval pairs need as many inputs as targets (got {len(self.inputs)} and "
                             f"{len(self.targets)}), at least one")

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        def t(v):
            v = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).float()
            return v.permute(2, 0, 1) if v.dim() == 3 and v.shape[-1] == 3 and v.shape[0] != 3 else v

        return {"input": t(self.inputs[i]), "target": t(self.targets[i])}


def gaussian_noise(sigma: float = 25.0, seed: int = 0):
    """A ``degrade`` function: additive Gaussian noise of ``sigma`` (0-255 units), seeded per image,
    clipped to [0, 1] (the usual synthetic denoising benchmark)."""
    def degrade(clean: torch.Tensor, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed) * 100003 + int(i))
        return (clean + sigma / 255.0 * torch.randn(clean.shape, generator=g)).clamp(0, 1)

    degrade.__name__ = f"gaussian_noise(sigma={sigma}, seed={seed})"
    return degrade


def _eval_sets(eval_pairs, degrade, eval_images) -> dict:
    if eval_pairs is not None and degrade is not None:
        raise ValueError("give eval_pairs or degrade (with eval_images), not both")
    if eval_pairs is not None:
        if isinstance(eval_pairs, dict):
            return {k: (v if hasattr(v, "__getitem__") and not isinstance(v, tuple) else PairSet(*v))
                    for k, v in eval_pairs.items()}
        if isinstance(eval_pairs, tuple) and len(eval_pairs) == 2 and torch.is_tensor(eval_pairs[0]):
            return {"eval": PairSet(eval_pairs[0], eval_pairs[1])}
        pairs = list(eval_pairs)
        return {"eval": PairSet([a for a, _ in pairs], [b for _, b in pairs])}
    if degrade is not None:
        if eval_images is None:
            raise ValueError("degrade= needs eval_images= (held-out clean images to degrade and measure on)")
        clean = load_images(eval_images)
        cl = [torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1).float() for v in clean.values()]
        return {"eval": PairSet([degrade(c, i) for i, c in enumerate(cl)], cl)}
    return {}


# ------------------------------------------------------------------ the call

def compress(model: nn.Module, clean_images=None, target: float | None = None, method: str | None = None, *,
             spec=None, config: CompressConfig | None = None, tiny: bool = False, eval_pairs=None, degrade=None,
             eval_images=None, out_dir=None, resume: bool = False, progress: bool = True, **overrides):
    """Dream -> prune -> dream-distill -> evaluate ``model`` in one call; returns a :class:`CompressResult`.

    Args:
        model: any image-to-image network ((B,3,H,W) in [0, 1] -> (B,3,H,W)); wrappers are fine.
            It is never modified (the student is a copy).
        clean_images: the clean pictures the dreams aim at (a folder, a list/dict of (H,W,3)
            arrays, a (N,3,H,W) tensor); default: the shipped dream-role samples.
        target: fraction of the MACs kept (e.g. 0.6) or absolute MACs; ``method``: pruning method.
        spec: a :class:`dreamlib.spec.ModelSpec` (or a dict of its fields) describing the model;
            default: its own or inferred (:func:`dreamlib.spec.describe`).
        config: :class:`CompressConfig`; ``tiny=True`` uses :meth:`CompressConfig.tiny`;
            ``**overrides`` replace single fields (``distill_steps=600``, ``lr_student=1e-3``).
        eval_pairs: paired test images for the report: ``{set: dataset}``, ``(inputs, targets)``
            tensors or a list of ``(input, target)``; or ``degrade`` (``f(clean (3,H,W), index)``,
            e.g. :func:`gaussian_noise`) applied to ``eval_images`` (held-out clean images).
        out_dir: run folder (see the module docstring); ``resume=True`` continues an interrupted
            run in it (same settings; dreams, pruned student and distillation state are reused).
        progress: tqdm bars and one line per stage.
    """
    from .distill import DistillConfig, distill
    from .dream import dream, make_targets
    from .evaluate import evaluate
    from .flops import count_macs, count_params
    from .io import atomic_torch_save, atomic_write_json, finite_json
    from .models.checkpoint import safe_load
    from .prune import DREAM_METHODS, copy_model, load_pruned, prune, save_pruned
    from .spec import ModelSpec, describe, unwrap

    t_start = time.perf_counter()
    if config is None:
        config = CompressConfig.tiny() if tiny else CompressConfig()
    changes = dict(overrides)
    if target is not None:
        changes["target"] = target
    if method is not None:
        changes["method"] = method
    if changes:
        known = {f.name for f in dataclasses.fields(CompressConfig)}
        bad = sorted(set(changes) - known)
        if bad:
            raise TypeError(f"compress() got unknown settings {bad}; CompressConfig has {sorted(known)}")
        config = dataclasses.replace(config, **changes)
    cfg = config

    def say(msg):
        if progress:
            print(f"[dreamlib.compress] {msg}", flush=True)

    # 1. the network and its description
    teacher = unwrap(model)
    if isinstance(spec, dict):
        spec = ModelSpec(**spec)
    spec = describe(teacher, spec)
    m = spec.multiple
    images = load_images(clean_images)
    crop = max(m, -(-cfg.crop // m) * m)
    smallest = min(min(v.shape[:2]) for v in images.values())
    if smallest < crop:
        raise ValueError(f"the clean images must be at least {crop}x{crop} px (the dream crop, a multiple of "
                         f"{m}); the smallest is {smallest} px: lower crop= or give larger images")
    h, w = cfg.input_size[2:]
    input_size = (1, 3, max(m, -(-h // m) * m), max(m, -(-w // m) * m))
    sets = _eval_sets(eval_pairs, degrade, eval_images)
    out = None
    if out_dir is not None:
        from .experiments.run import prepare_out_dir

        out = prepare_out_dir(out_dir, resume=resume)
    was_training = teacher.training
    teacher.eval()
    timings = {}

    # 2. MACs target
    macs_teacher = count_macs(teacher, input_size, cfg.macs_convention)
    target_macs = float(cfg.target) * macs_teacher if float(cfg.target) <= 1.0 else float(cfg.target)
    say(f"{spec.name}: {macs_teacher / 1e9:.4f} G-MACs at {input_size[2]}x{input_size[3]}, target "
        f"{target_macs / 1e9:.4f} G ({cfg.method})")
    run_print = {"settings": cfg.to_dict(), "spec": spec.to_dict()}

    def check_same(path_key):
        """On resume, the run folder must belong to these settings."""
        if out is None or not resume or not (out / "settings.json").is_file():
            return
        import json

        saved = json.loads((out / "settings.json").read_text())
        if saved != json.loads(json.dumps(finite_json(run_print), default=str)):
            diff = [k for k in saved.get("settings", {}) if saved["settings"].get(k) != run_print["settings"].get(k)]
            raise ValueError(f"--resume: {out} holds a run with other settings ({', '.join(diff) or 'the spec'} "
                             "differ); use the same settings or a new folder")

    check_same("settings")
    if out is not None:
        atomic_write_json(out / "settings.json", run_print)

    # 3. dreams for the pruning search
    X = None
    t0 = time.perf_counter()
    if cfg.method in DREAM_METHODS:
        dreams_path = out / "dreams.pt" if out is not None else None
        if resume and dreams_path is not None and dreams_path.is_file():
            X = safe_load(dreams_path)["x"]
            say(f"dreams reused from {dreams_path}")
        else:
            targets = make_targets(cfg.batch_size, crop, seed=cfg.seed, images=images)
            res = dream(teacher, targets, steps=cfg.dream_steps, lr=cfg.lr_x, lambda_orth=cfg.lambda_orth,
                        orth_schedule=cfg.orth_schedule, residual_floor=cfg.residual_floor, seed=cfg.seed,
                        progress=progress)
            X = res.x
            say(f"dreamed {tuple(X.shape)} in {cfg.dream_steps} steps: teacher output {res.final_psnr:.2f} dB "
                "from the clean targets")
            if dreams_path is not None:
                atomic_torch_save({"x": X.cpu(), "final_psnr": res.final_psnr}, dreams_path)
    timings["dream"] = time.perf_counter() - t0

    # 4. pruning
    t0 = time.perf_counter()
    pruned_path = out / "pruned.pt" if out is not None else None
    prune_report = None
    if resume and pruned_path is not None and pruned_path.is_file():
        pruned = load_pruned(pruned_path, model=copy_model(teacher))
        say(f"pruned student reused from {pruned_path}")
        prune_card = pruned.dreamlib_pruning
    else:
        options = dict(cfg.prune_options)
        if cfg.method in DREAM_METHODS:
            options["X"] = X
        pruned, prune_report = prune(teacher, cfg.method, target_macs=target_macs, macs_convention=cfg.macs_convention,
                                     input_size=input_size, progress=progress, **options)
        prune_card = prune_report.to_card()
        if pruned_path is not None:
            save_pruned(pruned, pruned_path, report=prune_report)
            # continue from the file's copy (pruned-away weights stored as zeros), as a resumed run does,
            # so that the distillation state's fingerprint of its starting student matches on resume
            pruned = load_pruned(pruned_path, model=copy_model(teacher))
    timings["prune"] = time.perf_counter() - t0
    macs_pruned = count_macs(pruned, input_size, cfg.macs_convention)
    say(f"pruned to {macs_pruned / 1e9:.4f} G-MACs ({100 * macs_pruned / macs_teacher:.1f} %)")

    # 5. dream-distillation
    t0 = time.perf_counter()
    student = copy_model(pruned)
    dcfg = DistillConfig(steps=cfg.distill_steps, reinit_every=cfg.reinit_every, batch_size=cfg.batch_size,
                         crop=crop, lr_x=cfg.lr_x, lambda_orth=cfg.lambda_orth, orth_schedule=cfg.orth_schedule,
                         lr_student=cfg.lr_student, lambda_kd=cfg.lambda_kd, seed=cfg.seed,
                         residual_floor=cfg.residual_floor)
    state_path = out / "distill.state.pt" if out is not None else None
    student, log = distill(teacher, student, dcfg, images=images, state_path=state_path,
                           checkpoint_every=cfg.checkpoint_every,
                           resume=bool(resume and state_path is not None and state_path.is_file()),
                           progress=progress, fingerprint={"target_macs": int(round(target_macs)),
                                                           "method": cfg.method})
    timings["distill"] = time.perf_counter() - t0
    student.dreamlib_pruning = prune_card

    # 6. evaluation (measured only)
    t0 = time.perf_counter()
    ev = None
    if sets:
        kw = dict(convention=cfg.convention, progress=False, limit=cfg.eval_limit)
        scores = {"input": evaluate(None, sets, **kw), "teacher": evaluate(teacher, sets, **kw),
                  "pruned": evaluate(pruned, sets, **kw), "student": evaluate(student, sets, **kw)}
        psnr = {k: v["average"]["psnr"] for k, v in scores.items()}
        lost = psnr["teacher"] - psnr["pruned"]
        ev = {"convention": cfg.convention, "n": scores["teacher"]["average"]["n"], "sets": scores,
              "psnr": psnr, "ssim": {k: v["average"]["ssim"] for k, v in scores.items()},
              "lost_db": lost, "regained_db": psnr["student"] - psnr["pruned"],
              "recovered": (psnr["student"] - psnr["pruned"]) / lost if lost > 1e-9 else None}
        say(f"PSNR teacher {psnr['teacher']:.2f} dB, pruned {psnr['pruned']:.2f} dB, distilled "
            f"{psnr['student']:.2f} dB")
    timings["evaluate"] = time.perf_counter() - t0
    teacher.train(was_training)

    from .prune.masks import global_sparsity

    report = {
        "spec": spec.to_dict(), "method": cfg.method, "settings": cfg.to_dict(),
        "input_size": list(input_size), "macs_convention": cfg.macs_convention,
        "macs": {"teacher": int(macs_teacher), "target": int(round(target_macs)), "student": int(macs_pruned)},
        "params": {"teacher": int(count_params(teacher)), "student_nonzero": int(count_params(student, nonzero=True))},
        "sparsity": float(global_sparsity(student)),
        "pruning": prune_card,
        "distill": {"steps": len(log.rows["step"]), "seconds": log.seconds,
                    "l_kd_last": _last(log.rows["l_kd"]), "psnr_student_vs_teacher_last": _last(log.rows["psnr_student"]),
                    "log": log.rows},
        "dreams": None if X is None else {"shape": list(X.shape)},
        "eval": ev, "seconds": {**timings, "total": time.perf_counter() - t_start},
    }
    if out is not None:
        from .provenance import provenance

        card = {"what": "a pruned, dream-distilled student written by dreamlib.compress",
                "spec": spec.to_dict(), "settings": cfg.to_dict(),
                "macs": report["macs"], "sparsity": report["sparsity"],
                "eval": None if ev is None else {"psnr": ev["psnr"], "ssim": ev["ssim"], "recovered": ev["recovered"],
                                                 "convention": ev["convention"], "n": ev["n"]},
                "provenance": provenance(config=cfg.to_dict(), seed=cfg.seed, teacher=teacher),
                "files": {"student": "student.pt", "report": "report.json"}}
        import json

        card = json.loads(json.dumps(finite_json(card), default=str))  # plain values: weights_only loading
        save_pruned(student, out / "student.pt", card=card)
        atomic_write_json(out / "report.json", report)
        atomic_write_json(out / "card.json", card)
        say(f"wrote {out}/student.pt, card.json, report.json")
    return CompressResult(student=student, pruned=pruned, teacher=teacher, X=X, spec=spec, report=report, out_dir=out)


def _last(values):
    vals = [v for v in values if v == v]
    return vals[-1] if vals else None
