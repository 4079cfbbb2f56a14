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

    The returned module carries ``dreamlib_name`` and ``dreamlib_variant``
    attributes so that other code (checkpoint cards, restore) knows what it is.
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
    return model


def model_name(model: nn.Module) -> str:
    """The registry name of a model built by :func:`build`."""
    name = getattr(model, "dreamlib_name", None)
    if name is None:
        raise ValueError(
            "this model was not built by dreamlib.models.build(); cannot tell which "
            "architecture it is. Build it with dreamlib.models.build(name, variant)."
        )
    return name


def final_image(model: nn.Module, output) -> torch.Tensor:
    """Select the final restored image from a raw ``model(x)`` output."""
    return _spec(model_name(model)).final_image(output)


def pad_multiple(model: nn.Module) -> int:
    m = _spec(model_name(model)).PAD_MULTIPLE
    return int(m(model) if callable(m) else m)


def restore(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final derained image of ``model`` for ``x`` (B,3,H,W) in [0,1], any H, W.

    The input is reflect-padded up to the multiple the architecture needs and the
    output is cropped back to (B,3,H,W). For official DuRN/AGAN weights (trained
    on BGR images) the channels are flipped in and out, so callers always speak
    RGB. Gradients flow (dreaming needs them).
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"restore expects a (B,3,H,W) RGB tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    m = pad_multiple(model)
    ph, pw = (-h) % m, (-w) % m
    if ph >= h or pw >= w:  # reflect padding needs more pixels than it adds
        raise ValueError(f"a {h}x{w} image is too small for {getattr(model, 'dreamlib_name', type(model).__name__)}: "
                         f"it is padded to a multiple of {m} px, so give at least {m}x{m} px")
    xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
    bgr = getattr(model, "dreamlib_channel_order", "RGB") == "BGR"
    out = final_image(model, model(xp.flip(1) if bgr else xp))
    out = out.flip(1) if bgr else out
    return out[..., :h, :w]


def feature_layer(model: nn.Module) -> str:
    """Dotted name of the deep-feature layer used for t-SNE and L_orth."""
    return _spec(model_name(model)).FEATURE_LAYER


def prunable_modules(model: nn.Module) -> list[str]:
    """Module names at the granularity of the paper's Fig. 4 (pruned one at a time)."""
    return _spec(model_name(model)).prunable_modules(model)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from .checkpoint import (  # noqa: E402,F401
    CheckpointError, CheckpointMismatchError, UnsafeCheckpointError, from_checkpoint, load_checkpoint, read_checkpoint,
    save_checkpoint)
