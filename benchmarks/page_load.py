"""Page load: from `python app.py` starting to the page being usable, alternating between source trees.

For each round and each tree in turn: start ``python app.py --port P`` (a fresh outputs folder), time HTTP 200
on ``/`` and on ``/config`` (Gradio's config served), then open the page in headless Chromium (Playwright)
and time until the txt2img tab's Generate button is visible. Medians over the rounds.

    python benchmarks/page_load.py [--trees .,/tmp/old-checkout] [--rounds 4]

A tree is a checkout of this repository with a ``.venv`` (e.g. ``git archive <commit> | tar -x -C /tmp/old``
and a symlink to the venv), so an old commit can be measured side by side with this one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/install.sh --test), as the browser tests use
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
            return r.status
    except Exception:  # not up yet
        return None


def one_start(tree: Path, port: int, browser, timeout: float = 180.0) -> dict[str, float]:
    """Seconds from process start to: / answers 200, /config answers 200, Generate visible in the browser."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    proc = subprocess.Popen([str(tree / ".venv" / "bin" / "python"), "app.py", "--port", str(port), "--outputs-dir",
                             tempfile.mkdtemp(prefix="page-load-")], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: dict[str, float] = {}
    try:
        while len(times) < 2:
            if time.perf_counter() - start > timeout or proc.poll() is not None:
                raise RuntimeError(f"{tree}: the server did not come up (exit code {proc.poll()})")
            for path in ("/", "/config"):
                if path not in times and _status(f"http://127.0.0.1:{port}{path}") == 200:
                    times[path] = time.perf_counter() - start
            time.sleep(0.05)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#txt2img_generate").wait_for(state="visible", timeout=timeout * 1000)
        times["Generate visible"] = time.perf_counter() - start
        page.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", default=str(REPO), help="comma-separated checkouts, measured in turn each round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--port", type=int, default=7931)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    trees = [Path(t).resolve() for t in args.trees.split(",")]
    results: dict[Path, list[dict[str, float]]] = {t: [] for t in trees}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for r in range(args.rounds):
            for tree in trees:
                times = one_start(tree, args.port, browser)
                results[tree].append(times)
                print(f"round {r + 1}/{args.rounds} {tree}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()),
                      flush=True)
        browser.close()
    print(f"\nmedians of {args.rounds} alternating rounds, {os.cpu_count()} CPUs")
    for tree, runs in results.items():
        print(f"{tree}: " + ", ".join(f"{k} {statistics.median(t[k] for t in runs):.2f} s" for k in runs[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
