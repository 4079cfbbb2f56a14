"""Small file helpers: atomic writes so an interrupted run never leaves a half file."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name: concurrent writers never collide, and a killed run's leftovers can be
    # told from a live run's (dreamlib.experiments.run.remove_stale_tmp)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would
        # (or keep the replaced file's), so results stay readable to the group
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def finite_json(obj):
    """``obj`` with every NaN/Inf float replaced by ``None`` (JSON ``null``: not measured), so the
    file is standard JSON that any reader parses (Python's ``NaN`` literal is not)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as standard JSON (NaN/Inf as ``null``, see :func:`finite_json`), atomically."""
    return atomic_write_text(path, json.dumps(finite_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_savefig(fig, path, dpi: int = 90) -> Path:
    """Save a matplotlib figure as PNG atomically (``<stem>.<pid>.tmp.png``, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def atomic_torch_save(obj, path) -> Path:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())
