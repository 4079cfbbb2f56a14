"""The two entry points: :func:`allocate` (per-layer sparsities) and :func:`prune` (a pruned copy + report)."""
from __future__ import annotations

import time

from torch import nn

from ..flops import count_macs, count_params
from .erk import ERK
from .l1 import GlobalL1, UniformL1
from .lamp import LAMP
from .masks import copy_model, get_mask, l1_mask, prunable_layers, set_mask
from .report import PruneReport, build_report
from .search import MacsModel, bisect_target

#: Allocation methods (a global sparsity spread over layers), the paper's adaptive scheme, and
#: dreamlib's own global allocation measured on dreams (beyond the paper, :mod:`.budget`).
BASELINES = ("l1-uniform", "l1-global", "erk", "lamp")
DREAM_METHODS = ("adaptive", "dream-budget")  # need the dreamed batch X
METHODS = BASELINES + DREAM_METHODS
_ALLOCATORS = {"l1-uniform": UniformL1, "l1-global": GlobalL1, "erk": ERK, "lamp": LAMP}


def make_allocator(layers, method: str, **options):
    """The allocator object of ``method`` for ``layers`` (see :mod:`.l1`, :mod:`.erk`, :mod:`.lamp`)."""
    if method not in _ALLOCATORS:
        hint = (f" ({method} has no fixed allocation: use prune(model, {method!r}, X=...))"
                if method in DREAM_METHODS else "")
        raise ValueError(f"unknown allocation method {method!r}; choose one of {', '.join(BASELINES)}{hint}")
    return _ALLOCATORS[method](layers, **options)


def allocate(model: nn.Module, method: str, sparsity: float, *, exclude=(), **options) -> dict[str, float]:
    """Per-layer sparsity (fraction of the layer's weights pruned) for a global ``sparsity``.

    Args:
        model: any module; its Conv2d / ConvTranspose2d / Linear weights are the prunable set
            (each tensor once, first and last layers included).
        method: ``l1-uniform`` (same ratio everywhere), ``l1-global`` (one |w| threshold),
            ``erk`` (options ``power=1.0``, ``kernel=True``) or ``lamp``.
        sparsity: fraction of all prunable weights to prune, in [0, 1].
        exclude: module-name prefixes kept dense (not in the returned dict).

    The values are exact fractions ``count_l / numel_l`` of the integer counts that
    :func:`prune` removes, so ``sum_l value_l * numel_l`` is the number pruned.
    """
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    from ..spec import unwrap

    layers = prunable_layers(unwrap(model), exclude)
    alloc = make_allocator(layers, method, **options)
    counts = alloc.counts(float(sparsity))
    return {n: int(c) / layers[n].numel for n, c in zip(alloc.names, counts)}


def apply_counts(model: nn.Module, counts: dict[str, int], exclude=()) -> None:
    """Mask (in place) the ``counts[layer]`` smallest-|w| weights of each named layer (existing masks kept)."""
    layers = prunable_layers(model, exclude)
    for name, c in counts.items():
        layer = layers[name]
        w = layer.weight()
        mask = l1_mask(w, int(c))
        base = get_mask(layer.module)
        set_mask(layer, mask if base is None else mask * base)


def prune(model: nn.Module, method: str, *, sparsity: float | None = None, target_macs: float | None = None,
          macs_convention: str = "nni", input_size=(1, 3, 256, 256), exclude=(), rtol: float = 1e-3,
          progress: bool = False, **method_options) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of ``model`` (the input is left untouched).

    Args:
        model: the network (e.g. a teacher from :func:`dreamlib.models.from_checkpoint`).
        method: one of :data:`METHODS`.
        sparsity: global fraction of prunable weights to prune (baselines).
        target_macs: MACs per sample to reach instead (``macs_convention`` at ``input_size``):
            the method's global knob is bisected until the pruned model's MACs are within
            ``rtol`` (0.1 %) of it. This is how the paper compares methods at equal FLOPs.
        macs_convention: MACs convention of :func:`dreamlib.flops.count_macs` (``"nni"``, the paper's).
        exclude: module-name prefixes kept dense.
        **method_options: ``erk``: ``power``, ``kernel``; ``adaptive``: ``X`` (required), ``tp``,
            ``eps``, ``modules``, ``within``, ``order``, ``tp_tol``, ``tp_step`` (see
            :func:`dreamlib.prune.adaptive.prune_adaptive`); ``dream-budget``: ``X`` (required),
            ``grid``, ``modules``, ``within`` (:func:`dreamlib.prune.budget.prune_budget`).

    Returns:
        ``(pruned_model, report)``; the pruned model carries ``weight_mask`` buffers on
        every layer the method was allowed to prune (:mod:`.masks`), and its report as
        ``pruned_model.dreamlib_pruning`` (a dict, also written by :func:`save_pruned`).
    """
    from ..spec import unwrap

    model = unwrap(model)  # a DataParallel / DDP / torch.compile wrapper: prune the network inside
    if method == "adaptive":
        if sparsity is not None:
            raise ValueError("adaptive pruning is driven by a PSNR threshold tp (or target_macs), not a sparsity")
        from .adaptive import prune_adaptive

        return prune_adaptive(model, target_macs=target_macs, macs_convention=macs_convention, input_size=input_size,
                              exclude=exclude, rtol=rtol, progress=progress, **method_options)
    if method == "dream-budget":
        if sparsity is not None:
            raise ValueError("dream-budget allocates a MACs budget: pass target_macs=, not sparsity=")
        from .budget import prune_budget

        return prune_budget(model, target_macs=target_macs, macs_convention=macs_convention, input_size=input_size,
                            exclude=exclude, rtol=rtol, progress=progress, **method_options)
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    if (sparsity is None) == (target_macs is None):
        raise ValueError("pass exactly one of sparsity= or target_macs=")
    t0 = time.perf_counter()
    input_size = tuple(input_size)
    layers = prunable_layers(model, exclude)
    if not layers:
        raise ValueError("the model has no prunable Conv2d/ConvTranspose2d/Linear weight")
    alloc = make_allocator(layers, method, **method_options)
    macs_of = MacsModel(model, layers, macs_convention, input_size)
    macs_before = count_macs(model, input_size, macs_convention)
    if target_macs is not None:
        target_macs = float(target_macs)
        floor = macs_of(alloc.numels)
        if target_macs < floor * (1 - rtol) or target_macs > macs_before * (1 + rtol):
            raise ValueError(f"target_macs {target_macs / 1e9:.4f} G is outside what {method} can reach: "
                             f"[{floor / 1e9:.4f} G (everything pruned), {macs_before / 1e9:.4f} G (nothing pruned)]")
        res = bisect_target(lambda s: macs_of(alloc.counts(s)), target_macs, 0.0, 1.0, rtol=rtol, max_steps=80,
                            f_lo=macs_of(alloc.counts(0.0)), f_hi=floor)
        sparsity_knob, steps, hit, trace = res.x, res.steps, res.hit, res.trace
    else:
        if not 0.0 <= float(sparsity) <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
        sparsity_knob, steps, hit, trace = float(sparsity), 0, None, []
    counts = alloc.counts(sparsity_knob)
    predicted = macs_of(counts)

    pruned = copy_model(model)
    apply_counts(pruned, dict(zip(alloc.names, (int(c) for c in counts))), exclude)
    search = {"knob": "sparsity", "value": sparsity_knob, "steps": steps, "hit": hit,
              "trace": [[float(x), int(v)] for x, v in trace], "seconds": time.perf_counter() - t0,
              "predicted_macs": int(predicted)}
    details = {k: v for k, v in method_options.items() if isinstance(v, (int, float, str, bool))}
    if exclude:
        details["exclude"] = list(exclude)
    report = build_report(method, model, pruned, macs_convention=macs_convention, input_size=input_size,
                          target_macs=target_macs, search=search, details=details, macs_before=macs_before,
                          params_before=count_params(model))
    pruned.dreamlib_pruning = report.to_card()
    return pruned, report
