"""Train a (small) deraining teacher on synthetic rain over the *train-role* sample images.

>>> from dreamlib.train import train_teacher
>>> model, card = train_teacher("hinet", steps=3000, crop=96, out_dir="work/teachers")

or from the command line (what made the shipped ``data_samples/teachers/*``)::

    python -m dreamlib train-teacher --model hinet --steps 3000 --out data_samples/teachers
    python -m dreamlib train-teacher --model hinet --steps 3000 --out data_samples/teachers --resume

Data. Every sample is a random crop of one of the train-role images
(:func:`dreamlib.data.samples.load_samples` ``("train")``; test- and dream-role
images are never read), flipped horizontally with probability 1/2, with rain
of a random kind (default: :data:`~dreamlib.data.rain.STREAK_KINDS` for
HINet/MPRNet, ``raindrop`` for DuRN/AGAN) and a random rain seed synthesised
on the fly. Everything is drawn from one ``numpy.random.Generator`` seeded by
``seed``, so a run is a deterministic function of its configuration.
(Synthesis costs 2-5 ms per 96x96 crop, i.e. under 10 % of a training step of
any small model on a 2-core CPU, so no pre-generated pool is needed.)
``augment="full"`` adds rescaling, rotations, vertical flips and channel
permutations. ``procedural=p`` draws a fraction p of the clean crops from a
fixed pool of dead-leaves pictures (:mod:`dreamlib.data.deadleaves`) instead:
six training pictures are too little content to learn inpainting from, which
raindrop removal needs.

Loss, optimiser, schedule (the same for the four networks, so their recipes
differ only in size/steps):

- PSNR loss (HINet's official loss: the mean over images of 10 log10 MSE) on
  the final image, by default. It optimises the metric the teachers are judged
  by; the L1-like Charbonnier loss (MPRNet's; ``loss="charbonnier"``) targets
  the conditional *median*, and on raindrops, where the content under a drop is
  uncertain, a 500-step DuRN pilot with it learned to leave the input unchanged
  (0.0 dB gain) while the PSNR loss gave +4.4 dB after 1000 steps (pilots scored
  on held-out crops of the *train* images, never on the benchmark).
- Intermediate outputs are supervised as the official recipes do, scaled by
  ``aux_weight``: HINet's stage-1 image and MPRNet's stage-1/2 images with the
  same loss (both official recipes sum the stages), AGAN's 1/4 and 1/2
  resolution side outputs with weights 0.6 and 0.8 (the paper's multi-scale
  loss) and its attention maps with an MSE to the binary rain mask
  (|rainy - clean| > 30/255, weights 0.8^(N-t), scaled by 0.1). DuRN has one output.
- AGAN's output is not residual: it starts as the exact identity map
  (:func:`identity_init_`), which the residual networks get for free.
- ``init="kaiming"`` re-initialises every conv with He-normal weights
  (:func:`kaiming_init_`) before that: PyTorch's default scale makes a plain
  stack of ReLU convs (AGAN's bottleneck) start almost silent.
  ``init="dirac"`` (:func:`dirac_init_`) goes further and starts each conv as a
  channel-wise identity plus a little He noise, so the plain stack starts close
  to a copy of its input and learns like a residual network.
- Adam (betas 0.9/0.999) with a linear warm-up over ``warmup`` steps and a
  cosine decay to ``lr * min_lr_ratio``: a short budget needs a high initial
  rate and the cosine tail is what brings the last dB.
- Optional gradient-norm clipping (``grad_clip``).

Checkpoints. Every ``checkpoint_every`` steps the whole training state (model,
optimiser, scheduler, step, data generator, NumPy/PyTorch RNG states, loss
history, wall time so far) is written atomically to ``state_path``;
``resume=True`` continues from it and gives the same weights as an
uninterrupted run (same torch thread count). Resuming with a different
configuration raises :class:`ResumeMismatchError` naming the differences.

Output. ``<out_dir>/<name>_<variant>.pt`` (dreamlib checkpoint, the card
embedded) and ``<out_dir>/<name>_<variant>.json`` (the card): command line,
hyper-parameters, training wall time, parameter count, MACs (nni, 256x256) and
PSNR/SSIM (basicsr) on every set of the full synthetic benchmark next to the
rainy input's.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shlex
import sys
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__, settings
from .guards import check_loss, check_positive_int, check_setting
from .provenance import provenance
from .models.agan import identity_init_  # noqa: F401  (re-exported: the recipes name it)
from .models.init import DIRAC_NOISE, INITS, dirac_init_, kaiming_init_  # noqa: F401
from .data.rain import STREAK_KINDS

#: Rain kinds a teacher trains on, and the benchmark family it is judged on.
DEFAULT_KINDS = {"hinet": STREAK_KINDS, "mprnet": STREAK_KINDS, "durn": ("raindrop",), "agan": ("raindrop",)}
EVAL_FAMILY = {"hinet": "SynRain13k", "mprnet": "SynRain13k", "durn": "SynRainDrop", "agan": "SynRainDrop"}
FAMILIES = ("SynRain13k", "SynRainDrop")

LOSSES = ("charbonnier", "l1", "mse", "psnr")
AUGMENTATIONS = ("hflip", "full")


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainRecipe:
    """A teacher's training hyper-parameters: the one place the ``train-teacher`` flags, their
    defaults, :func:`train_teacher`'s defaults and the card's reproducing command come from.

    ``kinds`` / ``images``: ``None`` = the model's default rain kinds (:data:`DEFAULT_KINDS`) /
    every train-role image. ``identity_init``: ``None`` = on for AGAN only.
    """

    kinds: typing.Optional[typing.Tuple[str, ...]] = _opt(None, "comma-separated rain kinds (default: streak kinds "
                                                          "for hinet/mprnet, raindrop for durn/agan)")
    steps: int = _opt(3000, "training steps")
    batch_size: int = _opt(8, "crops per step")
    crop: int = _opt(96, "training crop side in px (a multiple of the model's pad multiple)")
    lr: float = _opt(2e-3, "peak Adam learning rate")
    min_lr_ratio: float = _opt(0.01, "final lr / peak lr (cosine schedule)")
    warmup: int = _opt(100, "linear warm-up steps")
    aux_weight: float = _opt(1.0, "weight of the intermediate-output losses (0: final image only)")
    grad_clip: float = _opt(0.0, "max grad norm (0: off)")
    loss: str = _opt("psnr", "pixel loss", choices=LOSSES)
    identity_init: typing.Optional[bool] = _opt(None, "start as the identity map (default: on for agan, whose "
                                                      "output is not residual)")
    augment: str = _opt("hflip", "hflip: horizontal flips; full: also rescaling, rotations, vertical flips, "
                                 "channel order", choices=AUGMENTATIONS)
    procedural: float = _opt(0.0, "fraction of training crops that are procedural dead-leaves pictures instead "
                                  "of crops of the train-role images", metavar="FRACTION")
    init: str = _opt("default", "weight initialisation: PyTorch's default, He-normal for every conv (kaiming), "
                                "or identity kernels plus scaled He noise for plain conv stacks (dirac)",
                     choices=INITS)
    images: typing.Optional[typing.Tuple[str, ...]] = _opt(None, "comma-separated subset of the train-role "
                                                                 "images (default: all of them)")
    seed: int = _opt(0, "model initialisation and data stream")

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field, with its default, type and help."""
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kw = {"default": f.default, "help": f.metadata["help"]}
            tp = hints[f.name]
            if tp is typing.Optional[bool]:
                kw["action"] = argparse.BooleanOptionalAction
            elif f.name in ("kinds", "images"):
                kw["type"] = lambda v: tuple(x.strip() for x in v.split(",") if x.strip())
            else:
                kw["type"] = tp
            for k in ("choices", "metavar"):
                if k in f.metadata:
                    kw[k] = f.metadata[k]
            parser.add_argument(cls.flag(f.name), **kw)

    @classmethod
    def from_args(cls, args) -> "TrainRecipe":
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def to_kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def command_args(self) -> list[str]:
        """The flags that reproduce this recipe (every field, in field order)."""
        out = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool):
                out.append(self.flag(f.name) if v else "--no-" + f.name.replace("_", "-"))
            elif isinstance(v, (tuple, list)):
                out += [self.flag(f.name), ",".join(map(str, v))]
            else:
                out += [self.flag(f.name), repr(v) if isinstance(v, float) else str(v)]
        return out


#: Defaults of the hyper-parameters (:class:`TrainRecipe`'s). Per-teacher recipes of the
#: shipped files are in their cards and in :data:`dreamlib.teachers.RECIPES`.
DEFAULTS = {**{f.name: f.default for f in dataclasses.fields(TrainRecipe)}, "charbonnier_eps": 1e-3}

_STATE_FORMAT = "dreamlib-train-state-1"


class ResumeMismatchError(ValueError):
    """``resume=True`` with a configuration different from the checkpoint's."""


# ----------------------------------------------------------------------------- data


class RainPairSampler:
    """Random (rainy, clean) crops of a list of clean images, deterministic for a Generator state.

    Args:
        images: clean float32 (H, W, 3) images in [0, 1].
        kinds: rain kinds to draw from (uniformly).
        crop: side of the square crops.
        rng: the generator; its state is the sampler's whole state.
        augment: ``"hflip"`` (random horizontal flips) or ``"full"``: also a random
            down-scaling by 1-2x (a crop of up to twice the side, resized with
            antialiasing), a random 90-degree rotation, vertical flip and colour-channel
            permutation. The clean crop is augmented *before* the rain is added, so
            the rain itself always follows its recipe (streaks fall downwards).
        procedural: fraction of samples cropped from a fixed pool of :attr:`POOL_SIZE`
            dead-leaves pictures (:func:`dreamlib.data.deadleaves.dead_leaves`, leaf
            colours drawn from the images' pixels) instead of from ``images``; 0
            (default) draws nothing extra from ``rng``, so older recipes give the same stream.
    """

    #: Number of dead-leaves pictures in the procedural pool (256 px or twice the crop).
    POOL_SIZE = 48

    def __init__(self, images: list[np.ndarray], kinds, crop: int, rng: np.random.Generator,
                 augment: str = "hflip", procedural: float = 0.0):
        from .data.rain import RAIN_TYPES

        bad = [k for k in kinds if k not in RAIN_TYPES]
        if bad or not kinds:
            raise ValueError(f"unknown rain kind(s) {bad}; choose from {', '.join(RAIN_TYPES)}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; choose one of {AUGMENTATIONS}")
        need = crop * (2 if augment == "full" else 1)
        small = [im.shape[:2] for im in images if min(im.shape[:2]) < need]
        if small:
            raise ValueError(f"crop {crop} (augment={augment!r} reads up to {need} px) is larger than "
                             f"training image(s) of size {small}")
        if not 0.0 <= procedural <= 1.0:
            raise ValueError(f"procedural must be a fraction in [0, 1], got {procedural}")
        self.images, self.kinds, self.crop, self.rng, self.augment = images, tuple(kinds), int(crop), rng, augment
        self.procedural = float(procedural)
        self.pool: list[np.ndarray] = []
        if self.procedural:
            from .data.deadleaves import dead_leaves

            # A fixed pool, made from its own seeds so the sampler's stream is unchanged; leaf colours
            # are pixels of the training pictures, so the pool is coloured like the training set.
            pal_rng = np.random.default_rng(0)
            palette = np.concatenate([im.reshape(-1, 3)[pal_rng.integers(im.shape[0] * im.shape[1], size=512)]
                                      for im in images])
            side = max(256, need)
            self.pool = [dead_leaves(side, np.random.default_rng([0xDEAD, i]), palette=palette)
                         for i in range(self.POOL_SIZE)]

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        from .data.rain import synthesize

        rng, c = self.rng, self.crop
        if self.procedural and rng.random() < self.procedural:
            im = self.pool[int(rng.integers(len(self.pool)))]
        else:
            im = self.images[int(rng.integers(len(self.images)))]
        h, w = im.shape[:2]
        src = c if self.augment == "hflip" else int(round(c * rng.uniform(1.0, 2.0)))
        top, left = int(rng.integers(h - src + 1)), int(rng.integers(w - src + 1))
        clean = im[top:top + src, left:left + src]
        if rng.random() < 0.5:
            clean = clean[:, ::-1]
        if self.augment == "full":
            if src != c:
                t = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)[None]
                t = F.interpolate(t, size=(c, c), mode="bilinear", antialias=True, align_corners=False)
                clean = t[0].permute(1, 2, 0).clamp(0, 1).numpy()
            clean = np.rot90(clean, int(rng.integers(4)))
            if rng.random() < 0.5:
                clean = clean[::-1]
            clean = clean[..., rng.permutation(3)]
        clean = np.ascontiguousarray(clean, dtype=np.float32)
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        rainy = synthesize(clean, kind, seed=int(rng.integers(2 ** 31 - 1)))
        return rainy, clean

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rainy, clean)`` tensors (n, 3, crop, crop)."""
        pairs = [self.sample() for _ in range(n)]
        rainy = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
        clean = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).contiguous()
        return rainy, clean


# ----------------------------------------------------------------------------- loss

def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def psnr_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """HINet's PSNR loss: mean over images of 10 log10(MSE) (minimising it maximises PSNR)."""
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(mse + eps).mean()


def pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    if kind == "charbonnier":
        return charbonnier(pred, target, eps)
    if kind == "l1":
        return (pred - target).abs().mean()
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "psnr":
        return psnr_loss(pred, target)
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")


def teacher_loss(name: str, output, rainy: torch.Tensor, clean: torch.Tensor, aux_weight: float = 1.0,
                 eps: float = 1e-3, loss: str = "charbonnier") -> torch.Tensor:
    """Training loss of a raw ``model(rainy)`` output: the architecture's own ``training_loss``
    (beside its model, e.g. :func:`dreamlib.models.hinet.training_loss`) with the pixel loss ``loss``."""
    from .models import _spec

    def px(pred, target):
        return pixel_loss(loss, pred, target, eps)

    return _spec(name).training_loss(output, rainy, clean, px, aux_weight)


# ----------------------------------------------------------------------------- helpers

def _lr_lambda(steps: int, warmup: int, min_ratio: float):
    def f(step: int) -> float:  # multiplier of the base lr for the update number ``step`` (0-based)
        if warmup and step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, steps - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    return f


def _rng_states() -> dict:
    # Plain values and tensors only, so the state file loads with weights_only=True.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy_global": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}


def _set_rng_states(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    name, keys, pos, has_gauss, cached = st["numpy_global"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _hardware() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} logical CPU cores shared with other jobs, torch threads "
            f"{torch.get_num_threads()}, no GPU: wall times are indicative only")


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _train_names() -> list[str]:
    from .data.samples import manifest

    return [Path(n).stem for n in manifest()["train"]]


def equivalent_command(config: dict, out_dir) -> str:
    """A ``python -m dreamlib train-teacher`` line that reproduces a card's ``config`` (its flags come
    from :class:`TrainRecipe`, so a new hyper-parameter cannot be left out of it)."""
    recipe = TrainRecipe(
        kinds=tuple(config["kinds"]), steps=config["steps"], batch_size=config["batch_size"], crop=config["crop"],
        lr=config["lr"], min_lr_ratio=config["min_lr_ratio"], warmup=config["warmup"],
        aux_weight=config["aux_weight"], grad_clip=config["grad_clip"], loss=config["loss"],
        identity_init=config["identity_init"], augment=config.get("augment", DEFAULTS["augment"]),
        procedural=config.get("procedural", DEFAULTS["procedural"]), init=config.get("init", DEFAULTS["init"]),
        images=None if config["train_images"] == sorted(_train_names()) else tuple(config["train_images"]),
        seed=config["seed"])
    parts = ["python", "-m", "dreamlib", "train-teacher", "--model", config["name"], "--variant", config["variant"],
             *recipe.command_args(), "--out", str(out_dir)]
    for k, v in config["model_overrides"].items():
        parts += ["--set", f"{k}={v!r}"]
    return shlex.join(parts)


def evaluate_on_benchmark(model: nn.Module, families=FAMILIES, progress: bool = False) -> dict:
    """PSNR/SSIM (basicsr) of ``model`` and of the rainy inputs on every set of the
    *full* synthetic benchmark (independent of DREAMLIB_QUICK)."""
    import json

    from .data.benchmark import benchmark_sets, write_benchmark
    from .evaluate import evaluate

    root = write_benchmark(quick=False, progress=progress)
    try:
        where = str(root.resolve().relative_to(settings.REPO_ROOT))
    except ValueError:
        where = str(root)
    out = {"convention": "basicsr", "benchmark": where,
           "benchmark_config": json.loads((root / "benchmark.json").read_text())}
    for fam in families:
        sets = benchmark_sets(root, fam)
        out[fam] = {"model": evaluate(model, sets, "basicsr", progress=progress),
                    "input": evaluate(None, sets, "basicsr", progress=False)}
    return out


# ----------------------------------------------------------------------------- training

def train_teacher(name: str, variant: str = "small", *, kinds=None, steps: int = DEFAULTS["steps"],
                  batch_size: int = DEFAULTS["batch_size"], crop: int = DEFAULTS["crop"], lr: float = DEFAULTS["lr"],
                  min_lr_ratio: float = DEFAULTS["min_lr_ratio"], warmup: int = DEFAULTS["warmup"],
                  aux_weight: float = DEFAULTS["aux_weight"], grad_clip: float = DEFAULTS["grad_clip"],
                  loss: str = DEFAULTS["loss"], identity_init: bool | None = DEFAULTS["identity_init"],
                  augment: str = DEFAULTS["augment"], procedural: float = DEFAULTS["procedural"],
                  init: str = DEFAULTS["init"], images=DEFAULTS["images"], seed: int = DEFAULTS["seed"], out_dir=None,
                  state_path=None, checkpoint_every: int = 200, resume: bool = False,
                  stop_at: int | None = None, threads: int | None = None, progress: bool = True,
                  evaluate: bool = True, command: str | None = None, **model_overrides):
    """Train ``name`` (``variant`` config plus ``model_overrides``) and write it with its card.

    Args:
        name: ``hinet``, ``mprnet``, ``durn`` or ``agan``.
        variant: configuration in the model module's ``CONFIGS`` (``small`` by default).
        kinds: rain kinds to train on (default :data:`DEFAULT_KINDS` ``[name]``).
        steps, batch_size, crop, lr, min_lr_ratio, warmup, aux_weight, grad_clip:
            the recipe (module docstring); ``crop`` must be a multiple of the model's pad multiple.
        augment: ``"hflip"`` or ``"full"`` (see :class:`RainPairSampler`).
        init: ``"default"`` (PyTorch's layer initialisation), ``"kaiming"``: He-normal
            weights and zero biases for every conv (:func:`kaiming_init_`), or ``"dirac"``:
            identity kernels plus scaled He noise (:func:`dirac_init_`); applied before
            ``identity_init``.
        procedural: fraction of training crops that are dead-leaves pictures
            (:mod:`dreamlib.data.deadleaves`) instead of crops of the training pictures.
        seed: model initialisation and data stream.
        out_dir: where ``<name>_<variant>.pt`` and ``.json`` go (default ``work/teachers``).
        state_path: training-state checkpoint (default
            ``work/train/<name>_<variant>_seed<seed>.state.pt``).
        checkpoint_every: write the training state every N steps (0: only at the end / ``stop_at``).
        resume: continue from ``state_path`` (an error if it is missing or has another configuration).
        stop_at: train only up to this step, write the state and return ``(model, None)``;
            a later call with ``resume=True`` continues.
        threads: ``torch.set_num_threads`` (default: leave as is).
        evaluate: evaluate on the full benchmark for the card (tests turn it off).
        command: the command line to record (the CLI passes its argv).

    Returns:
        ``(model, card)``: the trained model in eval mode and its card (``None`` if stopped early).
    """
    from . import models
    from .data.samples import load_samples
    from .flops import count_macs
    from .io import atomic_torch_save, atomic_write_json

    name = str(name).lower()
    if name not in models.MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(models.MODEL_NAMES)}")
    for what, v in (("steps", steps), ("batch_size", batch_size), ("crop", crop)):
        check_positive_int(f"train-teacher {what}", v)
    check_setting("train-teacher lr", lr, positive=True)
    if threads:
        torch.set_num_threads(int(threads))
    kinds = tuple(kinds) if kinds else DEFAULT_KINDS[name]
    train_images = load_samples("train")  # never the test- or dream-role images
    if images is not None:
        unknown = sorted(set(images) - set(train_images))
        if unknown:
            raise ValueError(f"images {unknown} are not train-role sample images ({', '.join(sorted(train_images))})")
        train_images = {k: train_images[k] for k in images}
    config = _jsonable({
        "name": name, "variant": variant, "model_overrides": dict(sorted(model_overrides.items())),
        "kinds": list(kinds), "steps": int(steps), "batch_size": int(batch_size), "crop": int(crop),
        "lr": float(lr), "min_lr_ratio": float(min_lr_ratio), "warmup": int(warmup),
        "aux_weight": float(aux_weight), "grad_clip": float(grad_clip), "charbonnier_eps": DEFAULTS["charbonnier_eps"],
        "identity_init": bool(name == "agan" if identity_init is None else identity_init),
        "loss": loss, "optimizer": "adam(0.9,0.999)", "schedule": "linear warm-up + cosine",
        "seed": int(seed), "train_images": sorted(train_images), "train_role": "train",
    })
    if augment != "hflip":  # (key absent for the default, so older cards/states stay valid)
        config["augment"] = augment
    if procedural:
        config["procedural"] = float(procedural)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init != "default":
        config["init"] = init
    out_dir = Path(out_dir) if out_dir else settings.WORK_DIR / "teachers"
    state_path = Path(state_path) if state_path else settings.WORK_DIR / "train" / f"{name}_{variant}_seed{seed}.state.pt"

    torch.manual_seed(seed)
    model = models.build(name, variant, **model_overrides)
    if init == "kaiming":
        kaiming_init_(model)
    elif init == "dirac":
        dirac_init_(model)
    if config["identity_init"]:
        identity_init_(model)
    m = models.pad_multiple(model)
    if crop % m:
        raise ValueError(f"crop {crop} is not a multiple of {m}, which {name} ({variant}) needs; use e.g. "
                         f"{max(m, crop // m * m)}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps, warmup, min_lr_ratio))
    data = RainPairSampler([train_images[k] for k in sorted(train_images)], kinds, crop,
                           np.random.default_rng(seed), augment=augment, procedural=procedural)
    step, wall, history = 0, 0.0, []

    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {state_path}; run without --resume to start, "
                                    "or pass the state file with --state")
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st.get("format") != _STATE_FORMAT:
            raise ValueError(f"{state_path} is not a dreamlib training state")
        if st["config"] != config:
            diff = [f"{k}: checkpoint {st['config'].get(k)!r} vs now {config.get(k)!r}"
                    for k in sorted(set(st["config"]) | set(config)) if st["config"].get(k) != config.get(k)]
            raise ResumeMismatchError(f"cannot resume from {state_path}: the configuration differs\n  "
                                      + "\n  ".join(diff)
                                      + "\nrun with the checkpoint's settings, or start afresh without --resume")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        data.rng.bit_generator.state = st["data_rng"]
        _set_rng_states(st["rng"])
        step, wall, history = st["step"], st["wall_s"], st["history"]
    elif state_path.is_file():
        warnings.warn(f"{state_path} exists and resume=False: starting afresh (it will be overwritten)",
                      stacklevel=2)

    def save_state():
        atomic_torch_save({"format": _STATE_FORMAT, "config": config, "step": step, "wall_s": wall,
                           "history": history, "model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "data_rng": data.rng.bit_generator.state,
                           "rng": _rng_states()}, state_path)

    end = steps if stop_at is None else min(steps, int(stop_at))
    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=step, desc=f"train {name}-{variant}", disable=not progress,
               dynamic_ncols=True)
    window, ema = [], None
    t0 = time.perf_counter()
    try:
        while step < end:
            rainy, clean = data.batch(batch_size)
            value = teacher_loss(name, model(rainy), rainy, clean, aux_weight, config["charbonnier_eps"], loss)
            opt.zero_grad(set_to_none=True)
            value.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            step += 1
            v = float(value.detach())
            check_loss(v, what=f"the training loss ({v})", step=step, hint="lower --lr or set --grad-clip")
            window.append(v)
            ema = v if ema is None else 0.98 * ema + 0.02 * v
            if len(window) == 50 or step == end:
                history.append([step, float(np.mean(window))])
                window = []
            bar.update()
            bar.set_postfix(loss=f"{ema:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if checkpoint_every and step % checkpoint_every == 0 and step < end:
                wall += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_state()
        wall += time.perf_counter() - t0
    finally:
        bar.close()
    if step < steps:
        save_state()
        model.eval()
        return model, None
    if checkpoint_every:
        save_state()  # a finished state: --resume then only re-writes the outputs

    model.eval()
    card = {
        "model": name, "variant": variant, "config": _jsonable(dict(model.dreamlib_config)),
        "command": command or equivalent_command(config, out_dir),
        "equivalent_command": equivalent_command(config, out_dir),
        "seed": int(seed), "hyperparameters": config,
        "train_wall_s": round(wall, 1),
        "hardware": _hardware() + (" (time summed over resumed sessions)" if resume else ""),
        "params": models.count_parameters(model),
        "macs_nni_256": int(count_macs(model, (1, 3, 256, 256), "nni")),
        "trained_for": EVAL_FAMILY[name] if set(kinds) <= set(DEFAULT_KINDS[name]) else list(kinds),
        "loss_history": [[s, round(v, 5)] for s, v in history],
        "dreamlib": __version__, "torch": str(torch.__version__),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "provenance": provenance(config=config, seed=seed, device="cpu"),
    }
    if evaluate:
        t1 = time.perf_counter()
        card["eval"] = evaluate_on_benchmark(model, progress=progress)
        card["eval_wall_s"] = round(time.perf_counter() - t1, 1)
        fam = EVAL_FAMILY[name]
        res = card["eval"][fam]
        card["gain_db"] = {fam: {s: round(res["model"][s]["psnr"] - res["input"][s]["psnr"], 3) for s in res["model"]}}
    card = _jsonable(card)
    out_dir.mkdir(parents=True, exist_ok=True)
    models.save_checkpoint(model, out_dir / f"{name}_{variant}.pt", card=card)
    atomic_write_json(out_dir / f"{name}_{variant}.json", card)
    return model, card


def summary(card: dict) -> str:
    """Markdown PSNR/SSIM table (model vs rainy input) of a card's evaluation."""
    lines = []
    for fam in FAMILIES:
        if fam not in card.get("eval", {}):
            continue
        res = card["eval"][fam]
        sets = list(res["model"])
        lines += [f"{fam} (basicsr)", "| | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
        for row in ("model", "input"):
            lines.append(f"| {row} | " + " | ".join(f"{res[row][s]['psnr']:.2f} / {res[row][s]['ssim']:.4f}"
                                                    for s in sets) + " |")
        lines.append("| gain (dB) | " + " | ".join(f"{res['model'][s]['psnr'] - res['input'][s]['psnr']:+.2f}"
                                                  for s in sets) + " |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def _parse_set(items) -> dict:
    import ast

    out = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--set expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def command_line() -> str:
    """This process's command line, with the environment variables that shape a run."""
    env = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "DREAMLIB_QUICK")
           if os.environ.get(k)]
    return " ".join(env + [shlex.join(["python", "-m", "dreamlib", *sys.argv[1:]])])


def cmd_train_teacher(args) -> int:
    model, card = train_teacher(
        args.model, args.variant, **TrainRecipe.from_args(args).to_kwargs(), out_dir=args.out, state_path=args.state,
        checkpoint_every=args.checkpoint_every, resume=args.resume, stop_at=args.stop_at, threads=args.threads,
        progress=not args.no_progress, evaluate=not args.no_eval, command=command_line(), **_parse_set(args.set))
    if card is None:
        print(f"stopped at step {args.stop_at}; continue with the same command plus --resume")
        return 0
    out = Path(args.out) if args.out else settings.WORK_DIR / "teachers"
    print(f"wrote {out / f'{args.model}_{args.variant}.pt'} and .json "
          f"({card['params']:,} params, {card['macs_nni_256'] / 1e9:.2f} G MACs, trained in {card['train_wall_s']:.0f} s)")
    if "eval" in card:
        print(summary(card))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train-teacher`` sub-command."""
    from .models import MODEL_NAMES

    t = subparsers.add_parser("train-teacher", help="train a (small) teacher on synthetic rain",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--model", required=True, choices=MODEL_NAMES)
    t.add_argument("--variant", default="small", help="config in the model's CONFIGS (default: small)")
    TrainRecipe.add_arguments(t)  # the hyper-parameters: one flag per TrainRecipe field
    t.add_argument("--out", type=Path, default=None, help="output folder (default: work/teachers)")
    t.add_argument("--state", type=Path, default=None,
                   help="training-state file (default: work/train/<model>_<variant>_seed<seed>.state.pt)")
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--resume", action="store_true", help="continue from the training state")
    t.add_argument("--stop-at", type=int, default=None, help="stop at this step (resume later)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="model constructor override, e.g. --set wf=16 (repeatable)")
    t.add_argument("--no-eval", action="store_true", help="skip the benchmark evaluation in the card")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train_teacher)
    return t
