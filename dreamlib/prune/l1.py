"""Magnitude (l1) pruning, Han et al. [13]: the two ways to spread a global sparsity.

``l1-uniform``  the same ratio S in every layer, as ``torch.nn.utils.prune.l1_unstructured``
                applied to each layer (``round(S * n_l)`` weights pruned per layer).
``l1-global``   one |w| threshold over all prunable weights, as
                ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=S)``
                (``round(S * N)`` weights pruned in all).

Both are *allocators*: built once per model (the ranking is computed once) and
then asked ``counts(S)``, the number of weights to prune in each layer, cheaply
and as often as a FLOPs-target bisection needs.
"""
from __future__ import annotations

import numpy as np
import torch

from .masks import Layer


class UniformL1:
    """Same sparsity in every layer."""

    name = "l1-uniform"

    def __init__(self, layers: dict[str, Layer]):
        self.names = list(layers)
        self.numels = np.array([layers[n].numel for n in self.names], dtype=np.int64)

    def counts(self, sparsity: float) -> np.ndarray:
        # torch's _compute_nparams_toprune: round(amount * tensor_size), Python rounding
        return np.array([round(float(sparsity) * int(n)) for n in self.numels], dtype=np.int64)


class GlobalL1:
    """One global threshold on |w| (ties broken by layer order, then flat index)."""

    name = "l1-global"

    def __init__(self, layers: dict[str, Layer]):
        self.names = list(layers)
        self.numels = np.array([layers[n].numel for n in self.names], dtype=np.int64)
        mags = torch.cat([layers[n].weight().abs().flatten().float().cpu() for n in self.names])
        lid = torch.repeat_interleave(torch.arange(len(self.names), dtype=torch.int32),
                                      torch.as_tensor(self.numels))
        order = torch.argsort(mags, stable=True)
        self._lid_sorted = lid[order]  # layer index of the i-th smallest |w| overall
        self.total = int(self.numels.sum())

    def counts(self, sparsity: float) -> np.ndarray:
        k = round(float(sparsity) * self.total)
        if k <= 0:
            return np.zeros(len(self.names), dtype=np.int64)
        return torch.bincount(self._lid_sorted[:k].long(), minlength=len(self.names)).numpy().astype(np.int64)
