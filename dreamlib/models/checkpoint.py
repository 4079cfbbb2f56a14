"""Reading the official checkpoint formats and dreamlib's own.

Formats recognised (REFERENCE.md §1):

- BasicSR / HINet: ``{'params': state_dict}`` (also ``params_ema``);
- MPRNet: ``{'epoch', 'state_dict', 'optimizer'}``, keys possibly ``module.``-prefixed;
- DuRN and AGAN: a raw state dict;
- dreamlib: ``{'format': 'dreamlib', 'model', 'variant', 'config', 'state_dict', 'card'}``.

Everything is read with ``torch.load(weights_only=True)`` (a pickle could run
code) and loaded with ``strict=True``; a mismatch raises
:class:`CheckpointMismatchError` that names what was expected, lists the first
offending keys and suggests the variant the file fits.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_torch_save

_DREAMLIB_FORMAT = "dreamlib"


class CheckpointError(ValueError):
    """The file is not a readable checkpoint (every failure to read one raises this or a subclass)."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys or shapes do not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects or code, which ``weights_only=True`` loading refuses."""


def safe_load(path):
    """``torch.load(path, weights_only=True)`` on the CPU, every failure as a :class:`CheckpointError`
    (``FileNotFoundError`` for a missing path)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass the path of a .pth/.pt/.pkl file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            # keep PyTorch's whole explanation: it names the refused global and how to allow it
            raise UnsafeCheckpointError(
                f"{path} holds Python objects or code besides tensors, which dreamlib does not load for safety "
                f"(torch.load(weights_only=True)). Re-save only the state dict if you trust the file. "
                f"PyTorch said: {' '.join(str(e).split())}") from e
        raise CheckpointError(_unreadable(path, e)) from e
    except Exception as e:  # torch raises KeyError, RuntimeError, EOFError ... on files that are not checkpoints
        raise CheckpointError(_unreadable(path, e)) from e


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return ``(state_dict, meta)`` of any supported file; ``meta`` names the format.

    Raises :class:`CheckpointError` for anything that is not a readable checkpoint (a
    truncated or foreign file, :class:`UnsafeCheckpointError` for pickled objects or code,
    non-finite weights) and ``FileNotFoundError`` for a missing path.
    """
    path = Path(path)
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a checkpoint dict")
    meta: dict = {}
    if obj.get("format") == _DREAMLIB_FORMAT:
        sd = obj["state_dict"]
        meta = {k: obj.get(k) for k in ("model", "variant", "config", "card", "spec")}
        meta["format"] = "dreamlib"
    elif "params" in obj and isinstance(obj["params"], dict):
        sd, meta["format"] = obj["params"], "basicsr"
    elif "params_ema" in obj and isinstance(obj["params_ema"], dict):
        sd, meta["format"] = obj["params_ema"], "basicsr-ema"
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd, meta["format"] = obj["state_dict"], "mprnet"
        if "epoch" in obj:
            meta["epoch"] = obj["epoch"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, meta["format"] = obj, "raw"
    else:
        keys = ", ".join(list(map(str, obj))[:8])
        raise CheckpointError(
            f"{path} is a dict without a recognisable state dict (top-level keys: {keys}); expected "
            "'params' (BasicSR/HINet), 'state_dict' (MPRNet), a raw state dict (DuRN/AGAN) or a dreamlib file"
        )
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    bad = [k for k, v in sd.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path} has non-finite (NaN/Inf) weights in {_first(bad, 3)}: the training that "
                              "wrote it diverged; use an earlier checkpoint")
    return dict(sd), meta


def _unreadable(path, e: Exception) -> str:
    first_line = (str(e).splitlines() or [""])[0][:200]  # an empty file raises EOFError with no message
    return (f"could not read {path} as a PyTorch checkpoint ({type(e).__name__}: {first_line or 'no message'}); "
            "it is not a checkpoint, or it is truncated (copy or download it again)")


def _diff(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]):
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [(k, tuple(got[k].shape), tuple(expected[k].shape))
              for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    # Checkpoints from PyTorch < 0.4.1 lack BatchNorm's counter; it is not a weight.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    return missing, unexpected, shapes


def _suggest(sd: dict[str, torch.Tensor]) -> str | None:
    """Name the (model, variant) whose keys and shapes fit ``sd``, if any."""
    from . import MODEL_NAMES, build, variants

    for name in MODEL_NAMES:
        for variant in variants(name):
            with torch.device("meta"):  # shapes only: no memory, no init cost
                ref = build(name, variant).state_dict()
            if not any(_diff(ref, sd)):
                return f"build('{name}', variant='{variant}')"
    return None


def _first(items, n=5) -> str:
    items = list(items)
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def load_checkpoint(model: nn.Module, path, strict: bool = True) -> dict:
    """Load any supported checkpoint file into ``model`` (in place).

    Args:
        model: a model from :func:`dreamlib.models.build` (or any module; then
            the error message cannot name the architecture).
        path: the checkpoint file.
        strict: refuse missing/unexpected keys and shape mismatches (default).

    Returns:
        The file's metadata: ``format`` and, for dreamlib files, ``model``,
        ``variant``, ``config`` and ``card``.
    """
    sd, meta = read_checkpoint(path)
    target = model.state_dict()
    missing, unexpected, shapes = _diff(target, sd)
    if strict and (missing or unexpected or shapes):
        from ..spec import spec_of

        spec = spec_of(model, infer=False)
        name = spec.name if spec is not None else type(model).__name__
        variant = spec.variant if spec is not None and spec.variant else "?"
        lines = [f"checkpoint {path} ({meta['format']} format) does not fit {name} variant={variant!r}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_first(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_first(unexpected)}")
        if shapes:
            lines.append("  shape mismatches (file vs model): "
                         + _first(f"{k} {a} vs {b}" for k, a, b in shapes))
        fit = _suggest(sd)
        lines.append(f"  the file fits {fit}: build that model instead." if fit else
                     "  no dreamlib model/variant fits these keys; check that the file is the right network's "
                     "weights, or pass the constructor overrides it was trained with.")
        raise CheckpointMismatchError("\n".join(lines))
    for k in [k for k in target if k.endswith("num_batches_tracked") and k not in sd]:
        sd[k] = target[k]
    model.load_state_dict(sd, strict=strict)
    return meta


def save_checkpoint(model: nn.Module, path, card: dict | None = None) -> Path:
    """Write ``model`` in dreamlib's format (atomically): weights + name + variant + config + card."""
    from ..spec import spec_of, unwrap

    model = unwrap(model)
    spec = spec_of(model, infer=False)
    builtin = spec is not None and spec.builtin
    obj = {
        "format": _DREAMLIB_FORMAT,
        "model": spec.name if builtin else None,
        "variant": spec.variant if builtin else None,
        "config": dict(spec.config) if builtin else {},
        "spec": None if spec is None else spec.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        # JSON round trip: the card must hold only plain values, or weights_only=True
        # loading would refuse the file (e.g. torch.__version__ is a TorchVersion object).
        "card": json.loads(json.dumps(card or {}, default=str)),
    }
    return atomic_torch_save(obj, path)


def from_checkpoint(path, device="cpu") -> nn.Module:
    """Build and load a model from a dreamlib-format file (which records its architecture)."""
    from ..spec import rebuild

    sd, meta = read_checkpoint(path)
    model = None
    if meta["format"] == "dreamlib":
        model = rebuild(meta.get("spec"), meta.get("model"), meta.get("variant") or "official", meta.get("config"))
    if model is None:
        raise CheckpointError(
            f"{path} is a {meta['format']} checkpoint, which does not record its architecture: "
            "build the model yourself (dreamlib.models.build(name, variant), or your own class) and call "
            "load_checkpoint(model, path)"
        )
    load_checkpoint(model, path)
    model.dreamlib_card = meta.get("card") or {}
    return model.to(device)
