"""Structured (channel) pruning: a student that is physically smaller, so it runs faster.

The paper prunes single weights (masks). A masked convolution still multiplies every zero,
so the FLOPs it reports drop while the seconds do not (``benchmarks/bench_latency.py``
measures 0.94-1.06x of the dense speed). Channel pruning removes whole output channels of a
convolution together with everything that reads them; the student is an ordinary dense
network with fewer channels, and dream-distillation (Eq. 7, unchanged, :mod:`dreamlib.distill`)
recovers it without data exactly as it recovers a masked one.

Which channels must go together (a residual add ties the channels of every layer that feeds
it) comes from Torch-Pruning's dependency graph (``torch_pruning``, a dependency, not copied).
dreamlib adds what the four networks need (:data:`QUIRKS`, applied by :func:`prepare`):

- every network: convolutions that write the image (out channels <= 3, or 1 for a mask) keep
  their output channels, or the student would not return an image;
- HINet: the half-instance-norm blocks' ``conv_1`` keep their output channels
  (``torch.chunk`` + ``torch.cat`` around the norm breaks the graph);
- MPRNet: the official model shares one PReLU between all channel-attention blocks, which
  ties every block into one group; each block gets its own copy (same slope, same output);
- AGAN: the recurrent attention branch (``det_conv*``, the Conv-LSTM gates ``conv_i/f/g/o``
  and ``det_conv_mask``) is kept whole; its hidden state loops back through time.

Allocation (how many channels each layer loses), at channel granularity, all hitting a MACs
target within ``rtol`` (1 %) by bisection on the counted MACs (:func:`dreamlib.flops.count_macs`):

- ``uniform``: the same channel ratio in every group, lowest-l1 channels first;
- ``lamp``: one global ranking of channel groups by their L2 magnitude normalised as LAMP
  does (each score divided by the sum of the scores at least as large in its layer);
- ``adaptive``: the paper's Algorithm 1 with channel ratios instead of weight sparsities.
  Each module is pruned **alone** (the other modules dense) at a grid of channel ratios,
  and PSNR(S(X), T(X)) is measured on the dreamed batch X; a module's ratio for a threshold
  tp is the largest ratio whose PSNR stays >= tp (linear between grid points, stopping at
  the first ratio that fails). tp is then bisected to hit the MACs target.

A channel ratio of a module applies to the channel groups whose first (root) layer lies in
that module; the ratio is the fraction of those groups' channels removed.

>>> from dreamlib.prune.channels import channel_prune, save_pruned, load_pruned
>>> student, report = channel_prune(teacher, "uniform", target_macs=0.5 * count_macs(teacher))
>>> save_pruned(student, "student.pt"); same = load_pruned("student.pt")
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["STRATEGIES", "QUIRKS", "ChannelReport", "prepare", "prune_channels", "channel_prune",
           "module_curves", "ratios_at", "save_pruned", "load_pruned", "PrunedFileError", "ChannelPruningError",
           "channel_widths"]

#: Channel allocations (see the module docstring).
STRATEGIES = ("uniform", "lamp", "adaptive")
#: No group loses more than this fraction of its channels (a layer must keep some).
MAX_RATIO = 0.9
_FORMAT = "dreamlib-channel-pruned-1"
_ROOTS = (nn.Conv2d, nn.ConvTranspose2d)


class PrunedFileError(ValueError):
    """A channel-pruned student file that cannot be loaded into the network it names."""


class ChannelPruningError(RuntimeError):
    """Torch-Pruning could not cut the network (an operation its dependency graph does not follow)."""


# ---------------------------------------------------------------------------- network quirks
def _untie_shared_prelu(model: nn.Module) -> list[nn.Module]:
    """MPRNet: give each channel-attention block its own PReLU (a copy: same slope, same outputs)."""
    seen = set()
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            for i, sub in enumerate(m):
                if isinstance(sub, nn.PReLU):
                    if id(sub) in seen:
                        m[i] = copy.deepcopy(sub)
                    seen.add(id(m[i]))
    return []


def _hinet_hin_conv1(model: nn.Module) -> list[nn.Module]:
    """HINet: the conv before the half instance norm keeps its output channels."""
    return [m.conv_1 for m in model.modules() if getattr(m, "use_hin", False) and hasattr(m, "conv_1")]


_AGAN_RECURRENT = ("det_conv", "conv_i", "conv_f", "conv_g", "conv_o")


def _agan_attention(model: nn.Module) -> list[nn.Module]:
    """AGAN: the recurrent attention branch (its hidden state loops back) is kept whole."""
    return [m for n, m in model.named_modules()
            if isinstance(m, _ROOTS) and n.split(".")[0].startswith(_AGAN_RECURRENT)]


#: Per-network handling: ``{spec name: [(quirk name, fn(model) -> layers to keep whole)]}``.
#: A function may also change the (copied) model, as long as its outputs stay identical.
QUIRKS = {
    "hinet": [("hin_conv1_kept", _hinet_hin_conv1)],
    "mprnet": [("prelu_untied", _untie_shared_prelu)],
    "agan": [("attention_branch_kept", _agan_attention)],
}


def _image_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _ROOTS) and m.out_channels <= 3]


def prepare(model: nn.Module, *, copy_model: bool = True, keep=()) -> tuple[nn.Module, list[nn.Module], list[str]]:
    """``(model, layers kept whole, quirk names applied)``: a copy of ``model`` ready for
    Torch-Pruning. The copy computes exactly what ``model`` computes. ``keep``: names of
    modules (yours, e.g. an attention branch) whose conv layers keep their output channels."""
    from ..spec import attach_spec, spec_of, unwrap

    src = unwrap(model)
    spec = spec_of(src)
    m = copy.deepcopy(src) if copy_model else src
    if spec is not None:
        attach_spec(m, spec)
    ignored = _image_layers(m)
    modules = dict(m.named_modules())
    for k in keep:
        if k not in modules:
            raise ValueError(f"keep: no module named {k!r} in the model (names as in model.named_modules())")
        ignored += [sub for sub in modules[k].modules() if isinstance(sub, _ROOTS)]
    names = []
    for qname, fn in QUIRKS.get((spec.name if spec else "").lower(), []):
        ignored += fn(m)
        names.append(qname)
    return m, ignored, names


# ---------------------------------------------------------------------------- one prune
def _example(model: nn.Module, side: int = 64) -> torch.Tensor:
    from ..models import pad_multiple

    mult = pad_multiple(model)
    side = max(side, mult) + (-max(side, mult)) % mult
    p = next(model.parameters())
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(p.device, p.dtype)


def _importance(strategy: str):
    import torch_pruning as tp

    if strategy == "lamp":
        return tp.importance.GroupMagnitudeImportance(p=2, normalizer="lamp")
    return tp.importance.GroupMagnitudeImportance(p=1, normalizer=None)


def prune_channels(model: nn.Module, ratio: float | dict = 0.0, *, strategy: str = "uniform",
                   max_ratio: float = MAX_RATIO, keep=()) -> nn.Module:
    """A channel-pruned copy of ``model`` (``model`` itself is untouched).

    Args:
        ratio: fraction of channels removed, in [0, max_ratio]: one float for every group
            (``strategy="uniform"``: per group; ``"lamp"``: of all channels, allocated by the
            global LAMP ranking), or ``{module name: ratio}`` (groups rooted in that module;
            modules not named keep every channel).
        strategy: ``uniform`` / ``adaptive`` (lowest-l1 channels within each group) or ``lamp``.
        keep: module names whose conv layers keep their output channels (see :func:`prepare`).
    """
    import torch_pruning as tp

    from ..spec import attach_spec, spec_of

    m, ignored, quirks = prepare(model, keep=keep)
    spec = spec_of(m)
    ratio_dict = None
    if isinstance(ratio, dict):
        modules = dict(m.named_modules())
        unknown = [n for n in ratio if n not in modules]
        if unknown:
            raise ValueError(f"unknown module name(s) {unknown[:3]} for {spec.name if spec else 'the model'}; "
                             f"use names from dreamlib.models.prunable_modules(model)")
        ratio_dict = {modules[n]: float(r) for n, r in ratio.items() if r > 0}
        for n, r in ratio.items():
            _check_ratio(r, max_ratio, f"ratio[{n!r}]")
        base = 0.0
    else:
        base = _check_ratio(ratio, max_ratio, "ratio")
    if base == 0.0 and not ratio_dict:
        out = m
    else:
        was = m.training
        m.eval()
        pruner = tp.pruner.MetaPruner(
            m, _example(m), importance=_importance(strategy), global_pruning=(strategy == "lamp"),
            pruning_ratio=base, pruning_ratio_dict=ratio_dict, max_pruning_ratio=max_ratio,
            ignored_layers=ignored, root_module_types=list(_ROOTS))
        try:
            with torch.no_grad():
                pruner.step()
        except Exception as e:  # Torch-Pruning fails deep inside on graphs it cannot follow
            raise ChannelPruningError(
                f"Torch-Pruning could not cut {spec.name if spec else 'this network'} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); an operation such as chunk/cat, a shared "
                "module or a recurrent loop ties channels it cannot follow: keep that part whole with "
                "keep=['module.name'] (dreamlib.prune.channels.QUIRKS shows how the shipped networks do it)") from e
        m.train(was)
        out = m
    if spec is not None:
        attach_spec(out, spec)
    object.__setattr__(out, "_dreamlib_quirks", list(quirks))
    return out


def _check_ratio(r, max_ratio, what) -> float:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0.0 <= float(r) <= max_ratio):
        raise ValueError(f"{what} must be a fraction of channels in [0, {max_ratio}], got {r!r}")
    return float(r)


def channel_widths(model: nn.Module) -> dict[str, int]:
    """``{layer name: output channels}`` of every conv layer (to compare a student with its teacher)."""
    from ..spec import unwrap

    return {n: m.out_channels for n, m in unwrap(model).named_modules() if isinstance(m, _ROOTS)}


# ---------------------------------------------------------------------------- allocation
@dataclass
class ChannelReport:
    """What :func:`channel_prune` did. MACs per sample at ``input_size`` (nni convention)."""

    strategy: str
    target_macs: float | None
    macs: int
    dense_macs: int
    params: int
    dense_params: int
    input_size: tuple
    ratio: float | dict  # the uniform / global ratio, or {module: ratio} (adaptive)
    quirks: list
    tp: float | None = None  # adaptive: the PSNR threshold found, dB
    curves: dict | None = None  # adaptive: {module: [(ratio, psnr dB), ...]} measured on X
    trials: int = 0
    finishing_channels: int = 0  # single channels removed after the search to land within rtol
    seconds: float = 0.0

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.dense_macs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["macs_ratio"] = self.macs_ratio
        return d

    def summary(self) -> str:
        r = (f"{self.ratio:.3f}" if isinstance(self.ratio, float) else
             ", ".join(f"{k} {v:.2f}" for k, v in self.ratio.items()))
        tp = f", tp {self.tp:.2f} dB" if self.tp is not None else ""
        return (f"{self.strategy}: {self.macs / 1e9:.3f} / {self.dense_macs / 1e9:.3f} G-MACs "
                f"({100 * self.macs_ratio:.1f} %), {self.params:,} / {self.dense_params:,} params{tp}; ratios: {r}")


def module_curves(teacher: nn.Module, X: torch.Tensor, *, grid=None, modules=None, progress: bool = True,
                  max_ratio: float = MAX_RATIO) -> dict[str, list[tuple[float, float]]]:
    """Algorithm 1's measurement at channel granularity: for each module alone, PSNR (dB) of
    the student's output against the teacher's on the dreamed batch ``X`` (B,3,H,W) at each
    channel ratio of ``grid`` (default 0.1, 0.2, ..., 0.9); ``{module: [(ratio, psnr), ...]}``.
    Identical outputs score 120 dB (:func:`dreamlib.metrics.psnr_torch`)."""
    from tqdm.auto import tqdm

    from ..metrics import psnr_torch
    from ..models import prunable_modules, restore

    grid = [round(0.1 * k, 4) for k in range(1, 10)] if grid is None else [float(g) for g in grid]
    grid = [g for g in grid if g <= max_ratio]
    modules = prunable_modules(teacher) if modules is None else list(modules)
    with torch.no_grad():
        was = teacher.training
        teacher.eval()
        ref = restore(teacher, X).clamp(0, 1)
        teacher.train(was)
    curves = {}
    bar = tqdm(total=len(modules) * len(grid), desc="channel PSNR per module", disable=not progress, leave=False)
    for name in modules:
        pts = []
        for r in grid:
            s = prune_channels(teacher, {name: r}, strategy="adaptive", max_ratio=max_ratio).eval()
            with torch.no_grad():
                pts.append((r, float(psnr_torch(restore(s, X).clamp(0, 1), ref))))
            bar.update()
        curves[name] = pts
    bar.close()
    return curves


def ratios_at(curves: dict, tp: float) -> dict[str, float]:
    """Each module's largest channel ratio whose PSNR stays >= ``tp`` dB: walk its curve from
    ratio 0 (120 dB) upward and stop at the first grid point below tp, interpolating linearly
    in the last segment (so the ratios change continuously with tp)."""
    out = {}
    for name, pts in curves.items():
        r_prev, p_prev, r = 0.0, 120.0, 0.0
        for rr, pp in pts:
            if pp >= tp:
                r_prev, p_prev, r = rr, pp, rr
                continue
            r = r_prev + (rr - r_prev) * (p_prev - tp) / (p_prev - pp) if p_prev > pp and p_prev >= tp else r_prev
            break
        out[name] = float(r)
    return out


def _bisect(macs_of, lo: float, hi: float, target: float, rtol: float, increasing: bool, iters: int = 40):
    """Find s in [lo, hi] with |macs_of(s) - target| <= rtol * target; ``macs_of`` monotone
    (``increasing`` in s or not). Returns (s, model, macs, trials)."""
    best, trials = None, 0
    for _ in range(iters):
        if hi - lo < 2e-3:  # finer than one channel of a 64-wide group: single channels finish it
            break
        mid = 0.5 * (lo + hi)
        model, macs = macs_of(mid)
        trials += 1
        if abs(macs - target) <= rtol * target:
            best = (mid, model, macs)
            break
        # otherwise keep the closest model above the target: single channels finish it
        if macs > target and (best is None or best[2] < target or macs < best[2]):
            best = (mid, model, macs)
        elif best is None or (best[2] < target and macs > best[2]):
            best = (mid, model, macs)
        if (macs > target) == increasing:
            hi = mid
        else:
            lo = mid
    return (*best, trials)


def _finish(student: nn.Module, target: float, rtol: float, measure, keep=(), limit: int = 400):
    """Remove channels from ``student`` until its MACs are within ``rtol`` of ``target``; returns
    ``(student, macs, channels removed)``. The weakest channel (l1 norm over its group's mean, so
    layers of different scale compare) goes first. Far from the target several groups lose one
    channel per step; near it one channel at a time, and a channel whose removal would jump
    below the band is put back (the copy taken before it) and its group skipped."""
    import torch_pruning as tp

    def graph(m):
        _, ignored, _ = prepare(m, copy_model=False, keep=keep)
        return tp.DependencyGraph().build_dependency(m, example_inputs=_example(m)), ignored

    was = student.training
    student.eval()
    hi_ok, lo_ok = (1 + rtol) * target, (1 - rtol) * target
    imp = _importance("uniform")
    dg, ignored = graph(student)
    macs, n, worst, skip, single = measure(student), 0, 0.0, set(), False
    while macs > hi_ok and n < limit:
        names = {id(mod): nm for nm, mod in student.named_modules()}
        cands = []
        for g in dg.get_all_groups(ignored_layers=ignored, root_module_types=list(_ROOTS)):
            root = g[0].dep.target.module
            scores = imp(g)
            if names.get(id(root)) in skip or scores is None or len(scores) < 2:
                continue
            rel = scores / scores.mean().clamp_min(1e-12)
            i = int(torch.argmin(rel))
            cands.append((float(rel[i]), i, g))
        if not cands:
            break
        cands.sort(key=lambda c: c[0])
        gap = macs - target
        k = 1 if single or worst == 0 or gap < 4 * rtol * target else \
            max(1, min(16, len(cands), int(gap / (2 * worst))))
        snapshot = copy.deepcopy(student)
        before = macs
        with torch.no_grad():
            for _, i, g in cands[:k]:
                # a fresh group: pruning the previous one may have shifted index mappings (concat offsets)
                dep = g[0].dep
                dg.get_pruning_group(dep.target.module, dep.handler, idxs=[i]).prune()
        n += k
        macs = measure(student)
        worst = max(worst, (before - macs) / k)
        if macs < lo_ok:  # jumped below the band: put the channel(s) back
            if k == 1:  # this channel costs more than the band allows: skip its group
                skip.add(names.get(id(cands[0][2][0].dep.target.module)))
            single = True
            student, macs, n = snapshot, before, n - k
            student.eval()
            dg, ignored = graph(student)
    student.train(was)
    return student, macs, n


def channel_prune(model: nn.Module, strategy: str = "uniform", *, target_macs: float | None = None,
                  ratio: float | None = None, X: torch.Tensor | None = None, curves: dict | None = None,
                  input_size=(1, 3, 256, 256), rtol: float = 0.01, max_ratio: float = MAX_RATIO,
                  keep=(), progress: bool = True) -> tuple[nn.Module, ChannelReport]:
    """A channel-pruned student of ``model`` and its :class:`ChannelReport`.

    Args:
        strategy: ``uniform``, ``lamp`` or ``adaptive`` (see the module docstring).
        target_macs: MACs per sample at ``input_size`` to hit within ``rtol`` (e.g.
            ``0.5 * count_macs(model)``); or give ``ratio`` (uniform / lamp) instead.
        X: dreamed batch (B,3,H,W) in [0,1] for ``adaptive`` (e.g. from
            :func:`dreamlib.experiments.tables.dream_x`); or pass precomputed ``curves``
            (:func:`module_curves`) to try several targets without re-measuring.
        keep: module names whose conv layers keep their output channels (your own network's
            parts Torch-Pruning cannot follow; see :func:`prepare`).
    """
    from ..flops import count_macs, count_params
    from ..spec import unwrap

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown channel strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if (target_macs is None) == (ratio is None) and strategy != "adaptive":
        raise ValueError("give exactly one of target_macs (MACs per sample) or ratio (fraction of channels)")
    if strategy == "adaptive":
        if target_macs is None:
            raise ValueError("adaptive channel pruning needs target_macs (tp is searched to hit it)")
        if X is None and curves is None:
            raise ValueError("adaptive channel pruning measures PSNR on dreamed images: pass X=dream_x(...) "
                             "or curves=module_curves(teacher, X)")
    model = unwrap(model)
    input_size = tuple(input_size)
    dense_macs = count_macs(model, input_size)
    if target_macs is not None and not (0 < float(target_macs) <= dense_macs):
        raise ValueError(f"target_macs must be in (0, {dense_macs:.4g}] (the dense model's MACs at "
                         f"{input_size}), got {target_macs!r}")
    t0 = time.perf_counter()
    tp_found, trials, used_curves = None, 1, None

    def measure(student):
        return count_macs(student, input_size)

    if strategy in ("uniform", "lamp"):
        if ratio is not None:
            student = prune_channels(model, float(ratio), strategy=strategy, max_ratio=max_ratio, keep=keep)
            macs, r = measure(student), float(ratio)
        else:
            def macs_of(s):
                st = prune_channels(model, s, strategy=strategy, max_ratio=max_ratio, keep=keep)
                return st, measure(st)

            r, student, macs, trials = _bisect(macs_of, 0.0, max_ratio, float(target_macs), rtol, increasing=False)
    else:
        used_curves = curves if curves is not None else module_curves(model, X, progress=progress,
                                                                       max_ratio=max_ratio)
        cache = {}

        def macs_of(tp):
            rat = {k: round(v, 4) for k, v in ratios_at(used_curves, tp).items()}
            key = tuple(sorted(rat.items()))
            if key not in cache:
                st = prune_channels(model, rat, strategy="adaptive", max_ratio=max_ratio, keep=keep)
                cache[key] = (st, measure(st))
            return cache[key]

        lo = min(p for pts in used_curves.values() for _, p in pts) - 1.0
        tp_found, student, macs, trials = _bisect(macs_of, lo, 121.0, float(target_macs), rtol, increasing=True)
        r = {k: round(v, 4) for k, v in ratios_at(used_curves, tp_found).items()}
    finished = 0
    if target_macs is not None and macs > (1 + rtol) * target_macs:
        # whole-ratio steps move many groups at once and can jump over the tolerance band:
        # finish by removing single channels, weakest (l1, relative to its group) first
        student, macs, finished = _finish(student, float(target_macs), rtol, measure, keep=keep)
    if target_macs is not None and abs(macs - target_macs) > rtol * target_macs:
        raise RuntimeError(f"{strategy} channel pruning reached {macs / 1e9:.4f} G-MACs, not the target "
                           f"{target_macs / 1e9:.4f} G-MACs within {100 * rtol:g} %: the target needs more than "
                           f"{max_ratio:.0%} of some group's channels, or this strategy cannot reach it; "
                           "raise the target or use strategy='uniform'")
    report = ChannelReport(strategy=strategy, target_macs=None if target_macs is None else float(target_macs),
                           macs=int(macs), dense_macs=int(dense_macs), params=count_params(student),
                           dense_params=count_params(model), input_size=input_size, ratio=r,
                           quirks=list(getattr(student, "_dreamlib_quirks", [])), tp=tp_found,
                           curves=used_curves, trials=trials, finishing_channels=finished,
                           seconds=time.perf_counter() - t0)
    return student, report


# ---------------------------------------------------------------------------- files
_SHAPE_ATTRS = {
    nn.Conv2d: ("in_channels", "out_channels"), nn.ConvTranspose2d: ("in_channels", "out_channels"),
    nn.Linear: ("in_features", "out_features"), nn.PReLU: ("num_parameters",),
    nn.modules.batchnorm._NormBase: ("num_features",), nn.GroupNorm: ("num_channels",),
}


def _shape_attrs(m: nn.Module) -> tuple:
    for cls, attrs in _SHAPE_ATTRS.items():
        if isinstance(m, cls):
            return attrs
    return ()


def save_pruned(student: nn.Module, path, *, extra: dict | None = None) -> Path:
    """Write a channel-pruned student to ``path`` (atomically): the network it was cut from
    (its spec: name, variant, config or ``arch``), the quirks applied, every layer's channel
    counts and the weights. Only tensors and plain values: :func:`load_pruned` reads it with
    ``torch.load(weights_only=True)`` (Torch-Pruning's own format pickles modules)."""
    from ..io import atomic_torch_save
    from ..spec import spec_of, unwrap

    student = unwrap(student)
    spec = spec_of(student, infer=False)
    if spec is None or not (spec.builtin or spec.arch):
        raise ValueError("save_pruned needs a network dreamlib can rebuild: a shipped one, or your own described "
                         "with dreamlib.describe(model, arch='package.module:Class', config={...})")
    shapes = {}
    for name, m in student.named_modules():
        attrs = {a: int(getattr(m, a)) for a in _shape_attrs(m)}
        if attrs:
            shapes[name] = attrs
    payload = {"format": _FORMAT, "spec": spec.to_dict(), "quirks": list(getattr(student, "_dreamlib_quirks", [])),
               "shapes": shapes, "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
               "extra": extra or {}}
    return atomic_torch_save(payload, path)


def _resize(m: nn.Module, attrs: dict) -> None:
    """Set a layer's channel counts and give its parameters/buffers the matching shapes
    (values follow from the state dict)."""
    for a, v in attrs.items():
        setattr(m, a, v)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        g = m.groups
        k = tuple(m.weight.shape[2:])
        if isinstance(m, nn.ConvTranspose2d):
            shape = (m.in_channels, m.out_channels // g, *k)
        else:
            shape = (m.out_channels, m.in_channels // g, *k)
        m.weight = nn.Parameter(torch.empty(shape))
        if m.bias is not None:
            m.bias = nn.Parameter(torch.empty(m.out_channels))
    elif isinstance(m, nn.Linear):
        m.weight = nn.Parameter(torch.empty(m.out_features, m.in_features))
        if m.bias is not None:
            m.bias = nn.Parameter(torch.empty(m.out_features))
    elif isinstance(m, nn.PReLU):
        m.weight = nn.Parameter(torch.empty(m.num_parameters))
    elif isinstance(m, nn.modules.batchnorm._NormBase):
        n = m.num_features
        if m.weight is not None:
            m.weight = nn.Parameter(torch.empty(n))
            m.bias = nn.Parameter(torch.empty(n))
        if m.running_mean is not None:
            m.running_mean = torch.zeros(n)
            m.running_var = torch.ones(n)
    elif isinstance(m, nn.GroupNorm) and m.affine:
        m.weight = nn.Parameter(torch.empty(m.num_channels))
        m.bias = nn.Parameter(torch.empty(m.num_channels))


def load_pruned(path, device="cpu") -> nn.Module:
    """The channel-pruned student saved by :func:`save_pruned`, rebuilt and loaded with
    ``weights_only=True``. Raises :class:`PrunedFileError` (one line, with the fix) if the
    file is not such a student or does not fit the network it names."""
    from ..models.checkpoint import safe_load
    from ..spec import ModelSpec, attach_spec, rebuild, spec_of

    st = safe_load(path)
    if not isinstance(st, dict) or st.get("format") != _FORMAT:
        raise PrunedFileError(f"{path} is not a channel-pruned dreamlib student (format "
                              f"{st.get('format') if isinstance(st, dict) else type(st).__name__!r}); "
                              "load teachers with dreamlib.load_teacher / models.from_checkpoint")
    spec_d = st["spec"]
    base = rebuild(spec_d)
    if base is None:
        raise PrunedFileError(f"{path}: cannot rebuild the network {spec_d.get('name')!r} it was cut from "
                              f"(arch {spec_d.get('arch')!r} not importable here); install the package that defines it")
    spec = spec_of(base, infer=False)
    if spec is None:  # your own network: its stored spec (a callable output selector must be described again)
        try:
            spec = ModelSpec.from_dict(spec_d)
        except ValueError as e:
            raise PrunedFileError(f"{path}: {e}") from e
        attach_spec(base, spec)
    model, _, quirks = prepare(base, copy_model=False)
    if sorted(quirks) != sorted(st["quirks"]):
        raise PrunedFileError(f"{path} was pruned with network handling {st['quirks']} but this dreamlib applies "
                              f"{quirks} to {spec.name}; load it with the dreamlib version that wrote it")
    modules = dict(model.named_modules())
    missing = [n for n in st["shapes"] if n not in modules]
    if missing:
        raise PrunedFileError(f"{path} names layers {missing[:3]} that {spec.name} "
                              f"({spec_d.get('variant') or spec_d.get('arch')}, config {spec_d.get('config')}) "
                              "does not have: the file belongs to another network or configuration")
    for name, attrs in st["shapes"].items():
        _resize(modules[name], attrs)
    try:
        model.load_state_dict(st["state_dict"], strict=True)
    except RuntimeError as e:
        raise PrunedFileError(f"{path} does not fit the rebuilt {spec.name}: "
                              f"{' '.join(str(e).split())[:300]}") from e
    object.__setattr__(model, "_dreamlib_quirks", list(quirks))
    return model.to(device).eval()
