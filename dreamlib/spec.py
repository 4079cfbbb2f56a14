"""One description of a network that every part of dreamlib reads: :class:`ModelSpec`.

dreamlib needs five facts about a restoration network, and nothing else:

==================  =========================================================================
``output``          how to get the final image out of ``model(x)``: ``"tensor"`` (the output
                    is the image), ``"first"`` / ``"last"`` (of a tuple/list), an int index,
                    ``"key:NAME"`` (of a dict), or a callable ``output -> Tensor``
``multiple``        the spatial multiple the input needs (``restore`` reflect-pads to it)
``channel_order``   ``"rgb"`` or ``"bgr"``: what the network was trained on (callers always
                    speak RGB; ``restore`` flips in and out for ``"bgr"``)
``input_range``     ``(lo, hi)`` the network's pixels live in (``(0, 1)``; ``(-1, 1)`` for
                    tanh-style nets; ``(0, 255)``); ``restore`` maps [0, 1] to it and back
``feature_layer``   dotted module name whose output, global-average-pooled, feeds L_orth
                    (Eq. 4) and the t-SNE of the observation
``modules``         the prunable modules at the granularity of the paper's Fig. 4, in forward
                    order: ``{group name: (module-name prefixes, ...)}``
==================  =========================================================================

plus identity (``name``, and how to rebuild the network: ``variant``/``config`` for the
four shipped architectures, ``arch``/``config`` = ``"package.module:Class"`` and its keyword
arguments for any other).

Where a spec comes from (:func:`spec_of`, the one function every part of dreamlib calls):

1. one attached to the module (:func:`attach_spec`, :func:`describe`; ``models.build``
   attaches the registry's spec of HINet / MPRNet / DuRN / AGAN);
2. a module carrying the older ``dreamlib_name`` / ``dreamlib_variant`` attributes: the
   registry's spec of that architecture;
3. otherwise it is inferred (:func:`infer_spec`) from a few forward passes of small random
   images and attached, with these documented defaults:

   - output: a tensor output is the image; of a tuple/list/dict, the single element shaped
     like the input (several such elements are ambiguous: pass ``output=``);
   - multiple: the smallest power of two ``m`` (1 ... 64) such that an image of side
     ``m * odd`` comes back with the same shape;
   - channel order ``"rgb"``, input range ``(0, 1)`` (they cannot be seen from outside: give
     them when they differ);
   - feature layer: the last module (in forward completion order, the root excluded) whose
     output is a 4-D map wider than the image (more than 3 channels): "the last wide feature
     map before the output";
   - modules: the top-level children that hold prunable weights (Conv2d, ConvTranspose2d,
     Linear); a child that is the only weighted one is opened, and while there are fewer than
     4 modules the largest container is opened into its weighted children; more than 12 are
     merged, in forward order, into 12 consecutive groups of about equal MACs (named
     ``"first..last"``).

   A network that does not map a (1, 3, H, W) image to a (1, 3, H, W) image at any tested
   size is refused with the shapes it returned.

Wrapped models (``nn.DataParallel``, ``DistributedDataParallel``, ``torch.compile``) are
unwrapped (:func:`unwrap`); the spec lives on the wrapped module.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ModelSpec", "spec_of", "describe", "infer_spec", "attach_spec", "unwrap", "rebuild", "import_arch",
           "ImageShapeError", "MIN_GROUPS", "MAX_GROUPS"]

CHANNEL_ORDERS = ("rgb", "bgr")
OUTPUT_NAMES = ("tensor", "first", "last")
#: Default module granularity of an inferred spec: open containers until at least this many ...
MIN_GROUPS = 4
#: ... and merge consecutive modules (by MACs) down to at most this many.
MAX_GROUPS = 12
_ATTR = "dreamlib_spec"
_PROBE_BASE = 48  # inferred multiples are tested on images of side m * odd >= this


class ImageShapeError(ValueError):
    """The network does not map (B, 3, H, W) images to (B, 3, H, W) images."""


def _norm_modules(modules) -> tuple | None:
    """``None``, a list of module names, ``{group: [prefixes]}`` or pairs -> ((group, (prefixes,)), ...)."""
    if modules is None:
        return None
    if isinstance(modules, str):
        raise ValueError(f"modules must be a list of module names or {{group: [module names]}}, got {modules!r}")
    if isinstance(modules, dict):
        items = modules.items()
    else:
        items = [(m, (m,)) if isinstance(m, str) else m for m in modules]
    out = []
    for name, prefixes in items:
        prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
        if not prefixes or not all(isinstance(p, str) for p in prefixes):
            raise ValueError(f"module group {name!r} must list module names, got {prefixes!r}")
        out.append((str(name), prefixes))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"module names repeat in {names}")
    return tuple(out)


@dataclass(frozen=True)
class ModelSpec:
    """What dreamlib needs to know about a network (see the module docstring for each field).

    Build one by hand (``ModelSpec(output="last", multiple=8, feature_layer="body.14")``) and
    give it to :func:`describe`, or let :func:`describe` / :func:`spec_of` infer it.
    ``inferred`` lists the fields that were inferred rather than given.
    """

    name: str = "model"
    output: Any = "tensor"
    multiple: int = 1
    channel_order: str = "rgb"
    input_range: tuple = (0.0, 1.0)
    feature_layer: str | None = None
    modules: Any = None
    variant: str | None = None
    arch: str | None = None
    config: dict = field(default_factory=dict)
    inferred: tuple = ()

    def __post_init__(self):
        out = self.output
        if not (callable(out) or isinstance(out, int) and not isinstance(out, bool) or out in OUTPUT_NAMES
                or isinstance(out, str) and out.startswith("key:")):
            raise ValueError(f"output must be 'tensor', 'first', 'last', an index, 'key:NAME' or a callable, "
                             f"got {out!r}")
        order = str(self.channel_order).lower()
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        object.__setattr__(self, "channel_order", order)
        if isinstance(self.multiple, bool) or int(self.multiple) != self.multiple or int(self.multiple) < 1:
            raise ValueError(f"multiple must be a positive integer, got {self.multiple!r}")
        object.__setattr__(self, "multiple", int(self.multiple))
        lo, hi = (float(v) for v in self.input_range)
        if not lo < hi:
            raise ValueError(f"input_range must be (lo, hi) with lo < hi, got {self.input_range!r}")
        object.__setattr__(self, "input_range", (lo, hi))
        object.__setattr__(self, "modules", _norm_modules(self.modules))
        object.__setattr__(self, "config", dict(self.config or {}))
        object.__setattr__(self, "inferred", tuple(self.inferred))

    # ---------------------------------------------------------------- reading
    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """``{module group: (module-name prefixes, ...)}`` in forward order (empty if unknown)."""
        return dict(self.modules or ())

    @property
    def module_names(self) -> list[str]:
        return [n for n, _ in (self.modules or ())]

    @property
    def builtin(self) -> bool:
        """One of the four shipped architectures (rebuilt with ``dreamlib.models.build``)."""
        from .models import MODEL_NAMES

        return self.variant is not None and self.name in MODEL_NAMES

    def image(self, output) -> torch.Tensor:
        """The final image out of a raw ``model(x)`` output."""
        sel = self.output
        if callable(sel):
            img = sel(output)
        elif sel == "tensor":
            img = output
        elif isinstance(sel, str) and sel.startswith("key:"):
            if not isinstance(output, dict) or sel[4:] not in output:
                raise TypeError(f"{self.name}: output={sel!r} but the forward returned {_shapes(output)}")
            img = output[sel[4:]]
        else:
            if not isinstance(output, (tuple, list)):
                raise TypeError(f"{self.name}: output={sel!r} expects a tuple/list, the forward returned "
                                f"{_shapes(output)}")
            img = output[{"first": 0, "last": -1}.get(sel, sel)]
        if not torch.is_tensor(img):
            raise TypeError(f"{self.name}: the selected output is a {type(img).__name__}, not an image tensor "
                            f"(the forward returned {_shapes(output)}); describe the model with output=...")
        return img

    def to_dict(self) -> dict:
        """Plain values (JSON / ``weights_only`` safe). A callable ``output`` is written by name only."""
        out = self.output
        if callable(out):
            out = f"callable:{getattr(out, '__module__', '?')}.{getattr(out, '__qualname__', repr(out))}"
        return {"name": self.name, "output": out, "multiple": self.multiple, "channel_order": self.channel_order,
                "input_range": list(self.input_range), "feature_layer": self.feature_layer,
                "modules": None if self.modules is None else {n: list(p) for n, p in self.modules},
                "variant": self.variant, "arch": self.arch, "config": _plain(self.config),
                "inferred": list(self.inferred)}

    @classmethod
    def from_dict(cls, d: dict, output=None) -> "ModelSpec":
        """Inverse of :meth:`to_dict`; a callable output must be given again (``output=``)."""
        d = dict(d)
        out = d.get("output", "tensor")
        if isinstance(out, str) and out.startswith("callable:"):
            if output is None:
                raise ValueError(f"the stored spec selects the output image with a function ({out[9:]}); "
                                 "pass it again (output=...)")
            out = output
        elif output is not None:
            out = output
        d["output"] = out
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


def _shapes(output) -> str:
    """A short description of a raw forward output (for error messages)."""
    if torch.is_tensor(output):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, (tuple, list)):
        inner = ", ".join(str(tuple(o.shape)) if torch.is_tensor(o) else type(o).__name__ for o in output)
        return f"a {type(output).__name__} of [{inner}]"
    if isinstance(output, dict):
        inner = ", ".join(f"{k}: {tuple(v.shape) if torch.is_tensor(v) else type(v).__name__}"
                          for k, v in output.items())
        return f"a dict of {{{inner}}}"
    return f"a {type(output).__name__}"


# -------------------------------------------------------------------- wrappers

def unwrap(model: nn.Module) -> nn.Module:
    """The network inside ``nn.DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        inner = model.__dict__.get("_modules", {}).get("_orig_mod") if isinstance(model, nn.Module) else None
        if isinstance(inner, nn.Module):  # torch.compile's OptimizedModule
            model = inner
            continue
        return model


def attach_spec(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Attach ``spec`` to ``model`` (to the network inside any wrapper); returns ``model``."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a dreamlib.ModelSpec, got {type(spec).__name__}")
    core = unwrap(model)
    object.__setattr__(core, _ATTR, spec)  # a plain attribute: not a parameter, not in the state dict
    return model


def _registry_spec(model: nn.Module) -> ModelSpec:
    """The spec of a model carrying the older ``dreamlib_name`` / ``dreamlib_variant`` attributes."""
    from .models import registry_spec

    return registry_spec(model, model.__dict__["dreamlib_name"], model.__dict__.get("dreamlib_variant", "official"),
                         model.__dict__.get("dreamlib_config") or {},
                         model.__dict__.get("dreamlib_channel_order", "RGB"))


def spec_of(model: nn.Module, *, infer: bool = True, example=None) -> ModelSpec | None:
    """THE way dreamlib reads a network's description (attached, registry, or inferred and attached).

    ``infer=False`` returns ``None`` for a network with no spec instead of inferring one.
    ``example``: an input batch (or its shape) to infer with (default small random images).
    """
    core = unwrap(model)
    spec = core.__dict__.get(_ATTR)
    if isinstance(spec, ModelSpec):
        return spec
    if core.__dict__.get("dreamlib_name") is not None:
        spec = _registry_spec(core)
        attach_spec(core, spec)
        return spec
    if not infer:
        return None
    spec = infer_spec(core, example=example)
    attach_spec(core, spec)
    return spec


# -------------------------------------------------------------------- inference

def _device_dtype(model):
    p = next(model.parameters(), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, (p.dtype if p.is_floating_point() else torch.float32)


def _probe_sizes():
    """(m, side) pairs: side = m * odd, the first such side >= _PROBE_BASE."""
    out = []
    for k in range(7):
        m = 2 ** k
        odd = max(1, -(-_PROBE_BASE // m))
        odd += 1 - odd % 2
        out.append((m, m * odd))
    return out


def _select_output(raw, shape, given) -> tuple:
    """(selector, image) for a raw output; ``given`` wins. Raises ImageShapeError."""
    if given is not None:
        img = ModelSpec(output=given).image(raw)
        if tuple(img.shape) != tuple(shape):
            raise ImageShapeError(f"output={given!r} selects a {tuple(img.shape)} tensor for a {tuple(shape)} "
                                  f"input (the forward returned {_shapes(raw)})")
        return given, img
    if torch.is_tensor(raw):
        if tuple(raw.shape) != tuple(shape):
            raise ImageShapeError(f"returned {_shapes(raw)}")
        return "tensor", raw
    if isinstance(raw, (tuple, list, dict)):
        keys = list(raw) if isinstance(raw, dict) else list(range(len(raw)))
        hits = [k for k in keys if torch.is_tensor(raw[k]) and tuple(raw[k].shape) == tuple(shape)]
        if len(hits) == 1:
            k = hits[0]
            sel = f"key:{k}" if isinstance(raw, dict) else ("first" if k == 0 else "last" if k == len(raw) - 1 else k)
            return sel, raw[k]
        if len(hits) > 1:
            raise ValueError(f"the forward returned {_shapes(raw)}: several elements are image-shaped; say which "
                             f"is the final image (describe(model, output='first' | 'last' | index | 'key:NAME' "
                             "| function))")
    raise ImageShapeError(f"returned {_shapes(raw)}")


def _run(model, side, device, dtype, hooks: bool = False, seed: int = 0):
    """One no-grad eval forward on a (1, 3, side, side) random image; with ``hooks`` also the
    completion-ordered [(name, output)] of every submodule."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, side, side, generator=gen).to(device, dtype)
    rec, handles = [], []
    if hooks:
        for name, mod in model.named_modules():
            if name:
                handles.append(mod.register_forward_hook(
                    lambda m, a, o, name=name: rec.append((name, o if torch.is_tensor(o) else None))))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return x, raw, rec


def infer_spec(model: nn.Module, example=None, *, name: str | None = None, output=None, multiple: int | None = None,
               channel_order: str = "rgb", input_range=(0.0, 1.0), feature_layer: str | None = None,
               modules=None, arch: str | None = None, config: dict | None = None,
               max_groups: int = MAX_GROUPS, min_groups: int = MIN_GROUPS) -> ModelSpec:
    """Infer the spec of any image-to-image network (the defaults are in the module docstring).

    Every argument given is used as is (and checked); the others are inferred. ``example``: an
    input batch or its shape, only used for the error message's sizes (inference uses small
    random images). ``modules`` may be a list, a dict or ``callable(model) -> list | dict``.
    """
    model = unwrap(model)
    device, dtype = _device_dtype(model)
    inferred = []
    # 1. output + multiple: the first size the network maps to an image of the same shape
    sizes = _probe_sizes() if multiple is None else [(int(multiple), int(multiple) * max(1, -(-64 // int(multiple))))]
    found, failures = None, []
    for m, side in sizes:
        try:
            x, raw, _ = _run(model, side, device, dtype)
            sel, _img = _select_output(raw, x.shape, output)
        except ImageShapeError as e:
            failures.append((side, str(e)))
            continue
        except (RuntimeError, IndexError, TypeError) as e:
            if isinstance(e, TypeError) and output is not None:
                raise
            failures.append((side, f"raised {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"))
            continue
        found = (m, side, sel)
        break
    if found is None:
        side, why = next(((s, w) for s, w in failures if w.startswith("returned")), failures[0])
        raise ImageShapeError(
            f"{name or type(model).__name__} does not map 3-channel images to 3-channel images of the same size: "
            f"given a (1, 3, {side}, {side}) image it {why}. dreamlib compresses image-to-image networks "
            "((B,3,H,W) in, (B,3,H,W) out); if the final image is one element of a tuple/dict output say which "
            "(output=...), and if the network needs a spatial multiple give it (multiple=...)")
    m, side, sel = found
    if output is None:
        inferred.append("output")
    if multiple is None:
        inferred.append("multiple")
    # 2. feature layer: the last wide (C > 3) 4-D map in completion order
    side = m * max(1, -(-64 // m))
    x, raw, rec = _run(model, side, device, dtype, hooks=True)
    if feature_layer is None:
        wide = [n for n, o in rec if o is not None and o.dim() == 4 and o.shape[1] > 3]
        feature_layer = wide[-1] if wide else None
        inferred.append("feature_layer")
    else:
        model.get_submodule(feature_layer)  # a wrong name fails here
    # 3. modules
    if callable(modules):
        modules = modules(model)
    if modules is None:
        order = {}
        for i, (n, _) in enumerate(rec):
            order.setdefault(n, i)
        modules = default_modules(model, order, (1, 3, side, side), max_groups=max_groups, min_groups=min_groups)
        inferred.append("modules")
    return ModelSpec(name=name or type(model).__name__, output=sel, multiple=m, channel_order=channel_order,
                     input_range=input_range, feature_layer=feature_layer, modules=modules, arch=arch,
                     config=config or {}, inferred=tuple(inferred))


def _prunable(m: nn.Module) -> bool:
    from .prune.masks import PRUNABLE_TYPES

    return isinstance(m, PRUNABLE_TYPES)


def _weighted(m: nn.Module) -> bool:
    return any(_prunable(x) for x in m.modules())


def _weight_count(m: nn.Module) -> int:
    return sum(x.weight.numel() if not hasattr(x, "weight_orig") else x.weight_orig.numel()
               for x in m.modules() if _prunable(x))


def _children(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Weighted children of ``module``; through a chain of single weighted children."""
    kids = [(f"{prefix}.{k}" if prefix else k, c) for k, c in module.named_children() if _weighted(c)]
    if len(kids) == 1 and not _prunable(kids[0][1]):
        deeper = _children(kids[0][1], kids[0][0])
        if len(deeper) > 1:
            return deeper
    return kids


def default_modules(model: nn.Module, order: dict | None = None, input_size=(1, 3, 64, 64), *,
                    max_groups: int = MAX_GROUPS, min_groups: int = MIN_GROUPS) -> dict[str, list[str]]:
    """The documented default module granularity of a network (see the module docstring).

    ``order``: ``{module name: forward position}`` (from a traced forward); modules are listed
    in forward order of their first prunable layer. Returns ``{group: [module names]}``.
    """
    order = order or {}
    if _prunable(model):
        return {"model": [""]}
    items = _children(model, "")
    while len(items) < min_groups:
        opens = [i for i, (n, c) in enumerate(items) if not _prunable(c) and len(_children(c, n)) >= 2]
        if not opens:
            break
        i = max(opens, key=lambda i: _weight_count(items[i][1]))
        n, c = items[i]
        items[i:i + 1] = _children(c, n)
    if not items:
        raise ValueError(f"{type(model).__name__} holds no prunable (Conv2d/ConvTranspose2d/Linear) weight")

    def position(name):
        inside = [v for k, v in order.items() if k == name or k.startswith(name + ".")]
        return min(inside) if inside else len(order) + 1

    ranked = sorted(range(len(items)), key=lambda i: (position(items[i][0]), i))
    names = [items[i][0] for i in ranked]
    if len(names) <= max_groups:
        return {n: [n] for n in names}
    # merge consecutive modules into max_groups groups of about equal dense MACs
    from .flops import macs_breakdown

    macs = {n: 0 for n in names}
    for row in macs_breakdown(model, tuple(input_size)):
        for n in names:
            if row.name == n or row.name.startswith(n + "."):
                macs[n] += row.dense
                break
    total = sum(macs.values()) or 1
    groups, current, acc = [], [], 0.0
    for i, n in enumerate(names):
        current.append(n)
        acc += macs[n]
        left_items = len(names) - i - 1
        slots = max_groups - len(groups) - 1  # groups still to open after this one
        if left_items == 0 or slots == 0:
            continue  # the last group takes every remaining module
        if acc >= total * (len(groups) + 1) / max_groups or left_items <= slots:
            groups.append(current)
            current = []
    groups.append(current)
    return {(g[0] if len(g) == 1 else f"{g[0]}..{g[-1]}"): g for g in groups}


def describe(model: nn.Module, spec: ModelSpec | None = None, *, example=None, attach: bool = True,
             **fields) -> ModelSpec:
    """Describe ``model`` to dreamlib: check it, fill in what is not given, attach and return the spec.

    Args:
        model: any image-to-image ``nn.Module`` (wrappers are fine).
        spec: a full or partial :class:`ModelSpec` (its non-default fields count as given);
            default: the model's own (shipped architectures) or none.
        **fields: any :class:`ModelSpec` field (``output``, ``multiple``, ``channel_order``,
            ``input_range``, ``feature_layer``, ``modules`` (list, dict or callable), ``name``,
            ``arch``, ``config``), overriding ``spec``.
        attach: attach the result to the model (so every later call finds it).

    The network is run on small random images: one that does not map (1,3,H,W) to (1,3,H,W) is
    refused (:class:`ImageShapeError`) with the shapes it returned.
    """
    core = unwrap(model)
    unknown = set(fields) - {f.name for f in dataclasses.fields(ModelSpec)} - {"max_groups", "min_groups"}
    if unknown:
        raise TypeError(f"describe() got unknown fields {sorted(unknown)}; the fields are "
                        f"{[f.name for f in dataclasses.fields(ModelSpec) if f.name != 'inferred']}")
    fields.pop("inferred", None)
    if spec is None and not fields:
        spec = spec_of(core, infer=False)
        if spec is not None:
            _check_image(core, spec)
            return spec
    given = {}
    if spec is not None:
        defaults = ModelSpec()
        given = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec)
                 if f.name != "inferred" and getattr(spec, f.name) != getattr(defaults, f.name)}
    given.update(fields)
    if spec is not None and spec.builtin or given.get("variant") is not None:
        out = (spec or ModelSpec()).replace(**{k: v for k, v in given.items() if k not in ("max_groups", "min_groups")})
        _check_image(core, out)
    else:
        out = infer_spec(core, example=example, **given)
    if attach:
        attach_spec(core, out)
    return out


def _check_image(model, spec: ModelSpec) -> None:
    """Refuse a spec whose network does not map an image to an image of the same shape."""
    device, dtype = _device_dtype(model)
    side = spec.multiple * max(1, -(-64 // spec.multiple))
    x, raw, _ = _run(model, side, device, dtype)
    img = spec.image(raw)
    if tuple(img.shape) != tuple(x.shape):
        raise ImageShapeError(f"{spec.name} maps a {tuple(x.shape)} image to {_shapes(raw)} (selected: "
                              f"{tuple(img.shape)}); dreamlib needs (B,3,H,W) -> (B,3,H,W)")


# -------------------------------------------------------------------- rebuilding

def import_arch(path: str):
    """``"package.module:Class"`` (or ``"package.module.Class"``) -> the class (or factory)."""
    if ":" in path:
        mod, _, attr = path.partition(":")
    else:
        mod, _, attr = path.rpartition(".")
    if not mod or not attr:
        raise ValueError(f"--arch must look like package.module:Class, got {path!r}")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise ValueError(f"cannot import {mod!r} (from {path!r}): {e}; is its folder on PYTHONPATH?") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{mod!r} has no {attr!r} (from {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{path!r} is not a class or a function")
    return obj


def rebuild(spec_dict: dict | ModelSpec | None, name: str | None = None, variant: str | None = None,
            config: dict | None = None) -> nn.Module | None:
    """A fresh (untrained) network from a stored spec: ``models.build`` for the shipped
    architectures, ``arch(**config)`` for an importable one; ``None`` if it cannot be rebuilt."""
    from .models import MODEL_NAMES, build

    if name in MODEL_NAMES and variant is not None:
        return build(name, variant, **(config or {}))
    if spec_dict is None:
        return None
    d = spec_dict.to_dict() if isinstance(spec_dict, ModelSpec) else dict(spec_dict)
    if d.get("name") in MODEL_NAMES and d.get("variant") is not None:
        return build(d["name"], d["variant"], **(d.get("config") or {}))
    if d.get("arch"):
        model = import_arch(d["arch"])(**(d.get("config") or {}))
        try:
            attach_spec(model, ModelSpec.from_dict(d))
        except ValueError:
            pass  # a callable output selector: the caller describes it again
        return model
    return None

