"""The paper's equal-FLOPs comparison (Tables 1-2): targets, and every method pruned to them and evaluated."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..flops import count_macs, count_params, macs_breakdown
from ..metrics import psnr_torch
from .api import METHODS, prune
from .probe import forward
from .report import PruneReport

#: FLOPs of the paper's Tables 1-2 in G (nni MACs at 1x3x256x256): (pruned, original).
PAPER_FLOPS = {
    "hinet": (100.0, 170.5),
    "mprnet": (87.9, 141.0),
    "durn": (34.7, 55.9),
    "agan": (41.8, 89.4),
}


def paper_ratio(name: str) -> float:
    """Pruned / original FLOPs of the paper for ``name`` (e.g. HINet 100.0 / 170.5 = 0.5865)."""
    key = str(name).lower()
    if key not in PAPER_FLOPS:
        raise ValueError(f"no paper FLOPs for {name!r}; known: {', '.join(PAPER_FLOPS)}")
    pruned, original = PAPER_FLOPS[key]
    return pruned / original


def paper_target_macs(model: nn.Module, name: str | None = None, *, macs_convention: str = "nni",
                      input_size=(1, 3, 256, 256)) -> int:
    """The paper's equal-FLOPs target for ``model``: ``count_macs(model) * pruned / original``.

    For a small variant this keeps the paper's *ratio* (the official configurations give
    the paper's absolute numbers, e.g. 170.486 G * 100.0 / 170.5 = 99.99 G for HINet).
    ``name`` defaults to the model's dreamlib name; for a network the paper did not prune
    name the architecture whose ratio to use (e.g. ``name="hinet"``).
    """
    if name is None:
        from ..spec import spec_of

        spec = spec_of(model, infer=False)
        if spec is None or spec.name not in PAPER_FLOPS:
            raise ValueError(f"the paper has no FLOPs ratio for {spec.name if spec else type(model).__name__}: "
                             "pass target_macs yourself (e.g. 0.6 * count_macs(model)), or name= the paper's "
                             f"architecture whose ratio to use ({', '.join(PAPER_FLOPS)})")
        name = spec.name
    return int(round(count_macs(model, input_size, macs_convention) * paper_ratio(name)))


@dataclass
class Comparison:
    """Result of :func:`compare_methods`.

    Attributes:
        table: one row per method plus ``original``: MACs (G), error vs target (%),
            sparsity, parameters kept, search steps and seconds, ``psnr_X`` (PSNR of the
            output vs the teacher's on X, :func:`dreamlib.metrics.psnr_torch`), and per
            evaluated set ``<set>/psnr`` and ``<set>/ssim`` (+ ``average/...``).
        layers: long table for bar charts: method, layer, order (forward), numel,
            dense_macs, sparsity.
        reports: ``{method: PruneReport}``.
        results: ``{method: dreamlib.evaluate.evaluate(...) output}``.
        models: ``{method: pruned model}`` (empty with ``keep_models=False``).
    """

    table: object
    layers: object
    reports: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def markdown(self, digits: int = 2) -> str:
        """Markdown table of MACs and per-set PSNR / SSIM (the paper's layout)."""
        df = self.table
        sets = [c[:-5] for c in df.columns if c.endswith("/psnr")]
        head = "| method | G-MACs | " + " | ".join(sets) + " |\n|---|---|" + "---|" * len(sets)
        lines = [head]
        for method, row in df.iterrows():
            cells = [f"{row[f'{s}/psnr']:.{digits}f} / {row[f'{s}/ssim']:.4f}" for s in sets]
            lines.append(f"| {method} | {row['gmacs']:.3f} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def compare_methods(teacher: nn.Module, X: torch.Tensor | None, sets: dict | None, *, target_macs: float,
                    methods=("l1-uniform", "l1-global", "erk", "lamp", "adaptive"), convention: str = "basicsr",
                    macs_convention: str = "nni", input_size=(1, 3, 256, 256), method_options: dict | None = None,
                    limit: int | None = None, progress: bool = True, keep_models: bool = True,
                    include_original: bool = True, protocol: str = "dreamlib") -> Comparison:
    """Prune ``teacher`` with each method to the same MACs and evaluate, before any fine-tuning.

    Args:
        teacher: the network to prune (left untouched).
        X: the batch for the adaptive scheme's PSNR (dreamed images); also used to report
            ``psnr_X`` for every method. May be ``None`` if "adaptive" is not in ``methods``.
        sets: ``{name: dataset}`` for :func:`dreamlib.evaluate.evaluate` (``None`` or ``{}``:
            prune only, no test-set columns).
        target_macs: MACs per sample (``macs_convention`` at ``input_size``); see
            :func:`paper_target_macs` for the paper's ratios.
        methods: any of :data:`dreamlib.prune.METHODS`.
        convention: metric convention of the evaluation (:mod:`dreamlib.metrics`); ``None``: the
            protocol's (:func:`dreamlib.protocols.convention_for`).
        method_options: ``{method: {option: value}}`` passed to :func:`dreamlib.prune.prune`
            (e.g. ``{"adaptive": {"eps": 1e-3, "tp": 50}}``).
        limit: evaluate only the first ``limit`` images of each set.
        include_original: also evaluate the unpruned teacher (row ``original``); off when the
            comparison adds rows to another one that has it already.
        protocol: how each model is run on a test image (:mod:`dreamlib.protocols`; ``"dreamlib"``
            or ``"official"``), checked before any pruning.
    """
    import pandas as pd

    from ..evaluate import evaluate

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    needs_x = [m for m in methods if m in ("adaptive", "dream-budget")]
    if needs_x and X is None:
        raise ValueError(f"{', '.join(needs_x)} need X (dreamed images)")
    method_options = method_options or {}
    from ..spec import unwrap

    if sets:
        from ..protocols import check_protocol

        check_protocol(teacher, protocol)  # a network without that protocol fails now, not after pruning
    teacher = unwrap(teacher)
    param = next(teacher.parameters())
    t_out = None
    if X is not None:
        X = X.to(param.device, param.dtype)
        with torch.no_grad():
            was = teacher.training
            teacher.eval()
            t_out = forward(teacher, X)
            teacher.train(was)

    order = {r.name: i for i, r in enumerate(macs_breakdown(teacher, tuple(input_size), macs_convention))}
    dense = {r.name: r.dense for r in macs_breakdown(teacher, tuple(input_size), macs_convention)}
    rows, layer_rows = {}, []
    comp = Comparison(table=None, layers=None)

    def evaluate_row(name, model, report: PruneReport | None, seconds):
        row = {
            "gmacs": (report.macs_after if report else count_macs(model, input_size, macs_convention)) / 1e9,
            "macs_error_pct": (100 * report.macs_error) if report and report.macs_error is not None else 0.0,
            "sparsity": report.sparsity if report else 0.0,
            "params_kept": report.params_kept if report else count_params(model),
            "steps": report.search.get("steps") if report else 0,
            "seconds": seconds,
        }
        if report is not None and report.method == "adaptive":
            row["tp"] = report.details.get("tp")
            row["adjust_delta"] = report.search.get("adjust_delta")
        if report is not None and report.method == "dream-budget":
            row["adjust_delta"] = report.search.get("adjust_delta")
        if X is not None:
            with torch.no_grad():
                was = model.training
                model.eval()
                row["psnr_X"] = psnr_torch(forward(model, X), t_out)
                model.train(was)
        if sets:
            res = evaluate(model, sets, convention=convention, progress=progress, limit=limit, protocol=protocol)
            comp.results[name] = res
            for s, v in res.items():
                row[f"{s}/psnr"], row[f"{s}/ssim"] = v["psnr"], v["ssim"]
        rows[name] = row

    if include_original:
        evaluate_row("original", teacher, None, 0.0)
    for method in methods:
        t0 = time.perf_counter()
        opts = dict(method_options.get(method, {}))
        if method in ("adaptive", "dream-budget"):
            opts.setdefault("X", X)
            opts.setdefault("progress", progress)
        pruned, report = prune(teacher, method, target_macs=target_macs, macs_convention=macs_convention,
                               input_size=input_size, **opts)
        seconds = time.perf_counter() - t0
        comp.reports[method] = report
        evaluate_row(method, pruned, report, seconds)
        for layer, s in report.layer_sparsity.items():
            layer_rows.append({"method": method, "layer": layer, "order": order.get(layer, len(order)),
                               "numel": None, "dense_macs": dense.get(layer, 0), "sparsity": s})
        if keep_models:
            comp.models[method] = pruned
    numel = {n: m.weight.numel() for n, m in teacher.named_modules() if hasattr(m, "weight") and m.weight is not None}
    for r in layer_rows:
        r["numel"] = numel.get(r["layer"])
    comp.table = pd.DataFrame.from_dict(rows, orient="index")
    comp.table.index.name = "method"
    comp.table.attrs.update({"target_macs": int(round(target_macs)), "macs_convention": macs_convention,
                             "metric_convention": convention, "input_size": list(input_size),
                             "X_shape": None if X is None else list(X.shape)})
    layers_df = pd.DataFrame(layer_rows)
    if len(layers_df):
        rank = {m: i for i, m in enumerate(methods)}
        layers_df = layers_df.assign(_m=layers_df["method"].map(rank)).sort_values(["_m", "order"], kind="stable")
        layers_df = layers_df.drop(columns="_m").reset_index(drop=True)
    comp.layers = layers_df
    return comp


def plot_layer_sparsity(layers, ax=None, *, methods=None, x: str = "layer", **kwargs):
    """Grouped bar chart of per-layer sparsity (``Comparison.layers``), layers in forward order."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = layers if methods is None else layers[layers["method"].isin(methods)]
    layer_order = df.sort_values("order").drop_duplicates("layer")["layer"].tolist()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(8, 0.25 * len(layer_order) + 2), 4))
    hue_order = list(dict.fromkeys(df["method"]))  # the order the methods were run in
    sns.barplot(data=df, x=x, y="sparsity", hue="method", order=layer_order, hue_order=hue_order, ax=ax, **kwargs)
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.set_xlabel("layer (forward order)")
    ax.figure.tight_layout()
    return ax


def module_sparsity_table(layers, groups: dict):
    """Methods x modules table of sparsity (fraction of the module's weights zeroed).

    ``layers``: :attr:`Comparison.layers` (per-layer sparsity and ``numel`` of each method);
    ``groups``: ``{module: [layer names]}`` (e.g. :attr:`dreamlib.prune.Probe.groups`). A module's
    sparsity is its layers' sparsities weighted by their weight counts, so it is exactly the
    fraction of the module's weights a method removed. Modules keep the order of ``groups``.
    """
    owner = {layer: m for m, names in groups.items() for layer in names}
    df = layers.assign(module=layers["layer"].map(owner)).dropna(subset=["module"])
    df = df.assign(zeroed=df["sparsity"] * df["numel"])
    agg = df.groupby(["method", "module"], sort=False)[["zeroed", "numel"]].sum()
    table = (agg["zeroed"] / agg["numel"]).unstack("module")
    methods = list(dict.fromkeys(layers["method"]))
    return table.reindex(index=methods, columns=[m for m in groups if m in table.columns])


def plot_module_sparsity(table, ax=None, *, annotate: bool = True):
    """Heatmap of :func:`module_sparsity_table`: one row per method, one column per module (forward
    order), colour = sparsity, each cell labelled in %. Readable where a per-layer bar chart of
    ~80 layers x 6 methods is not."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(8, 0.45 * table.shape[1] + 2), 0.45 * table.shape[0] + 1.6))
    im = ax.imshow(table.values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]))
    ax.set_xticklabels(table.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(table.shape[0]))
    ax.set_yticklabels(table.index, fontsize=8)
    if annotate:
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                v = table.values[i, j]
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if v < 0.6 else "black")
    ax.set_xlabel("module (forward order)")
    ax.figure.colorbar(im, ax=ax, label="sparsity (fraction of the module's weights zeroed)", fraction=0.025)
    ax.figure.tight_layout()
    return ax
