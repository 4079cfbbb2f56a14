"""A working copy of a teacher whose masks are changed in place and scored against the teacher on a batch X.

Shared by the adaptive search (Algorithm 1) and the sensitivity map (Fig. 4). The
teacher's outputs on X are computed once; the student is deep-copied once and
every layer of the searched modules gets a mask at construction. A trial is then
"set the masks of one module, run the student on X, PSNR against the teacher"
(:func:`dreamlib.metrics.psnr_torch`), with each layer's |w| ranking computed once
and cached, so no copy or hook registration happens per trial.
"""
from __future__ import annotations

import torch
from torch import nn

from ..metrics import psnr_torch
from .l1 import GlobalL1
from .masks import copy_model, get_mask, l1_mask, layers_in, prunable_layers, set_mask

WITHIN = ("layer", "module")


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final image of ``model`` for ``x``: :func:`dreamlib.models.restore` for a network dreamlib can
    describe (its spec is attached or known, or ``x`` is an RGB batch: then it is inferred), so any
    input size works; for anything else (toy modules on other tensors) ``model(x)``, one tensor."""
    from ..spec import spec_of

    if spec_of(model, infer=False) is not None or (x.dim() == 4 and x.shape[1] == 3):
        from ..models import restore

        return restore(model, x)
    out = model(x)
    if not torch.is_tensor(out):
        raise TypeError("the model's forward must return one tensor (or describe it: dreamlib.describe(model, "
                        "output=...))")
    return out


def resolve_modules(model: nn.Module, modules) -> dict[str, tuple[str, ...]]:
    """``{module (group) name: (module-name prefixes, ...)}`` in order.

    ``None`` / ``"blocks"``: the spec's modules (:func:`dreamlib.spec.spec_of`; Fig. 4 granularity
    for the shipped networks, the documented default for others); ``"layers"``: every prunable
    leaf layer in forward order; a list of module names (a name of one of the spec's groups stands
    for its modules); or ``{group: [module names]}``.
    """
    from ..spec import spec_of, unwrap

    model = unwrap(model)
    if modules is None or modules == "blocks":
        spec = spec_of(model)
        if not spec.modules:
            raise ValueError(f"{spec.name}'s description lists no modules: pass modules=[...] explicitly "
                             "(or modules='layers')")
        return spec.groups
    if modules == "layers":
        from ..flops import macs_breakdown

        names = list(prunable_layers(model))
        order = {r.name: i for i, r in enumerate(macs_breakdown(model, (1, 3, 64, 64)))} \
            if spec_of(model, infer=False) is not None else {}
        return {n: (n,) for n in sorted(names, key=lambda n: order.get(n, len(order) + names.index(n)))}
    if isinstance(modules, str):
        raise ValueError(f"modules must be None, 'blocks', 'layers', a list of module names or "
                         f"{{group: [module names]}}, got {modules!r}")
    if isinstance(modules, dict):
        return {str(k): ((v,) if isinstance(v, str) else tuple(v)) for k, v in modules.items()}
    spec = spec_of(model, infer=False)
    known = spec.groups if spec is not None else {}
    return {m: known.get(m, (m,)) for m in modules}


class Probe:
    """Student working copy + teacher outputs on ``X`` + in-place module pruning.

    Args:
        teacher: the network; never modified.
        X: (B, C, H, W) batch the PSNR is measured on (dreamed images, or any batch).
        modules: module names (see :func:`resolve_modules`); each layer belongs to the
            first module containing it.
        within: how a module sparsity ``spa`` becomes layer masks: ``"layer"`` (default)
            prunes ``round(spa * n_l)`` smallest-|w| weights of each of its layers (l1 at a
            uniform ratio, as per-op sparsity configs of nni do); ``"module"`` uses one |w|
            threshold over the module's layers.
        exclude: module-name prefixes never pruned.
    """

    def __init__(self, teacher: nn.Module, X: torch.Tensor, modules=None, within: str = "layer", exclude=()):
        from ..spec import unwrap

        teacher = unwrap(teacher)
        if within not in WITHIN:
            raise ValueError(f"within must be one of {WITHIN}, got {within!r}")
        self.within = within
        param = next(teacher.parameters())
        self.X = X.detach().to(param.device, param.dtype)
        was_training = teacher.training
        teacher.eval()
        try:
            with torch.no_grad():
                self.teacher_out = forward(teacher, self.X).detach()
        finally:
            teacher.train(was_training)
        self.student = copy_model(teacher).eval()
        resolved = resolve_modules(self.student, modules)
        self.modules = list(resolved)
        all_layers = prunable_layers(self.student, exclude)
        self.groups = layers_in(all_layers, resolved)
        self.layers = {n: all_layers[n] for names in self.groups.values() for n in names}
        self._base = {}
        for name, layer in self.layers.items():
            base = get_mask(layer.module)
            self._base[name] = None if base is None else base.clone()
            if base is None:
                set_mask(layer, torch.ones_like(layer.module.weight))
        self._order: dict[str, torch.Tensor] = {}
        self._module_alloc: dict[str, GlobalL1] = {}
        self.counts = {n: 0 for n in self.layers}
        self.forwards = 0

    # -------------------------------------------------------------- masks
    def _rank(self, name: str) -> torch.Tensor:
        if name not in self._order:
            w = self.layers[name].weight().abs().flatten()
            order = torch.argsort(w, stable=True)
            self._order[name] = order.int() if order.numel() < 2 ** 31 else order
        return self._order[name]

    def set_count(self, name: str, count: int) -> None:
        """Prune the ``count`` smallest-|w| weights of one layer (replacing its previous count)."""
        count = int(count)
        if self.counts[name] == count:
            return
        layer = self.layers[name]
        order = self._rank(name)
        mask = l1_mask(layer.module.weight_orig, count, order[:count].long())
        base = self._base[name]
        set_mask(layer, mask if base is None else mask * base)
        self.counts[name] = count

    def module_counts(self, module: str, spa: float) -> dict[str, int]:
        """Per-layer prune counts of ``module`` at sparsity ``spa`` (see ``within``)."""
        names = self.groups[module]
        if self.within == "layer":
            return {n: round(float(spa) * self.layers[n].numel) for n in names}
        if module not in self._module_alloc:
            self._module_alloc[module] = GlobalL1({n: self.layers[n] for n in names})
        return dict(zip(names, (int(c) for c in self._module_alloc[module].counts(spa))))

    def set_module(self, module: str, spa: float) -> None:
        for n, c in self.module_counts(module, spa).items():
            self.set_count(n, c)

    def set_counts(self, counts: dict[str, int]) -> None:
        for n, c in counts.items():
            self.set_count(n, c)

    def reset(self) -> None:
        self.set_counts({n: 0 for n in self.layers})

    def module_sparsity(self, module: str) -> float:
        names = self.groups[module]
        return sum(self.counts[n] for n in names) / sum(self.layers[n].numel for n in names)

    # -------------------------------------------------------------- scoring
    @torch.no_grad()
    def psnr(self) -> float:
        """PSNR(S(X), T(X)) of the current masks (:func:`dreamlib.metrics.psnr_torch`)."""
        self.forwards += 1
        return psnr_torch(forward(self.student, self.X), self.teacher_out)

    @torch.no_grad()
    def mse(self) -> float:
        """Mean over the batch of per-image MSE(S(x), T(x)) of the current masks (outputs clamped to
        [0, 1], float64). Unlike dB, these add up (approximately) over independently pruned modules."""
        self.forwards += 1
        s = forward(self.student, self.X).detach().clamp(0, 1).double()
        t = self.teacher_out.clamp(0, 1).double()
        return float(((s - t) ** 2).flatten(1).mean(1).mean())
