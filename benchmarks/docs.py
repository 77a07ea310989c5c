"""Time to build the data docs (`task=docs`) on the bundled data. Target: under 10 s.

The site is built from what the main command leaves (run here as its two steps, the build and
task=train): every table over the whole bundled history, its gates' validation results, its run
history and profiles, and its model; plus one backup, so that the backups page verifies a real
one (`docs.verify_backup`, on by default: every file's size, SHA-256 and schema); and predictions
graded over the bundled lines' last six weeks, so that the model page draws its charts. That
setup is made once and not timed (or reused with --workdir).
Then `python -m pipeline task=docs` runs --repeats times, each a process of its own as cron
would start it: its wall time (Python, Hydra and the imports included) and the time the task
reports for itself (reading the warehouse, drawing and writing every page). Prints the load
average seen (the machine is shared: figures move with it), the pages and the site's size, and
last the median wall time against the target.

    python benchmarks/docs.py [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 10.0
GRADED = ("2024-12-01", "2025-01-12")


def pipeline(workdir: Path, *overrides: str) -> tuple[float, str]:
    """`python -m pipeline` with every folder under ``workdir``: (wall seconds, output)."""
    args = [
        sys.executable, "-m", "pipeline", f"warehouse.path={workdir / 'warehouse.duckdb'}", f"logs.dir={workdir / 'logs'}",
        f"training.models_root={workdir / 'models'}", f"validation.reports_dir={workdir / 'reports'}", f"backup.target={workdir / 'backups'}",
        f"docs.dir={workdir / 'docs'}", *overrides,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(args, cwd=PROJECT_ROOT, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"python -m pipeline {' '.join(overrides)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr


def prepare(workdir: Path) -> None:
    """The main command's warehouse and model, a backup, graded predictions; not timed. Each step
    that is already done in ``workdir`` is skipped (a plain run then has nothing to build)."""
    workdir.mkdir(parents=True, exist_ok=True)
    seconds, _ = pipeline(workdir, "training.after_run=false")
    print(f"every table, with the gates: {seconds:.1f}s (not timed below)")
    if not list((workdir / "models").glob("*/metrics.json")):
        seconds, _ = pipeline(workdir, "task=train")
        print(f"task=train: {seconds:.1f}s (not timed below)")
    if not (workdir / "backups").exists():
        seconds, _ = pipeline(workdir, "task=backup")
        print(f"task=backup: {seconds:.1f}s (not timed below)")
    # Graded predictions with lines, so that the model page has its charts: the bundled lines' last
    # weeks (dates the model was fitted or validated on: a picture of the page, not of the model).
    dates = (f"dates.start={GRADED[0]}", f"dates.end={GRADED[1]}")
    seconds, _ = pipeline(workdir, "task=predict", *dates)
    seconds += pipeline(workdir, "task=grade", *dates)[0]
    print(f"task=predict and task=grade {GRADED[0]}..{GRADED[1]}: {seconds:.1f}s (not timed below)")


def site_size(docs: Path) -> tuple[int, int]:
    files = [p for p in docs.rglob("*") if p.is_file()]
    return sum(1 for p in files if p.suffix == ".html"), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep (or reuse) the built warehouse, model and backup here")
    args = parser.parse_args()
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="docs-bench-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        prepare(workdir)
        walls, own = [], []
        for i in range(1, args.repeats + 1):
            wall, output = pipeline(workdir, "task=docs")
            reported = re.search(r"data docs: (\d+) pages in .* in ([\d.]+)s", " ".join(output.split()))
            if not reported:
                raise SystemExit(f"task=docs did not say what it wrote:\n{output}")
            walls.append(wall)
            own.append(float(reported[2]))
            print(f"  run {i}: {wall:.2f}s wall, {own[-1]:.1f}s reported by the task ({reported[1]} pages)")
        pages, size = site_size(workdir / "docs")
    print(f"site: {pages} HTML pages, {size / 2**20:.1f} MB in all")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    wall = statistics.median(walls)
    print(f"median: {wall:.2f}s wall, {statistics.median(own):.1f}s reported by the task (target under {TARGET_SECONDS:.0f} s)")
    print(f"wall / target: {wall / TARGET_SECONDS:.2f}")


if __name__ == "__main__":
    main()
