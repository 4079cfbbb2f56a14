"""Experiment runners write what they claim (tiny configurations)."""
from __future__ import annotations

import json

import pytest

from dreamlib.teachers import teacher_path


@pytest.mark.skipif(not teacher_path("hinet").is_file(), reason="hinet teacher not shipped")
def test_before_finetune_table_hits_the_paper_ratio(tmp_path):
    from dreamlib.experiments.before_finetune import before_finetune_table
    from dreamlib.prune import paper_ratio

    comp = before_finetune_table("hinet", out_dir=tmp_path, dream_batch=2, dream_steps=2, limit=1,
                                 methods=("l1-uniform", "lamp"), progress=False)
    card = json.loads((tmp_path / "hinet.json").read_text())
    dense = card["table"]["original"]["gmacs"]
    for method in ("l1-uniform", "lamp"):
        got = card["table"][method]["gmacs"]
        assert abs(got / dense - paper_ratio("hinet")) < 2e-3 * paper_ratio("hinet"), method
        assert card["reports"][method]["method"] == method
    md = (tmp_path / "hinet.md").read_text()
    assert "| lamp |" in md and "Rain100L" in md
    assert (tmp_path / "hinet_layers.png").stat().st_size > 1000
    assert list(comp.table.index) == ["original", "l1-uniform", "lamp"]
