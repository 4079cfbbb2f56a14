"""Erdos-Renyi-Kernel (ERK) layer densities, Evci et al. [8] (RigL ``get_sparsities_erdos_renyi``).

For a layer with weight shape ``s`` (conv: c_out, c_in, k_h, k_w; linear: out, in)::

    raw_l     = (sum(s) / prod(s)) ** power          # (c_in + c_out + k_h + k_w) / (c_in c_out k_h k_w)
    density_l = eps * raw_l                          # ER (kernel=False) drops the k_h, k_w terms

with ``eps`` chosen so that ``sum_l density_l * N_l = (1 - S) * sum_l N_l``. A layer
whose density would exceed 1 is made dense and eps is recomputed over the others,
repeatedly (RigL's loop: all layers tied for the largest raw value go dense at
once) until every density is at most 1.

Which layers: every prunable Conv2d / ConvTranspose2d / Linear weight, the first
and the last layer included (RigL's ImageNet runs keep the first layer dense; the
paper does not say it did, and LAMP's reference includes them, so all methods here
see the same set of layers; ``prune(..., exclude=[...])`` keeps chosen ones dense).
ERK's formula is symmetric in c_in / c_out, so a transposed conv's
``(c_in, c_out, k, k)`` layout needs no special case; a grouped conv uses its
weight's shape (``c_in / groups``).
"""
from __future__ import annotations

import math

import numpy as np

from .masks import Layer


def erk_densities(shapes: dict[str, tuple], sparsity: float, power: float = 1.0,
                  kernel: bool = True) -> tuple[dict[str, float], set[str]]:
    """``({layer: density}, {layers made dense})`` for global sparsity ``sparsity`` (RigL's algorithm)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    numel = {n: math.prod(s) for n, s in shapes.items()}
    if sparsity == 0.0:
        return {n: 1.0 for n in shapes}, set(shapes)

    def raw(s):
        dims = s if kernel or len(s) < 3 else s[:2]
        return (sum(dims) / math.prod(dims)) ** power

    dense: set[str] = set()
    while True:
        rhs, divisor, probs = 0.0, 0.0, {}
        for n, s in shapes.items():
            n_ones, n_zeros = numel[n] * (1.0 - sparsity), numel[n] * sparsity
            if n in dense:
                rhs -= n_zeros  # a dense layer spends its n_zeros out of the others' budget
            else:
                rhs += n_ones
                probs[n] = raw(s)
                divisor += probs[n] * numel[n]
        if not probs:
            raise ValueError("ERK: every layer would be dense; the sparsity is too low for this allocation")
        eps = rhs / divisor
        max_prob = max(probs.values())
        if max_prob * eps > 1.0:
            dense.update(n for n, p in probs.items() if p == max_prob)
        else:
            break
    return {n: (1.0 if n in dense else eps * probs[n]) for n in shapes}, dense


class ERK:
    """Allocator: ``counts(S)`` = ``round((1 - density_l) * N_l)`` weights pruned per layer."""

    name = "erk"

    def __init__(self, layers: dict[str, Layer], power: float = 1.0, kernel: bool = True):
        self.names = list(layers)
        self.shapes = {n: tuple(layers[n].module.weight.shape) for n in self.names}
        self.numels = np.array([layers[n].numel for n in self.names], dtype=np.int64)
        self.power, self.kernel = power, kernel

    def densities(self, sparsity: float) -> dict[str, float]:
        return erk_densities(self.shapes, sparsity, self.power, self.kernel)[0]

    def counts(self, sparsity: float) -> np.ndarray:
        d = self.densities(sparsity)
        return np.array([round((1.0 - d[n]) * int(k)) for n, k in zip(self.names, self.numels)], dtype=np.int64)
