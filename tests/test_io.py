"""Atomic writes: whole files or nothing, and the permissions a plain open() would give."""
from __future__ import annotations

import os

import pytest

from dreamlib.io import atomic_write_bytes, atomic_write_json


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert path.read_text() == '{\n  "a": 1\n}\n'


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o640


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = atomic_write_json(tmp_path / "r.json", {"a": 1})

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert not list(tmp_path.glob(".*.tmp"))
