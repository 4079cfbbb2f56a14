"""The README's results are the committed results: its generated block and the numbers its prose cites."""
from __future__ import annotations

import json

import pytest

from dreamlib import settings
from dreamlib.experiments import summary

README = settings.REPO_ROOT / "README.md"
RESULTS = settings.REPO_ROOT / "results"


def _table(t, name):
    return json.loads((RESULTS / f"{t}_small" / f"{t}_{name}.json").read_text())


def _avg(p, row):
    return p["rows"][row]["average/psnr"]


def test_the_generated_block_matches_the_committed_results():
    assert summary.readme_block(README.read_text()) == summary.markdown_tables(), (
        "README results drifted from results/: run `python -m dreamlib.experiments.summary --write-readme`")


def test_the_block_would_change_if_a_result_changed(tmp_path):
    # the check above can fail: a copy of results/ with one number moved gives another block
    import shutil

    shutil.copytree(RESULTS, tmp_path / "results")
    path = tmp_path / "results" / "table1_small" / "table1_hinet.json"
    p = json.loads(path.read_text())
    p["rows"]["lamp"]["average/psnr"] += 0.5
    path.write_text(json.dumps(p))
    assert summary.markdown_tables(tmp_path / "results") != summary.markdown_tables()


def test_the_numbers_the_prose_cites():
    text = " ".join(README.read_text().split())
    durn, agan = _table("table2", "durn"), _table("table2", "agan")
    cited = {
        "DuRN adaptive over l1": f"{_avg(durn, 'adaptive (before distillation)') - _avg(durn, 'l1-uniform'):.2f} dB above l1",
        "DuRN X coverage": f"changes {100 * durn['dream_coverage']['X']['changed_frac']:.1f} % of X's pixels",
        "DuRN plain dreams": f"{100 * durn['dream_coverage']['X_plain']['changed_frac']:.2f} % of the pixels",
        "DuRN residual floor": f"≥ {durn['dream_residual_floor']:g}",
        "AGAN ours gap": f"{_avg(agan, 'original') - _avg(agan, 'ours: adaptive + dream-distill'):.2f} dB under the teacher",
        "AGAN budget gap": f"gets closer ({_avg(agan, 'original') - _avg(agan, 'dream-budget + dream-distill (beyond the paper)'):.2f} dB)",
        "AGAN coverage": f"changes {100 * agan['dream_coverage']['X']['changed_frac']:.1f} % of its dreamed pixels",
    }
    for what, phrase in cited.items():
        assert phrase in text, f"{what}: the README should say {phrase!r}"


@pytest.mark.parametrize("name", ["hinet", "mprnet", "durn", "agan"])
def test_the_cumulative_reading_starts_below_l1_as_the_readme_says(name):
    pt = json.loads((RESULTS / "prune_before_finetune" / f"{name}.json").read_text())["table"]
    assert pt["adaptive (cumulative)"]["average/psnr"] < pt["l1-uniform"]["average/psnr"]
    assert pt["adaptive"]["average/psnr"] > pt["adaptive (cumulative)"]["average/psnr"]


def _fig(folder, stem):
    return json.loads((RESULTS / folder / f"{stem}.json").read_text())["rows"]


@pytest.mark.parametrize("name", ["hinet", "mprnet"])
def test_fig6_as_the_readme_says(name):
    """README: adaptive pruning adds over l1, distillation adds again, L_orth does not add on average."""
    r = {k: v["average"]["psnr"] for k, v in _fig("ablation_small", f"fig6_ablation_{name}").items()}
    assert r["+AP"] > r["l1"] and r["+AP +KD"] > r["+AP"]
    assert r["+AP +KD +L_orth"] <= r["+AP +KD"]


def test_fig1_as_the_readme_says():
    """README: at 30 % every source recovers the teacher and dreams are not best on Rain100H;
    at 50 % dreams are best on Rain100H and light rain only is best on the average."""
    srcs = ["fine-tuned on self-collected (light rain only)", "fine-tuned on noise (undreamed)",
            "fine-tuned on dreamed (ours)"]
    r30 = _fig("selfdata_small", "fig1_selfdata_hinet")
    assert all(r30[s]["average"]["psnr"] >= r30["original"]["average"]["psnr"] for s in srcs)
    assert r30[srcs[2]]["Rain100H"]["psnr"] < max(r30[s]["Rain100H"]["psnr"] for s in srcs[:2])
    r50 = _fig("selfdata_small", "fig1_selfdata_hinet_l1-50")
    assert max(srcs, key=lambda s: r50[s]["Rain100H"]["psnr"]) == srcs[2]
    assert max(srcs, key=lambda s: r50[s]["average"]["psnr"]) == srcs[0]


def test_the_speed_prose_matches_the_committed_speed_runs():
    """README "From FLOPs to seconds": masks run at the dense speed, no recovered channel student reached
    the goal, HINet's channel students had 1800 distillation steps and the others 600."""
    from dreamlib.experiments.speed import speedups, verdicts

    text = " ".join(README.read_text().split())
    assert "none of them reached the goal" in text
    for name in ("hinet", "mprnet", "durn", "agan"):
        p = json.loads((RESULTS / "speed_small" / f"speed_{name}.json").read_text())
        assert not any(v["holds"] for v in verdicts(p)), name
        for pt in p["points"]:
            assert 0.9 <= speedups(p, pt["rows"]["masked"], "eager") <= 1.1, name  # masks: dense speed
            chosen = pt["rows"][f"channel-{pt['chosen']}"]
            assert chosen["after_steps"] == (1800 if name == "hinet" else 600), name
            assert pt["rows"]["masked"].get("after_steps") in (1800, None)
