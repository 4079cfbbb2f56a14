"""Several GPUs (or CPU processes) for one-stage dream + distill, with PyTorch's own engine.

    torchrun --nproc_per_node 4 -m dreamlib reproduce table1 --model hinet --variant official \\
        --checkpoint HINet-Rain13k.pth --config configs/paper.yaml --out runs/t1_hinet

``torchrun`` starts N processes (ranks) and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` (called by the command line)
sees them and joins the process group (backend ``nccl`` on CUDA, one GPU per rank,
``cuda:LOCAL_RANK``; ``gloo`` on CPU). What each rank does in
:class:`dreamlib.distill.DreamDistiller`:

- the global batch B (``distill.batch_size``) is split into equal shares of B / N images
  (B must be a multiple of N); rank r dreams images ``r*B/N .. (r+1)*B/N - 1``;
- every rank draws the *global* targets and initial noise from the run's seed and keeps
  its own rows, so rank r dreams exactly the images a one-process run dreams at those
  batch indices (the noise of the whole batch is drawn, ``B x 3 x crop x crop`` floats,
  15.7 MB at the paper's size: cheap next to one teacher forward);
- the losses that mix images are computed over the global batch: L_orth's Gram matrix
  uses every rank's pooled features (:func:`rows_with_local_grad`: the other ranks' rows
  are constants, so each rank gets exactly the one-process gradient for its own images),
  and the batch means (L_inv, the residual floor) are scaled by B/N / B;
- the student is wrapped in :class:`torch.nn.parallel.DistributedDataParallel`: its
  gradients are all-reduced (averaged over equal shares = the gradient of the global
  batch's mean L1);
- rank 0 alone writes states and results, the others wait at a barrier. The state holds
  the *global* dreamed batch (the shares gathered) and is the same file a one-process run
  writes, so a run can resume with another number of processes (with the same B).

So an N-process run computes the one-process run over the same global batch, up to the
order of float sums (tests/test_distributed.py: 2 processes vs 1 on CPU with gloo).
Only single-node runs are tested (resume reads the state from rank 0's disk).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "torchrun_env", "active", "rank", "world_size", "local_rank", "is_main", "barrier",
           "broadcast_object", "BatchShare", "batch_share", "gather_rows", "rows_with_local_grad",
           "all_reduce_sum", "shutdown"]

#: How long a collective waits for the other ranks (rank 0 evaluates while the others wait).
TIMEOUT = datetime.timedelta(hours=3)


def torchrun_env() -> bool:
    """True when this process was started by ``torchrun`` (or ``torch.distributed.run``) with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment variables; False when there is none.

    ``backend``: default ``nccl`` when CUDA is available (and ``cuda:LOCAL_RANK`` becomes this
    process's device), else ``gloo``. Calling it again is harmless.
    """
    if not torchrun_env():
        return False
    if dist.is_initialized():
        return True
    cuda = torch.cuda.is_available() and os.environ.get("DREAMLIB_DEVICE", "cuda").startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"), timeout=TIMEOUT)
    return True


def active() -> bool:
    """A process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or no process group): the process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (any picklable value)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class BatchShare:
    """Rows ``lo:hi`` of a global batch of ``total`` images, the share of rank ``rank`` of ``world``."""

    rank: int
    world: int
    total: int

    @property
    def n(self) -> int:
        return self.total // self.world

    @property
    def lo(self) -> int:
        return self.rank * self.n

    @property
    def hi(self) -> int:
        return self.lo + self.n

    @property
    def frac(self) -> float:
        """n / total: scales a mean over this share into its part of the global mean."""
        return self.n / self.total

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """This share's rows of a global (total, ...) tensor."""
        return t[self.lo:self.hi]


def batch_share(total: int) -> BatchShare | None:
    """This rank's share of a global batch of ``total`` images; ``None`` without a process group.

    Raises ValueError (one line, with the fix) when ``total`` does not split evenly.
    """
    if not active():
        return None
    w = world_size()
    if total % w:
        lo, hi = total - total % w, total - total % w + w
        raise ValueError(f"batch_size {total} does not split evenly over {w} processes: use a multiple of {w} "
                         f"(e.g. {lo or w} or {hi}) or a --nproc_per_node that divides {total}")
    return BatchShare(rank(), w, total)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (equal shapes) concatenated along dim 0 in rank order; no gradient."""
    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    return torch.cat(parts, 0)


def rows_with_local_grad(t: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_rows`, but this rank's own rows are ``t`` itself, so gradients flow to them.

    A loss computed identically on every rank from the result differentiates, on each rank,
    into exactly the global loss's gradient for that rank's rows (the others are constants).
    """
    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    parts[rank()] = t
    return torch.cat(parts, 0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``t`` (a new tensor; ``t`` is unchanged)."""
    if not active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
