"""The full build of the bundled data (every table) on the BigQuery emulator against the same
build on DuckDB, in one process with Ray already up; prints both wall times and the ratio last.
Target: the emulator run within 3x the DuckDB run. The emulator is DuckDB underneath, so the
difference is what the BigQuery protocols and the backend's jobs add: Storage Read sessions,
Parquet load jobs into staging tables, one transaction per commit.

The emulator (``python -m pipeline.emulator``) runs in its own process, as BigQuery would be
elsewhere. Each backend builds twice, alternately, into a fresh warehouse; the faster of the two
counts, since this machine's noise is larger than the difference being measured.

    python benchmarks/bigquery.py [extra Hydra overrides, e.g. ray.num_cpus=2]
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

from _harness import build, config, start_ray_timed

from pipeline.emulator import EmulatorProcess

ROUNDS = 2


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess.start() as emulator:
        print(f"emulator at {emulator.rest} (REST) and {emulator.grpc} (gRPC)")
        print(f"ray start: {start_ray_timed(config(*extra)):.2f}s (not counted below)")
        seconds: dict[str, list[float]] = {"duckdb": [], "bigquery": []}
        for round_ in range(ROUNDS):
            for backend in seconds:
                if backend == "duckdb":
                    overrides = [f"warehouse.path={Path(tmp) / f'warehouse-{round_}.duckdb'}"]
                else:
                    overrides = [*emulator.overrides(), f"warehouse.dataset_prefix=bench{uuid.uuid4().hex[:8]}_"]
                timed = build(config(*overrides, *extra))
                rows = sum(o.rows for o in timed.summary.tables.values())
                print(f"{backend:>8} round {round_ + 1}: {timed.table_dates:,} table-dates, {rows:,} rows in {timed.seconds:.2f}s")
                seconds[backend].append(timed.seconds)
        duckdb, bigquery = min(seconds["duckdb"]), min(seconds["bigquery"])
        print(f"full build, best of {ROUNDS}: DuckDB {duckdb:.2f}s, BigQuery emulator {bigquery:.2f}s")
        print(f"emulator / DuckDB: {bigquery / duckdb:.2f}x (target at most 3x)")


if __name__ == "__main__":
    main(sys.argv[1:])
