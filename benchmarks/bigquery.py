"""The full build of the bundled data (every table) on the BigQuery emulator against the same
build on DuckDB, in one process with Ray already up; prints both wall times and the ratio last.
Target: the emulator run within 3x the DuckDB run. The emulator is DuckDB underneath, so the
difference is what the BigQuery protocols and the backend's jobs add: Storage Read sessions,
Parquet load jobs into staging tables, the transactions.

Then what a run costs on real BigQuery, where the number of jobs, not rows, sets a run's time:

- the jobs the driver makes (transactions, load jobs, other queries) and the load jobs workers
  make staging their shards (one per shard), for the full build and for a run that adds one new
  date, each again with ``shard.max_rows`` cut so that there are at least 8 times as many
  shards. Target: the driver's counts grow by at most 1.5x.
- the full build with BigQuery's latency played on the emulator (every statement of a query job
  and every load job held as long as on BigQuery, ``NBA_PIPELINE_BIGQUERY_LATENCY``) and 16 Ray
  CPUs, as ``python -m pipeline`` runs it: the projected wall time. Target: under 10 minutes.
  The latencies are the upper ends of what is published for small jobs: a statement "a couple of
  seconds" (Google Cloud blog, "BigQuery under the hood: Short query optimizations in the advanced
  runtime", 2024, on small queries before those optimizations), taken as 2 s; a load job of a few
  MB 2-5 s (Google Cloud blog, "Performance considerations for loading data into BigQuery",
  2022, whose smallest loads took several seconds), taken as 5 s. The compute runs on this
  machine's cores, so the projection is pessimistic about it.

The emulator (``python -m pipeline.emulator``) runs in its own process, as BigQuery would be
elsewhere. Each backend builds twice, alternately, into a fresh warehouse; the faster of the two
counts, since this machine's noise is larger than the difference being measured.

    python benchmarks/bigquery.py [extra Hydra overrides, e.g. ray.num_cpus=2]
    python benchmarks/bigquery.py --projection     # the latency projection only
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _harness import PROJECT_ROOT, build, config, start_ray_timed

from pipeline.emulator import EmulatorProcess
from pipeline.warehouse.bigquery.jobs import LATENCY_ENV

ROUNDS = 2
# Input rows per shard for the "8 times as many shards" runs (the default is 250,000).
SMALL_SHARDS = "shard.max_rows=4000"
LATENCY = "statement=2.0,load=5.0"
PROJECTED_CPUS = 16


def main(extra: list[str]) -> None:
    if "--projection" in extra:
        with tempfile.TemporaryDirectory() as tmp, EmulatorProcess.start() as emulator:
            projected = projected_build(emulator, Path(tmp))
            print(f"projected full build on BigQuery with {PROJECTED_CPUS} CPUs ({LATENCY}): {projected:.0f}s (target under 600s)")
        return
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
        job_counts(emulator, extra)
        projected = projected_build(emulator, Path(tmp))
        print(f"projected full build on BigQuery with {PROJECTED_CPUS} CPUs ({LATENCY}): {projected:.0f}s (target under 600s)")
        print(f"emulator / DuckDB: {bigquery / duckdb:.2f}x (target at most 3x)")


def job_counts(emulator: EmulatorProcess, extra: list[str]) -> None:
    """Jobs of the full build and of a one-new-date run, with the default shards and 8x as many."""
    last = _last_date(extra)
    rows = []
    for label, shards in (("default shards", []), (f"more shards ({SMALL_SHARDS})", [SMALL_SHARDS])):
        prefix = [*emulator.overrides(), f"warehouse.dataset_prefix=jobs{uuid.uuid4().hex[:8]}_", *shards, *extra]
        full = build(config(*prefix)).summary
        rows.append((f"full build, {label}", full))
        prefix = [*emulator.overrides(), f"warehouse.dataset_prefix=jobs{uuid.uuid4().hex[:8]}_", *shards, *extra]
        build(config(*prefix, f"data.boxscores_through={last - dt.timedelta(days=1)}"))
        rows.append((f"one new date, {label}", build(config(*prefix)).summary))
    print(f"{'':<44}{'transactions':>13}{'load jobs':>11}{'other':>7}{'shards (worker loads)':>23}")
    for label, summary in rows:
        jobs = summary.jobs
        print(f"{label:<44}{jobs.get('transaction', 0):>13}{jobs.get('load', 0):>11}{jobs.get('query', 0):>7}{summary.worker_loads:>23}")
    for what in ("full build", "one new date"):
        default, more = (s for label, s in rows if label.startswith(what))
        shards = more.worker_loads / max(1, default.worker_loads)
        growth = max(
            (more.jobs.get(k, 0) / default.jobs[k]) for k in ("transaction", "load") if default.jobs.get(k)
        )  # fmt: skip
        print(f"{what}: {shards:.1f}x the shards, driver's transactions and load jobs {growth:.2f}x (target at most 1.5x)")


def projected_build(emulator: EmulatorProcess, tmp: Path) -> float:
    """`python -m pipeline` (every table, its gates, no model) with BigQuery's latency played."""
    args = [sys.executable, "-m", "pipeline", *emulator.overrides(), f"warehouse.dataset_prefix=lat{uuid.uuid4().hex[:8]}_",
            f"ray.num_cpus={PROJECTED_CPUS}", "training.after_run=false", f"logs.dir={tmp / 'logs'}",
            f"validation.reports_dir={tmp / 'reports'}"]  # fmt: skip
    started = time.perf_counter()
    run = subprocess.run(args, cwd=PROJECT_ROOT, env={**os.environ, LATENCY_ENV: LATENCY, "COLUMNS": "200"}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"the latency run failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    summary = [line for line in (run.stdout + run.stderr).splitlines() if "warehouse jobs:" in line]
    print(f"latency run: {elapsed:.0f}s; {' '.join(summary[-1].split()) if summary else ''}")
    return elapsed


def _last_date(extra: list[str]):
    from pipeline.warehouse.source import RawSource

    return RawSource.from_config(config(*extra).data).calendar().dates[-1]


if __name__ == "__main__":
    main(sys.argv[1:])
