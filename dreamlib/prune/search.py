"""Hitting a MACs target: an exact MACs model for per-layer prune counts, and a bisection.

The paper compares methods "at the same FLOPs" (MACs of nni's convention at
1x3x256x256), so each method's global knob (its sparsity S; the adaptive scheme's
PSNR threshold tp) is searched until the pruned model's MACs are within ``rtol``
(default 0.1 %) of the target.

:class:`MacsModel` predicts ``count_macs`` of the pruned model from the number of
weights pruned in each layer, without touching the model: with
:mod:`dreamlib.flops`' rule a layer costs ``round(dense_l * nnz_l / n_l)`` and
magnitude pruning removes the smallest |w| first, so ``nnz_l = n_l - max(c_l, z_l)``
(``z_l`` = zeros already in the layer). It agrees with ``count_macs`` exactly
(the tests check it), and costs microseconds per call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..flops import macs_breakdown
from .masks import Layer


class MacsModel:
    """MACs of ``model`` (per sample, ``macs_convention``, ``input_size``) for given prune counts."""

    def __init__(self, model: nn.Module, layers: dict[str, Layer], macs_convention: str = "nni",
                 input_size=(1, 3, 256, 256)):
        rows = {r.name: r for r in macs_breakdown(model, tuple(input_size), macs_convention)}
        self.names = list(layers)
        self.numels = np.array([layers[n].numel for n in self.names], dtype=np.int64)
        self.zeros = np.array([layers[n].numel - int(torch.count_nonzero(layers[n].weight())) for n in self.names],
                              dtype=np.int64)
        # dense MACs of each module using the layer's weight (tied modules each counted, as count_macs does)
        self.dense = [[rows[m].dense for m, _ in layers[n].modules if m in rows] for n in self.names]
        used = {m for n in self.names for m, _ in layers[n].modules}
        self.other = sum(r.macs for name, r in rows.items() if name not in used)  # layers not being pruned
        self.dense_total = sum(r.dense for r in rows.values())

    def __call__(self, counts) -> int:
        total = self.other
        for dense, n, z, c in zip(self.dense, self.numels, self.zeros, counts):
            density = (int(n) - max(int(c), int(z))) / int(n)
            total += sum(int(round(d * density)) for d in dense)
        return total


@dataclass
class BisectResult:
    """Outcome of :func:`bisect_target`: the knob value, the value reached, and the trail."""

    x: float
    value: float
    steps: int
    hit: bool
    trace: list = field(default_factory=list)  # [(x, value)] in evaluation order


def bisect_target(fn: Callable[[float], float], target: float, lo: float, hi: float, *,
                  rtol: float = 1e-3, xtol: float = 0.0, max_steps: int = 64,
                  f_lo: float | None = None, f_hi: float | None = None) -> BisectResult:
    """Bisection of a monotone ``fn`` on ``[lo, hi]`` for ``|fn(x) - target| <= rtol * target``.

    ``fn`` may increase (MACs vs tp) or decrease (MACs vs sparsity) with x; the
    bracket ends must lie on either side of the target. Stops at the first hit, when ``hi - lo <= xtol``, or after
    ``max_steps`` evaluations; without a hit it returns the bracket end whose value
    is at or above the target (the less pruned side), with ``hit=False``.
    ``f_lo`` / ``f_hi`` pass values already known (not recomputed, not counted).
    """
    trace = []
    tol = rtol * abs(target)

    def f(x):
        v = fn(x)
        trace.append((x, v))
        return v

    def above(v):  # the side of the target that is "less pruned" (value >= target)
        return v >= target

    f_lo = f(lo) if f_lo is None else f_lo
    if abs(f_lo - target) <= tol:
        return BisectResult(lo, f_lo, len(trace), True, trace)
    f_hi = f(hi) if f_hi is None else f_hi
    if abs(f_hi - target) <= tol:
        return BisectResult(hi, f_hi, len(trace), True, trace)
    if above(f_lo) == above(f_hi):
        raise ValueError(f"target {target:.6g} is not bracketed: f({lo:.6g}) = {f_lo:.6g}, f({hi:.6g}) = {f_hi:.6g}")
    while len(trace) < max_steps and hi - lo > xtol:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # float resolution reached
            break
        v = f(mid)
        if abs(v - target) <= tol:
            return BisectResult(mid, v, len(trace), True, trace)
        if above(v) == above(f_lo):
            lo, f_lo = mid, v
        else:
            hi, f_hi = mid, v
    x, v = (lo, f_lo) if above(f_lo) else (hi, f_hi)
    return BisectResult(x, v, len(trace), False, trace)
