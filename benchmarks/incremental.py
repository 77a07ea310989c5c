"""A full backfill of the bundled data (every table) against a no-op rerun of the same command
on the built warehouse. Prints both times and the ratio last; the no-op must cost under 5%.

The ratio is of the pipeline's own work, in one process with Ray already up (gates left out of
the full run, which only makes the ratio harder to meet). The same pair as two commands
(`python -m pipeline training.after_run=false`, each paying for the interpreter, the imports and,
when there is work, Ray's start) is printed above it for reference.

    python benchmarks/incremental.py [extra Hydra overrides]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import build, config, start_ray_timed


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(f"warehouse.path={Path(tmp) / 'warehouse.duckdb'}", *extra)
        print(f"ray start: {start_ray_timed(cfg):.2f}s (not counted below)")
        full = build(cfg)
        built = sum(o.built + o.bootstrap for o in full.summary.tables.values())
        print(f"full backfill: {built:,} table-dates in {full.seconds:.2f}s")
        noop = build(cfg)
        rebuilt = sum(o.built + o.bootstrap for o in noop.summary.tables.values())
        assert rebuilt == 0, f"the rerun rebuilt {rebuilt} table-dates"
        print(f"no-op rerun: nothing rebuilt in {noop.seconds:.3f}s")
        commands = [command(Path(tmp) / "cli.duckdb", extra) for _ in range(2)]
        print(f"as commands: full {commands[0]:.2f}s, no-op {commands[1]:.2f}s ({commands[1] / commands[0]:.1%}, for reference)")
        print(f"no-op / full: {noop.seconds / full.seconds:.1%}")


def command(warehouse: Path, extra: list[str]) -> float:
    """Wall time of one `python -m pipeline` of every table (no training) on ``warehouse``."""
    started = time.perf_counter()
    args = [sys.executable, "-m", "pipeline", f"warehouse.path={warehouse}", f"logs.dir={warehouse.parent / 'logs'}", "training.after_run=false"]
    subprocess.run([*args, *extra], check=True, capture_output=True, cwd=warehouse.parent)
    return time.perf_counter() - started


if __name__ == "__main__":
    main(sys.argv[1:])
