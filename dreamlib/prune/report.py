"""What a pruning run returns besides the model: :class:`PruneReport`."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..flops import count_macs, count_params
from .masks import Layer, prunable_layers


@dataclass
class PruneReport:
    """Summary of one pruning run (JSON-serialisable through :meth:`to_card`).

    Attributes:
        method: ``l1-uniform``, ``l1-global``, ``erk``, ``lamp`` or ``adaptive``.
        macs_convention, input_size: how MACs were counted (:func:`dreamlib.flops.count_macs`).
        macs_before, macs_after: MACs per sample of the input and of the pruned model.
        target_macs: the requested MACs, or ``None`` when a sparsity / tp was given.
        sparsity: fraction of all prunable weights that are zero after pruning.
        layer_sparsity: ``{layer: fraction of its weights that are zero}`` for every
            prunable layer (forward-registration order of ``named_modules``).
        prunable_weights, kept_weights: prunable weights in all / non-zero after pruning.
        params_before, params_kept: all parameters of the input / non-zero ones of the
            pruned model (biases and norms included).
        search: how the knob was found: ``knob`` (``sparsity`` or ``tp``), ``value``,
            ``steps`` (evaluations of the bisection), ``hit`` (within ``rtol``), ``trace``
            ([knob, MACs] pairs), ``seconds``.
        module_sparsity: adaptive only, ``{module: fraction of its weights pruned}``.
        details: method-specific numbers (adaptive: tp, eps, PSNR on X, forwards, ...).
    """

    method: str
    macs_convention: str
    input_size: tuple
    macs_before: int
    macs_after: int
    target_macs: int | None
    sparsity: float
    layer_sparsity: dict
    prunable_weights: int
    kept_weights: int
    params_before: int
    params_kept: int
    search: dict = field(default_factory=dict)
    module_sparsity: dict | None = None
    details: dict = field(default_factory=dict)

    @property
    def macs_ratio(self) -> float:
        """MACs after / before."""
        return self.macs_after / self.macs_before if self.macs_before else float("nan")

    @property
    def macs_error(self) -> float | None:
        """(MACs after - target) / target, or ``None`` without a target."""
        if self.target_macs is None:
            return None
        return (self.macs_after - self.target_macs) / self.target_macs

    def to_card(self) -> dict:
        """Plain-Python dict (JSON-safe) of every field plus ``macs_ratio`` and ``macs_error``."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["macs_ratio"] = self.macs_ratio
        d["macs_error"] = self.macs_error
        return json.loads(json.dumps(d, default=_jsonable))

    @classmethod
    def from_card(cls, card: dict) -> "PruneReport":
        card = dict(card)
        if "convention" in card and "macs_convention" not in card:  # cards written before the rename
            card["macs_convention"] = card.pop("convention")
        fields = {k: v for k, v in card.items() if k in cls.__dataclass_fields__}
        fields["input_size"] = tuple(fields["input_size"])
        return cls(**fields)

    def summary(self) -> str:
        s = self.search
        target = "" if self.target_macs is None else (
            f" (target {self.target_macs / 1e9:.4f} G, error {100 * self.macs_error:+.3f} %)")
        lines = [
            f"{self.method}: MACs {self.macs_before / 1e9:.4f} G -> {self.macs_after / 1e9:.4f} G{target}, "
            f"{self.macs_convention} convention at {'x'.join(map(str, self.input_size))}",
            f"  sparsity {100 * self.sparsity:.2f} % of {self.prunable_weights:,} prunable weights; "
            f"parameters kept {self.params_kept:,} / {self.params_before:,}",
        ]
        if s:
            lines.append(f"  search: {s.get('knob')} = {_fmt(s.get('value'))} after {s.get('steps')} steps "
                         f"({s.get('seconds', 0):.2f} s)")
        return "\n".join(lines)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def build_report(method: str, original: nn.Module, pruned: nn.Module, *, macs_convention: str, input_size,
                 target_macs=None, search=None, module_sparsity=None, details=None,
                 macs_before: int | None = None, params_before: int | None = None) -> PruneReport:
    """Measure ``pruned`` against ``original`` and assemble the report."""
    layers: dict[str, Layer] = prunable_layers(pruned)
    total = sum(l.numel for l in layers.values())
    nnz = {n: int(torch.count_nonzero(l.weight())) for n, l in layers.items()}
    kept = sum(nnz.values())
    return PruneReport(
        method=method,
        macs_convention=macs_convention,
        input_size=tuple(input_size),
        macs_before=int(count_macs(original, input_size, macs_convention) if macs_before is None else macs_before),
        macs_after=int(count_macs(pruned, input_size, macs_convention)),
        target_macs=None if target_macs is None else int(round(target_macs)),
        sparsity=1.0 - kept / total if total else 0.0,
        layer_sparsity={n: 1.0 - nnz[n] / l.numel for n, l in layers.items()},
        prunable_weights=total,
        kept_weights=kept,
        params_before=int(count_params(original) if params_before is None else params_before),
        params_kept=int(count_params(pruned, nonzero=True)),
        search=dict(search or {}),
        module_sparsity=None if module_sparsity is None else dict(module_sparsity),
        details=dict(details or {}),
    )
