"""The shipped small teachers (data_samples/teachers) and train_teacher itself.

- each card's numbers meet the quality bar (>= 4 dB over the rainy input on every
  set the teacher was trained for; HINet/MPRNet >= 6 dB on the 5-set average);
- each shipped file re-evaluates to its card on the smallest relevant set of the
  *full* synthetic benchmark (within 0.05 dB);
- training resumed from a checkpoint ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import json

import pytest
import torch

from dreamlib import models, settings
from dreamlib.data.benchmark import benchmark_sets, write_benchmark
from dreamlib.evaluate import evaluate
from dreamlib.train import EVAL_FAMILY, ResumeMismatchError, train_teacher

TEACHERS = settings.DATA_SAMPLES / "teachers"
NAMES = ("hinet", "mprnet", "durn", "agan")
# The smallest set of each family (ties: the first) -- what the round trip re-scores.
SMALLEST = {"SynRain13k": "Rain100L", "SynRainDrop": "test_a"}
MIN_GAIN_EACH, MIN_GAIN_AVERAGE = 4.0, 6.0


# Teachers shipped below the quality bar while a better recipe is being trained (issue 3 stays
# open until this set is empty). strict=True: a retrained teacher that passes turns this red,
# so the entry gets removed.
BELOW_BAR: set[str] = set()


def _card(name: str) -> dict:
    path = TEACHERS / f"{name}_small.json"
    if not path.is_file():
        pytest.skip(f"{path.name} not trained yet: python -m dreamlib train-teacher --model {name}")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, reason="shipped below the quality bar; retraining pending")) if n in BELOW_BAR else n
    for n in NAMES])
def test_card_meets_quality_bar(name):
    card = _card(name)
    family = EVAL_FAMILY[name]
    res = card["eval"][family]
    assert card["eval"]["convention"] == "basicsr"
    assert card["eval"]["benchmark_config"]["crop"] == 128, "card must be measured on the full benchmark"
    sets = [s for s in res["model"] if s != "average"]
    assert len(sets) == (5 if family == "SynRain13k" else 2)
    for s in sets:
        gain = res["model"][s]["psnr"] - res["input"][s]["psnr"]
        assert gain >= MIN_GAIN_EACH, f"{name} on {s}: only {gain:.2f} dB over the rainy input"
    if family == "SynRain13k":
        gain = res["model"]["average"]["psnr"] - res["input"]["average"]["psnr"]
        assert gain >= MIN_GAIN_AVERAGE, f"{name}: average gain {gain:.2f} dB < {MIN_GAIN_AVERAGE}"
    assert card["eval"][family]["model"]["average"]["n"] == sum(res["model"][s]["n"] for s in sets)
    for key in ("command", "seed", "hyperparameters", "train_wall_s", "params", "macs_nni_256"):
        assert key in card, key
    assert card["hyperparameters"]["train_role"] == "train"


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def full_benchmark():
    return write_benchmark(quick=False, progress=False)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_teacher_matches_card(name, full_benchmark):
    path = TEACHERS / f"{name}_small.pt"
    _card(name)  # skips a teacher that is not trained yet
    assert path.stat().st_size < 5_000_000, f"{path} should be a few MB at most"
    card = _card(name)
    torch.set_num_threads(2)
    model = models.from_checkpoint(path)
    assert model.dreamlib_card["params"] == card["params"] == models.count_parameters(model)
    family = EVAL_FAMILY[name]
    set_name = SMALLEST[family]
    sets = {set_name: benchmark_sets(full_benchmark, family)[set_name]}
    got = evaluate(model, sets, "basicsr", progress=False)[set_name]
    want = card["eval"][family]["model"][set_name]
    assert got["n"] == want["n"]
    assert got["psnr"] == pytest.approx(want["psnr"], abs=0.05)
    assert got["ssim"] == pytest.approx(want["ssim"], abs=1e-3)


def test_resume_gives_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    kw = dict(steps=6, batch_size=2, crop=32, lr=1e-3, warmup=2, seed=5, progress=False, evaluate=False,
              wf=4, depth=2)
    whole, card = train_teacher("hinet", out_dir=tmp_path / "a", state_path=tmp_path / "a.state",
                                checkpoint_every=0, **kw)
    assert card["hyperparameters"]["steps"] == 6 and "eval" not in card
    assert (tmp_path / "a" / "hinet_small.pt").is_file() and (tmp_path / "a" / "hinet_small.json").is_file()
    part, none = train_teacher("hinet", out_dir=tmp_path / "b", state_path=tmp_path / "b.state",
                               checkpoint_every=2, stop_at=3, **kw)
    assert none is None and (tmp_path / "b.state").is_file()
    with pytest.raises(ResumeMismatchError, match="lr"):
        train_teacher("hinet", out_dir=tmp_path / "b", state_path=tmp_path / "b.state", resume=True,
                      **{**kw, "lr": 2e-3})
    resumed, _ = train_teacher("hinet", out_dir=tmp_path / "b", state_path=tmp_path / "b.state",
                               checkpoint_every=2, resume=True, **kw)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # the saved file loads back to the same weights
    again = models.from_checkpoint(tmp_path / "b" / "hinet_small.pt")
    for k, v in again.state_dict().items():
        assert torch.equal(v, b[k]), k


def test_resume_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training state"):
        train_teacher("durn", steps=2, resume=True, state_path=tmp_path / "none.state", evaluate=False,
                      progress=False)
