"""Every user mistake gets one line that names the problem and the fix, exit code 2, before any
compute, and nothing committed changes. Table-driven: one row per case from the runs issue."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamlib import settings
from dreamlib.cli import main

RESULTS = settings.REPO_ROOT / "results"


def _snapshot():
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in RESULTS.rglob("*") if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def committed_results_untouched():
    before = _snapshot()
    yield
    assert _snapshot() == before, "a failing command changed the committed results/"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    yaml = {
        "typo": "distill: {stpes: 40}\n",
        "methods_str": "methods: lamp\n",
        "seed_str": "seed: abc\n",
        "eval0": "eval_limit: 0\n",
        "batch0": "dream_x: {batch_size: 0}\n",
        "crop0": "distill: {crop: 0}\n",
        "inf_orth": "distill: {lambda_orth: .inf}\n",
        "order": "adaptive: {order: random}\n",
        "not_yaml": "distill: [unclosed\n",
        "distill_from": "distill_from: [erk]\nmethods: [lamp]\n",
    }
    out = {}
    for k, text in yaml.items():
        (d / f"{k}.yaml").write_text(text)
        out[k] = str(d / f"{k}.yaml")
    (d / "text.pth").write_text("hello, not a checkpoint\n")
    out["text_ckpt"] = str(d / "text.pth")
    (d / "a_file").write_text("x")
    out["under_a_file"] = str(d / "a_file" / "out")
    from dreamlib import models

    nan = models.build("hinet", "small")
    with torch.no_grad():
        next(nan.parameters()).view(-1)[0] = float("nan")
    models.save_checkpoint(nan, d / "nan.pt")
    out["nan_ckpt"] = str(d / "nan.pt")
    out["dir"] = str(d)
    return out


# (argv with {placeholders}, what the one line must say)
CASES = [
    ("reproduce table1 --model durn", "table1 covers hinet, mprnet"),
    ("reproduce table1 --model hinet --variant huge", "--variant 'huge'"),
    ("reproduce table1 --model hinet --target-gflops 0", "--target-gflops must be > 0"),
    ("reproduce table1 --model hinet --resume", "--resume needs --out"),
    ("reproduce table1 --model hinet --config {typo}", "distill.stpes: unknown key; known:"),
    ("reproduce table1 --model hinet --config {methods_str}", "methods: must be a list"),
    ("reproduce table1 --model hinet --config {seed_str}", "seed: must be an integer, got 'abc'"),
    ("reproduce table1 --model hinet --config {eval0}", "eval_limit: must be >= 1, got 0"),
    ("reproduce table1 --model hinet --config {batch0}", "dream_x.batch_size: must be a positive integer"),
    ("reproduce table1 --model hinet --config {crop0}", "distill.crop must be a positive integer"),
    ("reproduce table1 --model hinet --config {inf_orth}", "distill.lambda_orth: must be a finite number"),
    ("reproduce table1 --model hinet --config {order}", "adaptive.order: must be one of independent, cumulative"),
    ("reproduce table1 --model hinet --config {not_yaml}", "not valid YAML"),
    ("reproduce table1 --model hinet --config {distill_from}", "distill_from: ['erk'] are not among"),
    ("reproduce table1 --model hinet --config {dir}/missing.yaml", "missing.yaml not found"),
    ("reproduce table1 --model hinet --out {under_a_file}", "cannot write to --out"),
    ("reproduce table1 --model hinet --data-root {dir}/nowhere", "--data-root"),
    ("reproduce table1 --model hinet --data-root {dir}", "none of Test2800"),
    ("reproduce table1 --model hinet --variant official", "needs --checkpoint"),
    ("reproduce table1 --model hinet --variant official --checkpoint {text_ckpt}", "not a checkpoint"),
    ("reproduce table1 --model hinet --checkpoint {nan_ckpt} --out {dir}/nan_run", "non-finite"),
    ("reproduce ablation --model hinet --from-table {dir}/none.json", "--from-table"),
    ("reproduce table1 --model hinet --from-table {text_ckpt}", "only applies to `reproduce ablation`"),
    ("reproduce selfdata --model hinet --sparsity 1.5", "--sparsity is the fraction"),
    ("reproduce table1 --model hinet --sparsity 0.5", "--sparsity only applies"),
    ("rain-table --seeds 0", "--seeds must be at least 1"),
    ("train-teacher --model hinet --steps 0 --out {dir}/t", "steps must be a positive integer, got 0"),
    ("train-teacher --model hinet --steps 2 --set widths --out {dir}/t", "--set expects KEY=VALUE"),
    ("prune-table --model hinet --config {seed_str}", "seed: must be an integer"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[c[0].split(" --")[0] + " | " + c[1][:30] for c in CASES])
def test_user_error_is_one_line_and_exit_2(argv, message, files, capsys):
    t0 = time.perf_counter()
    rc = main(argv.format(**files).split())
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("dreamlib ") and ": error: " in lines[0], err
    assert message in lines[0], err
    assert "Traceback" not in err
    assert time.perf_counter() - t0 < 60, "the mistake must be found before the compute"


def test_a_real_process_exits_2_and_debug_shows_the_traceback(files):
    env = {**os.environ, "PYTHONPATH": str(settings.REPO_ROOT)}
    cmd = [sys.executable, "-m", "dreamlib", "reproduce", "table1", "--model", "hinet", "--config", files["typo"]]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "Traceback" in p.stderr and "ConfigError" in p.stderr


def test_16_bit_png_is_scaled_to_0_1(tmp_path):
    from PIL import Image

    from dreamlib.data.datasets import PairedImageFolder

    for sub in ("input", "target"):
        (tmp_path / "Rain100L" / sub).mkdir(parents=True)
    a = np.full((32, 32), 16384, np.uint16)  # 0.25 of full scale
    for sub in ("input", "target"):
        Image.fromarray(a).save(tmp_path / "Rain100L" / sub / "1.png")
    item = PairedImageFolder(tmp_path, "Rain100L")[0]
    assert item["input"].shape == (3, 32, 32)
    assert abs(float(item["input"].mean()) - 16384 / 65535) < 1e-6  # not ~1.0 (clipped at 255)


def test_an_image_too_small_for_the_model_names_the_minimum():
    from dreamlib import models

    net = models.build("hinet", "small")
    with pytest.raises(ValueError, match=r"1x1 image is too small .* at least \d+x\d+ px"):
        models.restore(net, torch.rand(1, 3, 1, 1))


def test_stale_tmp_files_of_dead_processes_are_removed(tmp_path):
    from dreamlib.experiments.run import prepare_out_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [tmp_path / f".table1_hinet.json.{dead}.abc123.tmp", tmp_path / f"table1_hinet_examples.{dead}.tmp.png"]
    live = tmp_path / f".table1_hinet.csv.{os.getpid()}.xyz789.tmp"
    for p in stale + [live]:
        p.write_text("partial")
    keep = tmp_path / "table1_hinet.json"
    keep.write_text("{}")
    prepare_out_dir(tmp_path)
    assert not any(p.exists() for p in stale)
    assert live.exists() and keep.exists()  # a live writer's file and real results stay


def test_data_root_may_name_one_set_folder(tmp_path):
    from PIL import Image

    from dreamlib.data.datasets import open_sets

    for sub in ("input", "target"):
        (tmp_path / "Rain100L" / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "Rain100L" / sub / "1.png")
    sets = open_sets(tmp_path / "Rain100L")  # the set folder itself, not its parent
    assert list(sets) == ["Rain100L"] and len(sets["Rain100L"]) == 1
