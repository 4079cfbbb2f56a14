"""The README's results tables, built from the committed ``results/`` JSON files.

    python -m dreamlib.experiments.summary                  # prints the markdown the README holds
    python -m dreamlib.experiments.summary --write-readme   # puts it between the README's markers

``tests/test_readme_results.py`` checks that the README contains exactly this output, so a
re-run that changes a number fails CI until the README says the same.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import settings

__all__ = ["table_rows", "markdown_tables", "claims"]

COLUMNS = [("original", "original"), ("l1", "l1-uniform"), ("ERK", "erk"), ("LAMP", "lamp"),
           ("adaptive", "adaptive (before distillation)"),
           ("dream-budget", "dream-budget (before distillation, beyond the paper)"),
           ("ours: adaptive + KD", "ours: adaptive + dream-distill"),
           ("dream-budget + KD", "dream-budget + dream-distill (beyond the paper)"),
           ("LAMP + KD", "lamp + dream-distill")]
TEACHERS = {"table1": ("hinet", "mprnet"), "table2": ("durn", "agan")}
NAMES = {"hinet": "HINet", "mprnet": "MPRNet", "durn": "DuRN", "agan": "AGAN"}


def _load(table: str, name: str, root=None) -> dict | None:
    path = Path(root or settings.REPO_ROOT / "results") / f"{table}_small" / f"{table}_{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table_rows(table: str, root=None) -> list[str]:
    """Markdown rows (average PSNR, dB) of one table's committed runs, the best pruned entry in bold."""
    head = "| teacher | " + " | ".join(c for c, _ in COLUMNS) + " |"
    lines = [head, "|---|" + "---|" * len(COLUMNS)]
    for name in TEACHERS[table]:
        p = _load(table, name, root)
        if p is None:
            continue
        vals = {c: p["rows"][k]["average/psnr"] for c, k in COLUMNS if k in p["rows"]}
        best = max(v for c, v in vals.items() if c != "original")
        cells = [("**%.2f**" if (c != "original" and v == best) else "%.2f") % v if c in vals else "–"
                 for c, v in ((c, vals.get(c)) for c, _ in COLUMNS)]
        label = f"{NAMES[name]} ({p['teacher_macs'] / 1e9:.3f} → {p['target_macs'] / 1e9:.3f} G-MACs)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def claims(root=None) -> list[tuple[str, str, float]]:
    """``(teacher, claim, margin dB)`` of four comparisons that make the paper's claims concrete (>= 0: holds)."""
    out = []
    for table, names in TEACHERS.items():
        for name in names:
            p = _load(table, name, root)
            if p is None:
                continue
            a = {c: p["rows"][k]["average/psnr"] for c, k in COLUMNS if k in p["rows"]}
            out += [(NAMES[name], "adaptive >= l1 + 1.0 dB", a["adaptive"] - a["l1"] - 1.0),
                    (NAMES[name], "ours within 0.5 dB of the teacher", 0.5 - (a["original"] - a["ours: adaptive + KD"])),
                    (NAMES[name], "ours above LAMP (no fine-tuning)", a["ours: adaptive + KD"] - a["LAMP"]),
                    (NAMES[name], "dream-budget + KD >= LAMP + KD", a["dream-budget + KD"] - a["LAMP + KD"])]
    return out


def readings_rows(root=None) -> list[str]:
    """Both readings of Algorithm 1 at the paper's FLOPs on the same X, before fine-tuning
    (``results/prune_before_finetune/``), with the paper's protocol (tp = 50 dB) from the tables."""
    root = Path(root or settings.REPO_ROOT / "results")
    lines = ["| teacher | l1 | LAMP | adaptive, independent (tp found) | adaptive, cumulative (tp found) | "
             "tp = 50 dB, independent: MACs kept / average |", "|---|---|---|---|---|---|"]
    for table, names in TEACHERS.items():
        for name in names:
            path = root / "prune_before_finetune" / f"{name}.json"
            p = _load(table, name, root)
            if not path.is_file() or p is None:
                continue
            pt = json.loads(path.read_text())
            t, reps = pt["table"], pt["reports"]
            if "adaptive (cumulative)" not in t:
                continue
            pp = p.get("paper_protocol") or {}
            lines.append(
                f"| {NAMES[name]} | {t['l1-uniform']['average/psnr']:.2f} | {t['lamp']['average/psnr']:.2f} | "
                f"{t['adaptive']['average/psnr']:.2f} ({reps['adaptive']['details']['tp']:.1f} dB) | "
                f"{t['adaptive (cumulative)']['average/psnr']:.2f} "
                f"({reps['adaptive (cumulative)']['details']['tp']:.1f} dB) | "
                + (f"{100 * pp['macs_ratio']:.1f} % (paper's ratio {100 * p['target_macs'] / p['teacher_macs']:.1f} %)"
                   f" / {pp['average/psnr']:.2f} |" if pp else "– |"))
    return lines


def figure_rows(folder: str, stem: str, root=None) -> list[str]:
    """Rows of a committed Fig. 6 / Fig. 1 run: average and Rain100H PSNR (dB) per row."""
    path = Path(root or settings.REPO_ROOT / "results") / folder / f"{stem}.json"
    if not path.is_file():
        return []
    r = json.loads(path.read_text())["rows"]
    out = ["| row | average | Rain100H |", "|---|---|---|"]
    out += [f"| {k} | {v['average']['psnr']:.2f} | {v['Rain100H']['psnr']:.2f} |" for k, v in r.items()]
    return out


def speed_rows(name: str, root=None) -> list[str]:
    """``reproduce speed`` of one model: quality after recovery against measured speed-up."""
    from .speed import speedups, verdicts

    path = Path(root or settings.REPO_ROOT / "results") / "speed_small" / f"speed_{name}.json"
    if not path.is_file():
        return []
    p = json.loads(path.read_text())
    dense = p["rows"]["dense teacher"]

    def sp(r, opt):
        v = speedups(p, r, opt, 1)
        return "not timed" if v is None else f"{v:.2f}x"

    out = ["| student | % of the MACs | avg PSNR (dB) before → after dream-distill | eager, 1 thread | "
           "channels_last | compiled |", "|---|---|---|---|---|---|",
           f"| dense teacher | 100 | {dense['average/psnr']:.2f} | 1.00x | {sp(dense, 'channels_last')} | "
           f"{sp(dense, 'compiled')} |"]
    for pt in p["points"]:
        for key in ("masked", f"channel-{pt['chosen']}"):
            r = pt["rows"][key]
            after = r.get("after", {}).get("average/psnr")
            label = "masks: adaptive (the paper)" if key == "masked" else f"channels: {pt['chosen']} (chosen on X)"
            out.append(f"| {label} | {100 * r['gmacs'] * 1e9 / p['teacher_macs']:.1f} | "
                       f"{r['before']['average/psnr']:.2f} → {'—' if after is None else f'{after:.2f}'} | "
                       f"{sp(r, 'eager')} | {sp(r, 'channels_last')} | {sp(r, 'compiled')} |")
    for v in verdicts(p):
        out.append("")
        out.append(f"Goal at {100 * v['fraction']:.1f} % ({name}): >= 1.5x eager, >= 2x compiled, within 0.5 dB: "
                   f"{'holds' if v['holds'] else 'does not hold'} ({v['db_lost']:.2f} dB below the teacher).")
    return out


def markdown_tables(root=None) -> str:
    """Both tables and the claims check, as the README shows them."""
    parts = ["Table 1, average PSNR (dB, basicsr) over the five synthetic Rain13k-like sets:", "",
             *table_rows("table1", root), "",
             "Table 2, average PSNR (dB, basicsr) over the synthetic RainDrop-like test_a / test_b:", "",
             *table_rows("table2", root), "",
             "Four comparisons that make the paper's claims concrete, margin in dB (≥ 0: holds):", "",
             "| teacher | claim | margin (dB) | holds |", "|---|---|---|---|"]
    parts += [f"| {t} | {c} | {m:+.2f} | {'yes' if m >= 0 else 'no'} |" for t, c, m in claims(root)]
    parts += ["", "Algorithm 1's two readings at the paper's FLOPs on the same dreamed X, average PSNR (dB) before "
              "fine-tuning:", "", *readings_rows(root)]
    for folder, stem, title in (("ablation_small", "fig6_ablation_hinet", "Fig. 6 on HINet"),
                                ("ablation_small", "fig6_ablation_mprnet", "Fig. 6 on MPRNet"),
                                ("selfdata_small", "fig1_selfdata_hinet", "Fig. 1 on HINet, l1 at 30 %"),
                                ("selfdata_small", "fig1_selfdata_hinet_l1-50", "Fig. 1 on HINet, l1 at 50 %")):
        rows = figure_rows(folder, stem, root)
        if rows:
            parts += ["", f"{title} (`results/{folder}/{stem}.md`), PSNR (dB):", "", *rows]
    for name in ("hinet", "mprnet", "durn", "agan"):
        rows = speed_rows(name, root)
        if rows:
            parts += ["", f"From FLOPs to seconds, {name} (`results/speed_small/speed_{name}.md`; latency at "
                      "1x3x256x256 on this CPU, speed-up = the dense teacher's eager time / the model's time with the option, "
                      "same run):", "", *rows]
    return "\n".join(parts) + "\n"


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def readme_block(readme_text: str) -> str:
    """What the README holds between its results markers."""
    i, j = readme_text.index(BEGIN) + len(BEGIN), readme_text.index(END)
    return readme_text[i:j].strip("\n") + "\n"


def write_readme(path=None) -> Path:
    from ..io import atomic_write_text

    path = Path(path or settings.REPO_ROOT / "README.md")
    text = path.read_text()
    i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
    return atomic_write_text(path, text[:i] + "\n" + markdown_tables() + text[j:])


if __name__ == "__main__":
    import sys

    if "--write-readme" in sys.argv:
        print(f"wrote {write_readme()}")
    else:
        print(markdown_tables(), end="")
