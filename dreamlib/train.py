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
import math
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__, settings
from .guards import check_loss, check_setting
from .data.rain import STREAK_KINDS

#: Rain kinds a teacher trains on, and the benchmark family it is judged on.
DEFAULT_KINDS = {"hinet": STREAK_KINDS, "mprnet": STREAK_KINDS, "durn": ("raindrop",), "agan": ("raindrop",)}
EVAL_FAMILY = {"hinet": "SynRain13k", "mprnet": "SynRain13k", "durn": "SynRainDrop", "agan": "SynRainDrop"}
FAMILIES = ("SynRain13k", "SynRainDrop")

#: Defaults of the hyper-parameters (the CLI's too). Per-teacher recipes of the
#: shipped files are in their cards (and in the README).
DEFAULTS = dict(steps=3000, batch_size=8, crop=96, lr=2e-3, min_lr_ratio=0.01, warmup=100, aux_weight=1.0,
                grad_clip=0.0, loss="psnr", charbonnier_eps=1e-3)

_STATE_FORMAT = "dreamlib-train-state-1"


class ResumeMismatchError(ValueError):
    """``resume=True`` with a configuration different from the checkpoint's."""


# ----------------------------------------------------------------------------- data

AUGMENTATIONS = ("hflip", "full")


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


LOSSES = ("charbonnier", "l1", "mse", "psnr")


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


def _resize(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t if t.shape[-2:] == like.shape[-2:] else F.interpolate(t, size=like.shape[-2:], mode="area")


def teacher_loss(name: str, output, rainy: torch.Tensor, clean: torch.Tensor, aux_weight: float = 1.0,
                 eps: float = 1e-3, loss: str = "charbonnier") -> torch.Tensor:
    """Training loss of a raw ``model(rainy)`` output (see the module docstring)."""
    def px(pred, target):
        return pixel_loss(loss, pred, target, eps)

    if name == "hinet":  # [stage1, stage2]
        total = px(output[-1], clean)
        if aux_weight:
            total = total + aux_weight * px(output[0], clean)
    elif name == "mprnet":  # [stage3, stage2, stage1]
        total = px(output[0], clean)
        if aux_weight:
            total = total + aux_weight * sum(px(o, clean) for o in output[1:])
    elif name == "agan":  # (masks, frame 1/4, frame 1/2, image)
        masks, f1, f2, img = output
        total = px(img, clean)
        if aux_weight:
            total = total + aux_weight * (0.6 * px(f1, _resize(clean, f1)) + 0.8 * px(f2, _resize(clean, f2)))
            target = ((rainy - clean).abs().amax(1, keepdim=True) > 30 / 255).float()
            n = len(masks)
            att = sum(0.8 ** (n - 1 - t) * F.mse_loss(m, target) for t, m in enumerate(masks))
            total = total + 0.1 * aux_weight * att
    elif name == "durn":
        total = px(output, clean)
    else:
        raise ValueError(f"unknown model {name!r}")
    return total


# ----------------------------------------------------------------------------- helpers

INITS = ("default", "kaiming", "dirac")

#: scale of the He-normal noise on top of the identity kernels of ``init="dirac"``
DIRAC_NOISE = 0.3


@torch.no_grad()
def kaiming_init_(model: nn.Module) -> nn.Module:
    """He-normal weights (fan-in, ReLU gain) and zero biases for every (transposed) conv, in place.

    PyTorch's default conv initialisation draws weights with a variance of
    1/(3 fan_in), a third of what keeps a ReLU signal's scale. A plain stack of
    ReLU convs, like AGAN's ten bottleneck convs, then shrinks its signal at every
    layer: in the small AGAN at initialisation the 1/4-resolution features are
    ~0.015 (std) against ~0.14 after the first conv, so the deep path starts
    nearly silent and its gradients are tiny. He initialisation keeps the scale.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def dirac_init_(model: nn.Module, noise: float = DIRAC_NOISE) -> nn.Module:
    """Start every conv as (close to) a channel-wise identity, in place; keys and shapes untouched.

    A plain stack of ReLU convs (AGAN's 14-conv path from ``conv2`` down to 1/4
    resolution and back up through ``deconv2``) learns slowly even at the He
    scale: the correction it must learn travels through every layer. Here each
    conv first gets He-normal weights scaled by ``noise`` and zero bias
    (:func:`kaiming_init_`), then the kernel of output channel ``c`` gets a 1 at
    the centre tap of input channel ``c`` for ``c < min(in, out)``. Post-ReLU
    features are non-negative, so a conv with that kernel alone followed by a
    ReLU passes them on unchanged; with the noise added, the output of the small
    AGAN's eight 1/4-resolution convs still correlates with their input (about
    0.3, against about 0 with He weights alone), so the deep path starts close to
    a residual network's and its layers get useful gradients from step one.
    Strided convs keep every second pixel of those channels; transposed convs
    (``ConvTranspose2d(k=4, s=2, p=1)``) get the bilinear upsampling kernel on
    them instead of the 1.

    Meant for plain (non-residual) stacks. It touches every conv: inside a
    residual block it doubles the identity path at the start (AGAN's attention
    branch; the shipped teacher was trained that way). Apply it before
    :func:`identity_init_`.

    Small AGAN, same data stream, training PSNR averaged over steps 1500-2000:
    He init at lr 3e-3 22.8 dB; dirac at lr 7e-4 24.9 dB, at 1.5e-3 24.5 dB, and
    at 3e-3 no better than He over its first 800 steps. On the benchmark: +4.62 /
    +4.53 dB after 6500 steps (dirac, 7e-4) against +2.63 / +2.08 after 10000 (He).
    """
    kaiming_init_(model)
    bilinear = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.groups == 1:
            m.weight.mul_(noise)
            if isinstance(m, nn.ConvTranspose2d):
                cin, cout, kh, kw = m.weight.shape
                if (kh, kw) == (4, 4) and m.stride == (2, 2):
                    for c in range(min(cin, cout)):
                        m.weight[c, c] += torch.outer(bilinear, bilinear)
                continue
            cout, cin, kh, kw = m.weight.shape
            for c in range(min(cin, cout)):
                m.weight[c, c, kh // 2, kw // 2] += 1.0
    return model


_LIVE_BIAS = 0.1  # keeps deconv2's identity channels on the live side of their ReLU


@torch.no_grad()
def identity_init_(model: nn.Module) -> nn.Module:
    """Start AGAN's generator as the exact identity map (in place; keys and shapes untouched).

    AGAN's output is not residual, so with the default initialisation the first
    hundreds of steps are spent learning to copy the input (a 600-step pilot still
    scored below the rainy input). Here ``conv1`` copies the image into its first
    3 channels (ReLU keeps [0, 1] values), ``deconv2`` adds only a constant to
    them (see below), ``conv10`` copies them on and ``output`` reads only them;
    every other weight keeps the initialisation it had (PyTorch's default,
    :func:`kaiming_init_` or :func:`dirac_init_`), so the network starts at
    "output = input" and learns the correction, like the residual networks. The
    ``output`` weights of the other channels start at zero (they receive
    gradients from step one).

    ``deconv2``'s channels 0-2 start with zero weights but a bias of
    ``_LIVE_BIAS`` (and ``output`` subtracts it again, so the start is still the
    exact identity): with a zero bias their pre-activation would be exactly 0,
    the ReLU after ``deconv2`` would pass no gradient, and those 3 channels would
    stay dead for the whole training (a sparsity-aware MAC count then reports
    fewer MACs for the trained model than for a fresh build).
    """
    name = getattr(model, "dreamlib_name", None)
    if name != "agan":
        raise ValueError(f"identity_init_ is for AGAN (non-residual output); got {name!r}")
    c1, d2, c10, out = model.conv1[0], model.deconv2[0], model.conv10[0], model.output[0]
    if c1.out_channels < 3 or c10.out_channels < 3:
        raise ValueError("identity_init_ needs at least 3 channels in conv1 and conv10")
    for conv in (c1, c10, out):
        conv.weight[:3].zero_()
        conv.bias[:3].zero_()
        kh, kw = conv.kernel_size
        for c in range(3):
            conv.weight[c, c, kh // 2, kw // 2] = 1.0
    d2.weight[:, :3].zero_()  # ConvTranspose2d weight is (in, out, k, k)
    d2.bias[:3].fill_(_LIVE_BIAS)
    # conv10 and output copy the +_LIVE_BIAS through channels 0-2; cancel it at the end
    out.bias[:3].fill_(-_LIVE_BIAS)
    return model


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
    """A ``python -m dreamlib train-teacher`` line that reproduces ``config``."""
    parts = ["python", "-m", "dreamlib", "train-teacher", "--model", config["name"], "--variant", config["variant"],
             "--kinds", ",".join(config["kinds"]), "--steps", str(config["steps"]),
             "--batch-size", str(config["batch_size"]), "--crop", str(config["crop"]), "--lr", repr(config["lr"]),
             "--min-lr-ratio", repr(config["min_lr_ratio"]), "--warmup", str(config["warmup"]),
             "--aux-weight", repr(config["aux_weight"]), "--loss", config["loss"],
             "--identity-init" if config["identity_init"] else "--no-identity-init", "--grad-clip", repr(config["grad_clip"]),
             "--augment", config.get("augment", "hflip"),
             *(["--procedural", str(config["procedural"])] if config.get("procedural") else []),
             *(["--init", config["init"]] if config.get("init") else []),
             "--seed", str(config["seed"]), "--out", str(out_dir)]
    if config["train_images"] != sorted(_train_names()):
        parts += ["--images", ",".join(config["train_images"])]
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
                  loss: str = DEFAULTS["loss"], identity_init: bool | None = None, augment: str = "hflip",
                  procedural: float = 0.0, init: str = "default", images=None, seed: int = 0, out_dir=None, state_path=None, checkpoint_every: int = 200, resume: bool = False,
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
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"train-teacher {what} must be a positive integer, got {v!r}")
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
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None
    model, card = train_teacher(
        args.model, args.variant, kinds=kinds, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup=args.warmup, aux_weight=args.aux_weight,
        grad_clip=args.grad_clip, loss=args.loss, identity_init=args.identity_init, augment=args.augment,
        procedural=args.procedural, init=args.init,
        images=[n.strip() for n in args.images.split(",") if n.strip()] if args.images else None, seed=args.seed, out_dir=args.out, state_path=args.state,
        checkpoint_every=args.checkpoint_every, resume=args.resume, stop_at=args.stop_at, threads=args.threads,
        progress=not args.no_progress, evaluate=not args.no_eval,
        command=command_line(), **_parse_set(args.set))
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
    t.add_argument("--kinds", default=None, help="comma-separated rain kinds (default: streak kinds for "
                                                 "hinet/mprnet, raindrop for durn/agan)")
    t.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    t.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    t.add_argument("--crop", type=int, default=DEFAULTS["crop"], help="training crop side (multiple of the pad multiple)")
    t.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="peak Adam learning rate")
    t.add_argument("--min-lr-ratio", type=float, default=DEFAULTS["min_lr_ratio"], help="final lr / peak lr")
    t.add_argument("--warmup", type=int, default=DEFAULTS["warmup"], help="linear warm-up steps")
    t.add_argument("--aux-weight", type=float, default=DEFAULTS["aux_weight"],
                   help="weight of the intermediate-output losses (0: final image only)")
    t.add_argument("--grad-clip", type=float, default=DEFAULTS["grad_clip"], help="max grad norm (0: off)")
    t.add_argument("--loss", default=DEFAULTS["loss"], choices=LOSSES, help="pixel loss")
    t.add_argument("--identity-init", action=argparse.BooleanOptionalAction, default=None,
                   help="start as the identity map (default: on for agan, whose output is not residual)")
    t.add_argument("--augment", default="hflip", choices=AUGMENTATIONS,
                   help="hflip: horizontal flips; full: also rescaling, rotations, vertical flips, channel order")
    t.add_argument("--init", default="default", choices=INITS,
                   help="weight initialisation: PyTorch's default, He-normal for every conv (kaiming), or "
                        "identity kernels plus scaled He noise for plain conv stacks (dirac)")
    t.add_argument("--procedural", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of training crops that are procedural dead-leaves pictures instead of "
                        "crops of the train-role images (default 0)")
    t.add_argument("--images", default=None,
                   help="comma-separated subset of the train-role images (default: all of them)")
    t.add_argument("--seed", type=int, default=0)
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
