"""Saving and loading pruned models (weights + masks + card), and their sparse storage size.

File layout: dreamlib's checkpoint format (:func:`dreamlib.models.save_checkpoint`)
with two extra keys, so :func:`dreamlib.models.from_checkpoint` still reads a
densely stored pruned file (as a dense model whose pruned weights are zeros)::

    {"format": "dreamlib", "model", "variant", "config",
     "state_dict": {...},        # finalized weights: weight = weight_mask * weight_orig, no mask keys
     "card": {..., "pruning": PruneReport.to_card(), "storage": storage_size(...)},
     "masks": {module: uint8},   # bool mask, bit-packed (numpy.packbits of the flat mask)
     "mask_shapes": {module: [shape]},
     "sparse": {key: {"values": float, "indices": int32}}   # only with sparse=True
    }

With ``sparse=True`` the masked weights are left out of ``state_dict`` and stored as
their kept values plus int32 flat indices. The pruned-away values of
``weight_orig`` are not stored (they cannot influence the output), so a loaded
model resumes fine-tuning from zeros there, behind the same masks.
:func:`load_pruned` rebuilds the model with :func:`dreamlib.models.build` from the
stored name / variant / config, loads the weights strictly, re-applies the masks;
its outputs equal the saved model's bit for bit.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import atomic_torch_save
from .masks import apply_masks, masks

_FORMAT = "dreamlib"


def finalized_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with each ``weight_orig``/``weight_mask`` pair replaced by
    ``weight = weight_mask * weight_orig`` (the keys of the unpruned architecture), on CPU."""
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if k.endswith("weight_mask") and k[:-len("mask")] + "orig" in sd:
            continue
        if k.endswith("weight_orig") and k[:-len("orig")] + "mask" in sd:
            prefix = k[:-len("weight_orig")]
            out[prefix + "weight"] = (sd[prefix + "weight_mask"] * v).detach().cpu().clone()
        else:
            out[k] = v.detach().cpu().clone()
    return out


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.detach().cpu().flatten().numpy().astype(bool)))


def _unpack(packed: torch.Tensor, shape) -> torch.Tensor:
    n = math.prod(shape)
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=n).astype(bool)).view(*shape)


def storage_size(model: nn.Module) -> dict:
    """Bytes needed to store the model's weights (finalized state dict, buffers included).

    ``dense_bytes``: every tensor dense; ``sparse_bytes``: masked weights as kept values
    + int32 flat indices (what ``save_pruned(..., sparse=True)`` writes), other tensors
    dense; ``bitmask_bytes``: masked weights as kept values + one bit per weight.
    ``masked_weights`` / ``kept_weights``: entries of the masked tensors in all / kept.
    """
    sd = finalized_state_dict(model)
    mk = {f"{n}.weight": m for n, m in masks(model).items()}
    dense = sum(v.numel() * v.element_size() for v in sd.values())
    sparse = bitmask = 0
    total = kept = 0
    for k, v in sd.items():
        size = v.numel() * v.element_size()
        if k in mk:
            nnz = int(mk[k].sum())
            total += v.numel()
            kept += nnz
            sparse += nnz * (v.element_size() + 4)
            bitmask += nnz * v.element_size() + math.ceil(v.numel() / 8)
        else:
            sparse += size
            bitmask += size
    return {"dense_bytes": dense, "sparse_bytes": sparse, "bitmask_bytes": bitmask,
            "masked_weights": total, "kept_weights": kept}


def save_pruned(model: nn.Module, path, report=None, card: dict | None = None, sparse: bool = False) -> Path:
    """Write a pruned model (atomically). ``report``: a :class:`PruneReport` (default: the one
    :func:`dreamlib.prune.prune` attached to the model); ``card``: extra entries for the card,
    which also records :func:`storage_size` under ``"storage"``. Returns the path written."""
    from ..spec import spec_of, unwrap

    model = unwrap(model)
    spec = spec_of(model, infer=False)
    pruning = report.to_card() if report is not None else getattr(model, "dreamlib_pruning", None)
    mk = masks(model)
    sd = finalized_state_dict(model)
    extra = {}
    if sparse:
        extra["sparse"] = {}
        for n, m in mk.items():
            key = f"{n}.weight"
            if key in sd:
                w = sd.pop(key)
                idx = torch.nonzero(m.flatten(), as_tuple=False).flatten().to(torch.int32)
                extra["sparse"][key] = {"values": w.flatten()[idx.long()].clone(), "indices": idx,
                                        "shape": list(w.shape)}
    storage = storage_size(model)
    full_card = {**(card or {}), "pruning": pruning, "storage": storage, "stored": "sparse" if sparse else "dense"}
    obj = {
        "format": _FORMAT,
        "model": spec.name if spec is not None and spec.builtin else None,
        "variant": spec.variant if spec is not None and spec.builtin else None,
        "config": dict(spec.config) if spec is not None and spec.builtin else {},
        "spec": None if spec is None else spec.to_dict(),
        "state_dict": sd,
        "card": full_card,
        "masks": {n: _pack(m) for n, m in mk.items()},
        "mask_shapes": {n: list(m.shape) for n, m in mk.items()},
        **extra,
    }
    return atomic_torch_save(obj, path)


def load_pruned(path, device="cpu", model: nn.Module | None = None, spec=None) -> nn.Module:
    """Rebuild a model written by :func:`save_pruned`, with its masks re-applied.

    ``model``: an unpruned instance of the right architecture to load into instead of
    building one from the file's name/variant/config (shipped architectures) or its spec's
    ``arch``/``config`` (an importable ``package.module:Class``); required for any other
    network. The stored spec is attached again (:func:`dreamlib.spec.spec_of`) unless the
    model already has one; ``spec``: the spec to attach instead (needed when the output
    image was selected by a function). The card is attached as ``model.dreamlib_card`` and
    the pruning report as ``model.dreamlib_pruning``.
    """
    from ..models.checkpoint import CheckpointError, CheckpointMismatchError, safe_load

    path = Path(path)
    obj = safe_load(path)
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT or "masks" not in obj:
        raise CheckpointError(f"{path} is not a pruned dreamlib file (no masks); for a plain checkpoint use "
                         "dreamlib.models.from_checkpoint")
    from ..spec import ModelSpec, attach_spec, rebuild, spec_of, unwrap

    if model is None:
        model = rebuild(obj.get("spec"), obj.get("model"), obj.get("variant") or "official", obj.get("config"))
        if model is None:
            raise CheckpointError(f"{path} holds a pruned {(obj.get('spec') or {}).get('name', 'network')} that "
                                  "dreamlib cannot rebuild (its class was not recorded as package.module:Class): "
                                  "pass an unpruned instance, load_pruned(path, model=MyNet(...))")
    model = unwrap(model)
    if spec is not None:
        attach_spec(model, spec)
    elif spec_of(model, infer=False) is None and obj.get("spec"):
        try:
            attach_spec(model, ModelSpec.from_dict(obj["spec"]))
        except ValueError:
            pass  # a function selects the output: spec_of infers it, or pass spec=
    sd = dict(obj["state_dict"])
    for key, rec in (obj.get("sparse") or {}).items():
        w = torch.zeros(math.prod(rec["shape"]), dtype=rec["values"].dtype)
        w[rec["indices"].long()] = rec["values"]
        sd[key] = w.view(*rec["shape"])
    try:
        model.load_state_dict(sd, strict=True)
        apply_masks(model, {n: _unpack(p, obj["mask_shapes"][n]) for n, p in obj["masks"].items()})
    except (RuntimeError, KeyError, AttributeError) as e:
        what = (str(e).splitlines() or [""])[0][:300]
        raise CheckpointMismatchError(f"the pruned student in {path} does not fit the model "
                                      f"{type(model).__name__}: {what}; pass the architecture it was pruned from "
                                      f"(model=) or none to rebuild it from the file") from e
    model.dreamlib_card = obj.get("card") or {}
    model.dreamlib_pruning = model.dreamlib_card.get("pruning")
    return model.to(device)
