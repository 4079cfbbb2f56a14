"""Fig. 4: PSNR of pruning each module alone at each sparsity, and its heatmap."""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .probe import Probe

DEFAULT_SPARSITIES = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2))  # 0.1 ... 0.9


def sensitivity_map(model: nn.Module, X: torch.Tensor, modules=None, sparsities=DEFAULT_SPARSITIES, *,
                    within: str = "layer", progress: bool = True):
    """PSNR(S(X), T(X)) in dB of pruning each module *alone* at each sparsity (paper Fig. 4).

    Args:
        model: the teacher T (left untouched; one working copy is made).
        X: (B, 3, H, W) batch (the paper uses one test rainy image; dreamed images work too).
        modules: ``None``/``"blocks"`` (:func:`dreamlib.models.prunable_modules`), ``"layers"``,
            or a list of module names (x-axis, in this order).
        sparsities: the y-axis values in [0, 1].
        within: l1 at a uniform ratio in each layer of the module (``"layer"``) or one
            threshold over the module (``"module"``), as in :mod:`.adaptive`.

    Returns:
        A pandas DataFrame, index = sparsity (name ``"sparsity"``), one column per module
        (in order), values = PSNR in dB (:func:`dreamlib.metrics.psnr_torch`, 120 dB when
        the output is unchanged). ``df.attrs`` records X's shape, the time taken and the
        number of forwards. ``df.stack()`` gives the long format.
    """
    import pandas as pd

    t0 = time.perf_counter()
    sparsities = [float(s) for s in sparsities]
    if any(not 0.0 <= s <= 1.0 for s in sparsities):
        raise ValueError("sparsities must lie in [0, 1]")
    probe = Probe(model, X, modules, within)
    values = np.empty((len(sparsities), len(probe.modules)))
    bar = tqdm(total=values.size, desc="sensitivity map", disable=not progress, leave=False)
    try:
        for j, module in enumerate(probe.modules):
            for i, s in enumerate(sparsities):
                probe.set_module(module, s)
                values[i, j] = probe.psnr()
                bar.update()
            probe.set_module(module, 0.0)
    finally:
        bar.close()
    df = pd.DataFrame(values, index=pd.Index(sparsities, name="sparsity"),
                      columns=pd.Index(probe.modules, name="module"))
    df.attrs.update({"X_shape": list(probe.X.shape), "seconds": time.perf_counter() - t0,
                     "forwards": probe.forwards, "within": within,
                     "psnr": "dreamlib.metrics.psnr_torch of the student's output vs the teacher's"})
    return df


def plot_sensitivity(df, ax=None, *, annot: bool = False, vmin=None, vmax=None, cmap: str = "viridis", **kwargs):
    """Seaborn heatmap of a :func:`sensitivity_map` result: modules on x, sparsity on y (highest at top).

    Returns the matplotlib Axes. ``vmax`` defaults to the largest finite PSNR below the
    120 dB "unchanged" cap so that the colour scale is not dominated by it.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.45 * df.shape[1] + 2), max(3.5, 0.4 * df.shape[0] + 2.5)))
    data = df.sort_index(ascending=False)
    if vmax is None:
        finite = data.values[data.values < 119.0]
        vmax = float(finite.max()) if finite.size else None
    sns.heatmap(data, ax=ax, annot=annot, fmt=".1f", vmin=vmin, vmax=vmax, cmap=cmap,
                cbar_kws={"label": "PSNR vs teacher (dB)"}, **kwargs)
    ax.set_xlabel("module")
    ax.set_ylabel("sparsity")
    ax.set_yticklabels([f"{v:.2f}" for v in data.index], rotation=0)
    ax.tick_params(axis="x", rotation=90)
    ax.figure.tight_layout()
    return ax
