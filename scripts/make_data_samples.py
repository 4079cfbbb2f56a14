"""Rebuild data_samples/clean/ from images that ship inside Python packages.

Provenance script (run once by the maintainers; its output is committed): every
image comes from a package wheel, so nothing is downloaded from a website.

    pip download --no-deps sporco==0.2.2.post1 -d /tmp/sporco
    python scripts/make_data_samples.py --sporco-wheel /tmp/sporco/sporco-0.2.2.post1-py3-none-any.whl

Images are resized (Lanczos) so the longer side is at most 512 px, converted to
RGB and written as PNG. The manifest (roles) is written next to them.
"""
from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

MAX_SIDE = 512

# name -> (role, loader key, source text, licence)
IMAGES = {
    # teacher training
    "coffee": ("train", "skimage:coffee.png", "scikit-image data (Pikolo Espresso Bar, Rachel Michetti)", "CC0"),
    "chelsea": ("train", "skimage:chelsea.png", "scikit-image data (Stefan van der Walt's cat)", "CC0"),
    "rocket": ("train", "skimage:rocket.jpg", "scikit-image data (SpaceX launch, NASA)", "public domain"),
    "china": ("train", "sklearn:china.jpg", "scikit-learn sample image, Flickr user danielbuechele", "CC BY 2.0"),
    "barbara": ("train", "sporco:barbara.png", "sporco 0.2.2 test image (attributed to Allen Gersho)", "free to redistribute per sporco README"),
    "kodim23": ("train", "sporco:kodim23.png", "sporco 0.2.2 test image (Kodak PhotoCD set)", "released for unrestricted use"),
    # benchmark test (the synthetic Rain13k/RainDrop sets are cut from these)
    "astronaut": ("test", "skimage:astronaut.png", "scikit-image data (Eileen Collins, NASA)", "public domain"),
    "sail": ("test", "sporco:sail.png", "sporco 0.2.2 test image (Waterloo BragZone)", "free of copyright restrictions"),
    "monarch": ("test", "sporco:monarch.png", "sporco 0.2.2 test image (Waterloo BragZone)", "free of copyright restrictions"),
    # "collected clean images": the dreaming targets y of the paper
    "flower": ("dream", "sklearn:flower.jpg", "scikit-learn sample image, Flickr user vultilion", "CC BY 2.0"),
    "tulips": ("dream", "sporco:tulips.png", "sporco 0.2.2 test image (Waterloo BragZone)", "free of copyright restrictions"),
    "grace_hopper": ("dream", "matplotlib:grace_hopper.jpg", "matplotlib sample data (US Navy photo)", "public domain"),
}


def _read(key: str, sporco_wheel: Path) -> Image.Image:
    pkg, fname = key.split(":")
    if pkg == "sporco":
        with zipfile.ZipFile(sporco_wheel) as z:
            return Image.open(io.BytesIO(z.read(f"sporco/data/{fname}")))
    if pkg == "skimage":
        import skimage

        return Image.open(Path(skimage.__file__).parent / "data" / fname)
    if pkg == "sklearn":
        import sklearn

        return Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / fname)
    if pkg == "matplotlib":
        import matplotlib

        return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / fname)
    raise ValueError(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sporco-wheel", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data_samples")
    args = ap.parse_args()
    clean = args.out / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    manifest = {"train": [], "test": [], "dream": []}
    rows = []
    for name, (role, key, source, licence) in IMAGES.items():
        img = _read(key, args.sporco_wheel).convert("RGB")
        scale = MAX_SIDE / max(img.size)
        if scale < 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        img.save(clean / f"{name}.png", optimize=True)
        manifest[role].append(f"{name}.png")
        rows.append(f"| {name}.png | {img.width}x{img.height} | {role} | {source} (`{key}`) | {licence} |")
        print(name, img.size, role)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
