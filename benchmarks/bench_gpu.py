"""The paper's configuration on a GPU: time per dream+distill iteration, peak memory, largest batch for 16 GB.

    python benchmarks/bench_gpu.py                                   # CUDA: official HINet + MPRNet, B=20, 256 px
    python benchmarks/bench_gpu.py --out results/gpu/bench_gpu_cuda.md
    python benchmarks/bench_gpu.py --out results/gpu/bench_gpu_cpu.md # no CUDA: tiny timings + memory ESTIMATE
    python benchmarks/bench_gpu.py --tiny                            # seconds (CI): small HINet, tiny estimate

One iteration is :meth:`dreamlib.distill.DreamDistiller.step` (one teacher forward+backward to
the dreamed batch x, one student forward+backward and Adam steps) with random weights, the
student an l1-pruned copy (``weight_mask`` buffers, as the pipeline's students), for
``precision`` fp32 / bf16 (fp16 where the GPU has no bf16) and activation checkpointing
(:mod:`dreamlib.memory`) off, of the teacher, of the student, or of both.

**On CUDA** (official sizes, ``--batch`` 20 x 3 x 256 x 256): median seconds per iteration
after warm-up, ``torch.cuda.max_memory_allocated`` (GiB), the projected time of the paper's
1800 iterations, and the largest batch whose step fits in ``--budget-gib`` (default 14.0 GiB
of tensors: a "16 GB" Colab T4 reports 14.7 GiB to torch and the CUDA context takes some):
from a straight line through the peaks at B and B/2, then checked by running one step at
that batch under ``torch.cuda.set_per_process_memory_fraction`` (lowered by one until it fits).

**Without CUDA** it times a tiny variant (small HINet, batch 2, 32 px, 2 iterations) so that
it stays tested, and *estimates* the memory of the paper's batch: it counts the bytes of the
tensors autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``,
storages counted once, parameters and buffers excluded) in one teacher forward of the
dreaming step and one student forward of the distillation step, at batch 1 and 2 (so that
per-image activations and batch-independent saved tensors, e.g. the student's masked
weights, separate) and ``--estimate-crop`` 128 px, the per-image part scaled by the pixel
count to 256 px (counting at 256 px directly needs more host memory than the 2-core test
machine has for MPRNet; the scaling is checked once on HINet at 256 px, batch 1). With
checkpointing, a phase keeps what is saved outside the checkpointed blocks plus the blocks'
inputs, and recomputes one block at a time in the backward: + the largest block's saved
bytes. Estimated peak(B) = teacher parameters + student parameters x 4 (weights, gradients,
two Adam moments) + buffers (masks) + x per image x 6 (x, its gradient, two Adam moments,
target, teacher output) + max(teacher phase, student phase) + 2 x the largest saved tensor
(the backward's working gradients, an assumption). **Not included**: cuDNN workspaces, the
CUDA context, allocator fragmentation, and gradients of skip connections that wait in the
backward; CPU autocast casts a slightly different op list than CUDA's. So it is an estimate;
a GPU run of this script replaces it.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dreamlib import models  # noqa: E402
from dreamlib import prune as P  # noqa: E402
from dreamlib.distill import DistillConfig, DreamDistiller  # noqa: E402
from dreamlib.dream import frozen, orthogonality_loss  # noqa: E402
from dreamlib.memory import autocast, checkpoint_blocks, checkpointed  # noqa: E402
from dreamlib.observe import layer_output, pool_features  # noqa: E402

GIB = 2 ** 30
PAPER_STEPS = 1800
#: Activation checkpointing modes: (checkpoint_teacher, checkpoint_student).
MODES = {"off": (False, False), "teacher": (True, False), "student": (False, True), "both": (True, True)}


def build_pair(name: str, variant: str, device, seed: int = 0):
    """(teacher, student): random weights (seeded), the student an l1-pruned copy (40 % of the weights)."""
    torch.manual_seed(seed)
    teacher = models.build(name, variant).to(device).eval()
    student, _ = P.prune(teacher, "l1-uniform", sparsity=0.4)
    return teacher, student.to(device)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_step(teacher, student, *, batch: int, crop: int, precision: str, checkpoint: str, iters: int,
              warmup: int, device) -> dict:
    """Median seconds of ``iters`` DreamDistiller steps after ``warmup``, and the CUDA peak (bytes, else None).
    ``checkpoint``: a key of :data:`MODES`."""
    cuda = torch.device(device).type == "cuda"
    ck_t, ck_s = MODES[checkpoint]
    runner = DreamDistiller(teacher, P.copy_model(student), DistillConfig(
        steps=10 ** 6, reinit_every=10 ** 9, batch_size=batch, crop=crop, precision=precision,
        checkpoint_teacher=ck_t, checkpoint_student=ck_s))
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        runner.step()
    _sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        runner.step()
        _sync(device)
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    del runner
    return {"s_per_iter": statistics.median(times), "peak_bytes": peak}


# ------------------------------------------------------------------ the CPU memory estimate

class SavedBytes:
    """Bytes of the tensors autograd saves inside the ``with`` block, storages counted once,
    the ``exclude`` storages (parameters) left out; ``per_block`` attributes them to the
    block (:func:`checkpoint_blocks` of ``model``) that was running."""

    def __init__(self, exclude, model=None):
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.seen: dict[int, tuple[int, str | None]] = {}
        self.stack: list[str] = []
        self.model = model
        self.largest = 0

    def _pack(self, t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen[ptr] = (st.nbytes(), self.stack[-1] if self.stack else None)
            self.largest = max(self.largest, st.nbytes())
        return t

    def _enter_block(self, name):
        def hook(_module, _inputs):
            self.stack.append(name)  # returns None: the input is unchanged
        return hook

    def _leave_block(self, _module, _inputs, _output):
        self.stack.pop()  # returns None: the output is unchanged

    def __enter__(self):
        self.handles = []
        if self.model is not None:
            for name in checkpoint_blocks(self.model):
                m = self.model.get_submodule(name)
                self.handles.append(m.register_forward_pre_hook(self._enter_block(name)))
                self.handles.append(m.register_forward_hook(self._leave_block))
        self.ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)
        for h in self.handles:
            h.remove()

    @property
    def total(self) -> int:
        return sum(b for b, _ in self.seen.values())

    @property
    def max_block(self) -> int:
        per: dict[str, int] = {}
        for b, blk in self.seen.values():
            if blk is not None:
                per[blk] = per.get(blk, 0) + b
        return max(per.values(), default=0)


def phase_bytes(teacher, student, batch: int, crop: int, precision: str) -> dict:
    """Saved bytes of the dreaming step's teacher forward and of the distillation's student forward,
    each without and with checkpointing: ``{"teacher": {False: b, True: b}, "student": {...},
    "largest": bytes of the largest saved tensor}``."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, crop, crop, generator=g).requires_grad_(True)
    y = torch.rand(batch, 3, crop, crop, generator=g)
    # persistent tensors (weights, masks) are counted once, in `fixed`, not as saved activations
    keep = [*teacher.parameters(), *student.parameters(), *teacher.buffers(), *student.buffers()]
    layer = models.feature_layer(teacher)

    def teacher_forward(ckpt: bool):
        with frozen(teacher), checkpointed(teacher, ckpt), layer_output(teacher, layer) as feat, \
                autocast("cpu", precision):
            out = models.restore(teacher, x)
        loss = F.l1_loss(out.float(), y) + 0.05 * orthogonality_loss(pool_features(feat.value.float()))
        return out.detach().float(), loss

    def student_forward(ckpt: bool):
        student.train()
        with checkpointed(student, ckpt), autocast("cpu", precision):
            s_out = models.restore(student, x.detach())
        return F.l1_loss(s_out.float(), t_out)

    out = {"teacher": {}, "student": {}}
    with SavedBytes(keep, teacher) as plain:  # no checkpointing: the total, and what each block saves
        t_out, loss = teacher_forward(False)
    del loss
    with SavedBytes(keep) as ck:  # checkpointed: outside the blocks + the blocks' inputs
        _, loss = teacher_forward(True)
    del loss
    out["teacher"] = {False: plain.total, True: ck.total + plain.max_block}
    with SavedBytes(keep, student) as st:
        loss = student_forward(False)
    del loss
    with SavedBytes(keep) as ck:
        loss = student_forward(True)
    del loss
    out["student"] = {False: st.total, True: ck.total + st.max_block}
    out["largest"] = max(plain.largest, st.largest)
    return out


def estimate(name: str, variant: str, crop: int, precisions, budget_gib: float, batch: int,
             measure_crop: int | None = None, check_scaling: bool = False) -> list[dict]:
    """The memory estimate for ``name``/``variant`` at ``crop`` px (see the module docstring).

    The saved bytes are counted at ``measure_crop`` px (default ``crop``) and the per-image
    parts scaled by the pixel count (crop / measure_crop)^2: every activation of these fully
    convolutional networks has the input's spatial size up to a fixed factor. With
    ``check_scaling`` the fp32 phases are also counted once at ``crop`` px, batch 1, and the
    ratio measured / scaled is recorded (``scaling_check``)."""
    measure_crop = measure_crop or crop
    scale = (crop / measure_crop) ** 2
    teacher, student = build_pair(name, variant, "cpu")
    p_teacher = sum(p.numel() * p.element_size() for p in teacher.parameters())
    p_student = sum(p.numel() * p.element_size() for p in student.parameters())
    buffers = sum(b.numel() * b.element_size() for b in student.buffers())
    fixed = p_teacher + 4 * p_student + buffers
    x_per_image = 6 * 3 * crop * crop * 4
    rows = []
    for precision in precisions:
        b1 = phase_bytes(teacher, student, 1, measure_crop, precision)
        b2 = phase_bytes(teacher, student, 2, measure_crop, precision)
        work = (scale * (b2["largest"] - b1["largest"]), 2 * b1["largest"] - b2["largest"])  # (per image, fixed)
        check = None
        if check_scaling and precision == "fp32" and scale != 1:
            full = phase_bytes(teacher, student, 1, crop, precision)
            check = {k: full[k][False] / (scale * (b2[k][False] - b1[k][False]) + 2 * b1[k][False] - b2[k][False])
                     for k in ("teacher", "student")}
        for ckpt, (ck_t, ck_s) in MODES.items():
            flags = {"teacher": ck_t, "student": ck_s}
            # (per image, batch-independent) bytes of each phase: a line through batch 1 and 2
            lin = {k: (scale * (b2[k][flags[k]] - b1[k][flags[k]]), 2 * b1[k][flags[k]] - b2[k][flags[k]])
                   for k in flags}

            def peak(b):
                phase = max(lin[k][0] * b + lin[k][1] for k in lin)
                return fixed + b * x_per_image + phase + 2 * (work[0] * b + work[1])

            fit = 0
            while peak(fit + 1) <= budget_gib * GIB and fit < 10 ** 5:
                fit += 1
            rows.append({"model": name, "variant": variant, "crop": crop, "measure_crop": measure_crop,
                         "scaling_check": check, "precision": precision,
                         "checkpoint": ckpt, "params_teacher_M": sum(p.numel() for p in teacher.parameters()) / 1e6,
                         "fixed_gib": fixed / GIB,
                         "teacher_phase_gib_per_image": lin["teacher"][0] / GIB,
                         "student_phase_gib_per_image": lin["student"][0] / GIB,
                         "phase_fixed_gib": max(lin["teacher"][1], lin["student"][1]) / GIB,
                         "largest_saved_gib_per_image": work[0] / GIB,
                         "peak_gib": peak(batch) / GIB, "batch": batch, "largest_batch_in_budget": fit})
    return rows


# ------------------------------------------------------------------ CUDA: largest batch in the budget

def largest_batch_cuda(teacher, student, *, batch: int, crop: int, precision: str, checkpoint: str,
                       peaks: dict, budget_gib: float, device) -> int | None:
    """Straight line through the measured peaks ({batch: bytes}), then checked under a memory cap."""
    (b1, m1), (b2, m2) = sorted(peaks.items())[:2]
    slope = (m2 - m1) / (b2 - b1)
    guess = int((budget_gib * GIB - (m1 - slope * b1)) // slope)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget_gib * GIB / total), device)
    try:
        for b in range(guess, max(guess - 4, 0), -1):
            try:
                time_step(teacher, student, batch=b, crop=crop, precision=precision, checkpoint=checkpoint,
                          iters=1, warmup=0, device=device)
                return b
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
        return None
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ report

def markdown(report: dict) -> str:
    lines = [f"# bench_gpu ({report['mode']} mode, {report['device_name']})", "",
             f"Written by `{report['command']}` on {report['date']}: torch {report['torch']}, "
             f"{report['threads']} CPU thread(s). One iteration = `DreamDistiller.step` (teacher forward+backward "
             "to x, student forward+backward, Adam steps); random weights, the student an l1-pruned copy.", ""]
    if report["timings"]:
        lines += [f"## Seconds per dream+distill iteration ({report['timing_setting']})", "",
                  "| model | precision | checkpointing | s / iteration | 1800 iterations | peak GiB |",
                  "|---|---|---|---|---|---|"]
        for r in report["timings"]:
            peak = "OOM" if r.get("oom") else ("-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / GIB:.2f}")
            s = "-" if r.get("oom") else f"{r['s_per_iter']:.3f}"
            proj = "-" if r.get("oom") else f"{r['s_per_iter'] * PAPER_STEPS / 60:.1f} min"
            lines.append(f"| {r['model']} ({r['variant']}) | {r['precision']} | {r['checkpoint']} | {s} | {proj} | "
                         f"{peak} |")
        if any("largest_batch" in r for r in report["timings"]):
            lines += ["", f"Largest batch whose step fits in {report['budget_gib']:g} GiB (checked by running it): " +
                      ", ".join(f"{r['model']} {r['precision']} checkpointing {r['checkpoint']}: "
                                f"{r.get('largest_batch')}" for r in report["timings"]), ""]
        if report["device"] == "cpu":
            lines += ["", "These are CPU timings of a tiny setting, only so that the script stays tested; they say "
                      "nothing about a GPU."]
    if report["estimate"]:
        e0 = report["estimate"][0]
        lines += ["", f"## Memory ESTIMATE (no GPU measured) at {e0['crop']} x {e0['crop']}, batch {e0['batch']}",
                  "", f"Saved-for-backward bytes counted on CPU at batch 1 and 2 and {e0['measure_crop']} x "
                  f"{e0['measure_crop']} px, per-image bytes scaled by the pixel count to {e0['crop']} x {e0['crop']} "
                  "(see the docstring of benchmarks/bench_gpu.py and the note below for what is and is not "
                  "included).", ""]
        checks = [r for r in report["estimate"] if r.get("scaling_check")]
        if checks:
            c = checks[0]
            lines += [f"Scaling check ({c['model']}, fp32, no checkpointing, batch 1): saved bytes counted at "
                      f"{c['crop']} px / scaled from {c['measure_crop']} px = {c['scaling_check']['teacher']:.3f} "
                      f"(teacher phase), {c['scaling_check']['student']:.3f} (student phase).", ""]
        lines += [
                  f"| model | precision | checkpointing | fixed GiB | teacher phase GiB/image | "
                  f"student phase GiB/image | est. peak GiB at B={e0['batch']} | "
                  f"largest B in {report['budget_gib']:g} GiB |", "|---|---|---|---|---|---|---|---|"]
        for r in report["estimate"]:
            lines.append(f"| {r['model']} ({r['variant']}, {r['params_teacher_M']:.1f} M) | {r['precision']} | "
                         f"{r['checkpoint']} | {r['fixed_gib'] + r['phase_fixed_gib']:.3g} | "
                         f"{r['teacher_phase_gib_per_image']:.3g} | {r['student_phase_gib_per_image']:.3g} | "
                         f"{r['peak_gib']:.3g} | {r['largest_batch_in_budget']} |")
        lines += ["", "fixed = teacher weights + student weights, gradients and two Adam moments + masks + "
                  "batch-independent saved tensors (the student's masked weights). Estimated peak = fixed + "
                  "B x (the dreamed batch's tensors + the larger phase's GiB/image) + 2 x the largest saved "
                  "tensor (the backward's working gradients, assumed). The largest batch is the largest B whose "
                  "estimated peak stays within the budget. Not included: cuDNN workspaces, the CUDA context, "
                  "allocator fragmentation, and gradients of skip connections waiting in the backward; CPU "
                  "autocast casts a slightly different op list than CUDA's. An estimate, not a measurement: "
                  "no GPU was used."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="seconds-long CPU check (CI): small HINet, tiny estimate")
    ap.add_argument("--models", nargs="+", default=["hinet", "mprnet"])
    ap.add_argument("--batch", type=int, default=20, help="the paper's batch (default 20)")
    ap.add_argument("--crop", type=int, default=256, help="the paper's crop (default 256)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations after --warmup (CUDA)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--estimate-crop", type=int, default=128,
                    help="CPU estimate: count at this crop and scale per-image bytes to --crop (default 128: host RAM)")
    ap.add_argument("--budget-gib", type=float, default=14.0,
                    help="memory a '16 GB' GPU leaves for tensors (default 14.0 GiB: a Colab T4 reports 14.7 GiB)")
    ap.add_argument("--no-fit", action="store_true", help="CUDA: skip the largest-batch search")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", type=Path, default=None, help="write the report here (.md) and beside it (.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda") if cuda else torch.device("cpu")
    report = {"mode": "tiny" if args.tiny else ("cuda" if cuda else "cpu-estimate"),
              "device": device.type, "device_name": torch.cuda.get_device_name() if cuda else platform.processor()
              or "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"), "budget_gib": args.budget_gib,
              "command": "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "timings": [], "estimate": []}
    t_start = time.perf_counter()
    if cuda:
        low = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        report["timing_setting"] = f"batch {args.batch} x 3 x {args.crop} x {args.crop}, median of {args.iters}"
        for name in args.models:
            teacher, student = build_pair(name, "official", device)
            for precision in ("fp32", low):
                for ckpt in MODES:
                    row = {"model": name, "variant": "official", "precision": precision, "checkpoint": ckpt,
                           "batch": args.batch, "crop": args.crop}
                    try:
                        row.update(time_step(teacher, student, batch=args.batch, crop=args.crop, precision=precision,
                                             checkpoint=ckpt, iters=args.iters, warmup=args.warmup, device=device))
                        if not args.no_fit:
                            half = max(args.batch // 2, 1)
                            peaks = {args.batch: row["peak_bytes"],
                                     half: time_step(teacher, student, batch=half, crop=args.crop,
                                                     precision=precision, checkpoint=ckpt, iters=1, warmup=0,
                                                     device=device)["peak_bytes"]}
                            row["largest_batch"] = largest_batch_cuda(
                                teacher, student, batch=args.batch, crop=args.crop, precision=precision,
                                checkpoint=ckpt, peaks=peaks, budget_gib=args.budget_gib, device=device)
                    except torch.cuda.OutOfMemoryError:
                        torch.cuda.empty_cache()
                        row.update({"oom": True, "s_per_iter": float("nan"), "peak_bytes": None})
                    report["timings"].append(row)
                    print(row, flush=True)
            del teacher, student
            torch.cuda.empty_cache()
    else:
        report["timing_setting"] = "CPU, small HINet, batch 2 x 3 x 32 x 32, median of 2 after 1 warm-up"
        teacher, student = build_pair("hinet", "small", device)
        for precision in ("fp32", "bf16"):
            for ckpt in MODES:
                row = {"model": "hinet", "variant": "small", "precision": precision, "checkpoint": ckpt,
                       "batch": 2, "crop": 32}
                row.update(time_step(teacher, student, batch=2, crop=32, precision=precision, checkpoint=ckpt,
                                     iters=2, warmup=1, device=device))
                report["timings"].append(row)
                print(row, flush=True)
        if args.tiny:
            report["estimate"] = estimate("hinet", "small", 32, ("fp32",), args.budget_gib, 2)
        else:
            for name in args.models:
                report["estimate"] += estimate(name, "official", args.crop, ("fp32", "bf16"), args.budget_gib,
                                               args.batch, measure_crop=args.estimate_crop,
                                               check_scaling=name == args.models[0])
                print(report["estimate"][-2 * len(MODES):], flush=True)
    report["wall_s"] = time.perf_counter() - t_start
    text = markdown(report)
    print(text)
    if args.out is not None:
        from dreamlib.io import atomic_write_json, atomic_write_text

        atomic_write_text(args.out, text)
        atomic_write_json(args.out.with_suffix(".json"), report)
    return report


if __name__ == "__main__":
    main()
