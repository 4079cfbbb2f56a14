"""Layer-Adaptive Magnitude-based Pruning (LAMP), Lee et al. [15]
(jaeho-lee/layer-adaptive-sparsity ``tools/pruners.py``).

Per layer, with the squared weights sorted ascending ``w_1^2 <= ... <= w_n^2``::

    score(u) = w_u^2 / sum_{v >= u} w_v^2          (the largest weight of a layer scores 1)

then the ``k = round(N * (1 - S))`` highest scores over all layers survive (every
weight scoring at least the k-th score, so ties can keep a few more, as in the
reference), and each layer is l1-pruned to its survivor count. Scores are computed
in float64 with a suffix sum (the reference subtracts a prefix sum from the total,
which is the same number up to rounding). Because a layer's scores increase with
|w|, "keep the layer's top scores" and "keep its largest weights" are the same set.
First and last layers are included.
"""
from __future__ import annotations

import numpy as np
import torch

from .masks import Layer


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every entry of ``weight`` (same shape, float64)."""
    sq = weight.detach().double().flatten().pow(2)
    sorted_sq, idx = torch.sort(sq, stable=True)
    tail = sorted_sq.flip(0).cumsum(0).flip(0)  # sum_{v >= u} w_v^2
    s = torch.where(tail > 0, sorted_sq / tail.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(tail))
    out = torch.empty_like(s)
    out[idx] = s
    return out.view(weight.shape)


class LAMP:
    """Allocator: survivors per layer from the global top-k of LAMP scores."""

    name = "lamp"

    def __init__(self, layers: dict[str, Layer]):
        self.names = list(layers)
        self.numels = np.array([layers[n].numel for n in self.names], dtype=np.int64)
        self._sorted = [torch.sort(lamp_scores(layers[n].weight()).flatten().cpu())[0] for n in self.names]
        self._global_desc = torch.sort(torch.cat(self._sorted), descending=True)[0]
        self.total = int(self.numels.sum())

    def counts(self, sparsity: float) -> np.ndarray:
        keep = round(self.total * (1.0 - float(sparsity)))
        if keep <= 0:
            return self.numels.copy()
        thr = self._global_desc[min(keep, self.total) - 1]
        below = np.array([int(torch.searchsorted(s, thr, side="left")) for s in self._sorted], dtype=np.int64)
        return below  # entries scoring < threshold are pruned
