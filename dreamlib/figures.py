"""Figures shared by the CLI and the notebooks (matplotlib, no display needed)."""
from __future__ import annotations

import numpy as np


def rain_gallery(clean: np.ndarray, kinds=None, seed: int = 0, title: str | None = None):
    """Grid of one clean image under every rain kind, each labelled with its input PSNR.

    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .data.rain import RAIN_TYPES, synthesize
    from .metrics import psnr

    kinds = list(kinds or RAIN_TYPES)
    cols = 4
    rows = int(np.ceil((len(kinds) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    panels = [("clean", clean)] + [(k, synthesize(clean, k, seed=seed)) for k in kinds]
    for ax, (name, img) in zip(axes.ravel(), panels):
        ax.imshow(img)
        label = name if name == "clean" else f"{name}\nPSNR {psnr(img, clean):.1f} dB (Y, basicsr)"
        ax.set_title(label, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
