"""The shipped small teachers: load one if it is there, else train it.

>>> from dreamlib.teachers import load_teacher
>>> hinet = load_teacher("hinet")           # data_samples/teachers/hinet_small.pt
>>> hinet.dreamlib_card["eval"]["SynRain13k"]   # PSNR/SSIM it was shipped with

Notebooks call :func:`load_teacher` so they follow the "load the checkpoint if
it exists, else train" habit: a missing file (e.g. a course fork that dropped the
binaries) is rebuilt by :func:`dreamlib.train.train_teacher` with the recipe
stored in :data:`RECIPES` (the shipped cards' commands), shortened in quick mode,
and written to ``work/teachers`` so ``data_samples`` is never overwritten.
"""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from . import settings

__all__ = ["TEACHER_DIR", "RECIPES", "teacher_path", "load_teacher", "teacher_card"]

#: Folder of the shipped teachers.
TEACHER_DIR = settings.DATA_SAMPLES / "teachers"

#: The recipes that made the shipped teachers (keyword arguments of ``train_teacher``).
RECIPES = {
    "hinet": dict(steps=1600, crop=96, batch_size=8, lr=2e-3, loss="psnr"),
    # photoshop (Test100-like) drawn twice as often: with uniform kinds Test100 stayed under the 4 dB bar
    "mprnet": dict(steps=1800, crop=96, batch_size=8, lr=2e-3, loss="psnr", augment="full",
                   kinds=("light", "heavy", "photoshop", "photoshop", "density", "orientations")),
    # half the crops are dead-leaves pictures: six training pictures are too little content to learn inpainting
    "durn": dict(steps=9000, crop=96, batch_size=8, lr=2e-3, loss="psnr", augment="full", procedural=0.5),
    # identity kernels (dirac) for the plain conv stack: He init stayed 1.4-1.9 dB below the bar after 10000 steps
    "agan": dict(steps=6500, crop=96, batch_size=8, lr=7e-4, grad_clip=1.0, aux_weight=0.0, init="dirac",
                 procedural=0.5, loss="psnr", augment="full"),
}


def teacher_path(name: str, variant: str = "small", directory=None) -> Path:
    """Where the teacher's checkpoint lives (shipped folder unless ``directory`` is given)."""
    return Path(directory or TEACHER_DIR) / f"{name}_{variant}.pt"


def teacher_card(name: str, variant: str = "small", directory=None) -> dict:
    """The JSON card next to a teacher (command, recipe, benchmark PSNR/SSIM)."""
    path = teacher_path(name, variant, directory).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no card {path}; train the teacher with "
                                f"`python -m dreamlib train-teacher --model {name}`")
    return json.loads(path.read_text())


def load_teacher(name: str, variant: str = "small", directory=None, device="cpu", train_if_missing: bool = True,
                 progress: bool = True) -> nn.Module:
    """Load a small teacher in eval mode, training it first if its file is missing.

    Args:
        name: ``hinet``, ``mprnet``, ``durn`` or ``agan``.
        directory: where to look (default ``data_samples/teachers``, then ``work/teachers``).
        train_if_missing: otherwise a missing teacher raises ``FileNotFoundError``
            with the command that makes it.

    Returns the model (``model.dreamlib_card`` holds its card). A teacher trained here uses
    :data:`RECIPES`, with 1/10 of the steps in quick mode (a weak teacher, but the
    notebooks still run).
    """
    from .models import MODEL_NAMES, from_checkpoint

    name = str(name).lower()
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    candidates = [teacher_path(name, variant, directory)]
    if directory is None:
        candidates.append(teacher_path(name, variant, settings.WORK_DIR / "teachers"))
    for path in candidates:
        if path.is_file():
            return from_checkpoint(path, device=device).eval()
    if not train_if_missing or variant != "small":
        raise FileNotFoundError(f"no teacher at {candidates[0]}; make it with "
                                f"`python -m dreamlib train-teacher --model {name} --variant {variant}`")
    from .train import train_teacher

    recipe = dict(RECIPES[name])
    recipe["steps"] = settings.quick(recipe["steps"], max(50, recipe["steps"] // 10))
    print(f"{candidates[0]} not found: training {name} ({recipe['steps']} steps) into work/teachers")
    model, _ = train_teacher(name, variant, out_dir=settings.WORK_DIR / "teachers", progress=progress,
                             evaluate=False, **recipe)
    return from_checkpoint(teacher_path(name, variant, settings.WORK_DIR / "teachers"), device=device).eval()
