"""Writes replace whole partitions, all of one call or nothing, in as few jobs as the call allows.

A call's rows are staged first: rows a Ray worker staged itself (handles) as they are, and the
rows the call carries in one load job per table (Parquet, into ``staging_dataset``, whose tables
expire after a day). Then one multi-statement transaction, for every table of the call, run
state included: the fence (this run still holds the lock: :mod:`.lock`), then per table one
``DELETE`` of the partitions to replace and one ``INSERT`` of everything staged for it. A run
killed at any moment leaves each date old or new: before the ``COMMIT`` nothing of the call is
visible, and a failed transaction is rolled back whole.

The partitions to replace are constant expressions (``game_date IN (DATE '2024-01-05', …) AND
table_name = 'x'``): BigQuery prunes partitions only by a constant filter (a subquery over a
table of keys scans every partition, and is refused on a table that requires a partition filter:
https://cloud.google.com/bigquery/docs/querying-partitioned-tables#better_performance_with_pruning).
So a call costs one transaction and at most one load job per table it carries rows for, however
many dates and shards it holds: the runner gathers what finished into one call
(``commit_interval_seconds``), and the jobs follow the run's length, not its shards.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Sequence

import polars as pl

from pipeline.warehouse.base import PartitionWrite, WarehouseError
from pipeline.warehouse.bigquery.catalog import STAGING_EXPIRATION, Catalog
from pipeline.warehouse.bigquery.columns import Column, conformed
from pipeline.warehouse.bigquery.lock import RunLock
from pipeline.warehouse.bigquery.names import COLUMN_NAME, checked, dates_text, equals

log = logging.getLogger(__name__)

PARALLEL_LOADS = 8
# BigQuery reads at most 1,000 tables in one query: an INSERT reads at most this many staged ones.
MOST_STAGED_PER_INSERT = 500
STAGED_HANDLE = "rows_"


@dataclass
class _TableWrite:
    """Everything one call writes to one table."""

    partition_by: str
    partitions: dict[tuple, tuple[dict, set]] = field(default_factory=dict)  # where (hashable) -> (where, dates)
    frames: list[pl.DataFrame] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)


class Writer:
    """Transactions, staging and appends of one warehouse; fenced while it holds the lock."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.jobs = catalog.jobs
        self.lock: RunLock | None = None

    def write(self, writes: Sequence[PartitionWrite]) -> None:
        if not writes:
            return
        tables = self._gathered(writes)
        what = "; ".join(f"{name} on {dates_text(sorted({d for _, ds in t.partitions.values() for d in ds}))}" for name, t in tables.items())
        self.catalog.ensure_dataset(self.catalog.settings.staging_dataset, expiration=STAGING_EXPIRATION)
        token = uuid.uuid4().hex[:16]
        loads = {}
        for i, (name, table) in enumerate(tables.items()):
            rows = [f for f in table.frames if f.height]
            if rows:
                loads[self.catalog.staging_id(f"{STAGED_HANDLE}{token}_{i}")] = (name, pl.concat([conformed(self.catalog.columns(name), name, f) for f in rows]))
        committed = False
        try:
            started = time.perf_counter()
            self._load_all(loads)
            staged_at = time.perf_counter()
            for table_id, (name, _) in loads.items():
                tables[name].staged.append(table_id)
            self.transaction([s for name, t in tables.items() for s in self._statements(name, t)], what=f"replacing {what}")
            committed = True
            log.debug("replaced %s: staged in %.2fs, committed in %.2fs", what, staged_at - started, time.perf_counter() - staged_at)
        finally:
            # Rows staged before the call are consumed by a commit; after a failure they stay,
            # for the caller to discard (as on DuckDB, whose rollback keeps them).
            self.jobs.drop([*loads, *(h for w in writes for h in w.staged if committed)])

    def transaction(self, statements: list[str], *, what: str) -> None:
        """``statements`` in one transaction, behind the fence while this warehouse holds the lock."""
        script = ["BEGIN TRANSACTION;", *(self.lock.fence() if self.lock else []), *statements, "COMMIT TRANSACTION;"]
        if self.lock is None:
            self.jobs.query("\n".join(script), what=what)
            return
        with self.lock.row:  # never beside the heartbeat's own UPDATE of the lock row
            try:
                self.jobs.query("\n".join(script), what=what)
            except WarehouseError as exc:
                refused = self.lock.refused(exc)
                if refused is not None:
                    raise refused from exc
                raise
            self.lock.renewed()

    def _gathered(self, writes: Sequence[PartitionWrite]) -> dict[str, _TableWrite]:
        """The call's writes by table: the partitions to replace, by their ``where``, and the rows."""
        tables: dict[str, _TableWrite] = {}
        for w in writes:
            declared = self.catalog.columns(w.table)
            for column in (w.partition_by, *w.where):
                checked(COLUMN_NAME, column, f"{w.table} column")
                if column not in declared:
                    raise WarehouseError(f"{w.table} has no column {column} to replace partitions by")
            table = tables.setdefault(w.table, _TableWrite(w.partition_by))
            if table.partition_by != w.partition_by:
                raise WarehouseError(f"{w.table}: one call replaces partitions by one column, not {table.partition_by} and {w.partition_by}")
            key = tuple(sorted((c, tuple(v) if isinstance(v, (list, tuple, set, frozenset)) else v) for c, v in w.where.items()))
            table.partitions.setdefault(key, (dict(w.where), set()))[1].update(w.dates)
            if w.rows is not None:
                table.frames.append(w.rows)
            table.staged += [self._checked_handle(h) for h in w.staged]
        return tables

    def _statements(self, name: str, table: _TableWrite) -> list[str]:
        target = self.catalog.sql_name(name)
        replaced = [
            " AND ".join([equals(table.partition_by, sorted(dates)), *(equals(c, v) for c, v in where.items())])
            for where, dates in table.partitions.values()
            if dates
        ]
        statements = [f"DELETE FROM {target} WHERE {' OR '.join(f'({r})' for r in replaced)};"] if replaced else []
        names = ", ".join(f"`{c}`" for c in self.catalog.columns(name))  # a staged table has them all
        for start in range(0, len(table.staged), MOST_STAGED_PER_INSERT):
            sources = " UNION ALL ".join(f"SELECT {names} FROM `{t}`" for t in table.staged[start : start + MOST_STAGED_PER_INSERT])
            statements.append(f"INSERT INTO {target} ({names}) {sources};")
        return statements

    # -- staging -------------------------------------------------------------------------------

    def stage(self, table: str, rows: pl.DataFrame) -> str:
        """A table of ``staging_dataset`` (they expire in a day, so what a killed run left goes)."""
        self.catalog.ensure_dataset(self.catalog.settings.staging_dataset, expiration=STAGING_EXPIRATION)
        handle = self.catalog.staging_id(f"{STAGED_HANDLE}{uuid.uuid4().hex}")
        self._load_all({handle: (table, conformed(self.catalog.columns(table), table, rows))})
        return handle

    def discard(self, staged: Sequence[str]) -> None:
        self.jobs.drop([self._checked_handle(h) for h in staged])

    def append(self, table: str, rows: pl.DataFrame) -> None:
        """Rows added to a log table: staged, then inserted in a fenced transaction."""
        handle = self.stage(table, rows)
        try:
            names = ", ".join(f"`{c}`" for c in self.catalog.columns(table))
            self.transaction([f"INSERT INTO {self.catalog.sql_name(table)} ({names}) SELECT {names} FROM `{handle}`;"],
                             what=f"appending {rows.height:,} rows to {table}")  # fmt: skip
        finally:
            self.jobs.drop([handle])

    def _load_all(self, loads: dict[str, tuple[str, pl.DataFrame]]) -> None:
        """Load jobs in parallel: each frame (conformed to its table's columns) into a new staging table."""
        from google.cloud import bigquery

        def load(item) -> None:
            table_id, (table, rows) = item
            columns: list[Column] = list(self.catalog.columns(table).values())
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                schema=[c.field() for c in columns],
                create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,  # a retried load cannot double the rows
            )
            self.jobs.load(table_id, rows, config, what=f"staging {rows.height:,} rows for {table}", table=table)

        if loads:
            with futures.ThreadPoolExecutor(min(PARALLEL_LOADS, len(loads)), thread_name_prefix="bigquery-load") as pool:
                list(pool.map(load, loads.items()))

    def _checked_handle(self, handle: str) -> str:
        """A staged table of this warehouse's staging dataset, and nothing else, may be consumed."""
        prefix = self.catalog.staging_id(STAGED_HANDLE)
        rest = handle[len(prefix) :] if handle.startswith(prefix) else ""
        if not rest or any(c not in "0123456789abcdef_" for c in rest):
            raise WarehouseError(f"{handle!r} is not a handle of rows staged in {self.jobs.describe()}")
        return handle
