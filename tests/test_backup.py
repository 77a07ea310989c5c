"""Backups (pipeline/backup/) in-process: the checks a restore makes, retention's choices, and a
small warehouse backed up to the Cloud Storage emulator and restored, on each backend.

The full warehouse, through the command line and across backends: tests/test_backup_pipeline.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import polars as pl
import pytest

from backends import Backend
from conftest import kill_process_group, pipeline_overrides, run_in_process, stop_in_process_ray, unwrapped
from pipeline.backup.export import parquet_bytes, write_backup
from pipeline.backup.folder import Folder
from pipeline.backup.manifest import (
    MANIFEST,
    BackupError,
    Manifest,
    backup_name,
    by_season,
    manifest_problems,
    owned_tables,
    relative_path,
    run_state_tables,
    season_of,
    sha256,
)
from pipeline.backup.restore import read_table, restore_backup, verify_backup
from pipeline.backup.retention import INCOMPLETE_GRACE, Listed, expired, list_backups, prune
from pipeline.state import RUN_STATE
from pipeline.warehouse import PartitionWrite, Warehouse, WarehouseLocked
from pipeline.warehouse.base import TableSchema
from pipeline.warehouse.duckdb import DuckDBWarehouse
from storage import OTHER_BUCKET, gs_folder

D = dt.date
# Three dates over two seasons: every table gets two files.
DAYS = [D(2023, 1, 5), D(2023, 1, 6), D(2023, 11, 2)]
STARTED = dt.datetime(2024, 3, 1, 2, 0, 0)


# -- a small warehouse with rows in every table the pipeline owns ------------------------------


def sample_rows(schema: TableSchema, days: list[dt.date], per_day: int = 2) -> pl.DataFrame:
    """``per_day`` rows per date, every column filled with a value of its declared type."""

    def value(name: str, dtype: pl.DataType, day: dt.date, i: int):
        if dtype == pl.Date:
            return day
        if dtype == pl.String:
            return f"{name} {day} {i} O'Neal \\"
        if dtype == pl.Boolean:
            return i % 2 == 0
        if dtype.is_integer():
            return i + day.day
        if dtype.is_float():
            return i + 0.25
        if isinstance(dtype, pl.Datetime):
            return dt.datetime(day.year, day.month, day.day, 12, 30, 15, 250 + i)
        if isinstance(dtype, pl.List):
            return [0.5, float(i)]
        raise AssertionError(f"no sample for {dtype}")

    records = [{c: value(c, t, day, i) for c, t in schema.columns.items()} for day in days for i in range(per_day)]
    return pl.DataFrame(records, schema=schema.columns)


def fill(warehouse: Warehouse, days: list[dt.date] = DAYS, tables: set[str] | None = None) -> dict[str, pl.DataFrame]:
    """Rows in every owned table (or ``tables``; run state: one row per table and date); returns them."""
    written = {}
    for name, schema in owned_tables().items():
        if tables is not None and name not in tables:
            continue
        warehouse.ensure_table(schema)
        if name == RUN_STATE.name:
            rows = pl.concat(
                sample_rows(schema, days, per_day=1).with_columns(table_name=pl.lit(table)) for table in sorted(run_state_tables())
            )
        else:
            rows = sample_rows(schema, days)
        warehouse.write([PartitionWrite(name, days, rows, partition_by=schema.partition_by)])
        written[name] = rows
    return written


def every_table(warehouse: Warehouse) -> dict[str, pl.DataFrame]:
    return {name: warehouse.read(name).sort(pl.all()) for name in owned_tables()}


def same_tables(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].equals(expected[name].sort(pl.all())), f"{name} differs"


@pytest.fixture
def local_backup(tmp_path) -> Folder:
    """A backup of a small DuckDB warehouse in a local folder."""
    with Backend.duckdb(tmp_path / "source.duckdb").open() as source:
        fill(source)
        made = write_backup(source, Folder.open(str(tmp_path / "backups")), owned_tables(), started_at=STARTED, git_commit="abc123")
    return made.folder


# -- names and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["nba_raw.schedule/2023-24.parquet", "manifest.json", "a/b=1/c-d_e.parquet"])
def test_plain_relative_paths_are_below_the_folder(path):
    assert relative_path(path, "file") == path


@pytest.mark.parametrize(
    "path",
    ["../x.parquet", "a/../../b.parquet", "/etc/passwd", "gs://elsewhere/x.parquet", "elsewhere:x", "a\\..\\b", ".hidden", "a//b", "", "..", 7],
)
def test_paths_that_would_leave_the_folder_are_refused(path):
    with pytest.raises(BackupError, match="outside the backup folder|is not a path"):
        relative_path(path, "file")


def test_a_folder_refuses_to_reach_outside_itself(tmp_path):
    folder = Folder.open(str(tmp_path / "backups"))
    for name in ("..", "../other", "/tmp"):
        with pytest.raises(BackupError):
            folder.child(name)
        with pytest.raises(BackupError):
            folder.read_bytes(name)
    with pytest.raises(BackupError, match="local path or gs://"):
        Folder.open("s3://bucket/backups")


def test_seasons_run_from_july_to_june():
    assert season_of(D(2023, 7, 1)) == season_of(D(2024, 6, 30)) == "2023-24"
    assert season_of(D(2023, 6, 30)) == "2022-23" and season_of(D(1999, 10, 1)) == "1999-00"
    assert by_season([D(2024, 1, 5), D(2023, 1, 5), D(2023, 11, 2)]) == {"2022-23": [D(2023, 1, 5)], "2023-24": [D(2023, 11, 2), D(2024, 1, 5)]}


# -- retention ---------------------------------------------------------------------------------

NOW = dt.datetime(2025, 3, 1, 2, 0, 0)


def listed(age: dt.timedelta, complete: bool = True) -> Listed:
    started = NOW - age
    return Listed(backup_name(started), started, complete, 18 if complete else None, 10 if complete else None, 1000)


def test_retention_deletes_complete_backups_older_than_the_limit_and_keeps_the_rest():
    old, older = listed(dt.timedelta(days=31)), listed(dt.timedelta(days=90))
    recent, newest = listed(dt.timedelta(days=29)), listed(dt.timedelta(hours=1))
    young_incomplete = listed(INCOMPLETE_GRACE - dt.timedelta(minutes=1), complete=False)
    stale_incomplete = listed(INCOMPLETE_GRACE + dt.timedelta(minutes=1), complete=False)
    backups = [older, old, stale_incomplete, recent, young_incomplete, newest]
    assert expired(backups, NOW, 30) == [older, old, stale_incomplete]
    # With no limit to speak of, everything complete goes but the newest complete one.
    assert expired(backups, NOW, 0) == [older, old, stale_incomplete, recent]


def test_retention_never_deletes_the_newest_complete_backup_however_old():
    only_old = [listed(dt.timedelta(days=400)), listed(dt.timedelta(days=300)), listed(dt.timedelta(hours=2), complete=False)]
    assert expired(only_old, NOW, 30) == [only_old[0]]
    assert expired([listed(dt.timedelta(hours=2), complete=False)], NOW, 0) == []


def test_retention_deletes_nothing_but_expired_backup_folders(local_backup, tmp_path):
    """The small backup (2024-03-01) is the newest complete one: kept, however old."""
    target = tmp_path / "backups"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ancient, stale = backup_name(dt.datetime(2020, 1, 1)), backup_name(now - dt.timedelta(days=2))
    shutil.copytree(local_backup.root, target / ancient)
    (target / stale / "nba_raw.schedule").mkdir(parents=True)
    (target / stale / "nba_raw.schedule" / "2022-23.parquet").write_bytes(b"what a killed backup left")
    (target / "notes.txt").write_text("not a backup")
    shutil.copytree(local_backup.root, target / "20200101T000000")  # not a backup's name: not a backup
    shutil.copytree(local_backup.root, tmp_path / "elsewhere" / ancient)  # not under backup.target

    gone = prune(Folder.open(str(target)), now, 30)
    assert sorted(b.name for b in gone) == sorted([ancient, stale])
    assert sorted(p.name for p in target.iterdir()) == sorted([backup_name(STARTED), "notes.txt", "20200101T000000"])
    assert (tmp_path / "elsewhere" / ancient / MANIFEST).exists() and (target / "20200101T000000" / MANIFEST).exists()
    assert [b.name for b in list_backups(Folder.open(str(target)))] == [backup_name(STARTED)]


# -- what a restore checks before it writes ----------------------------------------------------


def load_manifest(folder: Folder) -> dict:
    return json.loads(folder.read_bytes(MANIFEST))


def save_manifest(folder: Folder, manifest: dict) -> None:
    folder.write_whole(MANIFEST, json.dumps(manifest).encode())


def largest_file(manifest: dict) -> tuple[str, dict]:
    return max(((name, f) for name, t in manifest["tables"].items() for f in t["files"]), key=lambda item: item[1]["bytes"])


def change_one_byte(folder: Folder) -> list[str]:
    _, f = largest_file(load_manifest(folder))
    data = bytearray(folder.read_bytes(f["path"]))
    data[len(data) // 2] ^= 0x01
    folder.write_bytes(f["path"], bytes(data))
    return [f["path"], "SHA-256"]


def delete_one_file(folder: Folder) -> list[str]:
    _, f = largest_file(load_manifest(folder))
    folder.fs.rm(folder.path(f["path"]))
    return [f["path"], "missing"]


def miscount_rows(folder: Folder) -> list[str]:
    """The manifest says one row more for a file, and for its table: only the file disagrees."""
    manifest = load_manifest(folder)
    name, f = largest_file(manifest)
    f["rows"] += 1
    manifest["tables"][name]["rows"] += 1
    save_manifest(folder, manifest)
    return [f["path"], f"the manifest says {f['rows']:,}"]


def retype_a_column(folder: Folder) -> list[str]:
    manifest = load_manifest(folder)
    name, _ = largest_file(manifest)
    columns = manifest["tables"][name]["columns"]
    column = next(c for c, t in columns.items() if t == "String")
    columns[column] = "Int64"
    save_manifest(folder, manifest)
    return [f"table {name}", f"{column} Int64 instead of String"]


def rewrite_a_file_without_a_column(folder: Folder) -> list[str]:
    """Another Parquet schema in the file, with a manifest whose checksum and size match it."""
    manifest = load_manifest(folder)
    _, f = largest_file(manifest)
    rows = pl.read_parquet(io.BytesIO(folder.read_bytes(f["path"])))
    dropped = rows.columns[-1]
    data = parquet_bytes(rows.drop(dropped))
    folder.write_bytes(f["path"], data)
    f["bytes"], f["sha256"] = len(data), sha256(data)
    save_manifest(folder, manifest)
    return [f["path"], "Parquet schema differs", f"missing {dropped}"]


def remove_the_manifest(folder: Folder) -> list[str]:
    folder.fs.rm(folder.path(MANIFEST))
    return [f"has no {MANIFEST}", "incomplete"]


def point_a_file_outside(folder: Folder) -> list[str]:
    """A file path that climbs out of the backup to a real Parquet file with the right checksum:
    only the path check stops it."""
    manifest = load_manifest(folder)
    _, f = largest_file(manifest)
    f["path"] = f"../{folder.root.rsplit('/', 1)[1]}/{f['path']}"
    save_manifest(folder, manifest)
    return [f["path"], "outside the backup folder"]


def rename_a_table_outside(folder: Folder) -> list[str]:
    manifest = load_manifest(folder)
    manifest["tables"]["../../nba_raw.schedule"] = manifest["tables"].pop("nba_raw.schedule")
    save_manifest(folder, manifest)
    return ["'../../nba_raw.schedule'", "outside the backup folder", "table nba_raw.schedule: not in the backup"]


TAMPERINGS: dict[str, Callable[[Folder], list[str]]] = {
    "one byte changed": change_one_byte,
    "a file deleted": delete_one_file,
    "row count differs from the file": miscount_rows,
    "schema differs from the declaration": retype_a_column,
    "schema differs from the file": rewrite_a_file_without_a_column,
    "no manifest": remove_the_manifest,
    "a file outside the folder": point_a_file_outside,
    "a table outside the folder": rename_a_table_outside,
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_backup_does_not_verify_and_the_refusal_names_the_problem(local_backup, tamper):
    verify_backup(local_backup, owned_tables())  # as made, it verifies
    expected = tamper(local_backup)
    with pytest.raises(BackupError) as refused:
        verify_backup(local_backup, owned_tables())
    for text in expected:
        assert text in str(refused.value)


def test_a_manifest_cannot_send_a_restore_to_another_bucket_or_an_absolute_path(local_backup, storage_emulator):
    """The file a manifest points at waits there, with the right checksum: only the path check
    stops the restore from reading it."""
    backup = gs_folder(storage_emulator)
    root = Path(local_backup.root)
    for file in (f for f in root.rglob("*") if f.is_file()):
        backup.write_bytes(file.relative_to(root).as_posix(), file.read_bytes())
    manifest = load_manifest(backup)
    _, f = largest_file(manifest)
    stolen = Folder.open(f"gs://{OTHER_BUCKET}/stolen", endpoint_url=storage_emulator.url)
    stolen.write_bytes(f["path"], backup.read_bytes(f["path"]))
    verify_backup(backup, owned_tables())
    for outside in (stolen.url_of(f["path"]), local_backup.path(f["path"])):
        f["path"] = outside
        save_manifest(backup, manifest)
        with pytest.raises(BackupError, match="outside the backup folder") as refused:
            verify_backup(backup, owned_tables())
        assert repr(outside) in str(refused.value)


def test_a_manifest_is_checked_against_this_pipelines_declarations(local_backup):
    manifest = Manifest.from_json(local_backup.read_bytes(MANIFEST), "manifest")
    assert manifest_problems(manifest, owned_tables()) == []
    declared = dict(owned_tables())
    extra = declared.pop("nba_raw.quarantine")
    assert manifest_problems(manifest, declared) == ["table nba_raw.quarantine: this pipeline declares no such table"]
    declared = {**owned_tables(), "nba_raw.injury_report": TableSchema("nba_raw.injury_report", extra.columns)}
    assert manifest_problems(manifest, declared) == ["table nba_raw.injury_report: not in the backup, and this pipeline declares it"]
    moved = {**owned_tables(), RUN_STATE.name: TableSchema(RUN_STATE.name, RUN_STATE.columns, partition_by="finished_at")}
    assert manifest_problems(manifest, moved) == [f"table {RUN_STATE.name}: partitioned by game_date in the backup, by finished_at here"]
    with pytest.raises(BackupError, match="not a readable manifest"):
        Manifest.from_json(b'{"format": "nba-pipeline-backup", "format_version": 1, "tables": []}', "manifest.json")
    with pytest.raises(BackupError, match="not a manifest this pipeline reads"):
        Manifest.from_json(b'{"format": "other"}', "manifest.json")


def test_a_backup_refuses_an_empty_warehouse_and_a_missing_bucket(storage_emulator, tmp_path):
    with Backend.duckdb(tmp_path / "warehouse.duckdb").open() as warehouse:
        with pytest.raises(BackupError, match="nothing to back up: duckdb:.* holds none of the pipeline's tables"):
            write_backup(warehouse, Folder.open(str(tmp_path / "backups")), owned_tables(), started_at=STARTED, git_commit="abc123")
        fill(warehouse, tables={"nba_raw.schedule"})
        nowhere = Folder.open("gs://no-such-bucket/nightly", endpoint_url=storage_emulator.url)
        with pytest.raises(BackupError, match="no bucket gs://no-such-bucket"):
            write_backup(warehouse, nowhere, owned_tables(), started_at=STARTED, git_commit="abc123")
    assert not (tmp_path / "backups").exists()


# -- a round trip through Cloud Storage, on each backend ---------------------------------------


def another(backend: Backend, tmp_path, name: str) -> Backend:
    """A second, empty warehouse of the same kind as ``backend``."""
    return Backend.duckdb(tmp_path / f"{name}.duckdb") if backend.name == "duckdb" else Backend.bigquery(backend.emulator)


def test_a_small_warehouse_round_trips_through_cloud_storage(backend, gs_target, tmp_path):
    with backend.open() as source:
        fill(source)
        expected = every_table(source)
        described = source.describe()
        made = write_backup(source, gs_target, owned_tables(), started_at=STARTED, git_commit="abc123")
    manifest = made.manifest
    assert made.folder.url == f"{gs_target.url}/20240301T020000Z" and made.folder.exists(MANIFEST)
    assert manifest.source == described and manifest.git_commit == "abc123"
    assert manifest.tables.keys() == owned_tables().keys()
    for name, entry in manifest.tables.items():
        assert entry.rows == expected[name].height and [f.path for f in entry.files] == [f"{name}/2022-23.parquet", f"{name}/2023-24.parquet"]
        assert (entry.first_date, entry.last_date) == (DAYS[0], DAYS[-1])

    # Into a warehouse that already holds other rows, on dates of the backup and others (a few
    # tables, to keep the emulator's share short): afterwards it holds exactly the backup's.
    with another(backend, tmp_path, "target").open() as target:
        fill(target, [D(2023, 1, 6), D(2025, 1, 1)], tables={"nba_raw.schedule", "nba_orchestration.validation_results", RUN_STATE.name})
        verified = verify_backup(made.folder, owned_tables())
        restored = restore_backup(target, made.folder, verified, owned_tables(), run_state_tables())
        assert restored == {name: expected[name].height for name in owned_tables()}
        same_tables(every_table(target), expected)


def test_a_file_changed_after_the_verification_is_refused_as_it_is_read_and_nothing_of_it_written(local_backup, tmp_path):
    """The backup verifies; then, before the restore reads it, one file of a table is replaced by
    another Parquet file of the same table with other values (checks that read the manifest again
    would pass it). The restore stops at that file, naming it; the table's dates in the files
    before it are restored, those of that file keep their old rows and run state."""
    name = "nba_analytics.player_game_summary"
    schema = owned_tables()[name]
    with Backend.duckdb(tmp_path / "target.duckdb").open() as target:
        fill(target)
        # The target's own rows of that table and its run state: 3 a day, and failed dates.
        target.write([PartitionWrite(name, DAYS, sample_rows(schema, DAYS, per_day=3))])
        state = sample_rows(RUN_STATE, DAYS, per_day=1).with_columns(table_name=pl.lit(name), status=pl.lit("failed"))
        target.write([PartitionWrite(RUN_STATE.name, DAYS, state, where={"table_name": name})])
        before = every_table(target)

        verified = verify_backup(local_backup, owned_tables())
        first, last = verified.tables[name].files  # 2022-23 (01-05, 01-06), then 2023-24 (11-02)
        rows = pl.read_parquet(io.BytesIO(local_backup.read_bytes(last.path)))
        local_backup.write_bytes(last.path, parquet_bytes(rows.with_columns(pl.col("pts") + 10)))
        with pytest.raises(BackupError, match=f"{last.path}: changed after the backup was verified; the restore stopped here"):
            restore_backup(target, local_backup, verified, owned_tables(), run_state_tables())
        after = every_table(target)

    def on(frame: pl.DataFrame, days: list[dt.date]) -> pl.DataFrame:
        return frame.filter(pl.col("game_date").is_in(days))

    backed_up = pl.read_parquet(io.BytesIO(local_backup.read_bytes(first.path))).sort(pl.all())
    assert on(after[name], DAYS[:2]).equals(backed_up) and backed_up.height == 4  # its first file: restored
    assert on(after[name], DAYS[2:]).equals(on(before[name], DAYS[2:])) and on(after[name], DAYS[2:]).height == 3  # the changed one: old
    old_state = after[RUN_STATE.name].filter(table_name=name)
    assert on(old_state, DAYS[2:]).equals(on(before[RUN_STATE.name].filter(table_name=name), DAYS[2:]))
    backup_state = read_table(local_backup, verified.tables[RUN_STATE.name], RUN_STATE).filter(table_name=name)
    assert on(old_state, DAYS[:2]).equals(on(backup_state, DAYS[:2]).sort(pl.all()))  # restored with the file's rows


# The restore in a subprocess, parked the moment it is about to read one file for writing (its
# second read: the first verified it), until the test kills it: a kill half-way, at a known point,
# which no timing can promise. Everything else is the command as it runs.
PARKED_RESTORE = """
import pathlib, runpy, sys, time
from pipeline.backup.folder import Folder
parked, barrier = sys.argv[1], pathlib.Path(sys.argv[2])
read_bytes, reads = Folder.read_bytes, []
def parking_read(self, relative):
    reads.append(relative)
    if relative == parked and reads.count(relative) == 2:
        barrier.touch()
        time.sleep(3600)
    return read_bytes(self, relative)
Folder.read_bytes = parking_read
sys.argv = ["python -m pipeline", *sys.argv[3:]]
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)  # python -m pipeline, in this process
"""


@pytest.mark.slow
def test_a_restore_killed_half_way_leaves_each_table_and_date_old_or_restored(local_backup, tmp_path):
    """SIGKILL while the restore reads the second file of nba_analytics.player_game_summary: every
    (table, date) holds either the target's old rows or the backup's, with the matching run state;
    both kinds are there; a second restore completes and leaves exactly the backup."""
    target = tmp_path / "warehouse.duckdb"
    old_days = [*DAYS[1:], D(2025, 1, 1)]  # the backup's days but its first, and one of the target's own
    with Backend.duckdb(target).open() as warehouse:
        for name, schema in owned_tables().items():
            warehouse.ensure_table(schema)
            if name == RUN_STATE.name:
                rows = pl.concat(
                    sample_rows(schema, old_days, per_day=1).with_columns(table_name=pl.lit(table), status=pl.lit("failed"))
                    for table in sorted(run_state_tables())
                )
            else:
                rows = sample_rows(schema, old_days, per_day=3)
            warehouse.write([PartitionWrite(name, old_days, rows, partition_by=schema.partition_by)])
        before = every_table(warehouse)
    backup = every_table_of(local_backup)

    parked = "nba_analytics.player_game_summary/2023-24.parquet"
    barrier = tmp_path / "parked"
    overrides = pipeline_overrides(tmp_path, ("task=restore", f"backup.source={local_backup.root}"), None)
    stop_in_process_ray()
    restore = subprocess.Popen(
        [sys.executable, "-c", PARKED_RESTORE, parked, str(barrier), *overrides], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not barrier.exists():
            assert restore.poll() is None, f"the restore ended (exit code {restore.returncode}) before it reached {parked}"
            assert time.monotonic() < deadline, f"the restore did not reach {parked} in 300 s"
            time.sleep(0.1)
        os.killpg(restore.pid, signal.SIGKILL)
        restore.wait(timeout=60)
    finally:
        kill_process_group(restore.pid)
    assert restore.returncode == -signal.SIGKILL

    with Backend.duckdb(target).open(read_only=True) as warehouse:
        after = every_table(warehouse)
    states = {"before": before[RUN_STATE.name], "backup": backup[RUN_STATE.name], "after": after[RUN_STATE.name]}
    kinds = set()
    for name, schema in owned_tables().items():
        if name == RUN_STATE.name:
            continue
        day_column = schema.partition_by
        for day in sorted({*DAYS, *old_days}):
            rows = {k: t[name].filter(pl.col(day_column) == day) for k, t in (("before", before), ("backup", backup), ("after", after))}
            kind = "old" if rows["after"].equals(rows["before"]) else "restored" if rows["after"].equals(rows["backup"]) else None
            assert kind, f"{name} {day}: neither the old rows nor the backup's"
            kinds.add(kind)
            if name in run_state_tables():
                state = {k: s.filter(pl.col("table_name") == name, pl.col("game_date") == day) for k, s in states.items()}
                assert state["after"].equals(state["before" if kind == "old" else "backup"]), f"{name} {day}: run state of another kind than its rows"
    assert kinds == {"old", "restored"}
    assert not after["nba_analytics.player_game_summary"].filter(pl.col("game_date") == DAYS[0]).is_empty()  # the file before it: restored
    # A second restore completes.
    run = run_in_process(tmp_path, "task=restore", f"backup.source={local_backup.root}")
    assert run.returncode == 0, run.output
    with Backend.duckdb(target).open(read_only=True) as warehouse:
        restored = every_table(warehouse)
    # The restores record themselves in run_history (the killed one too): the backup's runs are as they were.
    history = "nba_orchestration.run_history"
    restored[history] = restored[history].filter(pl.col("run_id").is_in(backup[history]["run_id"].implode()))
    same_tables(restored, backup)


def every_table_of(backup: Folder) -> dict[str, pl.DataFrame]:
    """Every table of a backup, as every_table reads a warehouse."""
    manifest = verify_backup(backup, owned_tables())
    return {name: read_table(backup, manifest.tables[name], schema).sort(pl.all()) for name, schema in owned_tables().items()}


# -- the command: the lock, and failures ---------------------------------------------------------


@pytest.mark.slow
def test_a_backup_holds_the_warehouse_lock_while_it_reads(tmp_path):
    """After each table it has read, another run tries to take the warehouse: refused every time,
    naming the backup; once the backup is done, the warehouse is free."""
    path = tmp_path / "warehouse.duckdb"
    with Backend.duckdb(path).open() as warehouse:
        fill(warehouse)
    tries: list[str] = []

    class AnotherRun(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().split(":")[0] in owned_tables():  # "<table>: N file(s), ...": that table is read
                try:
                    with DuckDBWarehouse(path).lock(holder={"run": "another run"}, wait_seconds=0, stale_seconds=0):
                        tries.append("got the warehouse")
                except WarehouseLocked as refused:
                    tries.append(str(refused))

    handler = AnotherRun()
    logging.getLogger("pipeline.backup").addHandler(handler)
    try:
        run = run_in_process(tmp_path, "task=backup")
    finally:
        logging.getLogger("pipeline.backup").removeHandler(handler)
    assert run.returncode == 0, run.output
    assert len(tries) == len(owned_tables())
    assert all("is in use by another run (held by run " in text and "task=backup" in text for text in tries), tries[:2]
    with DuckDBWarehouse(path).lock(holder={"run": "another run"}, wait_seconds=0, stale_seconds=0):
        pass


@pytest.mark.slow
def test_a_failed_backup_exits_1_naming_what_failed(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with Backend.duckdb(path).open() as warehouse:
        fill(warehouse)
    # Another run holds the warehouse: refused at once, naming it, nothing written.
    with DuckDBWarehouse(path).lock(holder={"run": "nightly-run", "pid": os.getpid()}, wait_seconds=0, stale_seconds=0):
        refused = run_in_process(tmp_path, "task=backup")
    assert refused.returncode == 1
    assert "is in use by another run (held by run nightly-run" in unwrapped(refused.output)
    assert not (tmp_path / "backups").exists()
    # A target that cannot be written (a file where its folder should be): the error names the path.
    (tmp_path / "not-a-folder").write_text("a file")
    failed = run_in_process(tmp_path, "task=backup", f"backup.target={tmp_path / 'not-a-folder' / 'nightly'}")
    assert failed.returncode == 1, failed.output
    text = unwrapped(failed.output)
    assert "error: failed writing" in text and str(tmp_path / "not-a-folder" / "nightly") in text and "Traceback" not in text
