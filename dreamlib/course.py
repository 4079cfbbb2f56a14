"""Helpers for the course notebooks: what an output was made from, and claims checked against data.

Two rules of the course live here:

* **Outputs say what they were made from.** :func:`stamp` prints one ``made from:`` line with the
  SHA-256 of each teacher or results file a notebook reads. ``tests/test_notebook_stamps.py``
  recomputes those hashes and fails when a committed notebook shows outputs of files that have
  changed since (re-run ``make notebooks``).
* **A takeaway is checked, not only written.** :func:`check` prints the claim when the data
  supports it and raises :class:`ClaimError` when it does not, so ``make test`` (which executes
  every notebook) fails on a claim edited to be false or made stale by new results.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import settings
from .provenance import file_hash

__all__ = ["STAMP_PREFIX", "ClaimError", "stamp", "read_stamps", "check"]

STAMP_PREFIX = "made from:"
_STAMP_ITEM = re.compile(r"([\w./-]+)@([0-9a-f]{16})")


class ClaimError(AssertionError):
    """A notebook's takeaway is contradicted by the data it is about."""


def _relative(path) -> str:
    p = Path(path)
    if not p.is_absolute():
        p = settings.REPO_ROOT / p
    try:
        return p.resolve().relative_to(settings.REPO_ROOT.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"stamp() takes files inside the repository, got {path}; "
                         f"copy the file under {settings.REPO_ROOT} first") from None


def stamp(*paths) -> dict[str, str]:
    """Print (and return) ``made from: path@hash; ...`` for files inside the repository.

    ``paths`` are relative to the repository root (or absolute inside it), e.g.
    ``"data_samples/teachers/hinet_small.pt"`` or ``"results/table1_small/table1_hinet.json"``.
    Hashes are the first 16 hex digits of the file's SHA-256 (:func:`dreamlib.provenance.file_hash`).
    """
    if not paths:
        raise ValueError("stamp() needs at least one file: pass the teachers and results this notebook reads")
    out = {}
    for p in paths:
        rel = _relative(p)
        full = settings.REPO_ROOT / rel
        if not full.is_file():
            raise FileNotFoundError(f"stamp(): {rel} does not exist; the notebook reads a file that is not "
                                    "in this checkout (pull the repository again or run the runner that makes it)")
        out[rel] = file_hash(full)
    print(STAMP_PREFIX, "; ".join(f"{k}@{v}" for k, v in out.items()))
    return out


def read_stamps(text: str) -> dict[str, str]:
    """The ``path -> hash`` pairs of every ``made from:`` line in ``text`` (a cell's output)."""
    found = {}
    for line in text.splitlines():
        if line.startswith(STAMP_PREFIX):
            found.update(dict(_STAMP_ITEM.findall(line[len(STAMP_PREFIX):])))
    return found


def check(condition, claim: str) -> None:
    """Print ``holds: claim`` if ``condition`` is true, else raise :class:`ClaimError`.

    Use it right after the numbers a takeaway is about, with the claim written as the learner reads
    it, e.g. ``check(adaptive > l1, f"adaptive beats l1 ({adaptive:.2f} vs {l1:.2f} dB)")``.
    """
    if not bool(condition):
        raise ClaimError(f"claim no longer holds: {claim} -- fix the takeaway or the code it is about")
    print("holds:", claim)
