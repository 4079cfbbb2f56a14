"""The knobs of each rain kind that change its output, in display units (for widgets and figures).

:mod:`dreamlib.data.rain` accepts every parameter of a kind, but some recipes override some of them:
``density`` takes density, length and width from its ``level``, ``orientations`` takes its angle and
streak size from its ``type`` (:data:`OVERRIDDEN` lists those it accepts but overrides). :data:`KNOBS` lists, per kind, only the parameters that move the
image, each with a label in real units and the factor from the display value to the parameter
(e.g. density shown in % of pixels, passed as a fraction).

>>> from dreamlib.data.rain_knobs import KNOBS, to_params
>>> [k.param for k in KNOBS["raindrop"]][:3]
['density', 'radius', 'opacity']
>>> to_params("light", {"density": 0.5, "intensity": 45})   # % -> fractions
{'density': 0.005, 'intensity': 0.45}
"""
from __future__ import annotations

from dataclasses import dataclass

from .rain import RAIN_TYPES

__all__ = ["Knob", "KNOBS", "OVERRIDDEN", "HELD", "SWEEPS", "knob", "to_params", "orientation_label"]


@dataclass(frozen=True)
class Knob:
    """One parameter of a rain kind as a widget shows it.

    ``value`` is the default in display units; the recipe gets ``display * scale``.
    ``options`` makes it a choice (dropdown) instead of a slider; ``log`` a log-scale slider;
    ``pair`` a (min, max) range slider. For ``log`` knobs ``lo`` and ``hi`` are base-10 exponents.
    """

    param: str
    label: str
    value: object
    lo: float = 0.0
    hi: float = 1.0
    step: float = 1.0
    scale: float = 1.0
    log: bool = False
    pair: bool = False
    options: tuple = ()
    integer: bool = False

    def to_param(self, shown):
        if self.options:
            return shown
        if self.pair:
            return tuple(float(v) * self.scale for v in shown)
        if self.integer:
            return int(shown)
        return round(float(shown) * self.scale, 10)


def orientation_label(t: int) -> str:
    """'3: 0 deg, small streaks' for type 3 of the ``orientations`` kind (7 angles x 2 magnitudes)."""
    p = RAIN_TYPES["orientations"].params
    angles, mags = p["angles"], p["magnitudes"]
    size = ("small", "large")[t // len(angles)] if len(mags) == 2 else f"magnitude {t // len(angles)}"
    return f"{t}: {angles[t % len(angles)]:+.0f} deg, {size} streaks"


_ANGLE = Knob("angle", "angle (deg from vertical)", 10.0, -60.0, 60.0, 5.0)
_LENGTH = Knob("length", "length (px)", 22.0, 4.0, 60.0, 2.0)
_WIDTH = Knob("width", "width (px)", 1.0, 0.5, 4.0, 0.25)
_SEEDS = Knob("density", "seeds (% of px)", 0.25, -2.0, 0.7, 0.1, scale=0.01, log=True)
_INTENSITY = Knob("intensity", "peak brightness (% of white)", 45.0, 5.0, 100.0, 5.0, scale=0.01)
_VEIL = Knob("veil", "veil (% haze)", 0.0, 0.0, 60.0, 5.0, scale=0.01)


def _with(k: Knob, **changes) -> Knob:
    return Knob(**{**k.__dict__, **changes})


_N_ORIENT = len(RAIN_TYPES["orientations"].params["angles"]) * len(RAIN_TYPES["orientations"].params["magnitudes"])

#: kind -> the knobs that change its output (checked in notebook 00: every one moves the image).
KNOBS: dict[str, list[Knob]] = {
    "light": [_ANGLE, _LENGTH, _WIDTH, _SEEDS, _INTENSITY, _VEIL],
    "heavy": [_ANGLE, Knob("angle_spread", "layer angle spread (+/- deg)", 20.0, 0.0, 45.0, 5.0),
              Knob("layers", "layers", 3, 1, 5, 1, integer=True), _with(_LENGTH, value=34.0),
              _with(_WIDTH, value=2.0), _SEEDS, _INTENSITY, _with(_VEIL, value=20.0)],
    "photoshop": [_ANGLE, _with(_LENGTH, value=40.0), _with(_WIDTH, value=1.2),
                  Knob("density", "specks kept (% of noise)", 8.0, 1.0, 30.0, 1.0, scale=0.01),
                  Knob("blur", "noise blur (sigma, px)", 0.6, 0.2, 2.0, 0.1),
                  _with(_INTENSITY, value=100.0)],
    "density": [Knob("level", "density level", "medium", options=("light", "medium", "heavy")),
                _ANGLE, _with(_INTENSITY, value=35.0)],
    "orientations": [Knob("type", "type (angle, size)", 3,
                          options=tuple((orientation_label(t), t) for t in range(_N_ORIENT))),
                     _VEIL],
    "raindrop": [Knob("density", "drops per 10,000 px", 6.0, 1.0, 20.0, 1.0),
                 Knob("radius", "drop radius range (px)", (6.0, 20.0), 2.0, 40.0, 1.0, pair=True),
                 Knob("opacity", "opacity (%)", 95.0, 10.0, 100.0, 5.0, scale=0.01),
                 Knob("zoom", "scene inside a drop (x size)", 0.6, 0.1, 1.0, 0.05),
                 Knob("defocus", "defocus blur (sigma, px)", 2.0, 0.0, 6.0, 0.5),
                 Knob("rim", "rim darkening (%)", 35.0, 0.0, 80.0, 5.0, scale=0.01),
                 Knob("edge", "soft edge (% of radius)", 25.0, 5.0, 60.0, 5.0, scale=0.01),
                 Knob("brightness", "brighter inside (%)", 8.0, 0.0, 40.0, 2.0, scale=0.01)],
}

#: kind -> parameters it accepts that its recipe overrides (a slider for them would do nothing).
OVERRIDDEN: dict[str, tuple[str, ...]] = {
    "density": ("width",),                                        # set by the level
    "orientations": ("density", "length", "width", "intensity"),  # set by the type
}

#: kind -> parameters it accepts that matter only in some settings, so the widget keeps them at their
#: defaults rather than show a knob that sometimes does nothing (density: the heavy level sets its own veil).
HELD: dict[str, tuple[str, ...]] = {
    "density": ("veil",),
}

#: kind -> (param, display values) of the small-multiples figure: the knob that sets how heavy the rain is.
SWEEPS: dict[str, tuple[str, list]] = {
    "light": ("density", [0.1, 0.25, 0.5, 1.0]),
    "heavy": ("layers", [1, 2, 3, 5]),
    "photoshop": ("density", [2.0, 5.0, 10.0, 20.0]),
    "density": ("level", ["light", "medium", "heavy"]),
    "orientations": ("type", [3, 0, 10, 7]),
    "raindrop": ("density", [2.0, 6.0, 12.0, 20.0]),
}


def knob(kind: str, param: str) -> Knob:
    """The :class:`Knob` of ``param`` for rain ``kind``."""
    for k in KNOBS[kind]:
        if k.param == param:
            return k
    raise KeyError(f"{kind} has no knob {param!r}; knobs: {[k.param for k in KNOBS[kind]]}")


def to_params(kind: str, shown: dict) -> dict:
    """Display values (``{param: value}``) -> keyword arguments of :func:`~dreamlib.data.rain.synthesize`."""
    return {p: knob(kind, p).to_param(v) for p, v in shown.items()}
