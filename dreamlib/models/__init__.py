"""The four deraining networks of the paper, official-compatible, plus reduced variants.

>>> from dreamlib import models
>>> net = models.build("hinet", variant="small")
>>> y = models.restore(net, x)          # final derained image, any input size

Each architecture lives in its own module (``hinet.py``, ``mprnet.py``,
``durn.py``, ``agan.py``) and exposes the same small interface, collected in
:data:`REGISTRY`:

- ``CONFIGS``: ``{"official": {...}, "small": {...}}`` constructor kwargs;
- ``build(**kwargs) -> nn.Module``;
- ``final_image(output) -> Tensor``: picks the final image out of the official
  forward's return structure;
- ``PAD_MULTIPLE``: int or ``callable(model) -> int``, the spatial multiple the input needs;
- ``FEATURE_LAYER``: dotted module name whose output is the deep feature used by
  the paper's observations and by L_orth;
- ``prunable_modules(model) -> list[str]``: the module granularity of Fig. 4.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MODEL_NAMES = ("hinet", "mprnet", "durn", "agan")


def _spec(name: str):
    key = str(name).lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return importlib.import_module(f"dreamlib.models.{key}")


def variants(name: str) -> list[str]:
    """Named configurations available for ``name`` (always includes official and small)."""
    return list(_spec(name).CONFIGS)


def build(name: str, variant: str = "official", **overrides) -> nn.Module:
    """Construct a network.

    Args:
        name: ``hinet``, ``mprnet``, ``durn`` or ``agan``.
        variant: ``official`` (the configuration of the paper's checkpoints) or
            ``small`` (same topology, reduced width/depth, trainable on a CPU).
        **overrides: constructor keyword arguments replacing the variant's values.

    The returned module carries its :class:`dreamlib.spec.ModelSpec` (read with
    :func:`dreamlib.spec.spec_of`): name, variant, config, output selector, pad multiple,
    channel order, feature layer and Fig. 4 modules. The older ``dreamlib_name`` /
    ``dreamlib_variant`` / ``dreamlib_config`` / ``dreamlib_channel_order`` attributes are
    kept for code that reads them.
    """
    spec = _spec(name)
    if variant not in spec.CONFIGS:
        raise ValueError(
            f"unknown variant {variant!r} for {name}; choose one of {', '.join(spec.CONFIGS)} "
            "or pass constructor overrides to an existing variant"
        )
    kwargs = {**spec.CONFIGS[variant], **overrides}
    model = spec.build(**kwargs)
    model.dreamlib_name = name.lower()
    model.dreamlib_variant = variant
    model.dreamlib_config = kwargs
    # DuRN's and AGAN's released weights were trained on OpenCV (BGR) images;
    # restore() flips RGB input for them. Variants trained by dreamlib are RGB.
    model.dreamlib_channel_order = getattr(spec, "INPUT_CHANNEL_ORDER", "RGB") if variant == "official" else "RGB"
    from ..spec import attach_spec

    attach_spec(model, registry_spec(model, name, variant, kwargs, model.dreamlib_channel_order))
    return model


def registry_spec(model: nn.Module, name: str, variant: str, config: dict, channel_order: str = "RGB"):
    """The :class:`dreamlib.spec.ModelSpec` of a shipped architecture, from its module's interface."""
    from ..spec import ModelSpec

    mod = _spec(name)
    m = mod.PAD_MULTIPLE
    return ModelSpec(name=name.lower(), output=mod.final_image, multiple=int(m(model) if callable(m) else m),
                     channel_order=str(channel_order).lower(), input_range=(0.0, 1.0),
                     feature_layer=mod.FEATURE_LAYER, modules=list(mod.prunable_modules(model)),
                     variant=variant, config=dict(config))


def _model_spec(model: nn.Module):
    from ..spec import spec_of

    return spec_of(model)


def model_name(model: nn.Module) -> str:
    """The name in the model's spec: the registry name of a shipped architecture, else the
    name it was described with (default: its class name)."""
    return _model_spec(model).name


def final_image(model: nn.Module, output) -> torch.Tensor:
    """Select the final restored image from a raw ``model(x)`` output (the spec's ``output``)."""
    return _model_spec(model).image(output)


def pad_multiple(model: nn.Module) -> int:
    """The spatial multiple the model's input needs (the spec's ``multiple``)."""
    return _model_spec(model).multiple


def restore(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final restored image of ``model`` for ``x`` (B,3,H,W) RGB in [0,1], any H, W.

    Works for every network dreamlib can describe (:func:`dreamlib.spec.spec_of`: the shipped
    ones, described ones, and any image-to-image module, whose spec is inferred once), wrapped
    ones included. The input is reflect-padded up to the spec's multiple and the output is
    cropped back to (B,3,H,W). For a ``"bgr"`` network (official DuRN/AGAN weights) the
    channels are flipped in and out, and for an ``input_range`` other than (0, 1) the pixels
    are mapped to it and back, so callers always speak RGB in [0, 1]. Gradients flow
    (dreaming needs them).
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"restore expects a (B,3,H,W) RGB tensor, got shape {tuple(x.shape)}")
    spec = _model_spec(model)
    h, w = x.shape[-2:]
    m = spec.multiple
    ph, pw = (-h) % m, (-w) % m
    if ph >= h or pw >= w:  # reflect padding needs more pixels than it adds
        raise ValueError(f"a {h}x{w} image is too small for {spec.name}: "
                         f"it is padded to a multiple of {m} px, so give at least {m}x{m} px")
    xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
    bgr = spec.channel_order == "bgr"
    if bgr:
        xp = xp.flip(1)
    lo, hi = spec.input_range
    scaled = (lo, hi) != (0.0, 1.0)
    if scaled:
        xp = xp * (hi - lo) + lo
    out = spec.image(model(xp))
    if scaled:
        out = (out - lo) / (hi - lo)
    out = out.flip(1) if bgr else out
    return out[..., :h, :w]


def feature_layer(model: nn.Module) -> str:
    """Dotted name of the deep-feature layer used for t-SNE and L_orth (the spec's ``feature_layer``)."""
    spec = _model_spec(model)
    if spec.feature_layer is None:
        raise ValueError(f"{spec.name} has no feature layer (no module outputs a map wider than the image); "
                         "name one: dreamlib.describe(model, feature_layer='...')")
    return spec.feature_layer


def prunable_modules(model: nn.Module) -> list[str]:
    """Module names at the granularity of the paper's Fig. 4 (pruned one at a time; the spec's
    ``modules``; for an inferred spec a name may stand for a group, see ``spec_of(model).groups``)."""
    return _model_spec(model).module_names


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from .checkpoint import (  # noqa: E402,F401
    CheckpointError, CheckpointMismatchError, UnsafeCheckpointError, from_checkpoint, load_checkpoint, read_checkpoint,
    save_checkpoint)
