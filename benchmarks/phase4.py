"""Wall time of the full Phase 4 history on the bundled data: sharded (the default) against
one Ray task per date. Prints both, the ratio last.

Phase 2/3 is built first, untimed, into a warehouse each mode then starts from; Ray starts
once. Each timed run is the whole run as `python -m pipeline` does it (raw files loaded,
planning, every Ray task, every write and run-state row, bootstrap dates marked), without the
validation gates.

    python benchmarks/phase4.py [extra Hydra overrides, e.g. ray.num_cpus=2]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _harness import build, config, start_ray_timed, tables_of_phase


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "phase3.duckdb"
        print(f"ray start: {start_ray_timed(config(*extra)):.2f}s (once, not counted below)")
        prepared = build(config(tables_of_phase(2, 3), "backfill.with_dependents=false", f"warehouse.path={base}", *extra))
        print(f"Phase 2/3 (untimed below): {prepared.seconds:.2f}s")

        def run(label: str, *overrides: str) -> float:
            path = Path(tmp) / f"{label}.duckdb"
            shutil.copy(base, path)
            cfg = config(tables_of_phase(4), f"warehouse.path={path}", *extra, *overrides)
            timed = build(cfg)
            rows = sum(o.rows for o in timed.summary.tables.values())
            print(f"{label:>9} (shard.days={cfg.shard.days or 'auto'}): {timed.table_dates:,} table-dates, {rows:,} rows in {timed.seconds:7.2f}s")
            return timed.seconds

        run("warm-up", "dates.start=2023-01-02", "dates.end=2023-01-08")  # first DuckDB and Ray round trips
        sharded = run("sharded")
        per_date = run("per-date", "shard.days=1")
        print("target: the full Phase 4 history under 60 s on 2 cores, sharded at least 20x faster than per-date")
        print(f"per-date / sharded wall time: {per_date / sharded:.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
