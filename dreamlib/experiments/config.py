"""The runners' settings as typed dataclasses, checked completely before any compute.

A YAML file (``configs/*.yaml``) or keyword overrides are read into :class:`RunConfig`:
every key at every level must be a field (unknown keys are refused with the known ones
listed), values are coerced where that is unambiguous (YAML reads ``1e-4`` as a string:
it becomes the float 1e-4; ``2.0`` for an integer field becomes 2) and refused otherwise
(``methods: lamp`` is not a list, ``seed: "abc"`` is not an integer), and ranges and choices
are checked. "Not set" is ``None``, never 0. The error names the file, the key path and
what is allowed, in one line::

    configs/my.yaml: distill.stpes: unknown key; known: amp, batch_size, crop, ...

The runners still read the resolved config as a plain dict (:meth:`RunConfig.to_dict`,
the shape of ``configs/small_cpu.yaml``), which is what their JSON results record.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

__all__ = ["ConfigError", "DreamXConfig", "AdaptiveConfig", "BudgetConfig", "RunConfig", "validate"]


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the source, the key path and the fix."""


AUTO = "auto"


def _positive_int(name, v):
    if v < 1:
        raise ValueError(f"must be a positive integer, got {v}")


def _in(choices):
    def check(name, v):
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}; got {v!r}")
    return check


def _range(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(name, v):
        if v is None:
            return
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or \
              (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
            hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
            raise ValueError(f"must be {' and '.join(s for s in (lo_s, hi_s) if s)}, got {v:g}")
    return check


def _floor(name, v):
    if v is not None and v != AUTO and not 0.0 < v < 1.0:
        raise ValueError(f"must be null (the paper's Eq. 5), 'auto' or a number in (0, 1), got {v!r}")


def _f(default, check=None, **kw):
    """A dataclass field with a range/choice check in its metadata."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"check": check, **kw})
    return field(default=default, metadata={"check": check, **kw})


def _methods():
    from ..prune.api import METHODS
    return METHODS


@dataclass
class DreamXConfig:
    """The dreamed batch X that the adaptive search and dream-budget measure on (:func:`tables.dream_x`).

    ``residual_floor``: ``None`` = the paper's plain Eq. 5; a number in (0, 1) = the dreams'
    residual floor (mean |T(x) - x|, beyond the paper); ``"auto"`` = plain dreams, dreamed again
    with :data:`tables.AUTO_FLOOR` when the teacher changes under 1 % of their pixels.
    """

    batch_size: int = _f(8, _positive_int)
    crop: int = _f(64, _positive_int)  # px
    steps: int = _f(150, _positive_int)
    lr: float = _f(5e-2, _range(0, lo_open=True))
    lambda_orth: float = _f(0.05, _range(0))
    orth_schedule: typing.Optional[str] = _f("cosine", _in((None, "cosine")))
    residual_floor: typing.Union[float, str, None] = _f(AUTO, _floor)


@dataclass
class AdaptiveConfig:
    """Options of Algorithm 1 (:func:`dreamlib.prune.adaptive.prune_adaptive`)."""

    eps: float = _f(1e-3, _range(0, 1, lo_open=True, hi_open=True))
    order: str = _f("independent", _in(("independent", "cumulative")))
    tp: float = _f(50.0, _range(0))  # dB: the first threshold the equal-FLOPs search tries
    tp_step: float = _f(10.0, _range(0, lo_open=True))
    tp_tol: float = _f(0.5, _range(0, lo_open=True))
    max_sweeps: int = _f(12, _positive_int)
    within: str = _f("layer", _in(("layer", "module")))


@dataclass
class BudgetConfig:
    """Options of ``dream-budget`` (:func:`dreamlib.prune.budget.prune_budget`); beyond the paper."""

    grid: typing.Optional[typing.List[float]] = _f(None, None)  # module sparsities measured; None = 0, 1/40, ..., 1
    within: str = _f("layer", _in(("layer", "module")))

    def __post_init__(self):
        if self.grid is not None and (not self.grid or any(not 0.0 <= g <= 1.0 for g in self.grid)):
            raise ValueError(f"grid: must be a non-empty list of sparsities in [0, 1], got {self.grid}")


def _distill_defaults() -> dict:
    return {"steps": 1800, "reinit_every": 600, "batch_size": 8, "crop": 64, "lr_x": 5e-2, "lambda_orth": 0.05,
            "orth_schedule": "cosine", "lr_student": 1e-4, "lambda_kd": 1.0, "residual_floor": AUTO}


@dataclass
class RunConfig:
    """Everything a runner reads (Tables 1-2, the ablation, Fig. 1, prune-table, the demo).

    ``distill`` holds :class:`dreamlib.distill.DistillConfig` fields (its own checks apply;
    ``seed`` comes from the top level, ``residual_floor`` may also be ``"auto"``: the decision
    :func:`tables.dream_x` made for X). ``eval_limit``: ``None`` = every image, else >= 1.

    ``protocol``: how a network is run on a test image (:mod:`dreamlib.protocols`): ``dreamlib``
    (reflect-pad, the default) or ``official`` (each network's official test script).
    ``convention``: the metric convention; ``null`` = the protocol's (basicsr for ``dreamlib``,
    each network's official one for ``official``). When ``protocol: official`` is set and no
    layer sets ``convention``, it becomes ``null``.
    """

    seed: int = _f(0, _range(0))
    convention: typing.Optional[str] = _f("basicsr", _in((None, "basicsr", "matlab", "opencv")))
    protocol: str = _f("dreamlib", _in(("dreamlib", "official")))
    methods: typing.List[str] = _f(["l1-uniform", "erk", "lamp", "adaptive", "dream-budget"], "methods")
    dream_x: DreamXConfig = field(default_factory=DreamXConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    dream_budget: BudgetConfig = field(default_factory=BudgetConfig, metadata={"key": "dream-budget"})
    paper_tp: typing.Optional[float] = _f(50.0, _range(0))
    distill: dict = field(default_factory=_distill_defaults, metadata={"distill": True})
    distill_from: typing.List[str] = _f(["adaptive", "dream-budget", "lamp"], "methods")
    eval_limit: typing.Optional[int] = _f(None, _range(1))

    def to_dict(self) -> dict:
        """The plain-dict shape the runners read (and that results files record)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            key = f.metadata.get("key", f.name)
            if dataclasses.is_dataclass(v):
                v = dataclasses.asdict(v)
                if key == "dream-budget":  # only what was set: {} keeps the library defaults
                    v = {k: x for k, x in v.items() if x != BudgetConfig.__dataclass_fields__[k].default}
                else:  # keys beyond the long-standing ones only when set, so older results compare equal
                    always = _ALWAYS_SHOWN.get(key, ())
                    defaults = {f.name: f.default for f in dataclasses.fields(type(getattr(self, f.name)))}
                    v = {k: x for k, x in v.items() if k in always or x != defaults[k]}
            out[key] = v
        return out


#: Keys every resolved config shows (those of the committed results); the others only when set.
_ALWAYS_SHOWN = {"dream_x": ("batch_size", "crop", "steps", "residual_floor"), "adaptive": ("eps", "order")}


# ------------------------------------------------------------------ coercion

def _coerce(tp, v, path: str):
    """``v`` as annotation ``tp`` (a typing object), or a ValueError saying what was expected."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        if isinstance(v, str) and v == AUTO and str in args:
            return v
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, v, path)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"got {v!r}")
    if origin in (list, typing.List):
        (inner,) = typing.get_args(tp) or (object,)
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"must be a list (e.g. [{v}]), got {type(v).__name__} {v!r}")
        return [_coerce(inner, x, path) for x in v]
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise ValueError(f"must be true or false, got {v!r}")
    if tp is int:
        if isinstance(v, bool):
            raise ValueError(f"must be an integer, got {v!r}")
        if isinstance(v, int):
            return v
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"must be an integer, got {v!r}") from None
        if math.isfinite(f) and f.is_integer():
            return int(f)
        raise ValueError(f"must be an integer, got {v!r}")
    if tp is float:
        if isinstance(v, bool):
            raise ValueError(f"must be a number, got {v!r}")
        try:
            f = float(v)  # YAML 1.1 reads 1e-4 as a string
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {v!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"must be a finite number, got {v!r}")
        return f
    if tp is str:
        if isinstance(v, str):
            return v
        raise ValueError(f"must be a string, got {v!r}")
    return v


def _hints(cls):
    return typing.get_type_hints(cls)


def _section(cls, raw, source: str, prefix: str, base=None):
    """``cls`` built from ``base`` (an instance or None) updated by ``raw`` (a dict), checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.')}: must be a mapping of keys, got {raw!r}")
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    values = {} if base is None else {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
    for key, v in raw.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: {path}: unknown key; known: {', '.join(sorted(fields))}")
        f = fields[key]
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = _section(hints[f.name], v, source, f"{path}.", values.get(f.name))
            continue
        if f.metadata.get("distill"):
            values[f.name] = _distill_section(v, source, f"{path}.", values.get(f.name))
            continue
        try:
            val = _coerce(hints[f.name], v, path)
            check = f.metadata.get("check")
            if check == "methods":
                unknown = [m for m in val if m not in _methods()]
                if unknown or not val:
                    raise ValueError(f"must be a non-empty list of {', '.join(_methods())}; got {v!r}")
            elif check is not None:
                check(key, val)
        except ValueError as e:
            raise ConfigError(f"{source}: {path}: {e}") from None
        values[f.name] = val
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f"{source}: {prefix.rstrip('.')}: {e}") from None


def _distill_section(raw, source: str, prefix: str, base: dict | None) -> dict:
    """The ``distill`` mapping checked against :class:`dreamlib.distill.DistillConfig`'s fields."""
    from ..distill import DistillConfig

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.')}: must be a mapping of keys, got {raw!r}")
    hints = _hints(DistillConfig)
    known = sorted(k for k in hints if k != "seed")
    out = dict(base or {})
    for key, v in raw.items():
        path = f"{prefix}{key}"
        if key not in known:
            why = " (the run's seed is set at the top level)" if key == "seed" else ""
            raise ConfigError(f"{source}: {path}: unknown key{why}; known: {', '.join(known)}")
        tp = typing.Union[float, str, None] if key == "residual_floor" else hints[key]
        try:
            val = _coerce(tp, v, path)
            if key == "residual_floor":
                _floor(key, val)
        except ValueError as e:
            raise ConfigError(f"{source}: {path}: {e}") from None
        out[key] = val
    try:  # DistillConfig's own checks (positive steps, finite rates, known source ...)
        DistillConfig(**{**out, "residual_floor": None if out.get("residual_floor") == AUTO
                         else out.get("residual_floor")})
    except (ValueError, TypeError) as e:  # its messages start with the field's name
        raise ConfigError(f"{source}: {prefix}{e}") from None
    return out


def validate(layers) -> RunConfig:
    """Build a :class:`RunConfig` from the defaults updated by each ``(source, mapping)`` layer in turn.

    Nested sections merge key by key (a layer that sets ``distill: {steps: 40}`` keeps the other
    distill keys). Raises :class:`ConfigError` naming the source, the key path and what is allowed.
    """
    cfg = RunConfig()
    for source, raw in layers:
        if raw is None:
            continue
        cfg = _section(RunConfig, raw, source, "", cfg)
    if cfg.protocol == "official" and not any(isinstance(raw, dict) and "convention" in raw for _, raw in layers):
        cfg.convention = None  # the official protocol scores in each network's official convention
    missing = [m for m in cfg.distill_from if m not in cfg.methods]
    if missing:
        raise ConfigError(f"{layers[-1][0] if layers else 'config'}: distill_from: {missing} are not among the "
                          f"pruned methods {cfg.methods}; add them to methods or remove them from distill_from")
    return cfg
