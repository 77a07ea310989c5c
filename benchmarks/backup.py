"""Backup and restore throughput on the bundled data's full warehouse (every Phase 2-4 table and
the run state, built once into a DuckDB file), to a local folder and to the Cloud Storage
emulator (``gcp-storage-emulator``, in its own process, as Cloud Storage would be elsewhere).

Per destination: ``task=backup``'s work (read every table, one Parquet file per table and
season, manifest last) and ``task=restore``'s (verify every file whole, then restore into a
fresh DuckDB file), in rows per second; the best of a few rounds, since this machine's noise is
larger than the differences. The ratio last: the emulator's throughput against the local folder's.

    python benchmarks/backup.py [extra Hydra overrides, e.g. ray.num_cpus=2]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from _harness import build, config, start_ray_timed

from pipeline.backup.export import write_backup
from pipeline.backup.folder import Folder
from pipeline.backup.manifest import owned_tables, run_state_tables
from pipeline.backup.restore import restore_backup, verify_backup
from pipeline.storage_emulator import StorageEmulatorProcess
from pipeline.warehouse.duckdb import DuckDBWarehouse

ROUNDS = 3


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, StorageEmulatorProcess.start(buckets=("backups",)) as emulator:
        source = Path(tmp) / "warehouse.duckdb"
        print(f"ray start: {start_ray_timed(config(*extra)):.2f}s (not counted below)")
        built = build(config(f"warehouse.path={source}", *extra))
        print(f"full warehouse built in {built.seconds:.1f}s: {built.table_dates:,} table-dates")
        print(f"Cloud Storage emulator at {emulator.url}")
        destinations = {"local folder": Folder.open(str(Path(tmp) / "backups")), "storage emulator": Folder.open("gs://backups/bench", endpoint_url=emulator.url)}
        declared = owned_tables()
        best: dict[str, dict[str, float]] = {}
        for name, target in destinations.items():
            best[name] = {"backup": 0.0, "restore": 0.0}
            for round_ in range(ROUNDS):
                started_at = dt.datetime(2025, 1, 1) + dt.timedelta(seconds=round_)  # a folder name of its own per round
                with DuckDBWarehouse(source, read_only=True) as warehouse:
                    started = time.perf_counter()
                    made = write_backup(warehouse, target, declared, started_at=started_at, git_commit="benchmark")
                    backup_seconds = time.perf_counter() - started
                rows = made.manifest.rows
                with DuckDBWarehouse(Path(tmp) / f"restored-{name.replace(' ', '-')}-{round_}.duckdb") as restored:
                    started = time.perf_counter()
                    manifest = verify_backup(made.folder, declared)
                    verified = time.perf_counter() - started
                    restore_backup(restored, made.folder, manifest, declared, run_state_tables())
                    restore_seconds = time.perf_counter() - started
                print(
                    f"{name:>16} round {round_ + 1}: {rows:,} rows, {made.manifest.bytes / 2**20:.1f} MB; "
                    f"backup {backup_seconds:.2f}s ({rows / backup_seconds:,.0f} rows/s), "
                    f"restore {restore_seconds:.2f}s of which verify {verified:.2f}s ({rows / restore_seconds:,.0f} rows/s)"
                )
                best[name]["backup"] = max(best[name]["backup"], rows / backup_seconds)
                best[name]["restore"] = max(best[name]["restore"], rows / restore_seconds)
        for name, rates in best.items():
            print(f"{name}, best of {ROUNDS}: backup {rates['backup']:,.0f} rows/s, restore {rates['restore']:,.0f} rows/s")
        local, remote = best["local folder"], best["storage emulator"]
        print(f"storage emulator / local folder: backup {remote['backup'] / local['backup']:.2f}x, restore {remote['restore'] / local['restore']:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
