"""The notebooks' setup cell works on Colab in one run, and twice: imitated with a fake ``google.colab``
module, a working directory elsewhere, and the repository cloned from this checkout (no network)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dreamlib import settings

NOTEBOOKS = sorted((settings.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _setup_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    src = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    return src[: src.index("\nimport numpy")]  # the Colab part; the rest is the usual imports


def test_every_notebook_has_the_same_colab_block():
    blocks = {p.name: _setup_cell(p) for p in NOTEBOOKS}
    assert len(set(blocks.values())) == 1, "the setup cells differ: keep one block in every notebook"
    block = next(iter(blocks.values()))
    readme = (settings.REPO_ROOT / "README.md").read_text()
    url = block.split('REPO_URL = "')[1].split('"')[0]
    assert url in readme, "the README must name the repository the setup cell clones"
    assert "QUICK_MODE" in block and "#@param" in block  # a visible form field on Colab


@pytest.mark.skipif(not (settings.REPO_ROOT / ".git").exists(), reason="needs a git checkout to clone from")
def test_the_setup_cell_runs_twice_on_an_imitated_colab(tmp_path):
    block = _setup_cell(NOTEBOOKS[0])
    repo_dir = tmp_path / "content" / "dreamlib"
    # the cell as Colab runs it, with its two settings pointed at this machine (no network, no /content)
    cell = (block.replace('"https://github.com/dreamlib/dreamlib"', repr(str(settings.REPO_ROOT)))
                 .replace('"/content/dreamlib"', repr(str(repo_dir))))
    assert str(settings.REPO_ROOT) in cell and str(repo_dir) in cell
    script = textwrap.dedent(f"""
        import os, subprocess, sys, types
        sys.modules["google.colab"] = types.ModuleType("google.colab")
        real_run = subprocess.run
        def run(cmd, *a, **k):  # pip is not run here: the test environment has the dependencies
            if cmd[1:4] == ["-m", "pip", "install"]:
                print("pip install", cmd[-1]); return None
            return real_run(cmd, *a, **k)
        subprocess.run = run
        os.chdir({str(tmp_path)!r})
        for attempt in (1, 2):  # a learner runs the cell again
    """) + textwrap.indent(cell, "    ") + textwrap.dedent(f"""
        import dreamlib
        from dreamlib import settings
        print("cwd", os.getcwd())
        print("dreamlib", dreamlib.__file__)
        print("quick", settings.QUICK)
        print("nested", os.path.exists(os.path.join({str(repo_dir)!r}, "notebooks", "dreamlib")))
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DREAMLIB_QUICK", "PYTHONPATH")}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.count("pip install") == 1, out  # installed once, not again on the second run
    assert f"cwd {repo_dir / 'notebooks'}" in out
    assert f"dreamlib {repo_dir / 'dreamlib' / '__init__.py'}" in out  # imported from the clone, no restart
    assert "quick True" in out and "nested False" in out
