"""Weight masks: which layers are prunable, how a mask is put on, changed, read and made permanent.

The mechanism is PyTorch's own (:mod:`torch.nn.utils.prune`): a pruned layer keeps
its trainable tensor as ``weight_orig``, a ``weight_mask`` buffer (1 = kept,
0 = pruned, same dtype as the weight), and a forward pre-hook that sets
``module.weight = weight_mask * weight_orig`` before every forward. Hence

- :func:`dreamlib.flops.count_macs` sees the zeros (it counts ``nnz(module.weight)``);
- fine-tuning cannot revive a pruned weight: its gradient reaches ``weight_orig``
  but the effective weight stays ``0 * weight_orig``;
- masks are changed *in place* (:func:`set_mask` copies into the buffer and
  refreshes ``module.weight``), so a search can try thousands of masks on one
  working copy without ``deepcopy`` or re-registering hooks.

Prunable = the weight of every ``Conv2d``, ``ConvTranspose2d`` and ``Linear``
(the layers :mod:`dreamlib.flops` counts); biases and normalisation parameters are
never pruned. A weight tensor shared by several modules is one :class:`Layer`
(listed under its first module name, allocated once) whose mask is put on every
module that uses it.

Magnitude (l1) ranking inside a layer: the ``count`` smallest ``|w|`` of the
effective weight are pruned, ties broken by flat index (stable sort). An existing
mask is always kept: a new mask is multiplied with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune as tprune

PRUNABLE_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)

__all__ = [
    "PRUNABLE_TYPES", "Layer", "prunable_layers", "layers_in", "has_mask", "set_mask", "get_mask",
    "l1_mask", "masks", "apply_masks", "finalize", "layer_sparsity",
    "global_sparsity", "effective_weight", "copy_model",
]


def _param(m: nn.Module) -> torch.Tensor:
    return m.weight_orig if hasattr(m, "weight_orig") else m.weight


def has_mask(m: nn.Module) -> bool:
    return hasattr(m, "weight_mask") and hasattr(m, "weight_orig")


def effective_weight(m: nn.Module) -> torch.Tensor:
    """The weight the forward uses (``weight_mask * weight_orig`` for a masked layer), detached."""
    if has_mask(m):
        return (m.weight_mask * m.weight_orig).detach()
    return m.weight.detach()


@dataclass
class Layer:
    """One prunable weight tensor: its (first) module name and every module using it."""

    name: str
    module: nn.Module
    tied: list = field(default_factory=list)  # [(name, module)] sharing the same weight tensor

    @property
    def numel(self) -> int:
        return _param(self.module).numel()

    @property
    def modules(self) -> list:
        return [(self.name, self.module)] + list(self.tied)

    def weight(self) -> torch.Tensor:
        return effective_weight(self.module)


def prunable_layers(model: nn.Module, exclude=()) -> dict[str, Layer]:
    """Every prunable weight tensor of ``model``, once, in ``named_modules`` order.

    Args:
        exclude: module-name prefixes whose layers are left out (kept dense).
    """
    by_tensor: dict[int, Layer] = {}
    out: dict[str, Layer] = {}
    for name, m in model.named_modules():
        if not isinstance(m, PRUNABLE_TYPES):
            continue
        key = id(_param(m))
        if key in by_tensor:
            by_tensor[key].tied.append((name, m))
            continue
        layer = Layer(name, m)
        by_tensor[key] = layer
        if not any(_under(name, p) for p in exclude):
            out[name] = layer
    return out


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def layers_in(layers: dict[str, Layer], module_names, strict: bool = True) -> dict[str, list[str]]:
    """Assign each layer to the first module (dotted prefix, in the given order) containing it.

    ``module_names``: a list of module names, or ``{group: (module names, ...)}`` (a group holds
    the layers under any of its names). Returns ``{module or group: [layer names]}``; a layer is
    listed under one module only, so a weight is never pruned twice. With ``strict`` an unknown
    or empty module raises.
    """
    groups = dict(module_names) if isinstance(module_names, dict) else {m: (m,) for m in module_names}
    taken: set[str] = set()
    out: dict[str, list[str]] = {}
    for mod, prefixes in groups.items():
        prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
        names = [n for n in layers if n not in taken and any(_under(n, p) for p in prefixes)]
        if strict and not names:
            raise ValueError(f"module {mod!r} holds no prunable (Conv2d/ConvTranspose2d/Linear) weight "
                             "that is not already assigned to an earlier module")
        taken.update(names)
        out[mod] = names
    return out


def _set_module_mask(m: nn.Module, mask: torch.Tensor) -> None:
    p = _param(m)
    mask = mask.to(device=p.device, dtype=p.dtype)
    if has_mask(m):
        with torch.no_grad():
            m.weight_mask.copy_(mask)
            # what the pruning pre-hook computes before each forward; refreshed now so
            # that count_macs (which reads module.weight) sees the new mask at once
            m.weight = m.weight_mask * m.weight_orig
    else:
        tprune.custom_from_mask(m, "weight", mask)
        with torch.no_grad():  # a leaf until the next forward, so the model can be deep-copied
            m.weight = m.weight_mask * m.weight_orig


def set_mask(layer: Layer, mask: torch.Tensor) -> None:
    """Put ``mask`` (1 = keep) on the layer and every module tied to it, in place."""
    for _, m in layer.modules:
        _set_module_mask(m, mask)


def get_mask(m: nn.Module) -> torch.Tensor | None:
    return m.weight_mask if has_mask(m) else None


def l1_mask(weight: torch.Tensor, count: int, order: torch.Tensor | None = None) -> torch.Tensor:
    """Mask (weight dtype, 1 = keep) pruning the ``count`` smallest ``|weight|`` entries.

    ``order`` may pass a precomputed ``argsort(|weight|.flatten(), stable=True)``
    (the search loops do, to rank each layer once).
    """
    n = weight.numel()
    count = int(min(max(count, 0), n))
    mask = torch.ones(n, dtype=weight.dtype, device=weight.device)
    if count:
        if order is None:
            order = torch.argsort(weight.detach().abs().flatten(), stable=True)
        mask[order[:count]] = 0
    return mask.view_as(weight)


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module name: bool mask}`` of every masked module (tied modules listed each)."""
    return {n: m.weight_mask.detach().bool().clone() for n, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, PRUNABLE_TYPES) and has_mask(m)}


def apply_masks(model: nn.Module, mask_dict: dict[str, torch.Tensor]) -> None:
    """Put the given masks (from :func:`masks`) on ``model``'s modules of the same names."""
    mods = dict(model.named_modules(remove_duplicate=False))
    for name, mask in mask_dict.items():
        if name not in mods:
            raise KeyError(f"no module named {name!r} in the model")
        m = mods[name]
        if tuple(mask.shape) != tuple(_param(m).shape):
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight is {tuple(_param(m).shape)}")
        _set_module_mask(m, mask)


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on a masked model.

    After a forward with gradients on, a masked layer's ``weight`` is the non-leaf
    product ``weight_mask * weight_orig``, which ``deepcopy`` refuses to copy; it is
    recomputed without autograd first (the next forward recomputes it anyway).
    """
    import copy

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, PRUNABLE_TYPES) and has_mask(m):
                m.weight = m.weight_mask * m.weight_orig
    return copy.deepcopy(model)


def finalize(model: nn.Module) -> nn.Module:
    """Make the zeros permanent (in place): ``weight = weight_mask * weight_orig`` becomes a
    plain parameter again and the mask buffers and hooks are dropped.

    After this, fine-tuning can move the zeros again; finalize when training is over.
    Returns ``model`` for chaining.
    """
    for m in model.modules():
        if isinstance(m, PRUNABLE_TYPES) and has_mask(m):
            tprune.remove(m, "weight")
    return model


def layer_sparsity(model: nn.Module, layers: dict[str, Layer] | None = None) -> dict[str, float]:
    """Fraction of zero entries of each prunable layer's effective weight."""
    layers = prunable_layers(model) if layers is None else layers
    return {n: 1.0 - float(torch.count_nonzero(l.weight())) / l.numel for n, l in layers.items()}


def global_sparsity(model: nn.Module, layers: dict[str, Layer] | None = None) -> float:
    """Fraction of zero entries over all prunable weights (each tensor counted once)."""
    layers = prunable_layers(model) if layers is None else layers
    total = sum(l.numel for l in layers.values())
    zeros = sum(l.numel - int(torch.count_nonzero(l.weight())) for l in layers.values())
    return zeros / total if total else 0.0
