"""Full Phase 3 backfill of the bundled data: sharded (the default) against one Ray task per
date (how the old per-date jobs worked). Prints player rows per second for both, ratio last.

Phase 3 builds the nba_analytics tables from nba_raw; the raw load (Phase 2) runs first,
untimed, into a warehouse each run then starts from. Ray starts once, before either mode. A
sharded run takes about a second, so one busy moment of a noisy machine moves it by a tenth:
it runs five times and the median counts (each run is printed).

    python benchmarks/phase3.py [extra Hydra overrides, e.g. ray.num_cpus=2]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _harness import build, config, start_ray_timed, tables_of_phase


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "phase2.duckdb"
        print(f"ray start: {start_ray_timed(config(*extra)):.2f}s (once, not counted below)")
        loaded = build(config(tables_of_phase(2), "backfill.with_dependents=false", f"warehouse.path={raw}", *extra))
        print(f"raw load (Phase 2, untimed below): {loaded.seconds:.2f}s")

        def run(label: str, *overrides: str) -> float:
            path = Path(tmp) / (label.replace(" #", "-") + ".duckdb")
            shutil.copy(raw, path)
            cfg = config(tables_of_phase(3), "backfill.with_dependents=false", f"warehouse.path={path}", *extra, *overrides)
            timed = build(cfg)
            path.unlink()
            rows = timed.summary.tables["nba_analytics.player_game_summary"].rows
            print(f"{label:>11} (shard.days={cfg.shard.days or 'auto'}): {rows:,} player rows in {timed.seconds:6.2f}s = {rows / timed.seconds:10,.0f} player rows/s")
            return rows / timed.seconds

        sharded = statistics.median(run(f"sharded #{i}") for i in range(1, 6))
        print(f"    sharded: median {sharded:,.0f} player rows/s")
        per_date = run("per-date", "shard.days=1")
        print("target: at least 100,000 player rows/s sharded on 2 cores, and at least 10x per-date")
        print(f"sharded / per-date throughput: {sharded / per_date:.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
