"""Experiment runners write what they claim (tiny configurations)."""
from __future__ import annotations

import json

import pytest

from dreamlib.teachers import teacher_path


def _tiny_config():
    from dreamlib.experiments.tables import load_config

    return load_config(None, dream_x={"batch_size": 2, "crop": 32, "steps": 2, "residual_floor": None},
                       adaptive={"eps": 0.05, "order": "independent"}, eval_limit=1)


@pytest.mark.skipif(not teacher_path("hinet").is_file(), reason="hinet teacher not shipped")
def test_before_finetune_table_hits_the_paper_ratio(tmp_path):
    from dreamlib.experiments.before_finetune import before_finetune_table
    from dreamlib.prune import paper_ratio

    comp = before_finetune_table("hinet", out_dir=tmp_path, config=_tiny_config(),
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
    assert not (tmp_path / "hinet_readings.png").exists()  # no adaptive row, no readings chart


@pytest.mark.skipif(not teacher_path("hinet").is_file(), reason="hinet teacher not shipped")
def test_before_finetune_table_measures_both_readings_on_the_same_x(tmp_path):
    from dreamlib.experiments.before_finetune import before_finetune_table, readings

    comp = before_finetune_table("hinet", out_dir=tmp_path, config=_tiny_config(), methods=("adaptive",),
                                 progress=False)
    card = json.loads((tmp_path / "hinet.json").read_text())
    reps = readings(card)
    assert list(reps) == ["adaptive", "adaptive (cumulative)"]
    assert [r["details"]["order"] for r in reps.values()] == ["independent", "cumulative"]
    for label in reps:  # both at the same target, measured on the same X
        assert abs(card["table"][label]["gmacs"] * 1e9 / card["target_macs"] - 1) < 2e-3, label
        assert reps[label]["details"]["X_shape"] == card["X_shape"] == [2, 3, 32, 32]
    assert reps["adaptive"]["module_sparsity"] != reps["adaptive (cumulative)"]["module_sparsity"]
    assert list(comp.table.index) == ["original", "adaptive", "adaptive (cumulative)"]
    assert (tmp_path / "hinet_readings.png").stat().st_size > 1000
