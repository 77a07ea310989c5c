"""Screenshots of the data docs in headless Chromium: the index (lineage map), one table's page and
the model page, saved as PNG, to look at what `task=docs` draws.

    python benchmarks/docs_screenshots.py [--docs var/docs] [--out var/screenshots]
        [--table nba_analytics.player_game_summary] [--width 1500] [--height 2200]

Needs Debian's `chromium` package (`apt-get install -y chromium`); not part of the tests. Chromium
runs with a fresh profile and everything that could reach the network switched off, on the site's
files directly (file://): the site needs no server. Prints each PNG's path and size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--disable-extensions",
)  # fmt: skip


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no chromium on the PATH: apt-get install -y chromium")


def screenshot(browser: str, page: Path, png: Path, width: int, height: int) -> float:
    with tempfile.TemporaryDirectory(prefix="docs-chromium-") as profile:
        started = time.perf_counter()
        subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default="var/docs", help="the site task=docs wrote (docs.dir)")
    parser.add_argument("--out", default="var/screenshots")
    parser.add_argument("--table", default="nba_analytics.player_game_summary", help="the table whose page is shot")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=2200)
    args = parser.parse_args()
    docs, out = Path(args.docs), Path(args.out)
    pages = {"index": docs / "index.html", "table": docs / "tables" / f"{args.table}.html", "model": docs / "model.html"}
    missing = [str(p) for p in pages.values() if not p.exists()]
    if missing:
        sys.exit(f"not in the site: {', '.join(missing)} (run python -m pipeline task=docs docs.dir={docs} first)")
    out.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    for name, page in pages.items():
        png = out / f"docs-{name}.png"
        seconds = screenshot(browser, page, png, args.width, args.height)
        print(f"{png}: {png.stat().st_size / 1024:,.0f} KB, {args.width}x{args.height}, {seconds:.1f}s ({page})")


if __name__ == "__main__":
    main()
