"""``task=backup``, ``task=restore`` and ``task=backups``, with the signature of the task
functions in pipeline/tasks.py: what each opens, prints and returns as exit code.

- ``task=backup``: holds the warehouse lock while it reads (every table of one moment), writes
  a new backup under ``backup.target``, then applies ``backup.retention_days`` there.
- ``task=restore``: holds the lock, verifies ``backup.source`` whole (``latest``: the newest
  complete backup under ``backup.target``), then restores it and prints the rows per table.
- ``task=backups``: the backups under ``backup.target``, oldest first.

A problem with a backup raises :class:`~pipeline.backup.manifest.BackupError`, which
:func:`pipeline.tasks.run_task` prints as the command's error.
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig
from rich.table import Table as RichTable

from pipeline.backup.export import write_backup
from pipeline.backup.folder import Folder
from pipeline.backup.manifest import TableEntry, owned_tables, run_state_tables
from pipeline.backup.restore import restore_backup, verify_backup
from pipeline.backup.retention import list_backups, newest_complete, prune
from pipeline.command import EXIT_OK, hold_lock
from pipeline.progress import console
from pipeline.state import utcnow
from pipeline.warehouse import open_warehouse

log = logging.getLogger("pipeline.backup")

LATEST = "latest"


def target_folder(cfg: DictConfig) -> Folder:
    return Folder.open(str(cfg.backup.target), endpoint_url=cfg.backup.storage.endpoint_url)


def source_folder(cfg: DictConfig) -> Folder:
    """``backup.source``: one backup folder, or the newest complete one under ``backup.target``."""
    source = str(cfg.backup.source or LATEST)
    if source == LATEST:
        target = target_folder(cfg)
        return target.child(newest_complete(target).name)
    return Folder.open(source, endpoint_url=cfg.backup.storage.endpoint_url)


def backup_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from training.artifacts import git_commit  # the checkout's commit, as a model records it

    target = target_folder(cfg)
    started = time.perf_counter()

    def done(name: str, entry: TableEntry) -> None:
        log.info("%s: %d file(s), %s rows, %s", name, len(entry.files), f"{entry.rows:,}", size_text(entry.bytes))

    warehouse = open_warehouse(cfg.warehouse, read_only=True)
    with warehouse, hold_lock(warehouse, cfg, run_id, overrides):
        log.info("backing up %s into %s", warehouse.describe(), target.url)
        made = write_backup(warehouse, target, owned_tables(), started_at=utcnow().replace(microsecond=0), git_commit=git_commit(), on_table=done)
    seconds = time.perf_counter() - started
    manifest = made.manifest
    console.print(
        f"backup complete: {made.folder.url}: {len(manifest.tables)} tables, {manifest.rows:,} rows, "
        f"{size_text(manifest.bytes)} in {seconds:.1f}s ({manifest.rows / seconds:,.0f} rows/s)"
    )
    for gone in prune(target, utcnow(), cfg.backup.retention_days):
        state = "complete" if gone.complete else "incomplete"
        console.print(f"retention: deleted the {state} backup {gone.name} ({size_text(gone.bytes)}), older than backup.retention_days")
    return EXIT_OK


def restore_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    source = source_folder(cfg)
    declared = owned_tables()
    started = time.perf_counter()
    warehouse = open_warehouse(cfg.warehouse)
    # A refused restore changes nothing, not even run_history: the run is recorded once the backup verifies.
    with warehouse, hold_lock(warehouse, cfg, run_id, overrides, record_at_start=False) as record:
        manifest = verify_backup(source, declared)
        record.opened(warehouse)
        files = sum(len(t.files) for t in manifest.tables.values())
        console.print(
            f"verified {source.url}: {len(manifest.tables)} tables, {files} files, {manifest.rows:,} rows "
            f"(backed up from {manifest.source} at {manifest.started_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"pipeline {manifest.pipeline_version} commit {manifest.git_commit})"
        )
        restored = restore_backup(
            warehouse, source, manifest, declared, run_state_tables(), on_table=lambda name, rows: log.info("restored %s: %s rows", name, f"{rows:,}")
        )
        where = warehouse.describe()
    seconds = time.perf_counter() - started
    grid = RichTable(title=f"restored into {where}", title_justify="left")
    grid.add_column("table")
    grid.add_column("rows", justify="right")
    for name, rows in restored.items():
        grid.add_row(name, f"{rows:,}")
    console.print(grid)
    total = sum(restored.values())
    console.print(f"restore complete: {total:,} rows in {len(restored)} tables from {source.url} in {seconds:.1f}s")
    return EXIT_OK


def backups_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    target = target_folder(cfg)
    backups = list_backups(target)
    if not backups:
        console.print(f"no backups under {target.url}")
        return EXIT_OK
    grid = RichTable(title=f"backups under {target.url}", title_justify="left")
    for column in ("backup", "started (UTC)", "state", "tables", "rows", "size"):
        grid.add_column(column, justify="right" if column in ("tables", "rows", "size") else "left")
    for b in backups:
        state = "complete" if b.complete else "[red]incomplete: never restored"
        grid.add_row(
            b.name,
            f"{b.started_at:%Y-%m-%d %H:%M:%S}",
            state,
            "-" if b.tables is None else str(b.tables),
            "-" if b.rows is None else f"{b.rows:,}",
            size_text(b.bytes),
        )
    console.print(grid)
    return EXIT_OK


def size_text(size: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    power = 0
    while size >= 1024 and power < len(units) - 1:
        size /= 1024
        power += 1
    return f"{size:.0f} B" if power == 0 else f"{size:,.1f} {units[power]}"
