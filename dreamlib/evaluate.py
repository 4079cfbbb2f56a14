"""Evaluate a deraining model on paired test sets, per set, in a named convention.

>>> from dreamlib.evaluate import evaluate
>>> table = evaluate(model, benchmark_sets(), convention="basicsr")
>>> table["Rain100L"]   # {"psnr": 33.1, "ssim": 0.95, "n": 16}
>>> evaluate(hinet, open_sets("Rain13k/test"), protocol="official")   # HINet's own test pipeline
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .metrics import psnr_ssim


@torch.no_grad()
def evaluate(model: torch.nn.Module | None, sets: dict, convention: str | None = None, device=None,
             progress: bool = True, limit: int | None = None, protocol: str = "dreamlib") -> dict[str, dict]:
    """Mean PSNR/SSIM of ``model`` on each set.

    Args:
        model: any network dreamlib can describe (:func:`dreamlib.spec.spec_of`: the shipped
            ones, or your own, described or inferred; wrappers too). ``None`` scores the rainy
            inputs themselves (``"dreamlib"`` protocol only).
        sets: ``{name: dataset}`` whose items have ``"input"``/``"target"`` (3,H,W) tensors
            and optionally ``"hw"`` (original size before padding).
        convention: metric convention (see :mod:`dreamlib.metrics`); ``None`` (default): the
            protocol's, i.e. ``"basicsr"`` for ``"dreamlib"`` and the network's official one for
            ``"official"`` (HINet basicsr, MPRNet matlab, DuRN/AGAN opencv). A convention given
            explicitly always wins.
        limit: evaluate only the first ``limit`` images of each set (``None``: all; else >= 1).
        protocol: how the network is run on each image (:mod:`dreamlib.protocols`):
            ``"dreamlib"`` (default; ``restore`` reflect-pads, so any input size works) or
            ``"official"`` (each network's official test script: HINet 256-px tiles, MPRNet
            unpadded, DuRN/AGAN cropped to a multiple of 4, the target cropped alike). A network
            without an official protocol, or an unknown name, raises ``ValueError`` before any
            compute.

    Raises :class:`dreamlib.guards.NonFiniteError` if the model outputs NaN/Inf (a
    diverged model must not be scored as if its NaNs were black pixels).

    Returns:
        ``{set: {"psnr": dB, "ssim": float, "n": images}}`` plus an ``"average"`` entry
        (mean over sets, as the paper's tables average set means).
    """
    from .guards import NonFiniteError
    from .protocols import convention_for, run

    convention = convention_for(model, protocol, convention)  # checks the protocol too, before any compute
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None (every image) or a positive integer, got {limit!r}")
    if model is not None:
        was_training = model.training
        model.eval()
        device = device or next(model.parameters()).device
    out = {}
    total = sum(min(len(ds), limit or len(ds)) for ds in sets.values())
    bar = tqdm(total=total, desc="evaluating", disable=not progress, leave=False)
    try:
        for name, ds in sets.items():
            scores = []
            for i in range(min(len(ds), limit or len(ds))):
                item = ds[i]
                x, y = item["input"], item["target"]
                h, w = item.get("hw", y.shape[-2:])
                if model is None:
                    pred, y = x[:, :h, :w], y[:, :h, :w]
                else:
                    pred, y = run(model, x.to(device), y, protocol=protocol, hw=(h, w))
                    if not bool(torch.isfinite(pred).all()):
                        raise NonFiniteError(f"the model's output on {name} image {i} holds NaN/Inf: its weights "
                                             "or an input diverged; nothing is scored")
                scores.append(psnr_ssim(pred, y, convention))
                bar.update()
            arr = np.array(scores, dtype=np.float64)
            out[name] = {"psnr": float(arr[:, 0].mean()), "ssim": float(arr[:, 1].mean()), "n": len(scores)}
    finally:
        bar.close()
        if model is not None:
            model.train(was_training)
    if out:
        out["average"] = {"psnr": float(np.mean([v["psnr"] for v in out.values()])),
                          "ssim": float(np.mean([v["ssim"] for v in out.values()])),
                          "n": int(sum(v["n"] for v in out.values()))}
    return out


def format_table(results: dict[str, dict[str, dict]], digits: int = 2) -> str:
    """Markdown table: one row per entry of ``results`` ({row: evaluate(...)}), PSNR/SSIM per set."""
    rows = list(results)
    sets = list(next(iter(results.values())))
    head = "| | " + " | ".join(sets) + " |\n|---|" + "---|" * len(sets)
    lines = [head]
    for r in rows:
        cells = [f"{results[r][s]['psnr']:.{digits}f} / {results[r][s]['ssim']:.4f}" for s in sets]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
