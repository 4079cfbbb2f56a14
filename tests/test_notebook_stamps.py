"""Committed notebook outputs must be made from the teachers and results that are committed now.

Each notebook prints ``made from: path@hash`` lines (``dreamlib.course.stamp``). If a teacher is
retrained or a table re-run after the notebook was executed, the hash in its stored output no longer
matches the file, and this test says which notebook to re-run.
"""
import json
from pathlib import Path

import pytest

from dreamlib import course, settings
from dreamlib.provenance import file_hash

NOTEBOOKS = sorted((settings.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def stored_text(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out["text"]))
            elif "text/plain" in out.get("data", {}):
                parts.append("".join(out["data"]["text/plain"]))
    return "\n".join(parts)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_not_older_than_the_files_they_show(nb_path):
    stamps = course.read_stamps(stored_text(nb_path))
    assert stamps, f"{nb_path.name} prints no 'made from:' line; call dreamlib.course.stamp(...) on the files it reads"
    for rel, h in stamps.items():
        path = settings.REPO_ROOT / rel
        assert path.is_file(), f"{nb_path.name} shows outputs of {rel}, which no longer exists"
        assert file_hash(path) == h, (f"{nb_path.name}'s stored outputs were made from an older {rel}; "
                                      "re-run `make notebooks` and commit")


def test_stamp_round_trip_and_detects_a_changed_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)
    f = tmp_path / "results" / "t.json"
    f.parent.mkdir()
    f.write_text('{"psnr": 28.0}')
    printed = course.stamp("results/t.json")
    line = capsys.readouterr().out
    assert course.read_stamps(line) == printed == {"results/t.json": file_hash(f)}
    f.write_text('{"psnr": 28.1}')
    assert file_hash(f) != printed["results/t.json"]


def test_stamp_refuses_missing_and_outside_files(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        course.stamp("results/none.json")
    with pytest.raises(ValueError, match="inside the repository"):
        course.stamp("/etc/hostname")
    with pytest.raises(ValueError, match="at least one"):
        course.stamp()


def test_check_prints_a_true_claim_and_raises_on_a_false_one(capsys):
    course.check(29.0 > 28.5, "adaptive beats l1 (29.00 vs 28.50 dB)")
    assert "holds: adaptive beats l1" in capsys.readouterr().out
    with pytest.raises(course.ClaimError, match="claim no longer holds: l1 beats adaptive"):
        course.check(28.5 > 29.0, "l1 beats adaptive")
