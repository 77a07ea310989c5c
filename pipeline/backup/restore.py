"""One backup back into a warehouse: verified whole first, then restored table by table.

- :func:`verify_backup` reads the manifest and every file before anything is written: the
  manifest against this pipeline's table declarations, each file's size, SHA-256, Parquet schema
  and row count against the manifest. Any problem refuses the whole restore, naming each file
  or table and what is wrong; the warehouse is not touched.
- :func:`restore_backup` then makes every table hold exactly the backup's rows: each file's
  date partitions replace the warehouse's with one :class:`~pipeline.warehouse.base.PartitionWrite`
  (all or nothing, as a run's shard), and partitions the backup does not have are emptied. The
  run-state rows of a table's dates are written in the same transaction as its rows, so a
  restore killed half-way leaves every (table, date) old or restored together with its state,
  and the planner rebuilds whatever the state says is missing.
- Memory holds one file (one season of one table) and the run state at a time.
- Every file is hashed again when it is read for writing, so a file changed after the
  verification stops the restore rather than being written.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from typing import Callable, Mapping

import polars as pl

from pipeline.backup.folder import Folder
from pipeline.backup.manifest import MANIFEST, BackupError, FileEntry, Manifest, TableEntry, file_problems, manifest_problems, sha256
from pipeline.state import RUN_STATE
from pipeline.warehouse.base import PartitionWrite, TableSchema, Warehouse

log = logging.getLogger(__name__)

# Problems listed in a refusal; the rest are counted.
PROBLEMS_SHOWN = 20


def read_manifest(folder: Folder) -> Manifest:
    if not folder.exists():
        raise BackupError(f"no backup at {folder.url}")
    try:
        data = folder.read_bytes(MANIFEST)
    except FileNotFoundError:
        raise BackupError(
            f"{folder.url} has no {MANIFEST}: the backup is incomplete (killed, or still being written) and is never restored"
        ) from None
    return Manifest.from_json(data, folder.url_of(MANIFEST))


def verify_backup(folder: Folder, declared: Mapping[str, TableSchema]) -> Manifest:
    """The backup's manifest, once the manifest and every file it names check out; otherwise
    :class:`BackupError` listing every problem found."""
    manifest = read_manifest(folder)
    problems = manifest_problems(manifest, declared)
    if not problems:  # the paths are safe to read
        for name, entry in manifest.tables.items():
            for f in entry.files:
                try:
                    data = folder.read_bytes(f.path)
                except FileNotFoundError:
                    problems.append(f"{f.path}: missing (the manifest lists it, {f.rows:,} rows of {name})")
                    continue
                problems.extend(file_problems(f, data, entry.columns))
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:PROBLEMS_SHOWN])
        more = f"\n  ... and {len(problems) - PROBLEMS_SHOWN} more" if len(problems) > PROBLEMS_SHOWN else ""
        raise BackupError(f"refused to restore {folder.url}: it does not verify; nothing was changed:\n{shown}{more}")
    return manifest


def restore_backup(
    warehouse: Warehouse,
    folder: Folder,
    manifest: Manifest,
    declared: Mapping[str, TableSchema],
    state_tables: set[str],
    *,
    on_table: Callable[[str, int], None] = lambda name, rows: None,
) -> dict[str, int]:
    """Make every ``declared`` table of ``warehouse`` hold exactly the backup's rows (the caller
    verified it and holds the lock); ``state_tables`` are the tables whose dates have run-state
    rows, restored with them. Returns the rows restored per table."""
    for schema in declared.values():
        warehouse.ensure_table(schema)
    backup_state = read_table(folder, manifest.tables[RUN_STATE.name], RUN_STATE)
    target_state = warehouse.read(RUN_STATE.name, columns=["table_name", "game_date"])
    restored = {}
    for name, schema in declared.items():
        if name == RUN_STATE.name:
            continue
        state = _state_of(name, backup_state, target_state) if name in state_tables else None
        restored[name] = restore_table(warehouse, folder, schema, manifest.tables[name], state)
        on_table(name, restored[name])
    # Run-state rows of tables no longer declared: as the backup has them, too.
    for name in sorted((set(backup_state["table_name"]) | set(target_state["table_name"])) - state_tables):
        rows, dates = _state_of(name, backup_state, target_state)
        warehouse.write([PartitionWrite(RUN_STATE.name, dates, rows, where={"table_name": name})])
    restored[RUN_STATE.name] = backup_state.height
    on_table(RUN_STATE.name, backup_state.height)
    return restored


def restore_table(
    warehouse: Warehouse, folder: Folder, schema: TableSchema, entry: TableEntry, state: tuple[pl.DataFrame, list[dt.date]] | None
) -> int:
    """One table: each file's partitions in one write (with the run-state rows of those dates),
    then the partitions the backup does not have, emptied (with theirs)."""
    partition = schema.partition_by
    name = schema.name
    leftover = set(warehouse.dates_present(name, partition_by=partition))
    if state is not None:
        leftover |= set(state[1])
    rows_written = 0
    for f in entry.files:
        rows = read_file(folder, f, schema)
        if rows[partition].null_count():
            raise BackupError(f"{f.path}: rows without a {partition}; a restore replaces partitions and cannot place them")
        days = sorted(rows[partition].unique())
        warehouse.write([PartitionWrite(name, days, rows, partition_by=partition), *_state_write(name, days, state)])
        leftover -= set(days)
        rows_written += rows.height
    if leftover:
        days = sorted(leftover)
        empty = pl.DataFrame(schema=schema.columns)
        warehouse.write([PartitionWrite(name, days, empty, partition_by=partition), *_state_write(name, days, state)])
    return rows_written


def _state_of(table: str, backup_state: pl.DataFrame, target_state: pl.DataFrame) -> tuple[pl.DataFrame, list[dt.date]]:
    """The backup's run-state rows of ``table``, and every date either side has state for."""
    rows = backup_state.filter(pl.col("table_name") == table)
    dates = set(rows["game_date"]) | set(target_state.filter(pl.col("table_name") == table)["game_date"])
    return rows, sorted(dates)


def _state_write(table: str, days: list[dt.date], state: tuple[pl.DataFrame, list[dt.date]] | None) -> list[PartitionWrite]:
    if state is None:
        return []
    rows = state[0].filter(pl.col("game_date").is_in(days))
    return [PartitionWrite(RUN_STATE.name, days, rows, where={"table_name": table})]


def read_table(folder: Folder, entry: TableEntry, schema: TableSchema) -> pl.DataFrame:
    """Every row of one table of the backup at once: for the run state, which a run holds in
    memory whole anyway."""
    frames = [read_file(folder, f, schema) for f in entry.files]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema.columns)


def read_file(folder: Folder, f: FileEntry, schema: TableSchema | None = None) -> pl.DataFrame:
    """One file's rows, if its bytes are still those the manifest (and the verification) vouched for."""
    try:
        data = folder.read_bytes(f.path)
    except FileNotFoundError:
        raise BackupError(f"{f.path}: deleted after the backup was verified; the restore stopped here") from None
    if len(data) != f.bytes or sha256(data) != f.sha256:
        raise BackupError(f"{f.path}: changed after the backup was verified; the restore stopped here")
    rows = pl.read_parquet(io.BytesIO(data))
    return rows if schema is None else rows.select(list(schema.columns))
