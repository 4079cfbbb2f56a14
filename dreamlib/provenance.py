"""Where a result came from: hashes of weights, files and data, the code version, the command.

The runners write :func:`provenance` beside every result, and distillation states record a
fingerprint (:func:`module_hash` of the teacher and of the pruned student it started from,
plus the runner's own fields) so that ``--resume`` continues only the run it belongs to.
"""
from __future__ import annotations

import hashlib
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

__all__ = ["module_hash", "file_hash", "files_hash", "git_commit", "provenance", "fingerprint_diff"]


def module_hash(model: nn.Module | dict) -> str:
    """SHA-256 (first 16 hex digits) of a module's state dict (or of a state dict): names, shapes,
    dtypes and values, so two models hash alike only if every weight, buffer and mask is equal."""
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous().reshape(-1)
            h.update(f"{tuple(v.shape)}{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:16]


def file_hash(path) -> str:
    """SHA-256 (first 16 hex digits) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def files_hash(root) -> str | None:
    """SHA-256 (16 hex digits) of the sorted relative paths and sizes of every file under ``root``
    (the data a run evaluated on; cheap, and changes when a file is added, removed or resized)."""
    root = Path(root)
    if not root.exists():
        return None
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def git_commit(root=None) -> str | None:
    """The checkout's commit (with ``+dirty`` if tracked files changed), or None outside git."""
    from . import settings

    root = Path(root or settings.REPO_ROOT)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(*, config: dict | None = None, seed: int | None = None, device=None, teacher: nn.Module | None = None,
               checkpoint=None, data_root=None, argv=None) -> dict:
    """The provenance block every results file carries, in one shape."""
    from . import __version__

    argv = list(sys.argv if argv is None else argv)
    return {
        "argv": argv, "command": " ".join(shlex.quote(a) for a in argv),
        "config": config, "seed": seed, "dreamlib": __version__, "torch": torch.__version__,
        "python": platform.python_version(), "git_commit": git_commit(), "device": None if device is None else str(device),
        "teacher_hash": None if teacher is None else module_hash(teacher),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_hash": None if checkpoint is None else file_hash(checkpoint),
        "data_root": None if data_root is None else str(data_root),
        "data_files_hash": None if data_root is None else files_hash(data_root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def fingerprint_diff(saved: dict | None, now: dict) -> list[str]:
    """Fields of ``now`` whose value differs from ``saved`` (a missing field differs too)."""
    saved = saved or {}
    return [k for k in now if saved.get(k) != now[k]]
