"""task=backup, task=restore and task=backups end to end, on the full bundled warehouse.

The source is README's main command (conftest.main_command) with predictions and grades on
three dates, so every table the pipeline owns has rows (but the quarantine: the bundled data has
no bad rows). One backup of it in a local folder serves the module; the trip through Cloud
Storage to BigQuery and back makes its own, on the emulators the session starts. The commands run
in this process (``run_in_process``), but where a run is killed or the lock is held from here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from backends import Backend
from conftest import run_in_process, run_pipeline, unwrapped
from pipeline.backup.folder import Folder
from pipeline.backup.manifest import MANIFEST, Manifest, backup_name, backup_time, owned_tables, sha256
from pipeline.history import RUN_HISTORY
from pipeline.state import RUN_STATE
from pipeline.warehouse.duckdb import DuckDBWarehouse
from storage import gs_folder
from test_backup import TAMPERINGS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]

PREDICTED = ("2025-03-05", "2025-03-07")


def every_table(backend: Backend) -> dict[str, pl.DataFrame]:
    """Every table the pipeline owns, rows in one order."""
    with backend.open(read_only=True) as warehouse:
        return {name: warehouse.read(name).sort(pl.all(), nulls_last=True) for name in owned_tables()}


def assert_same_tables(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    """Every table as expected; run_history on the expected runs only: it also records the runs
    made since (each restore, a plain run that found nothing to do), as a run history should."""
    assert got.keys() == expected.keys()
    history = got[RUN_HISTORY.name]
    got = {**got, RUN_HISTORY.name: history.filter(pl.col("run_id").is_in(expected[RUN_HISTORY.name]["run_id"].implode()))}
    for name, rows in expected.items():
        assert got[name].schema == rows.schema, name
        assert got[name].height == rows.height, f"{name}: {got[name].height:,} rows, expected {rows.height:,}"
        assert got[name].equals(rows), f"{name} differs from the source"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def only_backup(target: Path) -> Path:
    (folder,) = [p for p in target.iterdir() if p.is_dir()]
    return folder


@pytest.fixture(scope="module")
def source(main_command, tmp_path_factory) -> Path:
    """A copy of the main command's warehouse with predictions and grades on three dates."""
    main_dir, _ = main_command
    workdir = tmp_path_factory.mktemp("backup_source")
    shutil.copy(main_dir / "warehouse.duckdb", workdir / "warehouse.duckdb")
    dates = [f"dates.start={PREDICTED[0]}", f"dates.end={PREDICTED[1]}"]
    for task in ("task=predict", "task=grade"):
        run = run_in_process(workdir, task, f"training.model_dir={main_dir / 'model'}", *dates)
        assert run.returncode == 0, run.output
    return workdir / "warehouse.duckdb"


@pytest.fixture(scope="module")
def source_tables(source) -> dict[str, pl.DataFrame]:
    tables = every_table(Backend.duckdb(source))
    empty = [name for name, rows in tables.items() if rows.height == 0]
    assert empty == ["nba_raw.quarantine"]  # every other table has rows to lose
    return tables


@pytest.fixture(scope="module")
def local_backup(source) -> Path:
    """One backup of the source in a local folder; copy it before changing it."""
    target = source.parent / "backups"
    run = run_in_process(source.parent, "task=backup", f"backup.target={target}")
    assert run.returncode == 0, run.output
    assert "backup complete" in unwrapped(run.output)
    return only_backup(target)


@pytest.fixture(scope="module")
def bigquery_copy(source, source_tables, storage_emulator, bigquery_emulator, tmp_path_factory) -> tuple[Backend, Folder]:
    """The source backed up to Cloud Storage and restored into a fresh dataset prefix of the
    BigQuery emulator; and the gs:// folder of backups."""
    workdir = tmp_path_factory.mktemp("backup_bigquery")
    target = gs_folder(storage_emulator)
    gs = [f"backup.target={target.url}", *storage_emulator.overrides()]
    run = run_in_process(workdir, "task=backup", *gs, warehouse=[f"warehouse.path={source}"])
    assert run.returncode == 0, run.output
    backend = Backend.bigquery(bigquery_emulator)
    run = run_in_process(workdir, "task=restore", *gs, warehouse=backend.overrides)
    assert run.returncode == 0, run.output
    return backend, target


# -- restores that work ------------------------------------------------------------------------


def test_a_backup_holds_every_table_with_its_manifest(source_tables, local_backup):
    manifest = Manifest.from_json((local_backup / MANIFEST).read_bytes(), "manifest")
    assert manifest.tables.keys() == owned_tables().keys()
    assert manifest.source.startswith("duckdb:") and manifest.source.endswith("warehouse.duckdb")
    assert manifest.pipeline_version == "0.1.0" and len(manifest.git_commit) >= 40
    assert local_backup.name == backup_name(manifest.started_at)
    for name, entry in manifest.tables.items():
        rows = source_tables[name]
        assert entry.rows == rows.height, name
        if rows.height:
            assert (entry.first_date, entry.last_date) == (rows[entry.partition_by].min(), rows[entry.partition_by].max())
        for f in entry.files:
            data = (local_backup / f.path).read_bytes()
            assert (len(data), sha256(data)) == (f.bytes, f.sha256)
    # Large tables come in one file per season.
    assert [f.path for f in manifest.tables["nba_analytics.player_game_summary"].files] == [
        f"nba_analytics.player_game_summary/{season}.parquet" for season in ("2022-23", "2023-24", "2024-25")
    ]


def test_a_restore_into_a_fresh_duckdb_is_the_backup_row_for_row_with_nothing_to_rebuild(source, source_tables, local_backup, tmp_path):
    run = run_in_process(tmp_path, "task=restore", f"backup.source={local_backup}")
    assert run.returncode == 0, run.output
    text = unwrapped(run.output)
    assert f"verified {local_backup}: {len(owned_tables())} tables" in text and "restore complete" in text
    assert f"│ nba_analytics.player_game_summary │ {source_tables['nba_analytics.player_game_summary'].height:,} │" in text
    assert_same_tables(every_table(Backend.duckdb(tmp_path / "warehouse.duckdb")), source_tables)

    # task=status shows the same dates ok as in the source, none failed or missing.
    status = run_in_process(tmp_path, "task=status")
    assert status.returncode == 0, status.output
    original = run_in_process(source.parent, "task=status")
    assert status_rows(status.output) == status_rows(original.output) and status_rows(status.output)
    for row in status_rows(status.output):
        table, season, ok, failed, missing, *_ = row
        assert int(ok.replace(",", "")) > 0 and failed == missing == "0", row
    # The run state came back with its fingerprints: a plain run finds nothing to rebuild.
    rerun = run_in_process(tmp_path)
    assert rerun.returncode == 0 and "nothing to do" in rerun.output, rerun.output


def status_rows(output: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("│ ").split("│")] for line in output.splitlines() if line.startswith("│ nba_")]


def test_a_restore_over_an_existing_warehouse_leaves_exactly_the_backup(main_command, source_tables, local_backup, tmp_path):
    """The target has no predictions, validation results of its own run, and a date the backup
    does not have (with its run state): afterwards it holds the backup's rows and nothing else."""
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(main_command[0] / "warehouse.duckdb", target)
    with duckdb.connect(str(target)) as con:
        con.execute("INSERT INTO nba_raw.schedule SELECT * REPLACE (DATE '2030-01-01' AS game_date) FROM nba_raw.schedule LIMIT 3")
        con.execute(
            f"INSERT INTO {RUN_STATE.name} SELECT * REPLACE (DATE '2030-01-01' AS game_date) FROM {RUN_STATE.name} "
            "WHERE table_name = 'nba_raw.schedule' LIMIT 1"
        )
    run = run_in_process(tmp_path, "task=restore", f"backup.target={local_backup.parent}")  # backup.source=latest
    assert run.returncode == 0, run.output
    assert_same_tables(every_table(Backend.duckdb(target)), source_tables)


def test_duckdb_to_cloud_storage_to_bigquery_and_back_every_table_identical(source_tables, bigquery_copy, storage_emulator, tmp_path):
    backend, target = bigquery_copy
    gs = [f"backup.target={target.url}", *storage_emulator.overrides()]
    assert_same_tables(every_table(backend), source_tables)
    rerun = run_in_process(tmp_path, warehouse=backend.overrides)
    assert rerun.returncode == 0 and "nothing to do" in rerun.output, rerun.output

    # And back: BigQuery to the same bucket folder, then the newest backup there into DuckDB.
    run = run_in_process(tmp_path, "task=backup", *gs, warehouse=backend.overrides)
    assert run.returncode == 0, run.output
    listing = run_in_process(tmp_path, "task=backups", *gs)
    assert listing.returncode == 0 and unwrapped(listing.output).count(f"│ complete │ {len(owned_tables())} │") == 2, listing.output
    run = run_in_process(tmp_path, "task=restore", *gs)
    assert run.returncode == 0, run.output
    assert f"from bigquery:local (datasets {backend.prefix}nba_*" in unwrapped(run.output)
    assert_same_tables(every_table(Backend.duckdb(tmp_path / "warehouse.duckdb")), source_tables)


# -- restores that are refused -----------------------------------------------------------------

# The problems the issue names, on both backends; the others (paths outside the folder) on DuckDB.
BOTH_BACKENDS = (
    "one byte changed",
    "a file deleted",
    "row count differs from the file",
    "schema differs from the declaration",
    "schema differs from the file",
    "no manifest",
)
CASES = [(name, "duckdb") for name in TAMPERINGS] + [(name, "bigquery") for name in BOTH_BACKENDS]


@pytest.mark.parametrize(("tampering", "kind"), CASES, ids=[f"{name}-{kind}" for name, kind in CASES])
def test_a_tampered_backup_is_refused_and_the_warehouse_is_unchanged(
    tampering, kind, main_command, source_tables, local_backup, request, tmp_path
):
    copy = tmp_path / "backups" / local_backup.name
    shutil.copytree(local_backup, copy)
    expected = TAMPERINGS[tampering](Folder.open(str(copy)))
    if kind == "duckdb":
        backend = Backend.duckdb(tmp_path / "warehouse.duckdb")
        shutil.copy(main_command[0] / "warehouse.duckdb", backend.path)
        before = file_digest(backend.path)
    else:
        backend, _ = request.getfixturevalue("bigquery_copy")

    run = run_in_process(tmp_path, "task=restore", f"backup.source={copy}", warehouse=backend.overrides)
    text = unwrapped(run.output)
    assert run.returncode == 1, run.output
    assert "error:" in text and "Traceback" not in text
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in {text}"
    if kind == "duckdb":
        assert file_digest(backend.path) == before
        assert not backend.path.with_name(backend.path.name + ".wal").exists()
    else:
        assert_same_tables(every_table(backend), source_tables)


def test_a_restore_waits_for_no_run_and_changes_nothing_while_one_holds_the_warehouse(main_command, local_backup, tmp_path):
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(main_command[0] / "warehouse.duckdb", target)
    before = file_digest(target)
    with DuckDBWarehouse(target).lock(holder={"run": "nightly-run", "pid": os.getpid()}, wait_seconds=0, stale_seconds=600):
        run = run_pipeline(tmp_path, "task=restore", f"backup.source={local_backup}")
    assert run.returncode == 1 and "is in use by another run (held by run nightly-run" in unwrapped(run.output), run.output
    assert file_digest(target) == before


# -- killed backups, listing and retention -----------------------------------------------------


def test_a_backup_killed_half_way_is_incomplete_and_a_later_one_restores(source, source_tables, tmp_path):
    target = tmp_path / "backups"
    args = [sys.executable, "-m", "pipeline", "task=backup", f"warehouse.path={source}", f"backup.target={target}", f"logs.dir={tmp_path / 'logs'}"]
    backup = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(target.glob("*/*/*.parquet")):
        assert backup.poll() is None and time.monotonic() < deadline, "the backup ended before it wrote a file"
        time.sleep(0.01)
    backup.send_signal(signal.SIGKILL)
    backup.wait()
    killed = only_backup(target)
    assert not (killed / MANIFEST).exists()

    listing = run_in_process(tmp_path, "task=backups", f"backup.target={target}")
    assert f"│ {killed.name} │" in unwrapped(listing.output) and "incomplete: never restored" in unwrapped(listing.output), listing.output
    refused = run_in_process(tmp_path, "task=restore", f"backup.source={killed}")
    assert refused.returncode == 1 and f"{killed} has no manifest.json: the backup is incomplete" in unwrapped(refused.output)
    assert not (tmp_path / "warehouse.duckdb").exists()

    # A later backup and a restore of the newest complete one are unaffected; the killed one stays
    # (younger than a day: it might still be being written).
    run = run_in_process(tmp_path, "task=backup", f"warehouse.path={source}", f"backup.target={target}")
    assert run.returncode == 0 and "retention: deleted" not in run.output, run.output
    run = run_in_process(tmp_path, "task=restore", f"backup.target={target}")
    assert run.returncode == 0, run.output
    assert_same_tables(every_table(Backend.duckdb(tmp_path / "warehouse.duckdb")), source_tables)
    assert killed.exists() and len([p for p in target.iterdir() if p.is_dir()]) == 2


def test_retention_after_a_backup_deletes_only_expired_backups(source, local_backup, tmp_path):
    target, outside = tmp_path / "backups", tmp_path / "elsewhere"
    now = time.time()

    def aged(days: float) -> str:
        return backup_name(time_utc(now - days * 86400))

    old, recent, stale_incomplete, young_incomplete = aged(60), aged(10), aged(3), aged(2 / 24)
    for name in (old, recent):
        shutil.copytree(local_backup, target / name)
    for name in (stale_incomplete, young_incomplete):
        (target / name / "nba_raw.schedule").mkdir(parents=True)
        (target / name / "nba_raw.schedule" / "2022-23.parquet").write_bytes(b"what a killed backup left")
    (target / "README.txt").write_text("nightly backups")
    shutil.copytree(local_backup, target / "archive" / old)  # not a backup folder of target: a folder of something else
    shutil.copytree(local_backup, outside / old)
    untouched = [target / "README.txt", target / "archive" / old / MANIFEST, outside / old / MANIFEST]

    run = run_in_process(tmp_path, "task=backup", f"warehouse.path={source}", f"backup.target={target}", "backup.retention_days=30")
    assert run.returncode == 0, run.output
    text = unwrapped(run.output)
    assert f"deleted the complete backup {old}" in text and f"deleted the incomplete backup {stale_incomplete}" in text
    first = [name for name in backup_dirs(target) if name not in (recent, young_incomplete)]
    assert len(first) == 1 and backup_dirs(target) == sorted([recent, young_incomplete, *first])

    # With no days kept, every complete backup but the newest goes; the young incomplete one stays.
    run = run_in_process(tmp_path, "task=backup", f"warehouse.path={source}", f"backup.target={target}", "backup.retention_days=0")
    assert run.returncode == 0, run.output
    (newest,) = [name for name in backup_dirs(target) if name not in (young_incomplete, *first)]
    assert backup_dirs(target) == sorted([young_incomplete, newest])
    assert all(path.exists() for path in untouched)


def time_utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def backup_dirs(target: Path) -> list[str]:
    """The backup folders under ``target`` (by their names)."""
    return sorted(p.name for p in target.iterdir() if p.is_dir() and backup_time(p.name) is not None)
