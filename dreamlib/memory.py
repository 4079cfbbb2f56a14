"""Fitting the paper's configuration in GPU memory: mixed precision, activation checkpointing, OOM advice.

- :data:`PRECISIONS` / :func:`autocast`: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast
  for a network's forward (the teacher's in dreaming, the student's in distillation). The
  dreamed images, the losses and every optimiser stay fp32; fp16 needs a gradient scaler
  (:func:`grad_scaler`), bf16 does not.
- :func:`checkpointed`: recompute a network's activations during the backward instead of
  keeping them (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant) over its blocks
  (:func:`checkpoint_blocks`): the teacher's in dreaming (``checkpoint_teacher``), the
  student's in distillation (``checkpoint_student``). Same gradients, less memory, about one
  more forward of time. The student's phase keeps as much per image as the teacher's, so
  either switch alone leaves the other phase at the peak: use both.
- :func:`oom_message`: the one-line advice raised when CUDA runs out of memory in a step.

The measured costs for the official HINet and MPRNet are in ``results/gpu/`` (written by
``benchmarks/bench_gpu.py``).
"""
from __future__ import annotations

import re
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

__all__ = ["PRECISIONS", "amp_dtype", "autocast", "grad_scaler", "checkpoint_blocks", "checkpointed",
           "oom_message", "DistillOutOfMemoryError"]

#: Allowed values of ``precision``.
PRECISIONS = ("fp32", "bf16", "fp16")

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class DistillOutOfMemoryError(MemoryError):
    """CUDA ran out of memory in a dream+distill step; the message says what to change."""


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (autocast of the networks' forwards), "
                         f"got {precision!r}")
    return precision


def amp_dtype(precision: str):
    """The autocast dtype of ``precision`` (``None`` for fp32)."""
    return _DTYPES[check_precision(precision)]


def autocast(device, precision: str):
    """``torch.autocast`` on ``device``'s type in ``precision``; a no-op context for fp32."""
    dtype = amp_dtype(precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def grad_scaler(device, precision: str):
    """A :class:`torch.amp.GradScaler` for fp16 (gradients would underflow without it), else ``None``."""
    return torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None


_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def backward_step(loss: torch.Tensor, optimizer, scaler=None) -> None:
    """``loss.backward()`` and one optimiser step; with an fp16 ``scaler`` the loss is scaled and
    the step is skipped on an overflow (the dreamed image and the student share this)."""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def checkpoint_blocks(model: nn.Module, split: int = 4) -> list[str]:
    """Dotted names of the blocks :func:`checkpointed` recomputes, one at a time in the backward.

    The network's modules of Fig. 4 (its spec's ``modules``: HINet's encoder/decoder blocks,
    skip convs, SAM ...; MPRNet's shallow features, encoders, decoders, SAMs, ORBs ...), or,
    for a network without them, its direct children (containers replaced by their items). A
    block holding a ``Sequential``/``ModuleList`` of ``split`` or more parameterised items is
    replaced by those items (MPRNet's ORBs by their channel-attention blocks), since a
    full-resolution block recomputed whole would set the peak. Only blocks with parameters.
    """
    from .spec import spec_of

    def children(prefix: str, module: nn.Module) -> list[str]:
        out = []
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, _CONTAINERS):
                out += children(full + ".", child)
            elif _has_params(child):
                out.append(full)
        return out

    spec = spec_of(model, infer=False)
    names = [path for _, paths in spec.modules for path in paths] if spec is not None and spec.modules else \
        children("", model)

    def refine(name: str) -> list[str]:
        module = model.get_submodule(name)
        for cname, child in module.named_children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                items = [f"{name}.{cname}.{i}" for i, m in child.named_children() if _has_params(m)]
                if len(items) >= split:
                    rest = [f"{name}.{n}" for n, m in module.named_children()
                            if n != cname and _has_params(m) and not isinstance(m, _CONTAINERS)]
                    return rest + items
        return [name]

    out: list[str] = []
    for name in names:
        if _has_params(model.get_submodule(name)):
            out += refine(name)
    return out


@contextmanager
def checkpointed(model: nn.Module, enabled: bool = True, blocks: list[str] | None = None):
    """Within the block, every forward of ``model``'s :func:`checkpoint_blocks` (or ``blocks``)
    keeps only its inputs and recomputes its activations when the backward needs them.

    The forwards patched here must be backpropagated while the module keeps the same mode
    (train/eval) as in the forward: :class:`dreamlib.dream.Dreamer` runs its backward inside
    its ``frozen`` context; the student stays in train mode through its step. Gradients are
    those of the plain forward (up to float re-association; tests/test_gpu_options.py checks 1e-5). Forward hooks of the blocks fire
    once; hooks of modules inside a block fire again during the recomputation.
    """
    if not enabled:
        yield model
        return
    from torch.utils.checkpoint import checkpoint

    patched = []
    for name in (blocks if blocks is not None else checkpoint_blocks(model)):
        module = model.get_submodule(name)
        orig = module.forward

        def run(*args, _orig=orig, **kwargs):
            if not torch.is_grad_enabled():
                return _orig(*args, **kwargs)
            return checkpoint(_orig, *args, use_reentrant=False, **kwargs)

        module.forward = run
        patched.append(module)
    try:
        yield model
    finally:
        for module in patched:
            del module.forward  # the class's forward again


def oom_message(*, batch_size: int, per_process: int, crop: int, precision: str, checkpoint_teacher: bool,
                world: int, step: int, error: BaseException | None = None, device=None,
                checkpoint_student: bool = False) -> str:
    """One line: what ran out of memory and what to change (a smaller batch, bf16, checkpointing, more GPUs).

    The suggested batch is at most half the tried one, and lower when the failed allocation
    shows the step needed more: (memory available) / (memory needed per image, from the peak
    allocated before the failure plus the failed request), rounded down to a multiple of the
    number of processes.
    """
    need, total = None, None
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        try:
            total = torch.cuda.get_device_properties(torch.device(device)).total_memory
            need = torch.cuda.max_memory_allocated(torch.device(device))
        except RuntimeError:  # the context itself is broken: no numbers
            need = total = None
    tried = _tried_bytes(str(error)) if error is not None else None
    suggest = max(batch_size // 2, 1)
    what = ""
    if need is not None and total:
        need += tried or 0
        per_image = need / max(per_process, 1)
        fit = int(0.9 * total // per_image) * world
        suggest = max(min(suggest, fit), 1)
        what = (f" (needed at least {need / 2 ** 30:.1f} GiB per GPU, {per_image / 2 ** 30:.2f} GiB per image, of "
                f"{total / 2 ** 30:.1f} GiB)")
    suggest = max(world, suggest - suggest % world)
    tips = [f"distill.batch_size {suggest} or smaller (--config YAML)"]
    if precision == "fp32":
        tips.append("distill.precision: bf16")
    if not checkpoint_student:
        tips.append("distill.checkpoint_student: true")
    if not checkpoint_teacher:
        tips.append("distill.checkpoint_teacher: true")
    tips.append("more GPUs (torchrun --nproc_per_node N splits the batch)")
    return (f"CUDA out of memory at dream+distill step {step} with a batch of {batch_size} x 3 x {crop} x {crop} "
            f"({per_process} per process, precision {precision}, checkpointing: teacher "
            f"{'on' if checkpoint_teacher else 'off'}, student {'on' if checkpoint_student else 'off'}){what}; "
            "try " + ", ".join(tips) +
            "; results/gpu/bench_gpu_cpu.md estimates the memory per batch size")


def _tried_bytes(text: str):
    m = re.search(r"Tried to allocate ([\d.]+) (GiB|MiB|KiB|B)", text)
    if not m:
        return None
    return float(m.group(1)) * {"GiB": 2 ** 30, "MiB": 2 ** 20, "KiB": 2 ** 10, "B": 1}[m.group(2)]
