"""The workshop README and the notebook headers show the same measured times, and every notebook
has exercises with a collapsed solutions cell."""
import importlib.util
import json
import re

import pytest

from dreamlib import settings

ROOT = settings.REPO_ROOT
spec = importlib.util.spec_from_file_location("time_notebooks", ROOT / "scripts" / "time_notebooks.py")
tn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tn)
NOTEBOOKS = tn.notebooks()


def test_every_notebook_is_in_the_course_table():
    assert {p.name[:2] for p in NOTEBOOKS} == set(tn.COURSE)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_header_shows_the_measured_times(nb_path):
    timings = tn.load()
    assert nb_path.name in timings and "quick" in timings[nb_path.name], \
        f"no quick-mode time for {nb_path.name}: run python scripts/time_notebooks.py --mode quick --only {nb_path.name[:2]}"
    header = "".join(json.loads(nb_path.read_text())["cells"][0]["source"])
    assert tn.header_table(nb_path.name[:2], timings[nb_path.name]) in header + "\n", \
        f"{nb_path.name}'s runtime table is not the measured one: run python scripts/time_notebooks.py --write"


def test_readme_course_table_matches_timings():
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(tn.BEGIN) + "(.*?)" + re.escape(tn.END), text, re.S)
    assert block, "README.md lost its course table markers"
    timings = tn.load()
    for p in NOTEBOOKS:
        t = timings.get(p.name, {})
        q, f = (tn.fmt(t[m]["seconds"]) if t.get(m) else "not measured" for m in ("quick", "full"))
        row = [ln for ln in block.group(1).splitlines() if f"notebooks/{p.name})" in ln]
        assert len(row) == 1 and f"| {q} | {f} |" in row[0], f"README course table row of {p.name} is stale: run --write"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_with_a_collapsed_solutions_cell(nb_path):
    cells = json.loads(nb_path.read_text())["cells"]
    ex = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "### Exercises" in "".join(c["source"])]
    assert ex, f"{nb_path.name} has no '### Exercises' section"
    sols = [c for c in cells[ex[0] + 1:] if c["cell_type"] == "code" and "".join(c["source"]).lstrip().startswith("# Solution")]
    assert sols, f"{nb_path.name}: no '# Solutions' code cell after its exercises"
    assert all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in sols), \
        f"{nb_path.name}: the solutions cell should be collapsed (metadata jupyter.source_hidden)"
    n = len(re.findall(r"^\s*\d\. ", "".join(cells[ex[0]]["source"]), re.M))
    assert 2 <= n <= 4, f"{nb_path.name}: {n} exercises, the course asks for two or three"
