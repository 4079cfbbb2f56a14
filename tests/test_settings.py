"""Tests of dreamlib.settings: quick-mode parsing, quick(), seeding, device choice."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from dreamlib import settings

REPO = settings.REPO_ROOT


def _run(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREAMLIB_")}
    for k, v in env_changes.items():
        if v is not None:
            env[k] = v
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("value, expected", [
    (None, "False"), ("1", "True"), ("true", "True"), ("TRUE", "True"), (" yes ", "True"), ("on", "True"),
    ("0", "False"), ("false", "False"), ("", "False"), ("2", "False"),
])
def test_quick_env_parsing(value, expected):
    code = "import dreamlib.settings as s; print(s.QUICK, s.quick('full', 'small'))"
    q, pick = _run(code, DREAMLIB_QUICK=value).split()
    assert q == expected
    assert pick == ("small" if expected == "True" else "full")


def test_quick_helper(monkeypatch):
    monkeypatch.setattr(settings, "QUICK", True)
    assert settings.quick(2000, 20) == 20
    monkeypatch.setattr(settings, "QUICK", False)
    assert settings.quick(2000, 20) == 2000
    assert settings.quick(None, 1) is None  # the full value is returned as is


def test_paths_from_environment():
    out = _run("import dreamlib.settings as s; print(s.DATA_SAMPLES); print(s.WORK_DIR)",
               DREAMLIB_DATA_SAMPLES="/tmp/ds_x", DREAMLIB_WORK_DIR="/tmp/wd_y")
    assert out.splitlines() == ["/tmp/ds_x", "/tmp/wd_y"]
    out = _run("import dreamlib.settings as s; print(s.DATA_SAMPLES); print(s.WORK_DIR)")
    assert out.splitlines() == [str(REPO / "data_samples"), str(REPO / "work")]
    assert (REPO / "dreamlib" / "settings.py").is_file()


def test_seed_everything_repeats_draws():
    def draws():
        return (torch.rand(5).tolist(), np.random.rand(5).tolist(), [random.random() for _ in range(5)],
                torch.randint(0, 1000, (3,)).tolist())

    settings.seed_everything(123)
    a = draws()
    settings.seed_everything(123)
    b = draws()
    settings.seed_everything(124)
    c = draws()
    assert a == b
    assert all(x != y for x, y in zip(a[:3], c[:3]))
    # and module init (what the models use) repeats too
    settings.seed_everything(7)
    w1 = torch.nn.Conv2d(3, 4, 3).weight.detach().clone()
    settings.seed_everything(7)
    w2 = torch.nn.Conv2d(3, 4, 3).weight.detach().clone()
    assert torch.equal(w1, w2)


def test_pick_device_respects_env_and_prefer(monkeypatch):
    monkeypatch.setenv("DREAMLIB_DEVICE", "cpu")
    assert settings.pick_device() == torch.device("cpu")
    monkeypatch.setenv("DREAMLIB_DEVICE", "meta")
    assert settings.pick_device() == torch.device("meta")
    assert settings.pick_device("cpu") == torch.device("cpu")  # explicit preference wins
    monkeypatch.delenv("DREAMLIB_DEVICE")
    dev = settings.pick_device()
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else "cpu")
    assert dev.type == expected


def test_package_exports():
    import dreamlib
    assert dreamlib.QUICK is settings.QUICK
    assert dreamlib.seed_everything is settings.seed_everything
