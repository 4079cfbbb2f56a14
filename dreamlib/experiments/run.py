"""What every runner does before and around its compute: the run folder.

- :func:`default_run_dir`: without ``--out`` a run writes a fresh, git-ignored
  ``runs/<command>_<model>_<time>/`` folder, so the committed ``results/`` are only replaced
  when the user names them;
- :func:`prepare_out_dir`: the folder is created and checked writable *before* any compute,
  and temporary files left by killed runs (their process is gone) are removed.

Temporary names carry the writing process's id (:mod:`dreamlib.io`), so two runs into the
same folder never collide and a stale one can be told from a live one.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

from .. import settings

__all__ = ["default_run_dir", "prepare_out_dir", "remove_stale_tmp"]

#: ``.<name>.<pid>.<random>.tmp`` (atomic writes) and ``<stem>.<pid>.tmp.png`` (figures).
_TMP = re.compile(r"\.(\d+)\.(?:[A-Za-z0-9_-]+\.)?tmp(?:\.png)?$")


def default_run_dir(stem: str) -> Path:
    """A fresh ``runs/<stem>_<YYYYmmdd-HHMMSS>/`` folder (git-ignored): runs never overwrite the
    committed ``results/`` unless it is named with ``--out``."""
    base = settings.REPO_ROOT / "runs" / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        path, k = base.with_name(f"{base.name}-{k}"), k + 1
    return path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_tmp(folder) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writing process no longer exists; returns them."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.search(p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def prepare_out_dir(out, *, resume: bool = False) -> Path:
    """Create ``out`` if needed and check that files can be written there, before any compute.

    ``resume`` needs the folder to exist already (it holds the interrupted run's state).
    Raises ``PermissionError`` / ``FileNotFoundError`` / ``NotADirectoryError`` with the fix.
    """
    out = Path(out)
    if resume and not out.is_dir():
        raise FileNotFoundError(f"--resume: {out} does not exist; name the folder of the interrupted run with --out")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to --out {out} ({e.strerror or e}); choose a folder you can write to")
    remove_stale_tmp(out)
    return out
