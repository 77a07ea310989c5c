"""A full backfill of the bundled data (every table) against a no-op rerun of the same command
on the built warehouse. Prints both times and the ratio last; the no-op must cost under 5%.

    python benchmarks/incremental.py [extra Hydra overrides]
"""

from __future__ import annotations

import sys
import tempfile
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
        print(f"no-op / full: {noop.seconds / full.seconds:.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
