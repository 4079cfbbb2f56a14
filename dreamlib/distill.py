"""One-stage dreaming and distillation (paper Sec. 3.2 Eq. 6 and Sec. 3.4 Eq. 7).

The pruned student S learns from the teacher T on images dreamed *while* it
learns. Every step:

1. one teacher forward on the current dreamed batch x (``Dreamer.step``): its loss
   L_inv + lambda_orth * L_orth updates x (Adam, lr 5e-2);
2. that same forward's output T(x), detached, is the distillation target: the
   student is updated on the same input with

       L_KD = lambda_KD * | T(x) - S(x) |_1                                (Eq. 6)

   (Adam, lr 1e-4). The teacher never runs twice per step.

A batch starts from uniform noise with fresh clean targets every
``reinit_every`` steps (default 600: the paper's 3 epochs x 600 iterations
are read as 3 batches, each dreamed for 600 iterations while the student
learns from every intermediate x). Pruned weights stay zero: the student's
masks are ``torch.nn.utils.prune`` masks, gradients only reach ``weight_orig``.

>>> from dreamlib.distill import DistillConfig, distill
>>> student, log = distill(teacher, pruned, DistillConfig(steps=300, batch_size=8, crop=64))

Ablation and Fig. 1 switches (:class:`DistillConfig`):

- ``source="dream"`` (default) the paper's method; ``"noise"``: the student learns
  on fresh uniform noise (undreamed); ``"self"``: on "self-collected" rainy images
  of one kind (``self_kind``, e.g. ``light``) made from the clean targets, with
  the teacher's outputs as pseudo-labels;
- ``lambda_orth=0``: no L_orth; ``kd=False``: dream only (the student is not
  updated; for the Fig. 6 "+AP" bar, and to time the dreaming alone).

Long runs write the whole state (student, its optimiser, the dreamed batch and
its optimiser, RNG states, log) atomically every ``checkpoint_every`` steps;
``resume=True`` continues exactly, and refuses a state made with another
configuration.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .dream import Dreamer, batch_psnr, frozen, make_targets
from .guards import check_loss, check_positive_int, check_setting, check_weights
from .io import atomic_torch_save
from .models import restore

__all__ = ["DistillConfig", "DreamDistiller", "distill", "ResumeMismatchError", "SOURCES"]

#: Where the student's training inputs come from.
SOURCES = ("dream", "noise", "self")
_STATE_FORMAT = "dreamlib-distill-state-1"


class ResumeMismatchError(ValueError):
    """``resume=True`` with a configuration different from the saved state's."""


@dataclass
class DistillConfig:
    """Settings of :func:`distill` (paper defaults; quick mode shrinks steps, batch and crop).

    Attributes:
        steps: total iterations (paper: 3 x 600).
        reinit_every: new noise and new clean targets every N steps.
        batch_size, crop: dreamed batch B x 3 x crop x crop (paper: 20, 256).
        lr_x, lambda_orth, orth_schedule: the dreaming (see :class:`dreamlib.dream.Dreamer`);
            ``orth_schedule="cosine"`` anneals lambda_orth within each batch.
        lr_student, lambda_kd: the student's Adam rate and the L_KD weight (paper: 1e-4, 1.0).
        kd: update the student (False: dream only).
        source: ``dream``, ``noise`` or ``self`` (see the module docstring).
        self_kind: rain kind of the self-collected data.
        seed: targets, noise and priors all derive from it.
        amp: the older switch: CUDA fp16 autocast for the student only (ignored on CPU); kept so
            that older configs and states run as before. Use ``precision`` instead.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: autocast of the teacher's
            forward in dreaming and of the student's forward (:mod:`dreamlib.memory`), on CUDA
            and on CPU. The dreamed images, the losses and both optimisers stay fp32; fp16
            scales both backwards (GradScaler). bf16 is the one to use on a GPU that has it:
            see ``results/gpu/`` for its measured effect.
        checkpoint_teacher: recompute the teacher's activations during the backward to x
            instead of storing them (:func:`dreamlib.memory.checkpointed`): same results, less
            memory, about one more teacher forward per step. It may differ on resume.
        checkpoint_student: the same for the student's forward in distillation. The student
            keeps as much per image for its backward as the teacher (plus its masked weights),
            so either switch alone leaves the other phase at the peak: use both
            (results/gpu/bench_gpu_cpu.md). It may differ on resume.
        residual_floor, lambda_res: beyond the paper, the dreams' residual floor (see
            :mod:`dreamlib.dream`); ``None`` = the paper's plain Eq. 5.
        freeze_bn: keep the student's BatchNorm layers in eval mode (the teacher's running
            statistics) while its weights train. Dreamed images do not have the statistics of
            real rainy images, and letting them overwrite the running means cost the small DuRN
            (the only network here with BatchNorm) more than 1.5 dB on the raindrop sets.
            No effect on HINet, MPRNet and AGAN. (A state saved before this option existed
            resumes under the current setting.)
    """

    steps: int = 1800
    reinit_every: int = 600
    batch_size: int = 20
    crop: int = 256
    lr_x: float = 5e-2
    lambda_orth: float = 0.05
    orth_schedule: str | None = None
    lr_student: float = 1e-4
    lambda_kd: float = 1.0
    kd: bool = True
    source: str = "dream"
    self_kind: str = "light"
    seed: int = 0
    amp: bool = False
    precision: str = "fp32"
    checkpoint_teacher: bool = False
    checkpoint_student: bool = False
    freeze_bn: bool = True
    residual_floor: float | None = None
    lambda_res: float = 1.0

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        from .memory import check_precision

        check_precision(self.precision)
        if self.amp and self.precision != "fp32":
            raise ValueError(f"amp (the older fp16-student switch) and precision {self.precision!r} are both set: "
                             "keep precision only (amp: false)")
        for name in ("steps", "reinit_every", "batch_size", "crop"):
            check_positive_int(name, getattr(self, name))
        for name, positive in (("lr_x", True), ("lr_student", True), ("lambda_orth", False), ("lambda_kd", False),
                               ("lambda_res", False)):
            check_setting(name, getattr(self, name), positive=positive)
        if self.source == "self":
            from .data.rain import RAIN_TYPES

            if self.self_kind not in RAIN_TYPES:
                raise ValueError(f"unknown self_kind {self.self_kind!r}; choose one of {', '.join(RAIN_TYPES)}")

    @classmethod
    def quick(cls, **overrides) -> "DistillConfig":
        """Paper settings in full mode; small ones (60 steps, 4 x 64 px) in quick mode."""
        base = {} if not settings.QUICK else dict(steps=60, reinit_every=30, batch_size=4, crop=64)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class DistillStep:
    """What one :meth:`DreamDistiller.step` did (floats; NaN where a term is off)."""

    step: int
    l_kd: float
    l_inv: float
    l_orth: float
    psnr_teacher: float  # T(x) vs the clean targets (dream source only), dB
    psnr_student: float  # S(x) vs T(x) before the update, dB


class DreamDistiller:
    """The one-stage loop as an object: call :meth:`step` (or use :func:`distill`).

    Args:
        teacher: frozen inside each step, never updated.
        student: the pruned copy (masks from :mod:`dreamlib.prune`); trained in place.
        config: :class:`DistillConfig`.
        images: ``{name: (H,W,3) array}`` clean pictures for the targets (default: the
            dream-role samples).

    Inside a process group (``torchrun``, :mod:`dreamlib.distributed`) each process trains on
    its share of the global batch (``self.share``; ``self.targets`` and ``self.batch`` hold its
    rows) and the student is wrapped in DistributedDataParallel (``self.model``); the logged
    numbers are global and :meth:`state_dict` gathers the whole batch (a collective: every
    process calls it).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, config: DistillConfig, images: dict | None = None):
        from . import distributed
        from .memory import autocast, grad_scaler
        from .spec import unwrap

        teacher, student = unwrap(teacher), unwrap(student)
        self.teacher, self.student, self.cfg = teacher, student, config
        self.device = next(student.parameters()).device
        self.images = images
        self.share = distributed.batch_share(config.batch_size)  # None: one process
        self.model = student  # what the forward calls: the student, or its DDP wrapper
        if self.share is not None:
            import inspect

            from torch.nn.parallel import DistributedDataParallel as DDP

            # DDP copies rank 0's weights and buffers (masks) to every rank, then averages gradients;
            # with frozen BatchNorm no buffer changes, so none is sent again at each forward
            sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
                else "broadcast_buffers"  # the older name (torch < 2.13)
            self.model = DDP(student, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                             **{sync: not config.freeze_bn})
        self.optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=config.lr_student)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.t = 0
        self.dreamer: Dreamer | None = None
        self.batch = None  # current input batch for the noise / self sources
        self.targets = None
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        # the student's autocast: the older amp switch (CUDA fp16), else the precision setting
        self.student_precision = "fp16" if self.use_amp else config.precision
        self._autocast = lambda: autocast(self.device, self.student_precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else grad_scaler(self.device, config.precision)

    # ---------------------------------------------------------------- batches
    def _new_batch(self) -> None:
        """Fresh clean targets and, for dreaming, a fresh Dreamer starting from noise."""
        cfg, k = self.cfg, self.t // self.cfg.reinit_every
        self.targets = make_targets(cfg.batch_size, cfg.crop, seed=cfg.seed * 1009 + k, images=self.images)
        self.targets = self._rows(self.targets).to(self.device)
        if cfg.source == "dream":
            self.dreamer = self._make_dreamer(k)
        elif cfg.source == "self":
            from .data.rain import synthesize

            clean = self.targets.permute(0, 2, 3, 1).cpu().numpy()
            lo = self.share.lo if self.share is not None else 0  # the seeds follow the global index
            rainy = [synthesize(c, cfg.self_kind, seed=cfg.seed * 7919 + k * 131 + lo + i)
                     for i, c in enumerate(clean)]
            self.batch = torch.from_numpy(np.stack(rainy)).permute(0, 3, 1, 2).float().to(self.device)

    def _rows(self, t):
        """This process's rows of a global batch tensor (all of it in one process)."""
        return t if self.share is None or t is None else self.share.rows(t)

    def _gather(self, t):
        """The global batch from every process's rows (a collective)."""
        from . import distributed

        return t if self.share is None or t is None else distributed.gather_rows(t)

    def _make_dreamer(self, k: int) -> Dreamer:
        """The Dreamer of batch ``k`` (its noise and priors seeded from the config seed and k)."""
        cfg = self.cfg
        return Dreamer(self.teacher, self.targets, lr=cfg.lr_x, lambda_orth=cfg.lambda_orth,
                       orth_schedule=cfg.orth_schedule, total_steps=cfg.reinit_every,
                       residual_floor=cfg.residual_floor, lambda_res=cfg.lambda_res,
                       seed=cfg.seed * 7919 + k, device=self.device, precision=cfg.precision,
                       checkpoint=cfg.checkpoint_teacher, share=self.share)

    def _inputs(self):
        """(student input, teacher output, dreaming record or None) for this step: one teacher forward."""
        if self.cfg.source == "dream":
            rec = self.dreamer.step()
            return rec.teacher_in, rec.teacher_out, rec
        from .memory import autocast

        if self.cfg.source == "noise":  # undreamed: new noise every step (the global batch's, this share's rows)
            shape = (self.cfg.batch_size,) + tuple(self.targets.shape[1:])
            x = self._rows(torch.rand(shape, generator=self.gen)).to(self.device)
        else:
            x = self.batch
        with torch.no_grad(), frozen(self.teacher), autocast(self.device, self.cfg.precision):
            return x, restore(self.teacher, x).float(), None

    # ---------------------------------------------------------------- one step
    def step(self) -> DistillStep:
        from .memory import checkpointed

        if self.t % self.cfg.reinit_every == 0 or self.targets is None:
            self._new_batch()
        x, t_out, rec = self._inputs()
        l_kd, psnr_s = float("nan"), float("nan")
        if self.cfg.kd:
            self.student.train()
            if self.cfg.freeze_bn:
                for m in self.student.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
            with self._autocast(), checkpointed(self.student, self.cfg.checkpoint_student):
                s_out = restore(self.model, x.detach())
                loss = self.cfg.lambda_kd * F.l1_loss(s_out.float(), t_out.detach())
            l_kd, psnr_s = float(loss.detach()), batch_psnr(s_out.detach().float(), t_out)
            if self.share is not None:  # the global batch's numbers (DDP averages the gradients alike)
                from . import distributed

                both = torch.tensor([l_kd, psnr_s], dtype=torch.float64, device=self.device)
                l_kd, psnr_s = (distributed.all_reduce_sum(both) / self.share.world).tolist()
            check_loss(l_kd, what="the distillation loss L_KD", step=self.t,
                       hint="the student diverged: lower lr_student (the paper's 1e-4) or lambda_kd")
            self.optimizer.zero_grad(set_to_none=True)
            from .memory import backward_step

            backward_step(loss, self.optimizer, self.scaler)
        out = DistillStep(step=self.t, l_kd=l_kd, l_inv=rec.l_inv if rec else float("nan"),
                          l_orth=rec.l_orth if rec else float("nan"), psnr_teacher=rec.psnr if rec else float("nan"),
                          psnr_student=psnr_s)
        self.t += 1
        return out

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """The whole state; in a process group the global batch (every process must call it)."""
        d = self.dreamer
        return {
            "format": _STATE_FORMAT, "config": self.cfg.to_dict(), "t": self.t,
            "student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
            "gen": self.gen.get_state(), "targets": self._gather(self.targets), "batch": self._gather(self.batch),
            "dreamer": None if d is None else self._batch_tensors(d.state_dict(), self._gather),
            "scaler": self.scaler.state_dict() if self.scaler else None,
        }

    def _batch_tensors(self, obj, fn):
        """``obj`` (nested dicts/lists) with ``fn`` applied to every tensor that has the batch as
        dim 0 (the dreamed x and its Adam moments); one process: ``obj`` as it is."""
        if self.share is None:
            return obj
        n = self.share.n if fn == self._gather else self.share.total
        if isinstance(obj, dict):
            return {k: self._batch_tensors(v, fn) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._batch_tensors(v, fn) for v in obj)
        if isinstance(obj, torch.Tensor) and obj.dim() == 4 and obj.shape[0] == n:
            return fn(obj.to(self.device))
        return obj

    def load_state_dict(self, st: dict) -> None:
        if st.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a dreamlib distillation state (format {st.get('format')!r})")
        # checkpointing changes memory, not results: it may differ on resume. ``steps`` may grow: the
        # student's rate is constant and every batch is seeded by its index, so a finished shorter run
        # continued to more steps is exactly the longer run
        longer = st["config"].get("steps") is not None and self.cfg.steps >= st["t"]
        diff = {k: (v, self.cfg.to_dict().get(k)) for k, v in st["config"].items()
                if self.cfg.to_dict().get(k) != v and k not in ("checkpoint_teacher", "checkpoint_student")
                and not (k == "steps" and longer)}
        if diff:
            raise ResumeMismatchError("the saved state was made with another configuration: " +
                                      ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items()) +
                                      "; use the same settings or start afresh (resume=False)")
        self.student.load_state_dict(st["student"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.gen.set_state(st["gen"])
        self.t = st["t"]
        self.targets = None if st["targets"] is None else self._rows(st["targets"]).to(self.device)
        self.batch = None if st["batch"] is None else self._rows(st["batch"]).to(self.device)
        if st["dreamer"] is not None:
            self.dreamer = self._make_dreamer((self.t - 1) // self.cfg.reinit_every)
            self.dreamer.load_state_dict(self._batch_tensors(st["dreamer"], self._rows))
        if self.scaler and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])


@dataclass
class DistillLog:
    """Per-step lists (``step, l_kd, l_inv, l_orth, psnr_teacher, psnr_student``) and the wall time (s)."""

    rows: dict = field(default_factory=lambda: {k: [] for k in ("step", "l_kd", "l_inv", "l_orth",
                                                                  "psnr_teacher", "psnr_student")})
    seconds: float = 0.0

    def add(self, rec: DistillStep) -> None:
        for k in self.rows:
            self.rows[k].append(getattr(rec, k))


def distill(teacher: nn.Module, student: nn.Module, config: DistillConfig | None = None, *, images: dict | None = None,
            state_path=None, checkpoint_every: int = 100, resume: bool = False, stop_at: int | None = None,
            callback=None, progress: bool = True, fingerprint: dict | None = None):
    """Run the one-stage loop for ``config.steps`` steps; returns ``(student, DistillLog)``.

    Args:
        state_path: where the training state is written every ``checkpoint_every`` steps
            (atomically) and at the end; ``None`` = no checkpoints.
        resume: continue from ``state_path``. Only the same run continues: the state records
            the configuration and a fingerprint (a hash of the teacher's weights, a hash of the
            pruned student it started from, masks included, and the caller's ``fingerprint``
            fields, e.g. the MACs target and the data); any difference raises
            :class:`ResumeMismatchError` naming the field.
        fingerprint: extra ``{field: value}`` (plain values) that must match on resume.
        stop_at: stop after this step (the state is written; resume later).
        callback: ``callback(step_record, distiller)`` after every step (live plots).

    Under ``torchrun`` (a process group, :mod:`dreamlib.distributed`) every process calls it:
    each trains on its share of the batch, rank 0 alone writes the state (the global batch,
    the same file as a one-process run) and shows the progress bar; every process reads the
    state on resume. CUDA running out of memory in a step raises
    :class:`dreamlib.memory.DistillOutOfMemoryError` (one line: a smaller batch, bf16,
    teacher checkpointing, more GPUs).
    """
    from tqdm.auto import tqdm

    from .models.checkpoint import safe_load
    from .provenance import fingerprint_diff, module_hash

    from .spec import unwrap

    from . import distributed
    from .memory import DistillOutOfMemoryError, oom_message

    teacher, student = unwrap(teacher), unwrap(student)
    cfg = config or DistillConfig.quick()
    runner = DreamDistiller(teacher, student, cfg, images)  # in a process group: rank 0's student on every rank
    main = distributed.is_main()
    progress = progress and main
    # what this run is: the state is only continued by the same teacher, start and settings
    prints = {"teacher": module_hash(teacher), "student_start": module_hash(student), **(fingerprint or {})}
    log = DistillLog()
    state_path = Path(state_path) if state_path else None
    if resume:
        if state_path is None or not state_path.is_file():
            raise FileNotFoundError(f"resume=True but there is no state at {state_path}")
        st = safe_load(state_path)
        if "fingerprint" not in st:
            raise ResumeMismatchError(f"{state_path} was written by an older dreamlib that did not record which "
                                      "teacher and student it belongs to; it cannot be continued safely: run "
                                      "without --resume into a new folder")
        diff = fingerprint_diff(st.get("fingerprint"), prints)
        if diff:
            what = {"teacher": "another teacher (its weights differ)",
                    "student_start": "another pruned student (other masks: a different target, method or X)"}
            raise ResumeMismatchError(
                f"{state_path} belongs to another run: " + "; ".join(
                    f"{k} differs" + (f" ({what[k]})" if k in what else
                                      f" (saved {(st.get('fingerprint') or {}).get(k)!r}, now {prints[k]!r})")
                    for k in diff) + "; run without --resume into a new folder, or restore the original settings")
        runner.load_state_dict(st)
        log.rows = st["log"]
        log.seconds = st["seconds"]

    def save():
        # a diverged student is never written as a state to resume from
        check_weights(student, what="the student", step=runner.t,
                      hint="the student diverged: lower lr_student (the paper's 1e-4) or lambda_kd")
        if state_path is not None:
            st = runner.state_dict()  # a collective in a process group: every rank gathers
            if main:
                atomic_torch_save({**st, "fingerprint": prints, "log": log.rows, "seconds": log.seconds}, state_path)
            distributed.barrier()  # nobody reads a half-written state

    end = min(cfg.steps, stop_at) if stop_at else cfg.steps
    bar = tqdm(total=cfg.steps, initial=runner.t, desc="dream+distill", disable=not progress)
    t0 = time.perf_counter() - log.seconds
    try:
        while runner.t < end:
            try:
                rec = runner.step()
            except torch.cuda.OutOfMemoryError as e:
                share = runner.share
                raise DistillOutOfMemoryError(oom_message(
                    batch_size=cfg.batch_size, per_process=share.n if share else cfg.batch_size, crop=cfg.crop,
                    precision=runner.student_precision if cfg.amp else cfg.precision,
                    checkpoint_teacher=cfg.checkpoint_teacher, checkpoint_student=cfg.checkpoint_student,
                    world=share.world if share else 1, step=runner.t, error=e, device=runner.device)) from None
            log.add(rec)
            log.seconds = time.perf_counter() - t0
            bar.update()
            bar.set_postfix(L_KD=f"{rec.l_kd:.4f}", L_inv=f"{rec.l_inv:.4f}", T_psnr=f"{rec.psnr_teacher:.1f}",
                            S_psnr=f"{rec.psnr_student:.1f}")
            if callback is not None:
                callback(rec, runner)
            if checkpoint_every and runner.t % checkpoint_every == 0:
                save()
    finally:
        bar.close()
    save()
    student.eval()
    return student, log
