"""The paper's adaptive pruning scheme (Sec. 3.3, Algorithm 1), and its equal-FLOPs variant.

Algorithm 1, as implemented by :func:`sweep`::

    S <- copy of T;  T(X) computed once
    for module in modules (forward order, models.prunable_modules by default):
        [l, r] <- [0, 1]
        while r - l >= eps:
            spa <- (l + r) / 2
            TRYPRUNE(module, spa)            # l1 inside the module
            if PSNR(S(X), T(X)) >= tp: l <- spa   else: r <- spa
        module keeps sparsity l

PSNR is :func:`dreamlib.metrics.psnr_torch` (RGB floats clamped to [0, 1], peak 1,
mean over the batch of per-image PSNR, identical outputs = 120 dB).

Two readings of "TRYPRUNE(module, spa)" (``order=``):

- ``"independent"`` (default): every module is bisected **alone**, all other modules
  dense; the sparsities found are then applied together. This is how the paper's
  prose and figures measure it: Fig. 4 prunes "each module (x-axis) of HINet ...
  separately", and Sec. 3.3 says "a pruning sparsity *for a given module* is
  acceptable if and only if the average PSNR is greater than our threshold". tp
  then bounds the damage of each module on its own, so a high tp (the paper's
  50 dB) is what reaches the paper's FLOPs ratios. The result does not depend on
  the order the modules are visited in, and a module's PSNR at a sparsity does not
  depend on tp either, so the tp search re-uses earlier trials (cached per module
  and sparsity: bisection midpoints are dyadic and repeat across sweeps).
- ``"cumulative"``: module k is bisected with modules 1..k-1 already pruned (the
  pseudo-code taken literally: S <- T comes once before the loop and nothing
  restores S after TRYPRUNE), so tp bounds the drift of the whole student and the
  first modules in forward order spend the PSNR budget. Measured on the small
  teachers this starts below plain l1 at the paper's FLOPs ratio; it is kept as the
  alternative reading.

Which reading was used is recorded in the report (``details["order"]``).

One deviation, on purpose: the pseudo-code appends ``spa``, the *last tried*
midpoint, which may have been rejected; here a module keeps ``l``, the largest
sparsity that was accepted (at most ``eps`` less), so the student always satisfies
PSNR >= tp. With ``eps = 1e-3`` a module costs ``ceil(log2(1/eps)) = 10`` student
forwards on X; nothing is copied per trial (masks change in place, see :mod:`.probe`).

Equal FLOPs (``target_macs``): the paper fixes tp = 50 dB and reports whatever
FLOPs result, but compares methods at equal FLOPs; to hit a MACs target, tp is
searched instead, then the result is adjusted to the exact target:

1. sweeps at tp0 (default 50 dB), then tp0 -/+ ``tp_step`` (10 dB) until the target is
   bracketed (MACs grow with tp; tp = 0 accepts everything, tp > 120 accepts nothing);
2. bisection on tp until a sweep lands within ``rtol`` of the target or the bracket
   is narrower than ``tp_tol`` (0.5 dB); each trial is a full sweep, so steps 1-2
   together run at most ``max_sweeps`` sweeps (default 12; typically 6-9);
3. exact adjustment: from the sweep whose MACs are closest to the target (in log
   ratio), one uniform change bisected on the MACs model until within ``rtol``:
   above the target, a further fraction delta of the *surviving* weights of every
   searched layer is l1-pruned, ``c_l <- c_l + round(delta (n_l - c_l))`` (all module
   densities scale by 1 - delta); below it, a fraction of each layer's *pruned*
   weights is given back, largest |w| first, ``c_l <- c_l - round(delta c_l)``.
   Uniform, the adjustment keeps the searched per-module profile and is small when
   the tp bracket is tight. The report states the signed delta (``adjust_delta``:
   > 0 pruned more, < 0 given back), the tp of the sweep used, every sweep's
   (tp, MACs), and the PSNR on X of the final student.

In the cumulative reading MACs(tp) is monotone only roughly and can be steep (a
lower tp lets the first modules take more of the PSNR budget); in the independent
reading each module's sparsity can only shrink as tp grows, so MACs(tp) is monotone.
Step 3 closes what is left after the bisection on tp.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from torch import nn
from tqdm.auto import tqdm

from ..flops import count_macs, count_params
from .probe import Probe
from .report import PruneReport, build_report
from .search import MacsModel, bisect_target

DEFAULT_TP = 50.0
DEFAULT_EPS = 1e-3
ORDERS = ("independent", "cumulative")
DEFAULT_ORDER = "independent"
TP_MIN = 0.0  # PSNR of clamped images is never below 0 dB: everything is accepted
TP_MAX = 121.0  # psnr_torch caps at 120 dB: nothing is accepted


@dataclass
class Sweep:
    """One pass of Algorithm 1 over all modules at threshold ``tp``."""

    tp: float
    module_sparsity: dict  # {module: fraction of its weights pruned}
    counts: dict  # {layer: weights pruned}
    macs: int
    psnr: float  # PSNR(S(X), T(X)) of the student after the sweep
    steps: int  # bisection trials (= student forwards) in this sweep
    seconds: float
    trace: list = field(default_factory=list)  # [(module, spa, psnr, accepted)]


def sweep(probe: Probe, tp: float, eps: float = DEFAULT_EPS, *, order: str = DEFAULT_ORDER, macs_convention: str = "nni",
          input_size=(1, 3, 256, 256), progress: bool = False, cache: dict | None = None) -> Sweep:
    """Run Algorithm 1 once on ``probe`` (its masks are reset first and left at the result).

    ``order``: ``"independent"`` (each module bisected alone, the others dense) or
    ``"cumulative"`` (each module on top of the earlier ones); see the module docstring.
    ``cache``: ``{(module, spa): psnr}`` of single-module trials, shared across sweeps
    (independent order only; a module's PSNR alone does not depend on tp).
    """
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    independent = order == "independent"
    cache = {} if cache is None else cache
    t0 = time.perf_counter()
    probe.reset()
    current = probe.psnr()  # unpruned student: 120 dB (identical outputs)
    trace, steps, found = [], 0, {}
    bar = tqdm(probe.modules, desc=f"adaptive ({order}) tp={tp:.2f}", disable=not progress, leave=False)
    for module in bar:
        lo, hi = 0.0, 1.0
        while hi - lo >= eps:
            spa = 0.5 * (lo + hi)
            key = (module, spa)
            if independent and key in cache:
                p = cache[key]
            else:
                probe.set_module(module, spa)
                p = probe.psnr()
                steps += 1
                if independent:
                    cache[key] = p
            ok = p >= tp
            trace.append((module, spa, p, ok))
            if ok:
                lo = spa
                if not independent:
                    current = p
            else:
                hi = spa
        found[module] = lo
        # independent: the module goes back to dense before the next one is searched
        probe.set_module(module, 0.0 if independent else lo)
        bar.set_postfix(module=module, spa=f"{lo:.3f}")
    bar.close()
    if independent:  # the sparsities found alone, applied together
        for module, spa in found.items():
            probe.set_module(module, spa)
        current = probe.psnr()
    return Sweep(tp=float(tp), module_sparsity={m: probe.module_sparsity(m) for m in probe.modules},
                 counts=dict(probe.counts), macs=count_macs(probe.student, input_size, macs_convention), psnr=current,
                 steps=steps, seconds=time.perf_counter() - t0, trace=trace)


def _adjusted_counts(counts: dict, numels: dict, prune_more: bool):
    """``delta -> counts``: prune a fraction delta of each layer's survivors (``prune_more``),
    or give back a fraction delta of its pruned weights (the largest of them, by |w|)."""
    if prune_more:
        return lambda d: {n: c + round(d * (numels[n] - c)) for n, c in counts.items()}
    return lambda d: {n: c - round(d * c) for n, c in counts.items()}


def adjust_to_target(counts: dict, macs: float, numels: dict, macs_of, target_macs: float, floor: float,
                     rtol: float):
    """Step 3 of the module docstring: one uniform change of ``counts`` (whose MACs are ``macs``)
    bisected on ``macs_of`` until within ``rtol`` of ``target_macs``. ``floor`` = MACs with every
    searched weight pruned. Returns ``(counts, signed delta, steps, hit)``."""
    prune_more = macs > target_macs
    counts_at = _adjusted_counts(counts, numels, prune_more=prune_more)
    end = floor if prune_more else macs_of([0] * len(numels))
    res = bisect_target(lambda d: macs_of(list(counts_at(d).values())), target_macs, 0.0, 1.0,
                        rtol=rtol, max_steps=80, f_lo=macs, f_hi=end)
    return counts_at(res.x), (res.x if prune_more else -res.x), res.steps, res.hit


def prune_adaptive(teacher: nn.Module, X=None, *, tp: float = DEFAULT_TP, eps: float = DEFAULT_EPS, modules=None,
                   within: str = "layer", order: str = DEFAULT_ORDER, target_macs: float | None = None, macs_convention: str = "nni",
                   input_size=(1, 3, 256, 256), exclude=(), rtol: float = 1e-3, tp_step: float = 10.0,
                   tp_tol: float = 0.5, max_sweeps: int = 12, progress: bool = False) -> tuple[nn.Module, PruneReport]:
    """Adaptive pruning (Algorithm 1); called by ``prune(teacher, "adaptive", X=..., ...)``.

    Args:
        teacher: the pre-trained network T (left untouched).
        X: (B, 3, H, W) batch the PSNR is measured on: dreamed images
            (:func:`dreamlib.dream.dream`) or any batch.
        tp: PSNR threshold in dB (paper: 50), or the first trial of the tp search.
        eps: sparsity precision of each module's bisection (paper: 1e-3).
        modules: granularity: ``None``/``"blocks"`` = :func:`dreamlib.models.prunable_modules`,
            ``"layers"`` = every Conv/Linear, or a list of module names. Layers in no
            listed module stay dense (MPRNet's ORSNet fusion 1x1 convs with the default list).
        within: ``"layer"`` (l1 at ratio spa in every layer of the module) or ``"module"``
            (one |w| threshold over the module).
        order: ``"independent"`` (default: each module bisected alone, the paper's Fig. 4 /
            Sec. 3.3 reading) or ``"cumulative"`` (each module on top of the earlier ones,
            the pseudo-code taken literally); see the module docstring.
        target_macs: MACs to reach; tp is then searched and the result adjusted (module docstring).
        tp_step, tp_tol, max_sweeps: the tp search's bracket step (dB), its stopping width
            (dB) and its total budget of full sweeps (bracketing included).
        rtol: relative MACs tolerance (0.1 %).

    Returns:
        ``(student, report)``; ``report.search``: ``value`` = tp of the sweep used, ``steps`` =
        sweeps run, ``trace`` = [tp, MACs] per sweep, ``adjust_delta`` / ``adjust_steps`` (step 3),
        ``forwards`` = student forwards on X; ``report.details``: ``psnr_on_X`` of the final
        student, per-sweep numbers, the modules and the layers left dense (``uncovered_layers``).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if X is None:
        raise ValueError("adaptive pruning needs X=, the batch PSNR(S(X), T(X)) is measured on "
                         "(dreamed images from dreamlib.dream.dream, or any (B,3,H,W) batch)")
    from ..spec import unwrap

    teacher = unwrap(teacher)
    t0 = time.perf_counter()
    input_size = tuple(input_size)
    probe = Probe(teacher, X, modules, within, exclude)
    macs_of = MacsModel(probe.student, probe.layers, macs_convention, input_size)
    macs_before = count_macs(teacher, input_size, macs_convention)
    numels = {n: l.numel for n, l in probe.layers.items()}
    sweeps: dict[float, Sweep] = {}
    cache: dict = {}

    def run(t: float) -> int:
        t = float(t)
        if t not in sweeps:
            sweeps[t] = sweep(probe, t, eps, order=order, macs_convention=macs_convention, input_size=input_size,
                              progress=progress, cache=cache)
        return sweeps[t].macs

    delta, adjust_steps, hit = 0.0, 0, None
    if target_macs is None:
        run(tp)
        chosen = sweeps[float(tp)]
        final_counts = chosen.counts
    else:
        target_macs = float(target_macs)
        floor = macs_of(list(numels.values()))
        if target_macs < floor * (1 - rtol) or target_macs > macs_before * (1 + rtol):
            raise ValueError(f"target_macs {target_macs / 1e9:.4f} G is outside what adaptive pruning of these "
                             f"modules can reach: [{floor / 1e9:.4f} G, {macs_before / 1e9:.4f} G]")
        tol = rtol * target_macs
        _search_tp(run, target_macs, float(tp), tol, tp_step, tp_tol, max_sweeps, rtol)
        chosen = min(sweeps.values(), key=lambda s: abs(math.log(max(s.macs, 1) / target_macs)))
        hit = abs(chosen.macs - target_macs) <= tol
        final_counts = chosen.counts
        if not hit:  # from the sweep closest to the target, a uniform adjustment
            final_counts, delta, adjust_steps, hit = adjust_to_target(chosen.counts, chosen.macs, numels, macs_of,
                                                                     target_macs, floor, rtol)
    probe.set_counts(final_counts)
    final_psnr = chosen.psnr if (delta == 0.0 and probe.counts == chosen.counts) else probe.psnr()
    student = probe.student
    student.train(teacher.training)

    search = {
        "knob": "tp", "value": chosen.tp, "steps": len(sweeps), "hit": hit,
        "trace": [[s.tp, int(s.macs)] for s in sweeps.values()], "seconds": time.perf_counter() - t0,
        "adjust_delta": delta, "adjust_steps": adjust_steps, "forwards": probe.forwards,
    }
    covered = set(probe.layers)
    details = {
        "tp": chosen.tp, "tp_requested": float(tp), "eps": eps, "within": within, "order": order,
        "modules": probe.modules,
        "psnr_on_X": final_psnr, "psnr_definition": "dreamlib.metrics.psnr_torch (RGB float, clamp [0,1], peak 1, "
                                                    "batch mean of per-image PSNR, cap 120 dB)",
        "X_shape": list(probe.X.shape), "uncovered_layers": [n for n in _all_layer_names(student) if n not in covered],
        "sweeps": [{"tp": s.tp, "macs": int(s.macs), "psnr": s.psnr, "steps": s.steps, "seconds": s.seconds}
                   for s in sweeps.values()],
    }
    report = build_report("adaptive", teacher, student, macs_convention=macs_convention, input_size=input_size,
                          target_macs=target_macs, search=search,
                          module_sparsity={m: probe.module_sparsity(m) for m in probe.modules}, details=details,
                          macs_before=macs_before, params_before=count_params(teacher))
    student.dreamlib_pruning = report.to_card()
    return student, report


def _all_layer_names(model):
    from .masks import prunable_layers

    return list(prunable_layers(model))


def _search_tp(run, target: float, tp0: float, tol: float, step: float, tp_tol: float, max_sweeps: int,
               rtol: float) -> None:
    """Run sweeps (through ``run``, which caches them) until one is within ``tol`` of ``target``,
    the tp bracket is narrower than ``tp_tol``, or ``max_sweeps`` sweeps were run."""
    used = 0

    def f(t):
        nonlocal used
        used += 1
        return run(t)

    def budget():
        return used < max_sweeps

    tp0 = min(max(tp0, TP_MIN), TP_MAX)
    m0 = f(tp0)
    if abs(m0 - target) <= tol:
        return
    # bracket [lo, hi] with MACs(lo) < target < MACs(hi): MACs grow with tp
    if m0 > target:
        hi, f_hi, lo = tp0, m0, max(tp0 - step, TP_MIN)
        while True:
            if not budget():
                return
            f_lo = f(lo)
            if abs(f_lo - target) <= tol or (f_lo > target and lo <= TP_MIN):
                return  # a hit, or even tp = 0 (everything accepted) stays above: the adjustment does the rest
            if f_lo < target:
                break
            hi, f_hi, lo = lo, f_lo, max(lo - step, TP_MIN)
    else:
        lo, f_lo, hi = tp0, m0, min(tp0 + step, TP_MAX)
        while True:
            if not budget():
                return
            f_hi = f(hi)
            if abs(f_hi - target) <= tol:
                return
            if f_hi > target or hi >= TP_MAX:  # at TP_MAX nothing is pruned: MACs = dense >= target
                break
            lo, f_lo, hi = hi, f_hi, min(hi + step, TP_MAX)
    if budget():
        bisect_target(f, target, lo, hi, rtol=rtol, xtol=tp_tol, max_steps=max_sweeps - used, f_lo=f_lo, f_hi=f_hi)
