"""Write the synthetic benchmark in the real datasets' folder layouts.

``SynRain13k/{Test2800,Test1200,Test100,Rain100H,Rain100L}/{input,target}/`` and
``SynRainDrop/{test_a,test_b}/{data,gt}/`` are cut from the *test-role* sample
images only, so a teacher never sees them in training. As in the real data,
Rain100L and Rain100H share their contents (same crops, light vs heavy rain),
Test1200 cycles through light/medium/heavy densities and Test2800 through the
14 orientation/magnitude types. test_b is written as JPEG (quality 95) like the
real RainDrop test_b.

The benchmark is deterministic for a seed, written once and reused: a
``benchmark.json`` records the configuration, and a different configuration
(or quick mode) is written to its own folder.

    python -m dreamlib make-benchmark            # -> work/benchmark/full/...
    DREAMLIB_QUICK=1 python -m dreamlib make-benchmark   # -> work/benchmark/quick/...
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import settings
from .rain import synthesize
from .samples import load_samples

# set -> (family, rain kind, number of images in full mode); family decides layout.
SETS = {
    "Test2800": ("SynRain13k", "orientations", 28),
    "Test1200": ("SynRain13k", "density", 24),
    "Test100": ("SynRain13k", "photoshop", 16),
    "Rain100H": ("SynRain13k", "heavy", 16),
    "Rain100L": ("SynRain13k", "light", 16),
    "test_a": ("SynRainDrop", "raindrop", 12),
    "test_b": ("SynRainDrop", "raindrop", 16),
}
# sets that share their crop positions (the contents), like Rain100L/Rain100H
_SHARED_CONTENT = {"Rain100H": "Rain100L"}


def default_config(quick: bool | None = None, seed: int = 0) -> dict:
    quick = settings.QUICK if quick is None else quick
    return {
        "version": 1,
        "seed": seed,
        "crop": 64 if quick else 128,
        "counts": {s: (4 if quick else n) for s, (_, _, n) in SETS.items()},
    }


def _crops(images: dict, n: int, size: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    names = sorted(images)
    out = []
    for i in range(n):
        name = names[i % len(names)]
        h, w = images[name].shape[:2]
        out.append((name, int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))))
    return out


def _save(arr: np.ndarray, path: Path) -> None:
    img = Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
    if path.suffix == ".jpg":
        img.save(path, quality=95)
    else:
        img.save(path)


def write_benchmark(root=None, quick: bool | None = None, seed: int = 0, force: bool = False,
                    progress: bool = True) -> Path:
    """Write (or reuse) the benchmark and return its root, which holds ``SynRain13k`` and ``SynRainDrop``.

    Args:
        root: parent folder; default ``work/benchmark/{full|quick}``.
        quick: smaller crops and sets (default: :data:`dreamlib.settings.QUICK`).
        seed: crop positions and rain are deterministic functions of it.
        force: rewrite even if an identical benchmark is already there.
    """
    cfg = default_config(quick, seed)
    quick_flag = cfg["crop"] == 64
    root = Path(root) if root else settings.WORK_DIR / "benchmark" / ("quick" if quick_flag else "full")
    stamp = root / "benchmark.json"
    if not force and stamp.is_file() and json.loads(stamp.read_text()) == cfg:
        return root
    images = load_samples("test")
    size = cfg["crop"]
    root.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and move into place, so an interrupted run
    # never leaves a half-written benchmark that looks complete.
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".writing-"))
    try:
        positions: dict[str, list] = {}
        todo = [(s, i) for s in SETS for i in range(cfg["counts"][s])]
        bar = tqdm(total=len(todo), desc="writing benchmark", disable=not progress)
        for k, (set_name, (family, kind, _)) in enumerate(SETS.items()):
            n = cfg["counts"][set_name]
            content = list(SETS).index(_SHARED_CONTENT.get(set_name, set_name))
            positions[set_name] = _crops(images, n, size, np.random.default_rng([seed, content]))
            if family == "SynRain13k":
                din, dgt = tmp / family / set_name / "input", tmp / family / set_name / "target"
            else:
                din, dgt = tmp / family / set_name / "data", tmp / family / set_name / "gt"
            din.mkdir(parents=True)
            dgt.mkdir(parents=True)
            ext = ".jpg" if set_name == "test_b" else ".png"
            for i, (name, top, left) in enumerate(positions[set_name]):
                clean = images[name][top:top + size, left:left + size]
                extra = {}
                if kind == "density":
                    extra["level"] = ("light", "medium", "heavy")[i % 3]
                elif kind == "orientations":
                    extra["type"] = i % 14
                rainy = synthesize(clean, kind, seed=seed * 100003 + k * 1009 + i, **extra)
                stem = f"{i:03d}_{name}"
                if family == "SynRain13k":
                    _save(rainy, din / f"{stem}{ext}")
                    _save(clean, dgt / f"{stem}{ext}")
                else:
                    _save(rainy, din / f"{stem}_rain{ext}")
                    _save(clean, dgt / f"{stem}_clean{ext}")
                bar.update()
        bar.close()
        for family in ("SynRain13k", "SynRainDrop"):
            if (root / family).exists():
                shutil.rmtree(root / family)
            (tmp / family).rename(root / family)
        meta = {**cfg, "sets": {s: {"family": f, "kind": k, "crops": [list(p) for p in positions[s]]}
                                for s, (f, k, _) in SETS.items()}}
        (root / "contents.json").write_text(json.dumps(meta, indent=1) + "\n")
        stamp.write_text(json.dumps(cfg, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def benchmark_sets(root=None, family: str = "SynRain13k", **dataset_kwargs):
    """Open the sets of one family of the (written) benchmark as PairedImageFolders."""
    from .datasets import open_sets

    root = Path(root) if root else write_benchmark(progress=False)
    return open_sets(root / family, **dataset_kwargs)
