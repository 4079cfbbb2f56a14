"""Synthetic rain of distinct types, so the paper's observations can be made without its datasets.

>>> from dreamlib.data.rain import synthesize, RAIN_TYPES
>>> rainy = synthesize(clean, "heavy", seed=3)            # clean: float32 (H, W, 3) in [0, 1]
>>> rainy = synthesize(clean, "light", seed=3, angle=30)  # override any parameter

Every kind is a :class:`RainType`: a recipe plus a dict of parameters that a
notebook widget can turn. Streak kinds follow the recipe behind most synthetic
deraining sets (REFERENCE.md §9): sparse random seeds -> motion blur along an
angle -> levels -> blend. Everything is vectorised (FFT convolution); a
Python loop runs only over layers or drops, never over pixels.

Kinds and what they imitate, with the rainy-input PSNR/SSIM (basicsr
convention, Y channel) measured over the 12 shipped sample images x seeds 0-2
by ``python -m dreamlib rain-table`` (the README has the same table):

=============  ==========================================================  ============  =====
kind           imitates                                                    PSNR dB       SSIM
=============  ==========================================================  ============  =====
light          Rain100L: one sparse streak layer, one direction            26.53 ± 0.45  0.822
heavy          Rain100H: three dense layers in different directions, veil  14.15 ± 0.85  0.471
photoshop      Test100/Rain800: noise -> blur -> levels -> motion blur,    23.91 ± 1.10  0.762
               screen blend
density        Test1200/Rain1200: light, medium or heavy density           23.27 ± 4.17  0.666
orientations   Test2800/Rain14000: one of 14 orientation/magnitude types   23.90 ± 4.07  0.732
raindrop       RainDrop: out-of-focus drops on glass (inverted, minified   24.26 ± 2.45  0.852
               scene inside an elliptical alpha with a darker rim)
=============  ==========================================================  ============  =====

For reference, the real sets' rainy inputs are about 27 dB (Rain100L), 14 dB
(Rain100H) and 24 dB (RainDrop test_a).

Parameters (all kinds accept the ones that apply to them):

- ``angle``: streak direction in degrees from vertical (positive leans right);
  ``None`` draws one per image from ``angle_range``.
- ``length``: streak length in pixels; ``width``: streak thickness (Gaussian
  sigma x2) in pixels.
- ``density``: fraction of pixels that seed a streak (or, for raindrops, drops
  per 10,000 pixels); raindrop ``radius`` is a (min, max) range in pixels.
- ``intensity``: peak streak brightness added (0-1).
- ``veil``: strength of the atmospheric veil (0 = none, 1 = all haze).
- ``layers``: number of streak layers (heavy rain), each at its own angle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve


# ---------------------------------------------------------------- building blocks

def motion_kernel(length: float, angle: float, width: float = 1.0) -> np.ndarray:
    """A streak-shaped blur kernel: a line of ``length`` px at ``angle`` degrees from
    vertical, Gaussian cross-section of sigma ``width / 2``, tapered ends, peak 1."""
    half = int(np.ceil(length / 2 + 2 * width)) + 1
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    t = np.deg2rad(angle)
    ux, uy = np.sin(t), np.cos(t)  # rain falls down (+y), leaning right for angle > 0
    along = x * ux + y * uy
    perp = x * uy - y * ux
    sigma = max(width / 2.0, 0.35)
    cross = np.exp(-(perp ** 2) / (2 * sigma ** 2))
    # streaks are brightest in the middle and fade towards both ends
    taper = np.clip(1.0 - (np.abs(along) / (length / 2.0 + 1e-6)) ** 2, 0.0, 1.0)
    k = cross * taper
    return k / k.max()


def streak_layer(shape: tuple[int, int], rng: np.random.Generator, *, density: float, length: float,
                 angle: float, width: float = 1.0, intensity: float = 0.6, gamma: float = 1.0) -> np.ndarray:
    """One layer of rain streaks, float (H, W) in [0, intensity].

    Seeds are drawn on a canvas larger than the image so streaks enter from
    outside the frame instead of starting at its border.
    """
    h, w = shape
    pad = int(length) + 4
    canvas = (h + 2 * pad, w + 2 * pad)
    seeds = (rng.random(canvas) < density) * rng.uniform(0.5, 1.0, canvas)
    s = fftconvolve(seeds, motion_kernel(length, angle, width), mode="same")[pad:pad + h, pad:pad + w]
    s = np.clip(s, 0.0, 1.0) ** gamma  # levels: overlapping streaks saturate
    return (intensity * s).astype(np.float32)


def add_veil(img: np.ndarray, veil: float, airlight: float = 0.85) -> np.ndarray:
    """JORDER's atmospheric model O = alpha*B + (1 - alpha)*A with alpha = 1 - veil."""
    return (1.0 - veil) * img + veil * airlight


def screen(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Photoshop 'screen' blend: 1 - (1 - B)(1 - S)."""
    return 1.0 - (1.0 - base) * (1.0 - layer)


def _angle(p: dict, rng: np.random.Generator) -> float:
    if p.get("angle") is not None:
        return float(p["angle"])
    lo, hi = p.get("angle_range", (-20.0, 20.0))
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------- the recipes

def _streaks(clean, rng, p):
    """One or more additive streak layers, optional veil (light, heavy)."""
    out = clean.copy()
    base_angle = _angle(p, rng)
    rain = np.zeros(clean.shape[:2], np.float32)
    for i in range(int(p.get("layers", 1))):
        a = base_angle + (rng.uniform(-1, 1) * p.get("angle_spread", 0.0) if i else 0.0)
        scale = 1.0 if i == 0 else float(rng.uniform(0.6, 1.0))
        rain += streak_layer(clean.shape[:2], rng, density=p["density"] * scale, length=p["length"] * scale,
                             angle=a, width=p["width"], intensity=p["intensity"])
    veil = float(p.get("veil", 0.0))
    if veil:
        out = add_veil(out, veil)
    return out + rain[..., None]


def _photoshop(clean, rng, p):
    """The classic Photoshop rain tutorial: noise, blur, levels, motion blur, screen."""
    h, w = clean.shape[:2]
    pad = int(p["length"]) + 4
    noise = rng.random((h + 2 * pad, w + 2 * pad))
    noise = ndimage.gaussian_filter(noise, p.get("blur", 0.6))
    lo = np.quantile(noise, 1.0 - p["density"])  # levels: keep only the brightest specks
    specks = np.clip((noise - lo) / (noise.max() - lo + 1e-8), 0, 1)
    k = motion_kernel(p["length"], _angle(p, rng), p["width"])
    s = fftconvolve(specks, k / k.sum() * 6.0, mode="same")[pad:pad + h, pad:pad + w]
    s = np.clip(s, 0, 1) * p["intensity"]
    return screen(clean, s[..., None])


def _density(clean, rng, p):
    """Rain1200: one of three densities per image, each with its own streak size."""
    levels = p["levels"]
    name = p.get("level") or list(levels)[int(rng.integers(len(levels)))]
    q = {**p, **levels[name]}
    return _streaks(clean, rng, q)


def _orientations(clean, rng, p):
    """Rain14000: 14 types = 7 orientations x 2 magnitudes, one per image."""
    angles, mags = p["angles"], p["magnitudes"]
    t = p.get("type")
    t = int(rng.integers(len(angles) * len(mags))) if t is None else int(t)
    q = {**p, "angle": angles[t % len(angles)], **mags[t // len(angles)]}
    return _streaks(clean, rng, q)


def _raindrops(clean, rng, p):
    """Out-of-focus drops on glass: each shows the blurred scene, flipped and minified,
    inside a soft elliptical alpha whose rim is darker (refraction at the edge)."""
    h, w = clean.shape[:2]
    blurred = ndimage.gaussian_filter(clean, sigma=(p["defocus"], p["defocus"], 0))
    out = clean.copy()
    n = max(1, int(round(p["density"] * h * w / 1e4)))
    r_lo, r_hi = p["radius"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry = rng.uniform(r_lo, r_hi)
        rx = ry * rng.uniform(0.7, 1.3)
        y0, y1 = int(max(0, cy - ry - 2)), int(min(h, cy + ry + 3))
        x0, x1 = int(max(0, cx - rx - 2)), int(min(w, cx + rx + 3))
        if y1 <= y0 or x1 <= x0:
            continue
        dy, dx = (yy[y0:y1, x0:x1] - cy) / ry, (xx[y0:y1, x0:x1] - cx) / rx
        r = np.sqrt(dx ** 2 + dy ** 2)
        alpha = np.clip((1.0 - r) / p["edge"], 0.0, 1.0) * p["opacity"]
        # a drop acts as a lens: the scene around it appears inverted and minified
        sy = np.clip(cy - dy * ry * p["zoom"], 0, h - 1).astype(np.intp)
        sx = np.clip(cx - dx * rx * p["zoom"], 0, w - 1).astype(np.intp)
        inside = blurred[sy, sx] * (1.0 + p["brightness"])
        rim = 1.0 - p["rim"] * np.exp(-((r - 0.85) ** 2) / 0.01)
        inside = inside * rim[..., None]
        a = alpha[..., None]
        out[y0:y1, x0:x1] = (1 - a) * out[y0:y1, x0:x1] + a * inside
    return out


@dataclass(frozen=True)
class RainType:
    """A named rain recipe and its default parameters."""

    name: str
    description: str
    recipe: Callable = field(repr=False)
    params: dict = field(default_factory=dict)


_STREAK_MAGNITUDES = [
    {"density": 0.002, "length": 18.0, "width": 1.0, "intensity": 0.4},
    {"density": 0.004, "length": 28.0, "width": 1.4, "intensity": 0.5},
]

RAIN_TYPES: dict[str, RainType] = {
    t.name: t for t in [
        RainType("light", "Rain100L-like: one sparse layer of thin streaks, one direction", _streaks,
                 {"angle": None, "angle_range": (-15.0, 15.0), "density": 0.0025, "length": 22.0,
                  "width": 1.0, "intensity": 0.45, "layers": 1, "veil": 0.0}),
        RainType("heavy", "Rain100H-like: several dense layers in different directions, with a veil", _streaks,
                 {"angle": None, "angle_range": (-25.0, 25.0), "angle_spread": 20.0, "density": 0.0025,
                  "length": 34.0, "width": 2.0, "intensity": 0.45, "layers": 3, "veil": 0.2}),
        RainType("photoshop", "Test100-like: Photoshop recipe (noise, blur, levels, motion blur, screen)",
                 _photoshop, {"angle": None, "angle_range": (-30.0, 30.0), "density": 0.08, "blur": 0.6,
                              "length": 40.0, "width": 1.2, "intensity": 1.0}),
        RainType("density", "Test1200-like: light, medium or heavy density, one per image", _density,
                 {"angle": None, "angle_range": (-20.0, 20.0), "level": None, "width": 1.0, "layers": 1,
                  "veil": 0.0, "intensity": 0.35,
                  "levels": {"light": {"density": 0.003, "length": 16.0, "width": 1.0},
                             "medium": {"density": 0.008, "length": 26.0, "width": 1.5},
                             "heavy": {"density": 0.02, "length": 36.0, "width": 2.0, "veil": 0.15}}}),
        RainType("orientations", "Test2800-like: one of 14 orientation/magnitude streak types per image",
                 _orientations, {"type": None, "layers": 1, "veil": 0.0,
                                 "angles": [-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0],
                                 "magnitudes": _STREAK_MAGNITUDES,
                                 "density": 0.006, "length": 24.0, "width": 1.2, "intensity": 0.6}),
        RainType("raindrop", "RainDrop-like: out-of-focus drops on glass", _raindrops,
                 {"density": 6.0, "radius": (6.0, 20.0), "edge": 0.25, "opacity": 0.95, "zoom": 0.6,
                  "defocus": 2.0, "brightness": 0.08, "rim": 0.35}),
    ]
}

#: The streak kinds a deraining teacher is trained on (everything but raindrops).
STREAK_KINDS = ("light", "heavy", "photoshop", "density", "orientations")


def synthesize(clean: np.ndarray, kind: str, seed: int = 0, **params) -> np.ndarray:
    """Add rain of type ``kind`` to a clean image.

    Args:
        clean: float (H, W, 3) RGB in [0, 1] (uint8 is accepted and rescaled).
        kind: a key of :data:`RAIN_TYPES`.
        seed: the result is a deterministic function of (clean, kind, seed, params).
        **params: overrides of the kind's default parameters (see the module docstring).

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    if kind not in RAIN_TYPES:
        raise ValueError(f"unknown rain kind {kind!r}; choose one of {', '.join(RAIN_TYPES)}")
    img = np.asarray(clean)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"synthesize expects an RGB image (H, W, 3), got shape {img.shape}")
    rtype = RAIN_TYPES[kind]
    unknown = set(params) - set(rtype.params)
    if unknown:
        raise ValueError(f"{kind} has no parameter(s) {sorted(unknown)}; it takes {sorted(rtype.params)}")
    rng = np.random.default_rng([seed, sum(map(ord, kind))])  # distinct streams per kind
    out = rtype.recipe(img.astype(np.float32), rng, {**rtype.params, **params})
    return np.clip(out, 0.0, 1.0).astype(np.float32)
