"""A warehouse into a new backup folder: every table the pipeline owns as Parquet, the manifest last.

- Reads go through the :class:`~pipeline.warehouse.base.Warehouse` interface only, so a backup
  of DuckDB and of BigQuery are made, and read back, the same way. The caller holds the
  warehouse lock, so no run writes while the tables are read: they are all of one moment.
- A table is read one season of its partition date at a time and written as one Parquet file
  per season, so memory holds one season of one table, whatever the warehouse's size.
- The manifest is written only once every file is: a backup killed at any point has none, and
  is never restored. A declared table the warehouse does not have is kept as a table of no rows.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Mapping

import polars as pl

from pipeline.backup.folder import Folder
from pipeline.backup.manifest import (
    MANIFEST,
    BackupError,
    FileEntry,
    Manifest,
    TableEntry,
    backup_name,
    by_season,
    column_types,
    sha256,
)
from pipeline.warehouse.base import TableSchema, Warehouse

log = logging.getLogger(__name__)

PARQUET_COMPRESSION = "zstd"


@dataclass(frozen=True)
class BackupMade:
    folder: Folder
    manifest: Manifest


def write_backup(
    warehouse: Warehouse,
    target: Folder,
    declared: Mapping[str, TableSchema],
    *,
    started_at: dt.datetime,
    git_commit: str,
    on_table: Callable[[str, TableEntry], None] = lambda name, entry: None,
) -> BackupMade:
    """Back up every ``declared`` table of ``warehouse`` into a new folder of ``target`` named by
    ``started_at`` (naive UTC); the manifest is the last file written."""
    target.check_bucket()
    folder = target.child(backup_name(started_at))
    if folder.exists():
        raise BackupError(f"{folder.url} already exists: one backup per second")
    if not any(warehouse.exists(name) for name in declared):
        raise BackupError(f"nothing to back up: {warehouse.describe()} holds none of the pipeline's tables (is warehouse.* right?)")
    tables = {}
    for name, schema in declared.items():
        tables[name] = export_table(warehouse, folder, schema)
        on_table(name, tables[name])
    manifest = Manifest(
        started_at=started_at,
        finished_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0),
        source=warehouse.describe(),
        pipeline_version=metadata.version("nba-pipeline"),
        git_commit=git_commit,
        tables=tables,
    )
    folder.write_whole(MANIFEST, manifest.to_json())
    return BackupMade(folder, manifest)


def export_table(warehouse: Warehouse, folder: Folder, schema: TableSchema) -> TableEntry:
    """One table into ``<table>/<season>.parquet`` files of ``folder``; returns its manifest entry."""
    partition = schema.partition_by
    wanted = pl.Schema(schema.columns)
    days = warehouse.dates_present(schema.name, partition_by=partition) if warehouse.exists(schema.name) else []
    if any(day is None for day in days):
        raise BackupError(
            f"{schema.name} has rows without a {partition}: a backup reads a table by its partition dates, "
            "and would leave those rows out"
        )
    files = []
    for season, season_days in by_season(days).items():
        rows = warehouse.read(schema.name, start=season_days[0], end=season_days[-1], partition_by=partition)
        if rows.schema != wanted:
            raise BackupError(
                f"{schema.name} in {warehouse.describe()} does not have its declared columns "
                f"({dict(rows.schema)} instead of {dict(wanted)}): a run brings it up to date; back up after one"
            )
        data = parquet_bytes(rows)
        path = f"{schema.name}/{season}.parquet"
        folder.write_bytes(path, data)
        files.append(FileEntry(path, rows.height, len(data), sha256(data), season_days[0], season_days[-1]))
    return TableEntry(
        partition_by=partition,
        columns=column_types(schema.columns),
        rows=sum(f.rows for f in files),
        first_date=days[0] if days else None,
        last_date=days[-1] if days else None,
        files=tuple(files),
    )


def parquet_bytes(rows: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    rows.write_parquet(buffer, compression=PARQUET_COMPRESSION)
    return buffer.getvalue()
