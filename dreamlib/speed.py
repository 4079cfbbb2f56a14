"""Seconds, not FLOPs: measuring a model's latency, and the inference options that cost no accuracy.

- :func:`fast` returns the same model in ``channels_last`` memory format and/or wrapped by
  ``torch.compile`` (inductor). Neither changes the arithmetic beyond float reassociation;
  :func:`same_outputs` checks the outputs agree within 1e-5 before you trust a timing.
- :func:`latency` is the median wall time of ``model(x)`` after warm-up, under a given number of
  intra-op threads (1 thread: what one core of an edge CPU gives; ``None``: all threads).
- :func:`strip_masks` turns a masked student (``torch.nn.utils.prune`` re-parametrisation, see
  :mod:`dreamlib.prune.masks`) into plain weights with zeros: the fastest a masked model can
  run on dense kernels, which is still the dense speed.

Timings depend on the machine and its load; compare ratios measured in one run
(``benchmarks/bench_latency.py``), never numbers from different runs.
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time

import torch
from torch import nn

__all__ = ["fast", "same_outputs", "latency", "interleaved", "strip_masks", "threads", "OPTIONS"]

#: The inference options :func:`fast` knows, by name.
OPTIONS = ("eager", "channels_last", "compiled")


def strip_masks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose masked layers hold plain weights (zeros where masked)."""
    from .prune.masks import copy_model, finalize

    return finalize(copy_model(model))


def fast(model: nn.Module, option: str = "channels_last") -> nn.Module:
    """``model`` prepared for inference with ``option``: ``"eager"`` (unchanged), ``"channels_last"``
    (weights and inputs NHWC: oneDNN's preferred layout for convolutions on CPU) or ``"compiled"``
    (channels_last + ``torch.compile``; the first call compiles, tens of seconds).

    A masked model is stripped of its masks first (:func:`strip_masks`). The returned module
    takes and returns ordinary NCHW tensors; it is a copy, ``model`` is untouched. The spec
    (:mod:`dreamlib.spec`) travels with it, so :func:`dreamlib.models.restore` works.
    """
    from .prune.masks import has_mask
    from .spec import attach_spec, spec_of, unwrap

    if option not in OPTIONS:
        raise ValueError(f"unknown speed option {option!r}; choose one of {', '.join(OPTIONS)}")
    core = unwrap(model)
    spec = spec_of(core, infer=False)
    masked = any(has_mask(m) for m in core.modules())
    m = strip_masks(core) if masked else copy.deepcopy(core)
    m.eval()
    if option == "eager":
        return m
    inner = m.to(memory_format=torch.channels_last)
    if option == "compiled":
        m = torch.compile(_ChannelsLastInput(inner))
    else:
        m = _ChannelsLastInput(inner)
    if spec is not None:
        attach_spec(m, spec)
    return m


class _ChannelsLastInput(nn.Module):
    """Feeds the network NHWC inputs; outputs come back contiguous (NCHW) like the original's."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net(x.contiguous(memory_format=torch.channels_last))
        return _contig(out)


def _contig(out):
    if torch.is_tensor(out):
        return out.contiguous()
    if isinstance(out, (list, tuple)):
        return type(out)(_contig(o) for o in out)
    return out


@contextlib.contextmanager
def threads(n: int | None):
    """Run the block with ``n`` intra-op threads (``None``: leave PyTorch's setting)."""
    old = torch.get_num_threads()
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a positive integer or None, got {n!r}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor, atol: float = 1e-5) -> float:
    """Largest |restore(a, x) - restore(b, x)|; raises ``AssertionError`` if above ``atol``."""
    from .models import restore

    d = float((restore(a, x) - restore(b, x)).abs().max())
    if not d <= atol:
        raise AssertionError(f"outputs differ by {d:.3g} > {atol:g}: this option changed the result")
    return d


@torch.no_grad()
def latency(model: nn.Module, x: torch.Tensor, *, iters: int = 10, warmup: int = 2, n_threads: int | None = 1) -> dict:
    """Median wall time of ``model(x)`` in seconds (and min/max/all), after ``warmup`` calls,
    with ``n_threads`` intra-op threads. ``x`` (B,3,H,W) must already fit the model's multiple."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters must be >= 1 and warmup >= 0, got {iters}, {warmup}")
    model.eval()
    times = []
    with threads(n_threads):
        for _ in range(warmup):
            model(x)
        for _ in range(iters):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "times": times,
            "threads": n_threads or torch.get_num_threads()}


@torch.no_grad()
def interleaved(models: list, x: torch.Tensor, *, iters: int = 10, warmup: int = 2, n_threads: int | None = 1) -> list:
    """Wall times (s) of several models on ``x``, taking turns call by call: round r times every
    model once, so a change of the machine's load hits all of them alike. Returns one list of
    ``iters`` times per model (take the median), after ``warmup`` untimed calls each."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters must be >= 1 and warmup >= 0, got {iters}, {warmup}")
    for m in models:
        m.eval()
    times = [[] for _ in models]
    with threads(n_threads):
        for m in models:
            for _ in range(warmup):
                m(x)
        for _ in range(iters):
            for i, m in enumerate(models):
                t = time.perf_counter()
                m(x)
                times[i].append(time.perf_counter() - t)
    return times
