"""Measure how long each course notebook takes, and write the times where learners read them.

    python scripts/time_notebooks.py --mode quick            # every notebook, quick mode (what CI runs)
    python scripts/time_notebooks.py --mode full --only 00 01 # some notebooks, full mode
    python scripts/time_notebooks.py --write                  # only rewrite headers + README from the JSON
    python scripts/time_notebooks.py --mode quick --inplace   # measure and store the outputs (= make notebooks)

Each notebook is executed top to bottom with ``jupyter nbconvert --execute`` into a temporary folder
(the committed notebook and its stored outputs are not touched) and the wall time is stored in
``notebooks/timings.json`` with the date, the mode and the machine's CPU count. ``--write`` (implied
after a measurement) regenerates the runtime table in each notebook's header and the course table in
the README (between ``<!-- course:begin -->`` and ``<!-- course:end -->``) from that file, so the two
always show the same measured numbers; ``tests/test_course_readme.py`` checks that they do.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TIMINGS = NOTEBOOKS / "timings.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- course:begin -->", "<!-- course:end -->"

# What each notebook teaches, whether a GPU helps, and what "full" means for it (written by hand;
# the times are the only measured columns).
COURSE = {
    "00": ("the course map, synthetic rain (six kinds, raindrops included), PSNR/SSIM conventions", "not needed",
           "writes the synthetic benchmark on the first run"),
    "01": ("the four architectures, the small teachers, loading official checkpoints", "not needed", ""),
    "02": ("the paper's observation: deep features group by rain type (t-SNE, Figs. 2 and 8)", "not needed", ""),
    "03": ("dreaming rainy images from the teacher, L_orth and diversity (Fig. 7)", "helps for the full run", ""),
    "04": ("per-module sensitivity to pruning (Fig. 4)", "not needed", ""),
    "05": ("Algorithm 1 (both readings), l1/ERK/LAMP/dream-budget at equal FLOPs", "not needed", ""),
    "06": ("one-stage dream + distill, Figs. 1 and 6", "helps for the full run",
           "Figs. 1 and 6 are loaded from results/; the live loop runs the full 1800 iterations"),
    "07": ("Tables 1 and 2 from the committed results, the claims checked", "not needed",
           "committed results; the live run is skipped"),
    "08": ("from FLOPs to seconds: why masks do not speed up, channel pruning, measured latency vs PSNR",
           "not needed", "committed speed results; the live sweep times 7 ratios at 256x256"),
    "09": ("your own network: describe it, compress it in one call (a DnCNN denoiser, no noisy data)",
           "not needed", ""),
}


def notebooks(only=None):
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if not only or p.name[:2] in only]


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def measure(path: Path, mode: str, timeout: int, inplace: bool = False) -> float:
    env = dict(os.environ, DREAMLIB_QUICK="1" if mode == "quick" else "0")
    with tempfile.TemporaryDirectory() as tmp:
        where = ["--inplace"] if inplace else ["--output-dir", tmp]
        cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               f"--ExecutePreprocessor.timeout={timeout}", *where, str(path)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{path.name} failed in {mode} mode:\n{r.stderr[-3000:]}")
    return wall


def load() -> dict:
    return json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}


def header_table(key: str, t: dict) -> str:
    what, gpu, full_note = COURSE[key]
    q, f = t.get("quick"), t.get("full")
    qs = fmt(q["seconds"]) if q else "not measured"
    fs = fmt(f["seconds"]) if f else "not measured"
    if full_note:
        fs += f" ({full_note})"
    when = ", ".join(sorted({v["date"] for v in (q, f) if v}))
    return ("**Runtime** (measured by `python scripts/time_notebooks.py` on the project's 2-core CPU"
            + (f", {when}" if when else "") + "):\n\n"
            "| mode | CPU (2 cores) | GPU |\n|---|---|---|\n"
            f"| quick (`DREAMLIB_QUICK=1`, what CI runs) | {qs} | not needed |\n"
            f"| full | {fs} | {gpu} |\n")


_RUNTIME = re.compile(r"\*\*Runtime\*\*.*?\n\|[^\n]*\n\|[-| ]*\n(?:\|[^\n]*\n?)*", re.S)


def write(timings: dict) -> None:
    for path in notebooks():
        key = path.name[:2]
        nb = json.loads(path.read_text())
        src = "".join(nb["cells"][0]["source"])
        new = header_table(key, timings.get(path.name, {}))
        if not _RUNTIME.search(src):
            raise SystemExit(f"{path.name}: no '**Runtime**' table in its first cell to update")
        src2 = _RUNTIME.sub(lambda m: new, src, count=1)
        if src2 != src:
            lines = src2.split("\n")
            nb["cells"][0]["source"] = [ln + "\n" for ln in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    rows = ["| notebook | what it teaches | quick (CPU) | full (CPU) | GPU |", "|---|---|---|---|---|"]
    for path in notebooks():
        key = path.name[:2]
        t = timings.get(path.name, {})
        what, gpu, full_note = COURSE[key]
        q = fmt(t["quick"]["seconds"]) if t.get("quick") else "not measured"
        f = fmt(t["full"]["seconds"]) if t.get("full") else "not measured"
        rows.append(f"| [`{path.stem}`](notebooks/{path.name}) | {what} | {q} | {f} | {gpu} |")
    block = "\n".join([BEGIN, *rows, END])
    text = README.read_text()
    if BEGIN not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block to fill")
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
    README.write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["quick", "full"], help="measure in this mode (omit with --write)")
    ap.add_argument("--only", nargs="*", help="two-digit notebook numbers, e.g. 00 03")
    ap.add_argument("--timeout", type=int, default=7200, help="seconds per notebook")
    ap.add_argument("--write", action="store_true", help="only rewrite headers and README from timings.json")
    ap.add_argument("--inplace", action="store_true",
                    help="quick mode only: store the executed outputs in the notebooks (what `make notebooks` does)")
    args = ap.parse_args(argv)
    if not args.mode and not args.write:
        ap.error("give --mode quick|full to measure, or --write to rewrite headers and README")
    if args.inplace and args.mode != "quick":
        ap.error("--inplace stores outputs, and committed notebooks hold quick-mode outputs: use it with --mode quick")
    timings = load()
    if args.mode:
        for path in notebooks(args.only):
            wall = measure(path, args.mode, args.timeout, inplace=args.inplace)
            print(f"{path.name}: {args.mode} {wall:.1f} s", flush=True)
            timings.setdefault(path.name, {})[args.mode] = {
                "seconds": round(wall, 1), "date": dt.date.today().isoformat(), "cpus": os.cpu_count()}
            TIMINGS.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")  # after each: a stop loses nothing
    write(timings)


if __name__ == "__main__":
    main()
