"""One check in a real browser: a course notebook's widget moves its figure in JupyterLab.

What it does (``make browser-check`` runs it; it takes a few minutes, so it is not part of ``make test``):

1. copies the notebook (default ``notebooks/05_adaptive_pruning.ipynb``) into a temporary folder, with
   its stored outputs removed, so the committed file is never touched and every widget seen was drawn
   by this run;
2. starts JupyterLab there, headless (``--no-browser``), on a free port, without token, with
   ``DREAMLIB_QUICK=1`` and temporary config/settings/workspace folders;
3. opens the notebook in Chromium (driven by Playwright), runs Run > Run All Cells from the menu and
   waits for the first slider widget (``.widget-slider``) to render together with its figure,
   and then for Run All to finish with no traceback in any output;
4. screenshots the widget with its figure, moves the slider one step with the keyboard (the slider
   handle is focused, ArrowRight is pressed, ArrowLeft at the right end; if the slider does not react,
   the handle is dragged with the mouse), waits for the figure to be redrawn and screenshots it again;
5. fails unless the slider's value and the figure's image both changed.

Screenshots go to ``work/browser_check/`` (git-ignored): ``before.png``, ``after.png`` (the widget
with its figure), ``page_before.png``, ``page_after.png`` (the whole JupyterLab window), and
``failure.png`` when something goes wrong.

Needs: Chromium from Debian (``apt-get install -y chromium``; Playwright's own browser download is not
used), and in the venv ``playwright`` and JupyterLab (``pip install playwright -e '.[notebooks]'``).

    python scripts/browser_check.py [NOTEBOOK] [--chromium PATH] [--timeout S] [--headed]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOK = REPO / "notebooks" / "05_adaptive_pruning.ipynb"
OUT_DIR = REPO / "work" / "browser_check"

# JupyterLab front-end selectors (JupyterLab 4, ipywidgets 8).
SLIDER = ".jp-OutputArea-output .widget-slider"
WIDGET_ERRORS = ("Error displaying widget", "Loading widget...")


# [n] prompts of executed cells, [*] of queued/running ones
PROMPTS_JS = """() => { const p = Array.from(document.querySelectorAll('.jp-Cell .jp-InputPrompt'))
                                        .map(e => e.innerText.trim());
                         return [p.filter(t => /\\[\\d+\\]/.test(t)).length, p.filter(t => t.includes('*')).length]; }"""


class CheckFailed(RuntimeError):
    """The check ran and something in the browser was not as expected."""


def fail_setup(msg: str, fix: str) -> None:
    print(f"browser-check: {msg} -- fix: {fix}", file=sys.stderr)
    sys.exit(2)


def log(t0: float, msg: str) -> None:
    print(f"[{time.time() - t0:6.1f} s] {msg}", flush=True)


def find_chromium(given: str | None) -> str:
    candidates = [given] if given else [os.environ.get("CHROMIUM"), "/usr/bin/chromium",
                                        shutil.which("chromium"), shutil.which("chromium-browser")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    if given:
        fail_setup(f"no executable browser at {given}", "pass --chromium /path/to/chromium")
    fail_setup("Chromium not found (looked for /usr/bin/chromium, chromium, chromium-browser)",
               "apt-get install -y chromium   (or set CHROMIUM=/path/to/chromium)")
    raise AssertionError  # unreachable


def check_python_side() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        fail_setup("the Python package playwright is missing from this environment",
                   f"{sys.executable} -m pip install playwright   (no browser download is needed)")
    try:
        import jupyterlab  # noqa: F401
        import ipywidgets  # noqa: F401
        import jupyterlab_widgets  # noqa: F401
    except ImportError as e:
        fail_setup(f"JupyterLab or ipywidgets is missing ({e.name})",
                   f"{sys.executable} -m pip install -e '.[notebooks]'")
    # The widget front end (labextension from jupyterlab_widgets) must match ipywidgets' major version,
    # or JupyterLab shows "Error displaying widget" instead of the slider.
    import ipywidgets
    import jupyterlab_widgets
    iw, jw = ipywidgets.__version__, jupyterlab_widgets.__version__
    if (iw.split(".")[0], jw.split(".")[0]) not in {("8", "3"), ("7", "1")}:
        fail_setup(f"ipywidgets {iw} and jupyterlab_widgets {jw} do not belong together",
                   f"{sys.executable} -m pip install -U 'ipywidgets>=8' 'jupyterlab_widgets>=3'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_without_outputs(src: Path, dst_dir: Path) -> Path:
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    nb.get("metadata", {}).pop("widgets", None)  # stored widget state would show stale views
    dst = dst_dir / src.name
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return dst


def start_lab(root: Path, home: Path, port: int, log_path: Path) -> subprocess.Popen:
    settings_dir = home / "lab-settings"
    notif = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True)
    # no "would you like to receive news?" toast, no update check: nothing to click away
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # start the notebook's kernel without the "Select Kernel" dialog, and keep every cell in the DOM
    # (with windowing, the outputs of cells scrolled out of view are detached and cannot be found)
    tracker = settings_dir / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"autoStartDefaultKernel": True, "windowingMode": "none"}))
    env = dict(os.environ)
    env.update({
        "DREAMLIB_QUICK": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),       # ignore the user's jupyter config
        "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONUNBUFFERED": "1",
    })
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
           "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    logf = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_server(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 120) -> None:
    url = f"http://127.0.0.1:{port}/api/status"
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise CheckFailed(f"JupyterLab exited with code {proc.returncode}; its log:\n"
                              + log_path.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise CheckFailed(f"JupyterLab did not answer on port {port} within {timeout:.0f} s; log: {log_path}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)   # its own session: the server and its kernels
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def errors_on_page(page) -> list[str]:
    """Tracebacks shown in output areas, and widgets the front end could not draw."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
        .map(el => el.innerText || '')
        .filter(t => t.includes('Traceback (most recent call last)') || t.includes('Error displaying widget'))
        .map(t => t.slice(0, 2000))""")


def run_check(nb_path: Path, chromium: str, timeout: float, headed: bool, t0: float) -> dict:
    from playwright.sync_api import TimeoutError as PWTimeout
    from playwright.sync_api import sync_playwright

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.png"):
        old.unlink()
    tmp = Path(tempfile.mkdtemp(prefix="dreamlib-browser-check-"))
    root, home = tmp / "nb", tmp / "home"
    root.mkdir(); home.mkdir()
    copy = copy_without_outputs(nb_path, root)
    port = free_port()
    lab_log = OUT_DIR / "jupyterlab.log"
    proc = start_lab(root, home, port, lab_log)
    result: dict = {"notebook": str(nb_path.relative_to(REPO) if nb_path.is_relative_to(REPO) else nb_path)}
    try:
        wait_for_server(proc, port, lab_log)
        log(t0, f"JupyterLab up on 127.0.0.1:{port} (root {root}, log {lab_log.relative_to(REPO)})")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=not headed,
                                         args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            try:
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{copy.name}", timeout=120_000)
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                # should the "Select Kernel" dialog still come up, accept the notebook's kernel
                try:
                    page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=5_000)
                    log(t0, "accepted the 'Select Kernel' dialog")
                except PWTimeout:
                    pass
                # the kernel must be connected and idle before Run All
                page.wait_for_function(
                    """() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
                               return s && s.getAttribute('data-status') === 'idle'; }""",
                    timeout=120_000)
                log(t0, f"notebook open in Chromium, kernel idle ({len(page.query_selector_all('.jp-Cell'))} cells)")

                # Run > Run All Cells, from the menu bar as a reader would
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                t_run = time.time()
                log(t0, "Run > Run All Cells clicked; waiting for the slider widget")
                deadline = time.time() + timeout
                slider = page.locator(SLIDER).first
                bad_since, next_report = None, time.time() + 30
                while True:
                    if slider.count() and slider.is_visible():
                        break
                    errs = errors_on_page(page)
                    if errs:
                        raise CheckFailed("a cell failed before the widget appeared:\n" + errs[0])
                    body = page.locator(".jp-OutputArea").all_inner_texts()
                    bad = [m for m in WIDGET_ERRORS if any(m in b for b in body)]
                    bad_since = (bad_since or time.time()) if bad else None
                    if bad and time.time() - bad_since > 30:  # a widget that stays undrawn for 30 s
                        raise CheckFailed(f"the widget front end did not draw a widget ('{bad[0]}'): "
                                          "ipywidgets and jupyterlab_widgets versions / the labextension "
                                          "(jupyter labextension list) -- console errors: "
                                          + " | ".join(console_errors[-5:]))
                    if time.time() >= next_report:
                        done, busy = page.evaluate(PROMPTS_JS)
                        log(t0, f"  running: {done} cells done, {busy} queued/running")
                        next_report = time.time() + 30
                    if time.time() > deadline:
                        raise CheckFailed(f"no slider widget ({SLIDER}) after {timeout:.0f} s of Run All")
                    page.wait_for_timeout(1000)

                # the widget box (interact: slider + Output widget) and its figure
                box = slider.locator("xpath=ancestor::div[contains(@class,'jupyter-widgets')]"
                                     "[contains(@class,'widget-vbox') or contains(@class,'widget-interact')][1]")
                if not box.count():
                    box = slider.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')][1]")
                img = box.locator(".widget-output img, img").first
                img.wait_for(state="visible", timeout=120_000)
                page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle(),
                                       timeout=60_000)
                log(t0, f"slider and figure rendered ({time.time() - t_run:.1f} s after Run All)")
                # let Run All finish (the cells after the widget too), so the kernel is free to redraw
                # at once and the whole notebook is known to have run without an error
                while True:
                    done, busy = page.evaluate(PROMPTS_JS)
                    idle = page.evaluate("""() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
                                                    return !s || s.getAttribute('data-status') === 'idle'; }""")
                    if busy == 0 and idle:
                        break
                    if time.time() > deadline:
                        raise CheckFailed(f"Run All did not finish within {timeout:.0f} s ({busy} cells left)")
                    page.wait_for_timeout(1000)
                errs = errors_on_page(page)
                if errs:
                    raise CheckFailed("a cell failed during Run All:\n" + errs[0])
                t_all = time.time() - t_run
                log(t0, f"Run All finished: {done} code cells ran, no error shown ({t_all:.1f} s)")
                readout = slider.locator(".widget-readout").first
                label = slider.locator(".widget-label").first.inner_text().strip()
                value_before = readout.inner_text().strip()
                src_before = img.get_attribute("src") or ""
                box.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                box.screenshot(path=str(OUT_DIR / "before.png"))
                page.screenshot(path=str(OUT_DIR / "page_before.png"))
                save_img_src(src_before, OUT_DIR / "figure_before")

                # move the slider: focus its handle and press ArrowRight (noUiSlider's keyboard support);
                # at the right end, go left instead
                handle = slider.locator(".noUi-handle").first
                at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
                key = "ArrowLeft" if at_max else "ArrowRight"
                handle.focus()
                handle.press(key)
                how = f"keyboard ({key} on the focused slider handle)"
                try:
                    page.wait_for_function("([el, v]) => el.innerText.trim() !== v",
                                           arg=[readout.element_handle(), value_before], timeout=5_000)
                except PWTimeout:
                    # fallback: drag the handle a tenth of the track to the right (or left)
                    hb, tb = handle.bounding_box(), slider.locator(".noUi-target, .slider").first.bounding_box()
                    x0, y0 = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
                    dx = (tb["width"] / 10) * (-1 if at_max else 1)
                    page.mouse.move(x0, y0); page.mouse.down()
                    page.mouse.move(x0 + dx, y0, steps=10); page.mouse.up()
                    how = "mouse drag of the slider handle (the keyboard did not move it)"
                    page.wait_for_function("([el, v]) => el.innerText.trim() !== v",
                                           arg=[readout.element_handle(), value_before], timeout=10_000)
                value_after = readout.inner_text().strip()
                t_move = time.time()
                log(t0, f"slider '{label}' moved {value_before} -> {value_after} by {how}")

                # the figure is redrawn by the kernel: wait for a new, loaded image in the Output widget
                try:
                    page.wait_for_function(
                        """([box, old]) => { const i = box.querySelector('.widget-output img') || box.querySelector('img');
                                             return i && i.complete && i.naturalWidth > 0 && i.src !== old; }""",
                        arg=[box.element_handle(), src_before], timeout=120_000)
                except PWTimeout:
                    raise CheckFailed(f"the slider moved ({value_before} -> {value_after}) but the figure "
                                      "was not redrawn within 120 s") from None
                redraw = time.time() - t_move
                page.wait_for_timeout(500)
                img = box.locator(".widget-output img, img").first
                src_after = img.get_attribute("src") or ""
                box.screenshot(path=str(OUT_DIR / "after.png"))
                page.screenshot(path=str(OUT_DIR / "page_after.png"))
                save_img_src(src_after, OUT_DIR / "figure_after")
                shot_b, shot_a = (OUT_DIR / "before.png").read_bytes(), (OUT_DIR / "after.png").read_bytes()
                if src_after == src_before or shot_a == shot_b:
                    raise CheckFailed("the figure did not change after the slider moved")
                errs = errors_on_page(page)
                if errs:
                    raise CheckFailed("an output shows an error after the slider moved:\n" + errs[0])
                log(t0, f"figure redrawn {redraw:.1f} s after the move; image and screenshot both differ")
                result.update({
                    "slider": label, "value_before": value_before, "value_after": value_after, "moved_by": how,
                    "redraw_s": round(redraw, 2), "run_all_s": round(t_all, 1), "code_cells_run": done,
                    "figure_sha1_before": hashlib.sha1(src_before.encode()).hexdigest()[:12],
                    "figure_sha1_after": hashlib.sha1(src_after.encode()).hexdigest()[:12],
                    "console_errors": console_errors[-5:],
                })
            except Exception:
                try:
                    page.screenshot(path=str(OUT_DIR / "failure.png"))
                    print(f"browser-check: screenshot of the failure: {OUT_DIR / 'failure.png'}", file=sys.stderr)
                except Exception:
                    pass
                raise
            finally:
                browser.close()
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def save_img_src(src: str, stem: Path) -> None:
    """Write an <img> data: URI to a file (figure_before.jpeg / .png)."""
    if src.startswith("data:image/") and ";base64," in src:
        head, data = src.split(";base64,", 1)
        ext = head.split("/", 1)[1].replace("jpeg", "jpg")
        stem.with_suffix("." + ext).write_bytes(base64.b64decode(data))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", nargs="?", default=str(DEFAULT_NOTEBOOK),
                    help="notebook with an ipywidgets slider driving a matplotlib figure "
                         "(default: notebooks/05_adaptive_pruning.ipynb)")
    ap.add_argument("--chromium", help="browser executable (default: $CHROMIUM or /usr/bin/chromium)")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="seconds allowed for Run All to reach the widget (default 1800)")
    ap.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop JupyterLab on kill too
    t0 = time.time()
    nb = Path(args.notebook).resolve()
    if not nb.is_file():
        fail_setup(f"no notebook at {args.notebook}", "pass the path of an .ipynb file")
    chromium = find_chromium(args.chromium)
    check_python_side()
    log(t0, f"checking {nb.name} with {chromium}")
    try:
        res = run_check(nb, chromium, args.timeout, args.headed, t0)
    except CheckFailed as e:
        print(f"browser-check: FAILED after {time.time() - t0:.0f} s: {e}", file=sys.stderr)
        return 1
    total = time.time() - t0
    (OUT_DIR / "result.json").write_text(json.dumps({**res, "total_s": round(total, 1)}, indent=1) + "\n")
    print(f"browser-check: PASSED in {total:.0f} s -- slider '{res['slider']}' {res['value_before']} -> "
          f"{res['value_after']}, figure redrawn in {res['redraw_s']} s; screenshots in "
          f"{OUT_DIR.relative_to(REPO)}/ (before.png, after.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
