"""Dreaming rainy images by inverting a frozen deraining teacher (paper Sec. 3.2, Eqs. 3-5).

Given a pre-trained teacher T and a batch of clean targets y (crops of the
"collected clean images", ``load_samples("dream")``), optimise a batch x that
starts as noise so that the teacher derains it into y::

    min_x  L_inv(T, x, y) + lambda_orth * L_orth(x)                     (Eq. 3 / 5)
    L_inv  = | T(x) - y |_1                       (mean absolute error)
    L_orth = || F F^T - I ||_F                                           (Eq. 4)

where F (B x C) holds the teacher's deep features of the batch (the model's
:func:`~dreamlib.models.feature_layer`), global-average-pooled and L2-normalised
per image. L_orth pushes the B images towards mutually orthogonal degradation
representations, i.e. different kinds of rain (Fig. 7).

>>> from dreamlib.dream import dream, make_targets
>>> y = make_targets(batch_size=8, crop=64, seed=0)
>>> result = dream(teacher, y, steps=300)
>>> result.x            # (8, 3, 64, 64) dreamed rainy images in [0, 1]
>>> result.log["psnr"]  # teacher-output PSNR vs y per step (dB)

The module reads top to bottom: the loss (:func:`orthogonality_loss`), optional
DeepInversion priors (:class:`Priors`), one optimisation step
(:class:`Dreamer`, returning a :class:`DreamStep`), the loop (:func:`dream`),
the targets (:func:`make_targets`) and the Fig. 7 measure (:func:`diversity`).

Beyond the paper (off by default, labelled so): a **residual floor**. For a
residual restoration network the easiest solution of ``T(x) = y`` is ``x = y``:
the dream then carries no degradation at all (measured: the small DuRN changes
0.00 % of its plain-Eq. 5 dreams by more than 30/255) and cannot tell which modules
matter. ``residual_floor=r`` adds ``lambda_res * mean_b relu(r - mean|T(x_b) - x_b|)``,
which asks every dreamed image to be changed by the teacher by at least ``r`` on
average (0-1 units) while L_inv still asks the change to end at y: x must carry
something the teacher removes. :func:`teacher_change` measures how much a teacher
changes a batch (the coverage reported by the runners).

The teacher runs once per step. :meth:`Dreamer.step` hands out that forward's
input and output (detached) so the distillation branch (Eq. 6) can train a
student on ``(step.teacher_in, step.teacher_out)`` without a second teacher pass.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .guards import check_loss, check_setting
from .models import feature_layer as default_feature_layer
from .models import restore
from .observe import extract_features, layer_output, pool_features
from .spec import unwrap

__all__ = [
    "orthogonality_loss", "Priors", "DreamStep", "Dreamer", "DreamResult", "dream",
    "make_targets", "diversity", "batch_psnr", "frozen", "teacher_change", "CHANGE_THRESHOLD",
]


# ------------------------------------------------------------------ Eq. 4

def orthogonality_loss(features: torch.Tensor) -> torch.Tensor:
    """L_orth = ||F F^T - I||_F (Eq. 4), F = row-wise L2-normalised pooled features.

    ``features`` is (B, C, H, W) (global-average-pooled first) or (B, C) (used as
    is). With every row normalised the diagonal of F F^T is 1, so the loss is the
    Frobenius norm of the off-diagonal cosine similarities: 0 for orthonormal
    rows, sqrt(B(B-1)) for B identical rows (4 rows: sqrt(12)). Note that rows
    can only all be orthogonal when B <= C.
    """
    f = F.normalize(pool_features(features).float(), dim=1)
    gram = f @ f.t()
    eye = torch.eye(len(f), device=f.device, dtype=f.dtype)
    return torch.linalg.matrix_norm(gram - eye, ord="fro")


# ------------------------------------------------------------------ optional DeepInversion priors

@dataclass
class Priors:
    """DeepInversion habits (REFERENCE.md Sec. 6), all off by default.

    - ``jitter``: each step, roll x by a random (dy, dx) in [-jitter, jitter]
      pixels (``torch.roll``) before the teacher; the target is rolled the same
      way, which is the same as undoing the roll on the output.
    - ``flip``: each step, flip x (and the target) horizontally with probability 1/2.
    - ``tv``: weight of an anisotropic l1 total-variation prior on x (mean
      absolute difference of neighbouring pixels). Rain streaks have high TV, so
      this fights the very thing being dreamed; keep it small.
    - ``l2``: weight of ``mean((x - 0.5)^2)``, pulling pixels to mid-grey (the
      DeepInversion l2 prior, which acts on mean-subtracted images).

    Augmentations are drawn from the dreamer's own seeded generator.
    """

    jitter: int = 0
    flip: bool = False
    tv: float = 0.0
    l2: float = 0.0

    @property
    def augments(self) -> bool:
        return bool(self.jitter) or self.flip

    def augment(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        """The same random roll/flip applied to x and y."""
        if self.jitter:
            dy, dx = (int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,), generator=gen))
            x, y = torch.roll(x, (dy, dx), dims=(2, 3)), torch.roll(y, (dy, dx), dims=(2, 3))
        if self.flip and bool(torch.rand((), generator=gen) < 0.5):
            x, y = x.flip(3), y.flip(3)
        return x, y

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        loss = x.new_zeros(())
        if self.tv:
            tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
            loss = loss + self.tv * tv
        if self.l2:
            loss = loss + self.l2 * ((x - 0.5) ** 2).mean()
        return loss




def _priors(p) -> Priors:
    if p is None:
        return Priors()
    if isinstance(p, Priors):
        return p
    return Priors(**dict(p))


# ------------------------------------------------------------------ helpers

@contextmanager
def frozen(model: nn.Module):
    """Eval mode and ``requires_grad=False`` on every parameter, both restored on exit.

    Inside, gradients flow through the model to its *input* but no parameter
    gets a ``.grad``.
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)


def batch_psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over the batch of per-image PSNR (dB) on float RGB, peak 1: exactly
    :func:`dreamlib.metrics.psnr_torch`, the measure the pruning search compares with tp, so
    the dreaming and distillation logs speak the same dB. A log number; for reportable results
    use :mod:`dreamlib.metrics` (e.g. the ``basicsr`` convention)."""
    from .metrics import psnr_torch

    return psnr_torch(pred.detach(), target.detach())


#: Default threshold of :func:`teacher_change`, in 0-255 units.
CHANGE_THRESHOLD = 30.0


@torch.no_grad()
def teacher_change(teacher: nn.Module, x: torch.Tensor, threshold: float = CHANGE_THRESHOLD,
                   batch_size: int = 8) -> dict:
    """How much ``teacher`` changes the images ``x`` (B,3,H,W in [0, 1]): its "coverage".

    Returns ``{"changed_frac": fraction of pixels where |T(x) - x| > threshold/255 in
    some channel, "mean_abs": mean |T(x) - x| (0-1 units), "threshold": threshold}``.
    On dreamed images this says whether the dreams carry a degradation the teacher
    restores; on rainy test images it says how much restoring there is to do. Both
    outputs are clamped to [0, 1] first. Runs in chunks of ``batch_size`` images.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"teacher_change expects a (B,3,H,W) batch, got shape {tuple(x.shape)}")
    param = next(teacher.parameters())
    changed, total, abs_sum, n = 0.0, 0, 0.0, 0
    with frozen(teacher):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(param.device, param.dtype).clamp(0, 1)
            d = (restore(teacher, xb).clamp(0, 1) - xb).abs().float()
            changed += float((d.amax(1) > threshold / 255).sum())
            total += d.shape[0] * d.shape[2] * d.shape[3]
            abs_sum += float(d.sum())
            n += d.numel()
    return {"changed_frac": changed / total, "mean_abs": abs_sum / n, "threshold": float(threshold)}


# ------------------------------------------------------------------ one step

@dataclass
class DreamStep:
    """What one :meth:`Dreamer.step` computed (all tensors detached).

    ``x`` is the dreamed batch *before* this step's update, and ``teacher_out``
    is the teacher's output for ``teacher_in``, the tensor actually fed to it:
    ``teacher_in`` is ``x`` itself when no jitter/flip prior is on, otherwise its
    rolled/flipped version (and ``target`` is the equally transformed target).
    So ``(teacher_in, teacher_out)`` is a valid distillation pair, and
    ``restore(teacher, x)`` reproduces ``teacher_out`` when no augmentation is on.
    The updated batch is ``Dreamer.x`` after the call.
    """

    step: int
    x: torch.Tensor
    teacher_in: torch.Tensor
    teacher_out: torch.Tensor
    target: torch.Tensor
    features: torch.Tensor  # (B, C) pooled (not normalised) features of teacher_in
    l_inv: float
    l_orth: float
    l_res: float  # residual-floor penalty (0 when residual_floor is None)
    loss: float
    psnr: float  # batch_psnr(teacher_out, target): float RGB, dB
    lr: float
    lambda_orth: float


#: How x is kept a valid image, see Dreamer.
PARAMETERISATIONS = ("clamp", "sigmoid")


class Dreamer:
    """Stateful inversion of a frozen teacher: call :meth:`step` repeatedly.

    Args:
        teacher: any network dreamlib can describe (:func:`dreamlib.spec.spec_of`); frozen inside each
            step (eval mode, no parameter gradients), its state restored after.
        targets: (B, 3, H, W) clean images in [0, 1], fixed during optimisation.
        lr: Adam learning rate on x (paper: 5e-2).
        lambda_orth: weight of L_orth (paper: 0.05; 0 switches diversity off).
        feature_layer: module for L_orth; default the model's feature layer.
        init: ``"noise"`` (uniform [0, 1]), ``"gray"`` (0.5 plus 0.05 Gaussian
            noise) or a (B,3,H,W) tensor in [0, 1] (e.g. a previous batch, for a
            warm start).
        seed: seeds the initial noise and the prior augmentations (its own
            generator; the global RNG is not touched).
        priors: :class:`Priors` (or a dict of its fields); ``None`` = all off.
        param: how x stays in [0, 1]:

            - ``"clamp"`` (default): x is the parameter; after each Adam step it
              is clamped to [0, 1] (DeepInversion's habit). Adam then moves each
              pixel by about ``lr`` per step regardless of the gradient's scale,
              which is what the paper's lr = 5e-2 refers to, and pixels can sit
              exactly at 0 or 1 (saturated streaks).
            - ``"sigmoid"``: x = sigmoid(z) with z the parameter. Always valid and
              smooth, but the step in pixel space shrinks by sigmoid' <= 1/4 and
              vanishes near 0/1, so bright streaks converge slowly and the
              paper's lr no longer means the same thing.

            Measured on the shipped small HINet (B=8, 64 px, lambda 0.05, cosine
            lr, 300 steps): teacher-output PSNR 29.3 dB with clamp vs 28.3 dB
            with sigmoid, and sigmoid lags early (12.9 vs 24.0 dB after 30
            steps). Clamping is better and keeps the paper's meaning of lr.
        lr_schedule: ``None`` (constant, as the paper states) or ``"cosine"``
            (decay to ``lr * min_lr_ratio`` over ``total_steps``). With a constant
            5e-2, Adam keeps every pixel moving by ~lr, which puts a floor on
            the reachable PSNR; the cosine decay lets it settle.
        orth_schedule: ``None`` (constant ``lambda_orth``, the paper) or
            ``"cosine"``: ``lambda_orth`` decays to 0 over ``total_steps``. The
            orthogonality term keeps pushing x long after the rain style is set
            and leaves sparse large errors in T(x); annealing it lets the last
            steps polish L_inv. Shipped small HINet, B=8, 64 px, lr 5e-2: with a
            constant lambda 0.05 the output plateaus near 29.8 dB (float RGB;
            34.5 dB basicsr-Y) at 300 steps; annealed it passes 30 dB at step 64
            of 150 (36.6 dB at the end) while keeping most of the L_orth drop
            (5.2 vs 4.7 with constant lambda and 6.1 without L_orth; 7.5 = all
            rows identical). A constant lambda 0.02 behaves similarly.
        total_steps: needed by the cosine schedules.
        loss: ``"l1"`` (the paper's example) or ``"mse"`` for L_inv. MSE
            gradients are ~|error| times smaller, so L_orth dominates at the same
            lambda (rescale lambda_orth if you switch).
        residual_floor: beyond the paper, ``None`` (default, plain Eq. 5) or the
            least mean ``|T(x) - x|`` (0-1 units) asked of every dreamed image; see
            the module docstring.
        lambda_res: weight of the residual-floor penalty (default 1.0).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: autocast of the teacher's
            forward (:mod:`dreamlib.memory`). x, the losses and Adam stay fp32; fp16 scales the
            loss (a GradScaler) so that the gradients to x do not underflow.
        checkpoint: recompute the teacher's activations in the backward instead of storing
            them (:func:`dreamlib.memory.checkpointed`): the same gradients for less memory.
        share: a :class:`dreamlib.distributed.BatchShare`: this process dreams rows
            ``share.lo:share.hi`` of a global batch of ``share.total`` images (``targets``
            holds those rows only). The initial noise is drawn for the whole batch and cut,
            L_orth uses every process's features and the batch means are scaled by
            ``share.frac``, so each process follows exactly the one-process gradients of its
            rows. The logged losses and PSNR are global; the tensors of a :class:`DreamStep`
            are this process's rows. ``None``: one process.
    """

    def __init__(self, teacher: nn.Module, targets: torch.Tensor, *, lr: float = 5e-2, lambda_orth: float = 0.05,
                 feature_layer: str | None = None, init="noise", seed: int = 0, priors=None,
                 param: str = "clamp", lr_schedule: str | None = None, orth_schedule: str | None = None,
                 total_steps: int | None = None, min_lr_ratio: float = 0.02, loss: str = "l1",
                 residual_floor: float | None = None, lambda_res: float = 1.0, device=None,
                 precision: str = "fp32", checkpoint: bool = False, share=None):
        if targets.dim() != 4 or targets.shape[1] != 3:
            raise ValueError(f"targets must be (B,3,H,W), got {tuple(targets.shape)}")
        if param not in PARAMETERISATIONS:
            raise ValueError(f"param must be one of {PARAMETERISATIONS}, got {param!r}")
        for what, sched in (("lr_schedule", lr_schedule), ("orth_schedule", orth_schedule)):
            if sched not in (None, "cosine"):
                raise ValueError(f"{what} must be None or 'cosine', got {sched!r}")
            if sched == "cosine" and not total_steps:
                raise ValueError(f"{what}='cosine' needs total_steps")
        if loss not in ("l1", "mse"):
            raise ValueError(f"loss must be 'l1' or 'mse', got {loss!r}")
        if residual_floor is not None and not 0.0 < float(residual_floor) < 1.0:
            raise ValueError(f"residual_floor must be None or in (0, 1) (mean |T(x) - x|, 0-1 units), "
                             f"got {residual_floor}")
        check_setting("lambda_res", lambda_res)
        check_setting("lambda_orth", lambda_orth)
        check_setting("lr (the dreaming's learning rate)", lr, positive=True)
        from .memory import check_precision, grad_scaler

        self.precision, self.checkpoint = check_precision(precision), bool(checkpoint)
        if share is not None and share.n != len(targets):
            raise ValueError(f"share {share.lo}:{share.hi} of {share.total} images needs {share.n} targets, "
                             f"got {len(targets)}")
        self.share = share if share is not None and share.world > 1 else None
        self.residual_floor = None if residual_floor is None else float(residual_floor)
        self.lambda_res = float(lambda_res)
        teacher = unwrap(teacher)  # the hooks go on the network inside a DataParallel / compile wrapper
        self.teacher = teacher
        self.device = torch.device(device) if device is not None else next(teacher.parameters()).device
        self.y = targets.detach().to(self.device, torch.float32)
        self.layer = feature_layer or default_feature_layer(teacher)
        teacher.get_submodule(self.layer)  # fail early on a wrong name
        self.lr, self.lambda_orth, self.param = float(lr), float(lambda_orth), param
        self.lr_schedule, self.orth_schedule = lr_schedule, orth_schedule
        self.total_steps, self.min_lr_ratio = total_steps, float(min_lr_ratio)
        self.loss_fn = F.l1_loss if loss == "l1" else F.mse_loss
        self.priors = _priors(priors)
        self.gen = torch.Generator().manual_seed(int(seed))
        x0 = self._init(init)
        if param == "clamp":
            self.z = x0.clone().requires_grad_(True)
        else:
            self.z = torch.logit(x0.clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.z], lr=self.lr)
        self.scaler = grad_scaler(self.device, self.precision)
        self.t = 0

    def _init(self, init) -> torch.Tensor:
        shape = tuple(self.y.shape)
        if self.share is not None and not isinstance(init, torch.Tensor):
            # the whole batch's noise from the seed, this process's rows: those of a one-process run
            return self.share.rows(self._draw(init, (self.share.total,) + shape[1:]))
        if isinstance(init, torch.Tensor):
            if tuple(init.shape) != shape:
                raise ValueError(f"init tensor has shape {tuple(init.shape)}, targets {shape}")
            return init.detach().to(self.device, torch.float32).clamp(0, 1)
        return self._draw(init, shape)

    def _draw(self, init, shape) -> torch.Tensor:
        if init == "noise":
            x = torch.rand(shape, generator=self.gen)
        elif init == "gray":
            x = (0.5 + 0.05 * torch.randn(shape, generator=self.gen)).clamp(0, 1)
        else:
            raise ValueError(f"init must be 'noise', 'gray' or a tensor, got {init!r}")
        return x.to(self.device)

    def image(self) -> torch.Tensor:
        """The current batch as an image, differentiable w.r.t. the parameter."""
        return self.z if self.param == "clamp" else torch.sigmoid(self.z)

    @property
    def x(self) -> torch.Tensor:
        """The current dreamed batch (detached copy), in [0, 1]."""
        return self.image().detach().clone()

    def _cosine(self) -> float:
        """1 at the first step, 0 at step ``total_steps - 1`` (and after)."""
        frac = min(self.t / max(self.total_steps - 1, 1), 1.0)
        return 0.5 * (1 + math.cos(math.pi * frac))

    def current_lr(self) -> float:
        if self.lr_schedule != "cosine":
            return self.lr
        lo = self.lr * self.min_lr_ratio
        return lo + (self.lr - lo) * self._cosine()

    def current_lambda_orth(self) -> float:
        return self.lambda_orth * (self._cosine() if self.orth_schedule == "cosine" else 1.0)

    def step(self) -> DreamStep:
        """One Adam update of x; the teacher runs exactly once."""
        from . import distributed
        from .memory import autocast, backward_step, checkpointed

        lr, lam = self.current_lr(), self.current_lambda_orth()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = self.image()
        x_in, y_in = self.priors.augment(x, self.y, self.gen) if self.priors.augments else (x, self.y)
        share = self.share
        frac = share.frac if share is not None else 1.0
        # the backward stays inside `frozen`: checkpointed blocks are recomputed in eval mode
        with frozen(self.teacher):
            # 1. teacher forward (frozen) with the feature layer captured
            with checkpointed(self.teacher, self.checkpoint), layer_output(self.teacher, self.layer) as feat, \
                    autocast(self.device, self.precision):
                out = restore(self.teacher, x_in)
            out = out.float()  # a no-op in fp32; the losses are fp32
            features = pool_features(feat.value.float())
            # 2. losses: Eq. 5 (+ optional priors); with a share, batch means are this share's part
            l_inv = self.loss_fn(out, y_in) * frac if share is not None else self.loss_fn(out, y_in)
            l_orth = orthogonality_loss(distributed.rows_with_local_grad(features) if share is not None else features)
            loss = l_inv + lam * l_orth if lam else l_inv
            l_res = out.new_zeros(())
            if self.residual_floor is not None:  # beyond the paper: x must carry what the teacher removes
                change = (out - x_in).abs().flatten(1).mean(1)
                l_res = torch.relu(self.residual_floor - change).mean() * frac
                loss = loss + self.lambda_res * l_res
            penalty = self.priors.penalty(x) * frac if (self.priors.tv or self.priors.l2) else None
            if penalty is not None:
                loss = loss + penalty
            psnr = batch_psnr(out, y_in)
            if share is not None:  # the global numbers: sums of every share's part (one small all-reduce)
                parts = torch.stack([l_inv.detach(), l_res.detach(), torch.as_tensor(
                    0.0 if penalty is None else float(penalty.detach()), device=out.device),
                    torch.as_tensor(psnr * frac, device=out.device, dtype=out.dtype)]).float()
                g_inv, g_res, g_pen, psnr = distributed.all_reduce_sum(parts).tolist()
                total_loss = g_inv + (lam * float(l_orth.detach()) if lam else 0.0) + g_pen + \
                    (self.lambda_res * g_res if self.residual_floor is not None else 0.0)
            else:
                g_inv, g_res, total_loss = float(l_inv.detach()), float(l_res.detach()), float(loss.detach())
            check_loss(torch.as_tensor(total_loss), what=f"the dreaming loss (L_inv {g_inv:.4g}, L_orth "
                       f"{float(l_orth.detach()):.4g})", step=self.t,
                       hint="check the teacher's weights (a NaN weight), lambda_orth and the "
                            "dreaming learning rate (lr_x)")
            # 3. gradient step on x only
            self.optimizer.zero_grad(set_to_none=True)
            x_before = x.detach().clone()  # the clamp parameterisation updates x in place below
            backward_step(loss, self.optimizer, self.scaler)  # fp16: scaled, skipped on an overflow
        if self.param == "clamp":
            with torch.no_grad():
                self.z.clamp_(0.0, 1.0)
        rec = DreamStep(
            step=self.t, x=x_before,
            teacher_in=x_before if x_in is x else x_in.detach(),
            teacher_out=out.detach(), target=y_in, features=features.detach(),
            l_inv=g_inv, l_orth=float(l_orth.detach()), l_res=g_res, loss=total_loss,
            psnr=psnr, lr=lr, lambda_orth=lam)
        self.t += 1
        return rec

    def state_dict(self) -> dict:
        """What continues this dreaming exactly: the batch parameter, its optimiser, the RNG, the step."""
        st = {"z": self.z.detach().clone(), "optimizer": self.optimizer.state_dict(), "gen": self.gen.get_state(),
              "t": self.t}
        if self.scaler is not None:
            st["scaler"] = self.scaler.state_dict()
        return st

    def load_state_dict(self, st: dict) -> None:
        """Continue from :meth:`state_dict` (same teacher, targets and settings)."""
        if tuple(st["z"].shape) != tuple(self.z.shape):
            raise ValueError(f"dream state holds a batch of shape {tuple(st['z'].shape)}, this Dreamer "
                             f"{tuple(self.z.shape)}")
        with torch.no_grad():
            self.z.copy_(st["z"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.gen.set_state(st["gen"])
        self.t = int(st["t"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])

    @torch.no_grad()
    def evaluate(self) -> tuple[torch.Tensor, float, float]:
        """Teacher output, L_inv and PSNR for the *current* x (one extra no-grad forward)."""
        with frozen(self.teacher):
            out = restore(self.teacher, self.x)
        return out, float(self.loss_fn(out, self.y)), batch_psnr(out, self.y)


# ------------------------------------------------------------------ the loop

@dataclass
class DreamResult:
    """``x``: final dreamed batch; ``teacher_out``: T(x) for that final x; ``targets``: y;
    ``log``: per-step lists ``step, l_inv, l_orth, loss, psnr, lr, lambda_orth`` (each value is
    for the x *before* that step's update); ``final_psnr`` / ``final_l_inv``: for
    the returned x (float-RGB PSNR, see :func:`batch_psnr`)."""

    x: torch.Tensor
    teacher_out: torch.Tensor
    targets: torch.Tensor
    log: dict = field(default_factory=dict)
    final_psnr: float = float("nan")
    final_l_inv: float = float("nan")
    steps: int = 0


def dream(teacher: nn.Module, targets: torch.Tensor, *, steps: int | None = None, lr: float = 5e-2,
          lambda_orth: float = 0.05, feature_layer: str | None = None, init="noise", seed: int = 0,
          priors=None, param: str = "clamp", lr_schedule: str | None = None, orth_schedule: str | None = None,
          loss: str = "l1", residual_floor: float | None = None, lambda_res: float = 1.0,
          progress: bool = True, callback=None, device=None, precision: str = "fp32",
          checkpoint: bool = False) -> DreamResult:
    """Dream a batch of rainy images for ``targets`` (see :class:`Dreamer` for the arguments).

    ``steps`` defaults to 300 (30 in quick mode). ``callback(step: DreamStep)``
    is called after every step; if it returns ``True`` the loop stops early.
    Shows a tqdm bar with L_inv, L_orth and PSNR.

    Defaults are the paper's (Adam, constant lr 5e-2, constant lambda_orth
    0.05). For teacher outputs above 30 dB (float RGB) on the small teachers,
    add ``orth_schedule="cosine"`` (or use lambda_orth=0.02): e.g. 150 steps
    at B=8, 64 px give 36.6 dB on the shipped small HINet; see :class:`Dreamer`.
    """
    from tqdm.auto import tqdm

    steps = int(steps if steps is not None else settings.quick(300, 30))
    d = Dreamer(teacher, targets, lr=lr, lambda_orth=lambda_orth, feature_layer=feature_layer, init=init,
                seed=seed, priors=priors, param=param, lr_schedule=lr_schedule, orth_schedule=orth_schedule,
                total_steps=steps, loss=loss, residual_floor=residual_floor, lambda_res=lambda_res,
                device=device, precision=precision, checkpoint=checkpoint)
    log: dict[str, list] = {k: [] for k in ("step", "l_inv", "l_orth", "l_res", "loss", "psnr", "lr", "lambda_orth")}
    bar = tqdm(range(steps), desc="dreaming", disable=not progress, leave=False)
    try:
        for _ in bar:
            rec = d.step()
            for k in log:
                log[k].append(getattr(rec, k))
            bar.set_postfix(L_inv=f"{rec.l_inv:.4f}", L_orth=f"{rec.l_orth:.3f}", psnr=f"{rec.psnr:.2f}")
            if callback is not None and callback(rec) is True:
                break
    finally:
        bar.close()
    out, l_inv, psnr = d.evaluate()
    return DreamResult(x=d.x, teacher_out=out, targets=d.y, log=log, final_psnr=psnr, final_l_inv=l_inv,
                       steps=d.t)


# ------------------------------------------------------------------ targets

def make_targets(batch_size: int | None = None, crop: int | None = None, *, seed: int = 0,
                 repeat_one: bool = False, image: str | None = None, images: dict | None = None) -> torch.Tensor:
    """A (B, 3, S, S) batch of clean targets cut from the dream-role images.

    Args:
        batch_size: B (paper: 20; default 20, or 4 in quick mode).
        crop: S (paper: 256; default 256, or 64 in quick mode).
        seed: crop positions and image order are a deterministic function of it.
        repeat_one: Fig. 7 mode: one crop (from ``image`` or a seeded choice)
            repeated B times, so any diversity in the dreamed batch comes from the
            optimisation, not from the targets.
        image: name of the picture to use in ``repeat_one`` mode.
        images: ``{name: (H,W,3) float array}``; default ``load_samples("dream")``.

    Otherwise each target is a random crop; pictures are visited in a seeded
    random order and repeated when B exceeds their number.
    """
    from .data.samples import load_samples

    batch_size = int(settings.quick(20, 4) if batch_size is None else batch_size)  # None = default, never 0
    crop = int(settings.quick(256, 64) if crop is None else crop)
    if batch_size < 1 or crop < 1:
        raise ValueError(f"make_targets needs batch_size >= 1 and crop >= 1 px, got {batch_size} and {crop}")
    images = images if images is not None else load_samples("dream")
    names = sorted(images)
    if not names:
        raise ValueError("no target images")
    rng = np.random.default_rng([seed, 4242])

    def cut(name):
        im = images[name]
        h, w = im.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"image {name} is {h}x{w}, smaller than the {crop}px crop")
        top, left = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        return torch.from_numpy(np.ascontiguousarray(im[top:top + crop, left:left + crop])).permute(2, 0, 1)

    if repeat_one:
        if image is not None and image not in images:
            raise ValueError(f"unknown image {image!r}; choose one of {', '.join(names)}")
        one = cut(image if image is not None else names[int(rng.integers(len(names)))])
        return one[None].repeat(batch_size, 1, 1, 1).float()
    order = []
    while len(order) < batch_size:
        order += list(rng.permutation(len(names)))
    return torch.stack([cut(names[i]) for i in order[:batch_size]]).float()


# ------------------------------------------------------------------ Fig. 7: diversity

def _spectrum_descriptor(r: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """Translation-invariant description of rain layers (B,3,H,W) -> (B, bins*bins).

    Grey rain layer, mean removed, 2-D power spectrum (fftshifted), pooled to
    bins x bins and log-compressed. Streak orientation, length, width and density
    shape the spectrum; streak *positions* only change the phase, which is dropped.
    """
    g = r.mean(1)
    g = g - g.mean(dim=(1, 2), keepdim=True)
    p = torch.fft.fftshift(torch.fft.fft2(g).abs() ** 2, dim=(-2, -1)) / g[0].numel()
    p = F.adaptive_avg_pool2d(p[:, None], bins)[:, 0]
    return torch.log1p(p).flatten(1)


def diversity(x: torch.Tensor, y: torch.Tensor | None = None, *, teacher: nn.Module | None = None,
              layer: str | None = None, bins: int = 16) -> float:
    """Mean pairwise cosine distance within a dreamed batch (Fig. 7's "diversity").

    ``1 - cos(a_i, a_j)`` averaged over all pairs i < j of per-image descriptors
    ``a``: 0 when all images look alike, ~1 when their descriptors are orthogonal.

    - with ``teacher``: ``a`` = pooled features of ``layer`` (default its feature
      layer), the representation the paper says encodes rain type. Measured with
      the dreaming teacher this is what L_orth optimises, so it is partly
      circular; with *another* teacher (e.g. MPRNet for HINet-dreamed images,
      Fig. 8) it is an independent check.
    - without a teacher: ``a`` = power-spectrum descriptor of the rain layer
      ``x - y`` (``y`` required; see ``_spectrum_descriptor``). It ignores where
      streaks are and compares their orientation/length/width/density, so a
      batch of one rain style scores low even if streak positions differ. The
      left-over noise of the initialisation is white (flat spectrum) in every
      image and therefore counts as *similar*, not as diversity.
    """
    if len(x) < 2:
        raise ValueError("diversity needs at least 2 images")
    if teacher is not None:
        a = extract_features(teacher, layer, x, progress=False)
    else:
        if y is None:
            raise ValueError("give the targets y (rain-layer diversity) or a teacher (feature diversity)")
        a = _spectrum_descriptor(x.detach().float().cpu() - y.detach().float().cpu(), bins)
    a = F.normalize(a.float(), dim=1)
    sim = a @ a.t()
    iu = torch.triu_indices(len(a), len(a), offset=1)
    return float((1 - sim[iu[0], iu[1]]).mean())
