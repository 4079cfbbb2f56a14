"""The notebooks' house rules, enforced (nbval executes them; this checks their shape).

Policy: notebooks are committed WITH their executed quick-mode outputs, so readers
see the figures on the web and the ``# NBVAL_CHECK_OUTPUT`` cells have reference
outputs that CI (which runs quick mode) compares against. Regenerate with
``make notebooks``.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 2 * 1024 * 1024


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no numbered notebooks"
    assert NOTEBOOKS[0].name == "00_welcome.ipynb"


# numbers kept free for a chapter that is planned but not written yet (none at present)
RESERVED: set[int] = set()


def test_numbering_is_unique_and_consecutive():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    expected = [n for n in range(len(numbers) + len(RESERVED)) if n not in RESERVED][: len(numbers)]
    assert numbers == expected, f"notebooks are numbered {numbers}; expected {expected} (free numbers: {RESERVED})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_house_rules(path: Path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes (limit 2 MB): lower figure dpi"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    header = first.source
    assert re.match(rf"# {path.name[:2]} · ", header), "header must start with '# NN · title'"
    assert "colab.research.google.com" in header and path.name in header, "Colab badge pointing at this notebook"
    assert "What you will learn" in header
    assert "Runtime" in header and "quick" in header.lower(), "runtime table with quick/full rows"

    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = code[0].source
    for needle in ("seed_everything", "pick_device", "settings.QUICK", "DATA_SAMPLES"):
        assert needle in setup, f"the first code cell is the setup cell and must use {needle}"

    # executed top to bottom in one kernel, outputs stored, no errors
    counts = [c.execution_count for c in code]
    assert all(isinstance(n, int) for n in counts), f"{path.name} has unexecuted cells: run `make notebooks`"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "cells executed out of order"
    for c in code:
        for out in c.outputs:
            assert out.output_type != "error", f"stored error output in {path.name}"
    # the stored outputs are quick-mode ones (what CI compares NBVAL_CHECK_OUTPUT cells against)
    setup_text = "".join(o.get("text", "") for o in code[0].outputs)
    assert "quick mode True" in setup_text, "store quick-mode outputs: run `make notebooks`"
    assert any("# NBVAL_CHECK_OUTPUT" in c.source for c in code), "at least one regression-checked cell"
