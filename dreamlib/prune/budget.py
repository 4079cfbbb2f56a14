"""``dream-budget``: a global allocation of the MACs budget from the Fig. 4 map measured on dreams.

**Beyond the paper** (dreamlib's own extension). The paper's adaptive scheme
(:mod:`.adaptive`) gives every module the largest sparsity whose damage alone stays
above one PSNR threshold tp: every module may spend the *same* amount of damage,
whatever it saves. ``dream-budget`` uses the same measurements, the output of the
network on dreamed images with one module pruned alone (the Fig. 4 sensitivity map,
:func:`.sensitivity.sensitivity_map`), and spends the budget where it buys the most
MACs per unit of damage:

    e_m(s) = MSE(S_{m,s}(X), T(X))      module m alone at sparsity s, others dense
    c_m(s) = MACs of module m at sparsity s
    choose s_m in the grid for every m:  min  sum_m e_m(s_m)   s.t.  sum_m c_m(s_m) <= target

a multiple-choice knapsack, solved by a Lagrangian sweep: for a price lambda each
module independently takes ``argmin_s e_m(s) + lambda * c_m(s)``; lambda is bisected
(log scale) until the MACs reach the target; the remaining gap (the Lagrangian only
reaches the corners of the convex hull) is closed by the same uniform adjustment as the
adaptive scheme's step 3, to within ``rtol`` (0.1 %). Errors are MSEs, not dB: squared
output errors of independent small perturbations add up, dB drops do not.

Why it differs from LAMP: LAMP (:mod:`.lamp`) ranks weights by their magnitude relative
to the larger weights of the same layer, a proxy computed from the weights alone. Here
every choice is scored by what it does to the network's *output on dreamed images*, so
a module whose weights are small but whose output the teacher depends on (a mask or
attention branch, a final conv) is kept, and a wide block whose pruning leaves the
output unchanged is pruned hard, whatever its weights look like. Like the adaptive
scheme it needs no data, only the dreamed batch X.

>>> student, report = prune(teacher, "dream-budget", X=dreamed, target_macs=target)
>>> report.module_sparsity, report.details["psnr_on_X"]
"""
from __future__ import annotations

import math
import time

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..flops import count_macs, count_params
from .adaptive import adjust_to_target
from .probe import Probe
from .report import PruneReport, build_report
from .search import MacsModel

#: Default sparsity grid of the per-module measurements: 0, 1/40, ..., 1.
DEFAULT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 41), 4))


def measure(probe: Probe, grid, macs_of: MacsModel, progress: bool = False):
    """The map: for each module, ``(errors, macs_saved)`` arrays over ``grid``.

    ``errors[i]`` = MSE(S(X), T(X)) with the module alone at ``grid[i]``; ``macs_saved[i]``
    = MACs that this removes (exact, :class:`MacsModel`). Leaves the probe dense.
    """
    dense_counts = [0] * len(probe.layers)
    dense_macs = macs_of(dense_counts)
    index = {n: i for i, n in enumerate(probe.layers)}
    table = {}
    bar = tqdm(total=len(probe.modules) * len(grid), desc="dream-budget map", disable=not progress, leave=False)
    try:
        for module in probe.modules:
            errors, saved = np.zeros(len(grid)), np.zeros(len(grid))
            for i, s in enumerate(grid):
                counts = probe.module_counts(module, s)
                c = list(dense_counts)
                for n, k in counts.items():
                    c[index[n]] = k
                saved[i] = dense_macs - macs_of(c)
                if s > 0:
                    probe.set_module(module, s)
                    errors[i] = probe.mse()
                bar.update()
            probe.set_module(module, 0.0)
            table[module] = (errors, saved)
    finally:
        bar.close()
    return table


def _choose(table: dict, price: float) -> dict:
    """For one price (error per MAC saved), each module's grid index minimising e - price * saved."""
    return {m: int(np.argmin(e - price * sv)) for m, (e, sv) in table.items()}


def prune_budget(teacher: nn.Module, X=None, *, target_macs: float | None = None, grid=DEFAULT_GRID, modules=None,
                 within: str = "layer", macs_convention: str = "nni", input_size=(1, 3, 256, 256), exclude=(),
                 rtol: float = 1e-3, progress: bool = False) -> tuple[nn.Module, PruneReport]:
    """The ``dream-budget`` allocation; called by ``prune(teacher, "dream-budget", X=..., target_macs=...)``.

    Args:
        teacher: the network T (left untouched).
        X: (B, 3, H, W) dreamed batch the output error is measured on.
        target_macs: MACs per sample to reach (``macs_convention`` at ``input_size``), required.
        grid: module sparsities measured (fractions in [0, 1]; 0 is added if missing).
        modules, within, exclude: as for the adaptive scheme (:func:`.adaptive.prune_adaptive`).
        rtol: relative MACs tolerance (0.1 %).

    Returns:
        ``(student, report)``; ``report.module_sparsity``; ``report.search``: ``knob`` =
        ``price`` (Lagrange multiplier, MSE per G-MAC saved), ``adjust_delta``;
        ``report.details``: ``psnr_on_X``, ``mse_on_X`` (measured) and ``mse_predicted``
        (the sum of the per-module errors chosen), the grid and the modules.
    """
    if X is None:
        raise ValueError("dream-budget needs X=, the dreamed batch the output error is measured on "
                         "(dreamlib.dream.dream)")
    if target_macs is None:
        raise ValueError("dream-budget allocates a MACs budget: pass target_macs=")
    grid = sorted({0.0, *(float(g) for g in grid)})
    if grid[0] < 0 or grid[-1] > 1:
        raise ValueError(f"grid values must lie in [0, 1], got {grid[0]} .. {grid[-1]}")
    from ..spec import unwrap

    teacher = unwrap(teacher)
    t0 = time.perf_counter()
    input_size = tuple(input_size)
    probe = Probe(teacher, X, modules, within, exclude)
    macs_of = MacsModel(probe.student, probe.layers, macs_convention, input_size)
    macs_before = count_macs(teacher, input_size, macs_convention)
    numels = {n: l.numel for n, l in probe.layers.items()}
    target_macs = float(target_macs)
    floor = macs_of(list(numels.values()))
    if target_macs < floor * (1 - rtol) or target_macs > macs_before * (1 + rtol):
        raise ValueError(f"target_macs {target_macs / 1e9:.4f} G is outside what pruning these modules can "
                         f"reach: [{floor / 1e9:.4f} G, {macs_before / 1e9:.4f} G]")
    table = measure(probe, grid, macs_of, progress)
    dense_macs = macs_of([0] * len(numels))
    need = dense_macs - target_macs  # MACs to save

    def saved_at(price):
        pick = _choose(table, price)
        return sum(table[m][1][i] for m, i in pick.items()), pick

    # the price is per G-MAC so that it stays in a readable range; bisect it on a log scale
    scale = 1e-9
    lo, hi = -12.0, 4.0  # log10(price): at 1e-12 nothing is worth pruning ... at 1e4 everything is
    steps, trace = 0, []
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        s_mid, _ = saved_at(10 ** mid * scale)
        steps += 1
        trace.append([10 ** mid, int(dense_macs - s_mid)])
        if s_mid < need:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-6:
            break
    # of the two bracket ends, the one closer to the target (log ratio)
    cands = [saved_at(10 ** v * scale) + (10 ** v,) for v in (lo, hi)]
    s_best, pick, price = min(cands, key=lambda c: abs(math.log(max(dense_macs - c[0], 1) / target_macs)))
    counts = {}
    for m, i in pick.items():
        counts.update(probe.module_counts(m, grid[i]))
    counts = {n: counts.get(n, 0) for n in probe.layers}
    macs = macs_of(list(counts.values()))
    delta, adjust_steps, hit = 0.0, 0, abs(macs - target_macs) <= rtol * target_macs
    if not hit:
        counts, delta, adjust_steps, hit = adjust_to_target(counts, macs, numels, macs_of, target_macs, floor, rtol)
    probe.set_counts(counts)
    mse = probe.mse()
    psnr_x = probe.psnr()
    student = probe.student
    student.train(teacher.training)
    search = {"knob": "price", "value": price, "steps": steps, "hit": hit, "trace": trace,
              "seconds": time.perf_counter() - t0, "adjust_delta": delta, "adjust_steps": adjust_steps,
              "forwards": probe.forwards}
    details = {
        "beyond_the_paper": True, "grid": grid, "within": within, "modules": probe.modules,
        "grid_choice": {m: grid[i] for m, i in pick.items()},
        "mse_predicted": float(sum(table[m][0][i] for m, i in pick.items())), "mse_on_X": mse,
        "psnr_on_X": psnr_x, "X_shape": list(probe.X.shape),
        "price_unit": "MSE per G-MAC saved (the Lagrange multiplier of the MACs constraint)",
    }
    report = build_report("dream-budget", teacher, student, macs_convention=macs_convention, input_size=input_size,
                          target_macs=target_macs, search=search,
                          module_sparsity={m: probe.module_sparsity(m) for m in probe.modules}, details=details,
                          macs_before=macs_before, params_before=count_params(teacher))
    student.dreamlib_pruning = report.to_card()
    return student, report
