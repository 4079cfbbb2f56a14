"""The shipped clean images and their fixed roles (``data_samples/manifest.json``).

Roles are disjoint: ``train`` (teacher training), ``test`` (the synthetic
benchmark is cut from these) and ``dream`` (the paper's "collected clean
images", used as dreaming targets y).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..settings import DATA_SAMPLES

ROLES = ("train", "test", "dream")


def manifest(root: Path | None = None) -> dict[str, list[str]]:
    root = Path(root or DATA_SAMPLES)
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: data_samples/ is missing from this checkout "
                                "(clone the whole repository, or set DREAMLIB_DATA_SAMPLES)")
    return json.loads(path.read_text())


def sample_paths(role: str | None = None, root: Path | None = None) -> list[Path]:
    """Paths of the shipped clean images, all or those of one role."""
    root = Path(root or DATA_SAMPLES)
    m = manifest(root)
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
    names = [n for r in ROLES if role in (None, r) for n in m[r]]
    return [root / "clean" / n for n in names]


def load_image(path) -> np.ndarray:
    """Read an image file as float32 (H, W, 3) RGB in [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def load_samples(role: str | None = None, root: Path | None = None) -> dict[str, np.ndarray]:
    """``{name: image}`` for the shipped clean images (float32 (H, W, 3) in [0, 1])."""
    return {p.stem: load_image(p) for p in sample_paths(role, root)}
