"""Multiply-accumulate counting that reproduces the paper's FLOPs column.

The paper reports nni's ``count_flops_params`` at 1x3x256x256. Those numbers are
MACs (not 2*MACs) of the Conv2d / ConvTranspose2d / Linear weights, bias excluded,
per sample, with one quirk: nni prices a transposed conv with the ordinary conv
formula on its OUTPUT size, which over-counts a stride-2 transposed conv 4x.

Two conventions are offered:

``"nni"``   reproduces the paper's table (HINet 170.486 G, MPRNet 140.982 G,
            DuRN 55.970 G, AGAN 89.388 G for the official configurations).
``"exact"`` counts a transposed conv on its input size, i.e. the real work
            (157.60 / 140.98 / 46.31 / 76.50 G).

Sparsity rule (both conventions): a layer's MACs are its dense MACs times the
fraction of its weights that are non-zero, ``dense * nnz(W) / numel(W)``. With
``torch.nn.utils.prune`` the effective ``module.weight`` is ``weight_orig *
weight_mask``, so masked weights count as zeros. (nni instead rounds the mask
down to whole filters; the proportional rule is the clearer definition and is
the one every table in dreamlib uses.)

The forward pass that measures layer shapes runs once per architecture and input
size and is cached; later calls only recount non-zeros, so ``count_macs`` is
cheap enough to call inside a bisection loop. A module called several times in
one forward (AGAN's recurrent steps) is counted on every call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CONVENTIONS = ("nni", "exact")
_COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_DENSE_CACHE: dict[tuple, dict[str, tuple[int, int]]] = {}


@dataclass(frozen=True)
class LayerMACs:
    """One counted layer: dense MACs, fraction of non-zero weights, and sparse MACs."""

    name: str
    kind: str
    dense: int
    density: float
    macs: int


def _signature(model: nn.Module, input_size: tuple[int, ...]) -> tuple:
    # Deep copies of a model (pruned students) share the cache: the key is the
    # architecture, not the object.
    layers = tuple(
        (n, type(m).__name__, tuple(m.weight.shape), getattr(m, "stride", None),
         getattr(m, "padding", None), getattr(m, "dilation", None), getattr(m, "groups", None))
        for n, m in model.named_modules() if isinstance(m, _COUNTED)
    )
    return (type(model).__name__, tuple(input_size), layers)


def _layer_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[int, int]:
    """(nni, exact) dense MACs of one call of ``m`` (whole batch)."""
    if isinstance(m, nn.Linear):
        n = out.numel() // m.out_features * m.in_features * m.out_features
        return n, n
    kernel = m.weight.shape[2] * m.weight.shape[3]
    batch = out.shape[0]
    if isinstance(m, nn.ConvTranspose2d):
        cin, cout = m.in_channels, m.out_channels
        nni = batch * cout * out.shape[2] * out.shape[3] * kernel * cin // m.groups
        exact = batch * cin * inp.shape[2] * inp.shape[3] * kernel * cout // m.groups
        return nni, exact
    cin, cout = m.in_channels, m.out_channels
    n = batch * cout * out.shape[2] * out.shape[3] * kernel * cin // m.groups
    return n, n


def _dense_macs(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    key = _signature(model, input_size)
    if key in _DENSE_CACHE:
        return _DENSE_CACHE[key]
    counts: dict[str, list[int]] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, _COUNTED):
            def hook(m, args, out, name=name):
                nni, exact = _layer_macs(m, args[0], out)
                c = counts.setdefault(name, [0, 0])
                c[0] += nni
                c[1] += exact
            handles.append(mod.register_forward_hook(hook))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()  # no BatchNorm statistics update from the probe input
    try:
        with torch.no_grad():
            model(torch.zeros(*input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    batch = input_size[0]
    dense = {n: (c[0] // batch, c[1] // batch) for n, c in counts.items()}
    _DENSE_CACHE[key] = dense
    return dense


def _density(m: nn.Module) -> float:
    w = m.weight
    return float(torch.count_nonzero(w)) / w.numel()


def macs_breakdown(model: nn.Module, input_size=(1, 3, 256, 256), macs_convention: str = "nni") -> list[LayerMACs]:
    """Per-layer MACs per sample, in forward-registration order (for bar charts)."""
    if macs_convention not in CONVENTIONS:
        raise ValueError(f"unknown macs_convention {macs_convention!r}; choose one of {CONVENTIONS}")
    col = CONVENTIONS.index(macs_convention)
    from .spec import unwrap

    model = unwrap(model)  # DataParallel / torch.compile: count the network inside
    dense = _dense_macs(model, tuple(input_size))
    modules = dict(model.named_modules())
    rows = []
    for name, counts in dense.items():
        m = modules[name]
        d = _density(m)
        rows.append(LayerMACs(name, type(m).__name__, counts[col], d, int(round(counts[col] * d))))
    return rows


def count_macs(model: nn.Module, input_size=(1, 3, 256, 256), macs_convention: str = "nni") -> int:
    """Total multiply-accumulates per sample for ``input_size`` (N,C,H,W).

    Args:
        model: any ``nn.Module`` whose forward takes one image tensor.
        input_size: the probe input shape; the paper uses (1, 3, 256, 256).
        macs_convention: ``"nni"`` (the paper's table) or ``"exact"``; see the module docstring.

    Returns:
        MACs per sample as an int (divide by 1e9 for the paper's "G").
    """
    return sum(r.macs for r in macs_breakdown(model, input_size, macs_convention))


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters; with ``nonzero=True`` only the non-zero entries of
    the effective weights (masked weights excluded)."""
    if not nonzero:
        # with torch.nn.utils.prune the parameter is ``weight_orig``: same size
        return sum(p.numel() for p in model.parameters())
    total = 0
    for m in model.modules():
        for pname, p in m.named_parameters(recurse=False):
            if pname.endswith("_orig"):
                total += int(torch.count_nonzero(getattr(m, pname[:-5])))
            else:
                total += int(torch.count_nonzero(p))
    return total
