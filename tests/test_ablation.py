"""Fig. 6 / Fig. 1 runners on a tiny configuration: rows, budgets, files."""
from __future__ import annotations

import json

import pytest

from dreamlib.experiments import ablation as A
from dreamlib.experiments.tables import CONFIG_DIR, load_config
from dreamlib.teachers import teacher_path

pytestmark = pytest.mark.skipif(not teacher_path("hinet").is_file(), reason="hinet teacher not shipped")


def tiny():
    return load_config(CONFIG_DIR / "quick.yaml", dream_x={"batch_size": 2, "steps": 2}, adaptive={"eps": 0.2},
                       distill={"steps": 2, "reinit_every": 2, "batch_size": 2}, eval_limit=1)


@pytest.fixture(scope="module")
def sets():
    from dreamlib.data.benchmark import benchmark_sets
    s = benchmark_sets(family="SynRain13k")
    return {k: s[k] for k in ("Rain100H", "Rain100L")}


def test_ablation_rows_and_files(tmp_path, sets):
    r = A.ablation("hinet", config=tiny(), sets=sets, device="cpu", progress=False)
    assert list(r["rows"]) == list(A.ABLATION_STEPS) + ["original"]
    assert set(r["rows"]["l1"]) == {"Rain100H", "Rain100L", "average"}
    md = A.write(r, tmp_path)
    assert "| +AP +KD +L_orth |" in md.read_text()
    assert json.loads((tmp_path / "fig6_ablation_hinet.json").read_text())["config"] == tiny()
    assert (tmp_path / "fig6_ablation_hinet.png").stat().st_size > 1000


def test_selfdata_sources(sets):
    r = A.selfdata("hinet", config=tiny(), sets=sets, device="cpu", progress=False)
    labels = list(r["rows"])
    assert labels[:2] == ["original", "l1 30 % (no fine-tuning)"]
    assert [l.split("on ", 1)[1] for l in labels[2:]] == list(A.SELFDATA_SOURCES)
    # the same distillation budget for every source, and fine-tuning changed the model
    assert all(r["rows"][l] != r["rows"][labels[1]] for l in labels[2:])


def _fake_table(cfg, value):
    row = {"gmacs": 1.0, "fine_tuned": False}
    for s in ("Rain100H", "Rain100L", "average"):
        row[f"{s}/psnr"], row[f"{s}/ssim"] = value, 0.5
    labels = ["original", "l1-uniform", "adaptive (before distillation)", "ours: adaptive + dream-distill"]
    from dreamlib import settings

    return {"config": cfg, "model": "hinet", "variant": "small", "quick": settings.QUICK, "checkpoint": None,
            "data": "synthetic benchmark (SynRain13k, quick)", "rows": {label: dict(row) for label in labels}}


def test_ablation_reuses_a_table_made_with_the_same_settings(tmp_path, sets):
    cfg = tiny()
    r = A.ablation("hinet", config=cfg, sets=sets, device="cpu", progress=False, state_dir=tmp_path,
                   from_table=_fake_table(cfg, 11.0))
    for step in ("l1", "+AP", "+AP +KD +L_orth", "original"):
        assert r["rows"][step]["Rain100L"] == {"psnr": 11.0, "ssim": 0.5}, step
    # only the no-L_orth student was distilled (and evaluated for real), with a resumable state
    assert r["rows"]["+AP +KD"]["Rain100L"]["psnr"] > 20
    assert r["reused_from_table"] == sorted(["l1", "+AP", "+AP +KD +L_orth", "original"])
    assert (tmp_path / "fig6_hinet_lorth0.distill-state.pt").is_file()
    again = A.ablation("hinet", config=cfg, sets=sets, device="cpu", progress=False, state_dir=tmp_path,
                       resume=True, from_table=_fake_table(cfg, 11.0))
    assert again["rows"]["+AP +KD"] == r["rows"]["+AP +KD"]  # the finished state was picked up


def test_ablation_refuses_a_table_of_another_model(sets):
    table = {**_fake_table(tiny(), 11.0), "model": "mprnet"}
    with pytest.raises(ValueError, match="model = 'mprnet'"):
        A.ablation("hinet", config=tiny(), sets=sets, device="cpu", progress=False, from_table=table)


def test_ablation_refuses_a_table_on_other_data(sets):
    table = {**_fake_table(tiny(), 11.0), "data": "/data/Rain13k/test"}
    with pytest.raises(ValueError, match="evaluated on '/data/Rain13k/test'"):
        A.ablation("hinet", config=tiny(), sets=sets, device="cpu", progress=False, from_table=table)


def test_ablation_refuses_a_table_with_other_settings(sets):
    other = load_config(CONFIG_DIR / "quick.yaml")
    with pytest.raises(ValueError, match="other settings for .*distill"):
        A.ablation("hinet", config=tiny(), sets=sets, device="cpu", progress=False,
                   from_table=_fake_table(other, 11.0))


def test_selfdata_at_another_sparsity_gets_its_own_files(tmp_path, sets):
    r = A.selfdata("hinet", sparsity=0.5, config=tiny(), sets=sets, device="cpu", progress=False,
                   state_dir=tmp_path)
    assert list(r["rows"])[1] == "l1 50 % (no fine-tuning)"
    assert r["tag"] == "l1-50"
    md = A.write(r, tmp_path)
    assert md.name == "fig1_selfdata_hinet_l1-50.md"
    states = sorted(p.name for p in tmp_path.glob("*.distill-state.pt"))
    assert states and all(n.startswith("fig1_hinet_l1-50_") for n in states)
    with pytest.raises(ValueError, match="sparsity"):
        A.selfdata("hinet", sparsity=1.5, config=tiny(), sets=sets, device="cpu", progress=False)


def test_sparsity_flag_is_refused_outside_selfdata():
    from dreamlib.cli import UsageError, build_parser, cmd_reproduce

    args = build_parser().parse_args(["reproduce", "table1", "--sparsity", "0.5"])
    with pytest.raises(UsageError, match="selfdata"):
        cmd_reproduce(args)


def test_a_resumed_run_says_so(tmp_path, sets):
    first = A.selfdata("hinet", config=tiny(), sets=sets, device="cpu", progress=False, state_dir=tmp_path)
    assert first["resumed_from_state"] == []
    again = A.selfdata("hinet", config=tiny(), sets=sets, device="cpu", progress=False, state_dir=tmp_path,
                       resume=True)
    assert len(again["resumed_from_state"]) == len(A.SELFDATA_SOURCES)
    assert again["rows"] == first["rows"]  # finished states: the same students
    assert "continued an interrupted distillation" in A.write(again, tmp_path).read_text()


@pytest.mark.parametrize("table", ["table1", "ablation", "selfdata"])
def test_resume_without_out_is_refused_before_any_compute(table):
    from dreamlib.cli import UsageError, build_parser, cmd_reproduce

    args = build_parser().parse_args(["reproduce", table, "--resume"])
    with pytest.raises(UsageError, match="--resume needs --out"):
        cmd_reproduce(args)


def test_default_run_dir_is_fresh_and_outside_results(monkeypatch, tmp_path):
    from dreamlib import settings
    from dreamlib.experiments.tables import default_run_dir

    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)
    first = default_run_dir("table1_hinet")
    first.mkdir(parents=True)
    second = default_run_dir("table1_hinet")  # same second: a suffix, never the same folder
    assert first.parent == second.parent == tmp_path / "runs"
    assert first != second and not second.exists()
