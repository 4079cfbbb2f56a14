"""Dead-leaves pictures: endless procedural training content.

Six training pictures are few. A network that has to *inpaint* what lies
under a near-opaque raindrop learns their content instead of a rule that
carries over to new pictures (the small DuRN gained +5.2 dB on new crops of its
training pictures but +2.7 dB on the test pictures). Dead-leaves images,
occluding disks whose radii follow a power law, share the statistics that
matter for restoration with natural images: scale invariance, sharp occlusion
edges, flat regions. Networks trained on them restore natural images nearly as
well as networks trained on photographs (Achddou, Gousseau, Ladjal, "Synthetic
images as a regularity prior for image restoration neural networks", SSVM 2021;
Baradad et al., "Learning to see by looking at noise", NeurIPS 2021).

>>> from dreamlib.data.deadleaves import dead_leaves
>>> img = dead_leaves(192, np.random.default_rng(0))   # float32 (192, 192, 3) in [0, 1]

Colours are drawn from a palette (the teachers' sampler passes pixels of the
training-role pictures, so the colour statistics are natural ones; without one,
colours are uniform in RGB), each leaf gets a faint
linear shading and grain, and the picture a slight blur, so that edges are not
perfectly aliased steps. Only a Python loop over leaves; no loop over pixels.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["dead_leaves"]


def dead_leaves(size: int, rng: np.random.Generator, *, palette: np.ndarray | None = None,
                r_min: float = 2.0, r_max: float | None = None, alpha: float = 3.0,
                coverage: float = 0.995, max_leaves: int = 4000, shading: float = 0.15,
                grain: float = 0.02, blur: float = 0.6) -> np.ndarray:
    """One dead-leaves picture.

    Args:
        size: side in pixels.
        rng: the generator (the picture is a deterministic function of its state).
        palette: (N, 3) float RGB colours in [0, 1] to draw leaf colours from
            (default: uniform random colours).
        r_min, r_max: leaf radii in pixels (default ``r_max``: half the side).
        alpha: radii have density proportional to ``r ** -alpha`` (3 gives scale invariance).
        coverage: stop once this fraction of pixels is covered.
        max_leaves: hard cap on the number of leaves.
        shading: amplitude of each leaf's linear brightness ramp across its radius.
        grain: standard deviation of per-pixel Gaussian grain.
        blur: Gaussian blur sigma in pixels applied at the end (0: none).

    Returns:
        float32 (size, size, 3) RGB in [0, 1].

    Leaves are laid front to back: each new leaf only paints pixels that no
    earlier leaf covered, which is the same picture as painting back to front but
    stops as soon as the canvas is full.
    """
    size = int(size)
    if size < 8:
        raise ValueError(f"size {size} is too small for a dead-leaves picture (at least 8 px)")
    r_max = float(r_max if r_max is not None else size / 2)
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
    img = np.zeros((size, size, 3), np.float32)
    free = np.ones((size, size), bool)
    n_free, target = size * size, (1.0 - coverage) * size * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a1 = 1.0 - alpha
    lo, hi = r_min ** a1, r_max ** a1
    for _ in range(int(max_leaves)):
        # inverse-CDF sample of the power law on [r_min, r_max]
        r = float((lo + rng.random() * (hi - lo)) ** (1.0 / a1))
        cy, cx = rng.uniform(-r, size + r), rng.uniform(-r, size + r)
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 2)
        if y1 <= y0 or x1 <= x0:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        paint = ((dy * dy + dx * dx) <= r * r) & free[y0:y1, x0:x1]
        if not paint.any():
            continue
        colour = palette[rng.integers(len(palette))] if palette is not None else rng.random(3)
        theta = rng.uniform(0, 2 * np.pi)
        ramp = 1.0 + shading * rng.uniform(-1, 1) * (np.cos(theta) * dx + np.sin(theta) * dy) / r
        img[y0:y1, x0:x1][paint] = colour[None, :] * ramp[paint][:, None]
        free[y0:y1, x0:x1][paint] = False
        n_free -= int(paint.sum())
        if n_free <= target:
            break
    if free.any():  # what is left uncovered gets the mean colour, not black holes
        img[free] = img[~free].mean(0) if (~free).any() else 0.5
    if grain:
        img += rng.normal(0.0, grain, img.shape).astype(np.float32)
    if blur:
        img = ndimage.gaussian_filter(img, sigma=(blur, blur, 0))
    return np.clip(img, 0.0, 1.0).astype(np.float32)
