"""Paired rainy/clean image folders in the layouts of the real test sets (REFERENCE.md §4).

Layouts recognised, given a dataset ``root`` and a set name:

- Rain13k (HINet):  ``<root>/<set>/input/*`` and ``<root>/<set>/target/*``, same file names;
- MPRNet:           ``<root>/test/<set>/input`` and ``.../target``;
- RainDrop (AGAN):  ``<root>/<set>/data/<id>_rain.<ext>`` and ``<root>/<set>/gt/<id>_clean.<ext>``.

``root`` may also be the set folder itself. The synthetic benchmark written by
:mod:`dreamlib.data.benchmark` uses exactly these layouts, so real and synthetic
data go through the same code.

>>> ds = PairedImageFolder("~/data/Rain13k", "Rain100L")
>>> item = ds[0]; item["input"].shape        # torch.Size([3, H, W]), float in [0, 1]
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

RAIN13K_SETS = ("Test2800", "Test1200", "Test100", "Rain100H", "Rain100L")
RAINDROP_SETS = ("test_a", "test_b")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

_LAYOUT_HELP = (
    "expected one of these layouts:\n"
    "  Rain13k:  <root>/<set>/input/*.png + <root>/<set>/target/*.png (same file names)\n"
    "  MPRNet:   <root>/test/<set>/input + <root>/test/<set>/target\n"
    "  RainDrop: <root>/<set>/data/<id>_rain.png + <root>/<set>/gt/<id>_clean.png"
)


@dataclass(frozen=True)
class Pair:
    name: str
    input: Path
    target: Path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def resolve_set(root, set_name: str | None = None) -> tuple[Path, str]:
    """Find the folder of one set and its layout (``"rain13k"`` or ``"raindrop"``)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {root} does not exist; {_LAYOUT_HELP}")
    candidates = [root / set_name, root / "test" / set_name] if set_name else []
    candidates.append(root)
    for d in candidates:
        if (d / "input").is_dir() and (d / "target").is_dir():
            return d, "rain13k"
        if (d / "data").is_dir() and (d / "gt").is_dir():
            return d, "raindrop"
    where = f"set {set_name!r} under {root}" if set_name else str(root)
    present = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())[:12]) or "no sub-folders"
    raise FileNotFoundError(f"no paired folders found for {where} (it contains: {present}); {_LAYOUT_HELP}")


def find_pairs(set_dir: Path, layout: str) -> list[Pair]:
    """Pair input and target files; raise listing any file without a partner."""
    if layout == "rain13k":
        ins = {p.stem: p for p in _images(set_dir / "input")}
        tgs = {p.stem: p for p in _images(set_dir / "target")}
        in_dir, tg_dir = "input", "target"
    elif layout == "raindrop":
        def ids(folder, suffix):
            out = {}
            for p in _images(folder):
                stem = p.stem
                out[stem[: -len(suffix)] if stem.endswith(suffix) else stem] = p
            return out
        ins, tgs = ids(set_dir / "data", "_rain"), ids(set_dir / "gt", "_clean")
        in_dir, tg_dir = "data", "gt"
    else:
        raise ValueError(f"unknown layout {layout!r}")
    lonely_in = sorted(set(ins) - set(tgs))
    lonely_tg = sorted(set(tgs) - set(ins))
    if lonely_in or lonely_tg:
        def show(names, d):
            return ", ".join(f"{d}/{n}" for n in names[:10]) + (f" ... (+{len(names) - 10})" if len(names) > 10 else "")
        msg = [f"unpaired files in {set_dir}:"]
        if lonely_in:
            msg.append(f"  no {tg_dir} for: {show(lonely_in, in_dir)}")
        if lonely_tg:
            msg.append(f"  no {in_dir} for: {show(lonely_tg, tg_dir)}")
        msg.append("  each rainy image needs a clean partner with the same name"
                   + (" (<id>_rain <-> <id>_clean)" if layout == "raindrop" else ""))
        raise ValueError("\n".join(msg))
    if not ins:
        raise FileNotFoundError(f"{set_dir} has no images in {in_dir}/ and {tg_dir}/ ({', '.join(sorted(IMAGE_EXTS))})")
    return [Pair(k, ins[k], tgs[k]) for k in sorted(ins)]


class PairedImageFolder(Dataset):
    """Rainy/clean pairs of one test set as float tensors in [0, 1].

    Args:
        root: dataset root (or the set folder itself).
        set_name: e.g. ``"Rain100L"`` or ``"test_a"``; ``None`` if ``root`` is the set folder.
        crop: side of square crops (int) or (h, w); ``None`` keeps whole images.
        crop_mode: ``"random"`` (seeded by ``seed``, the index and :meth:`set_epoch`) or ``"center"``.
        flip: random horizontal flips (training).
        pad_multiple: reflect-pad both images to a multiple of N (the original
            size is returned as ``"hw"`` so predictions can be cropped back).
        limit: use only the first ``limit`` pairs (sorted by name).
        seed: seed of the random crops and flips.

    Items are dicts ``{"input": (3,H,W), "target": (3,H,W), "name": str, "hw": (H, W)}``.
    """

    def __init__(self, root, set_name: str | None = None, *, crop=None, crop_mode: str = "center",
                 flip: bool = False, pad_multiple: int | None = None, limit: int | None = None, seed: int = 0):
        self.set_dir, self.layout = resolve_set(root, set_name)
        self.name = set_name or self.set_dir.name
        self.pairs = find_pairs(self.set_dir, self.layout)[:limit]
        if crop_mode not in ("random", "center"):
            raise ValueError(f"crop_mode must be 'random' or 'center', got {crop_mode!r}")
        self.crop = (crop, crop) if isinstance(crop, int) else (tuple(crop) if crop else None)
        self.crop_mode, self.flip, self.pad_multiple, self.seed = crop_mode, flip, pad_multiple, seed
        self.epoch = 0
        self._warned = False

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops/flips deterministically (call once per epoch)."""
        self.epoch = int(epoch)

    def _read(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                mode = im.mode
                if mode.startswith("I;16") or mode == "I":  # 16-bit: scale by 65535, not clip at 255
                    a = np.asarray(im, dtype=np.float32) / 65535.0
                    return np.repeat(np.clip(a, 0.0, 1.0)[..., None], 3, axis=-1)
                if mode != "RGB":
                    if not self._warned:
                        warnings.warn(f"{self.set_dir}: converting {mode} images to RGB (first: {path.name}); "
                                      "said once per dataset", stacklevel=3)
                        self._warned = True
                    im = im.convert("RGB")
                return np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {path}: {e}. Replace or remove the file.") from e

    def __getitem__(self, idx: int) -> dict:
        pair = self.pairs[idx]
        x, y = self._read(pair.input), self._read(pair.target)
        if x.shape != y.shape:
            raise ValueError(f"{pair.name}: input {pair.input.name} is {x.shape[:2]} but target "
                             f"{pair.target.name} is {y.shape[:2]}; pairs must have the same size")
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        if self.crop:
            ch, cw = self.crop
            h, w = x.shape[:2]
            if h < ch or w < cw:
                raise ValueError(f"{pair.input} is {h}x{w}, smaller than the {ch}x{cw} crop; "
                                 "use a smaller crop or pad_multiple instead of cropping")
            if self.crop_mode == "random":
                top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            else:
                top, left = (h - ch) // 2, (w - cw) // 2
            x, y = x[top:top + ch, left:left + cw], y[top:top + ch, left:left + cw]
        if self.flip and rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        hw = x.shape[:2]
        xt = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)
        yt = torch.from_numpy(np.ascontiguousarray(y)).permute(2, 0, 1)
        if self.pad_multiple:
            m = self.pad_multiple
            ph, pw = (-hw[0]) % m, (-hw[1]) % m
            if ph or pw:
                pad = torch.nn.functional.pad
                xt = pad(xt[None], (0, pw, 0, ph), mode="reflect")[0]
                yt = pad(yt[None], (0, pw, 0, ph), mode="reflect")[0]
        return {"input": xt, "target": yt, "name": pair.name, "hw": tuple(hw)}


def open_sets(root, sets=None, **kwargs) -> dict[str, PairedImageFolder]:
    """Open several sets of one root. ``sets=None`` finds whichever of the Rain13k
    or RainDrop set names exist (in the paper's column order)."""
    root = Path(root).expanduser()
    if sets is None:
        sets = [s for s in RAIN13K_SETS + RAINDROP_SETS
                if (root / s).is_dir() or (root / "test" / s).is_dir()]
        if not sets and root.is_dir() and (((root / "input").is_dir() and (root / "target").is_dir())
                                           or ((root / "data").is_dir() and (root / "gt").is_dir())):
            return {root.name: PairedImageFolder(root, None, **kwargs)}  # the root is one set's folder
        if not sets:
            raise FileNotFoundError(f"none of {', '.join(RAIN13K_SETS + RAINDROP_SETS)} found under {root}; "
                                    f"{_LAYOUT_HELP}")
    return {s: PairedImageFolder(root, s, **kwargs) for s in sets}
