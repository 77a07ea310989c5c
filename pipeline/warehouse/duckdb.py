"""The embedded default: one DuckDB database file, datasets as schemas.

Only the driver process opens the file (DuckDB allows one writing process), so Ray tasks get
their inputs from the driver and hand their rows back to it. A partition replacement is one
transaction: a run killed at any point leaves every partition either old or new.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import duckdb
import polars as pl

from pipeline.warehouse.base import Check, PartitionWrite, TableSchema, Warehouse, WarehouseError, WarehouseLocked, holder_text

log = logging.getLogger(__name__)

_SQL_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR",
    pl.Boolean: "BOOLEAN",
    pl.Int8: "TINYINT",
    pl.Int16: "SMALLINT",
    pl.Int32: "INTEGER",
    pl.Int64: "BIGINT",
    pl.UInt64: "UBIGINT",
    pl.Float32: "FLOAT",
    pl.Float64: "DOUBLE",
    pl.Date: "DATE",
    pl.Datetime: "TIMESTAMP",
}

LOCK_POLL_SECONDS = 0.2
# A run writes its holder file right after it takes the lock; a run refused in between reads the
# file again for up to this long before it names the holder (see _holder_text).
HOLDER_SETTLE_SECONDS = 2.0
HOLDER_POLL_SECONDS = 0.05

# The name the database file is attached under (every query runs against it).
CATALOG = "warehouse"
# Where rows wait for the write that consumes them (Warehouse.stage).
STAGING = "nba_staging"

# Rows per DuckDB row group. DuckDB's default, 122,880, is larger than most shard writes, so each
# write went to the write-ahead log first and was compressed into the file again at the next
# checkpoint. At this size a shard's rows are written to the file once, at commit (the 104k
# Phase 3 player rows in 0.26 s instead of 0.45 s; the whole Phase 3 backfill 7% faster), and a
# date-range read skips more row groups.
ROW_GROUP_SIZE = 16_384


def sql_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List):
        return f"{sql_type(dtype.inner)}[]"
    try:
        return _SQL_TYPES[dtype.base_type()]
    except KeyError:
        raise WarehouseError(f"no DuckDB type for Polars {dtype}") from None


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quoted(table: str) -> str:
    dataset, name = table.split(".", 1)
    return f'"{dataset}"."{name}"'


class DuckDBWarehouse(Warehouse):
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        read_only: bool = False,
        threads: int | None = None,
        memory_limit: str | None = None,
        row_group_size: int = ROW_GROUP_SIZE,
    ):
        self.path = Path(path)
        self.read_only = read_only
        self.threads = threads
        self.memory_limit = memory_limit
        self.row_group_size = row_group_size
        self._con: duckdb.DuckDBPyConnection | None = None
        self._owner = threading.get_ident()
        self._thread_cons = threading.local()  # other threads' cursors on the same database
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._opening = threading.Lock()
        # Cached: one catalog query costs several ms, and every run checks every table's columns.
        self._catalog: dict[str, dict[str, str]] | None = None
        self._taken_over_from: dict[str, object] | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection. The database opens on first use (so a run can take the lock
        before it opens); another thread (the runner's writer) gets its own cursor on it, since a
        DuckDB connection must not be shared between threads."""
        if threading.get_ident() == self._owner:
            return self._root()
        if getattr(self._thread_cons, "con", None) is None:
            cursor = self._root().cursor()
            cursor.execute(f"USE {CATALOG}")  # a cursor starts on the in-memory catalog
            self._thread_cons.con = cursor
            self._cursors.append(cursor)
        return self._thread_cons.con

    def _root(self) -> duckdb.DuckDBPyConnection:
        with self._opening:
            return self._con or self._open()

    def _open(self) -> duckdb.DuckDBPyConnection:
        config = {k: v for k, v in {"threads": self.threads, "memory_limit": self.memory_limit}.items() if v}
        con = duckdb.connect(":memory:", config=config)
        if self.read_only and not self.path.exists():
            # Nothing built yet: answer from an empty database rather than create the file.
            con.execute(f"ATTACH ':memory:' AS {CATALOG}")
        else:
            if not self.read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            options = f"ROW_GROUP_SIZE {self.row_group_size}" + (", READ_ONLY" if self.read_only else "")
            try:
                con.execute(f"ATTACH {sql_string(str(self.path))} AS {CATALOG} ({options})")
            except duckdb.Error as exc:
                con.close()
                if "Could not set lock" in str(exc):
                    raise WarehouseLocked(
                        f"cannot open {self.path}: another process has it open for writing "
                        f"({_holder_text(self.holder_path)}). "
                        f"DuckDB lets no other process read it meanwhile: wait for that run to finish. ({exc})"
                    ) from exc
                raise WarehouseError(f"cannot open {self.path} as a DuckDB database (warehouse.path): {exc}") from exc
        con.execute(f"USE {CATALOG}")
        self._con = con
        return con

    @property
    def lock_taken_over_from(self) -> dict[str, object] | None:
        return self._taken_over_from

    @property
    def lock_path(self) -> Path:
        """The run lock beside the database file (DuckDB's own lock is per process, not per run):
        flocked by the run that holds the warehouse, never written to or replaced (a flock
        belongs to the inode)."""
        return self.path.with_name(self.path.name + ".lock")

    @property
    def holder_path(self) -> Path:
        """Who holds the run lock, as JSON: written whole by the run once it has the lock (a
        temporary file renamed over it, so a reader never sees half of it), removed when it lets go."""
        return self.path.with_name(self.path.name + ".lock.holder")

    def describe(self) -> str:
        return f"duckdb:{self.path}"

    def checks(self) -> Iterator[Check]:
        """The file opens (or its folder can hold it, before the first run)."""
        if not self.path.exists():
            folder = next((p for p in self.path.absolute().parents if p.exists()), Path("/"))
            if os.access(folder, os.W_OK | os.X_OK):
                yield Check("warehouse file", detail=f"{self.path} does not exist yet: the first run creates it")
            else:
                yield Check("warehouse file", problem=f"cannot create {self.path}: {folder} is not writable", fix="set warehouse.path")
            return
        try:
            tables = len(self.catalog())
        except WarehouseError as exc:
            yield Check("warehouse file", problem=str(exc), fix="let the run holding it finish, or set warehouse.path")
            return
        yield Check("warehouse file", detail=f"{self.path}: {tables} table(s)")

    def close(self) -> None:
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        if self._con is not None:
            self._con.close()
            self._con = None
            self._catalog = None

    # -- schema -----------------------------------------------------------------------------

    def ensure_table(self, schema: TableSchema) -> None:
        wanted = {c: sql_type(t) for c, t in schema.columns.items()}
        current = self.catalog().get(schema.name)
        if current == wanted:
            return
        self._catalog = None  # the DDL below changes it
        if current is None:
            dataset = schema.name.split(".", 1)[0]
            columns = ", ".join(f'"{c}" {t}' for c, t in wanted.items())
            self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
            self.con.execute(f"CREATE TABLE {quoted(schema.name)} ({columns})")
            return
        for column, type_ in current.items():
            if column not in wanted:
                log.warning("%s: column %s is no longer declared: dropped", schema.name, column)
            elif wanted[column] != type_:
                log.warning(
                    "%s: column %s changes type (%s -> %s): its values are dropped, and every date of the table is rebuilt",
                    schema.name, column, type_, wanted[column],
                )  # fmt: skip
            if wanted.get(column) != type_:
                self.con.execute(f'ALTER TABLE {quoted(schema.name)} DROP COLUMN "{column}"')
        for column, type_ in wanted.items():
            if current.get(column) != type_:
                self.con.execute(f'ALTER TABLE {quoted(schema.name)} ADD COLUMN "{column}" {type_}')
        # The altered table written to: DuckDB 1.5.5 can fail the next write's COMMIT (an internal
        # error, "Could not find node in column segment tree") after DROP COLUMN unless the
        # change is checkpointed first.
        self.con.execute("CHECKPOINT")

    def catalog(self) -> dict[str, dict[str, str]]:
        """Every table's columns and their SQL types, in column order."""
        if self._catalog is None:
            rows = self.con.execute(
                "SELECT table_schema || '.' || table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
            ).fetchall()
            catalog: dict[str, dict[str, str]] = {}
            for table, column, type_ in rows:
                catalog.setdefault(table, {})[column] = type_
            self._catalog = catalog
        return self._catalog

    def exists(self, table: str) -> bool:
        return table in self.catalog()

    # -- reads ------------------------------------------------------------------------------

    def read(
        self,
        table: str,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, object] | None = None,
        partition_by: str = "game_date",
    ) -> pl.DataFrame:
        if not self.exists(table):
            raise WarehouseError(f"table {table} does not exist in {self.describe()}")
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        clauses, params = _filters(partition_by, start, end, where or {})
        result = self.con.execute(f"SELECT {selected} FROM {quoted(table)}{clauses}", params)
        return pl.from_arrow(result.to_arrow_table())

    def dates_present(self, table: str, partition_by: str = "game_date") -> list[dt.date]:
        if not self.exists(table):
            return []
        rows = self.con.execute(f'SELECT DISTINCT "{partition_by}" FROM {quoted(table)} ORDER BY 1').fetchall()
        return [r[0] for r in rows]

    # -- writes -----------------------------------------------------------------------------

    def write(self, writes: Sequence[PartitionWrite]) -> None:
        if self.read_only:
            raise WarehouseError(f"{self.describe()} is open read-only")
        for handle in (h for w in writes for h in w.staged):
            _checked_handle(handle)
        self.con.execute("BEGIN TRANSACTION")
        try:
            for w in writes:
                clauses, params = _filters(w.partition_by, None, None, w.where, dates=list(w.dates))
                self.con.execute(f"DELETE FROM {quoted(w.table)}{clauses}", params)
                if w.rows is not None and w.rows.height:
                    self._insert(w.table, w.rows)
                for handle in w.staged:
                    self.con.execute(f'INSERT INTO {quoted(w.table)} BY NAME SELECT * FROM "{STAGING}"."{handle}"')
                    self.con.execute(f'DROP TABLE "{STAGING}"."{handle}"')
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def stage(self, table: str, rows: pl.DataFrame) -> str:
        """A table of the ``nba_staging`` schema in the same file (what a killed run left there is
        dropped when the next run takes the lock)."""
        if self.read_only:
            raise WarehouseError(f"{self.describe()} is open read-only")
        if not self.exists(table):
            raise WarehouseError(f"table {table} does not exist in {self.describe()}")
        handle = f"s_{uuid.uuid4().hex}"
        self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{STAGING}"')
        self.con.register("rows_to_stage", rows.to_arrow())
        try:
            self.con.execute(f'CREATE TABLE "{STAGING}"."{handle}" AS SELECT * FROM rows_to_stage')
        finally:
            self.con.unregister("rows_to_stage")
        return handle

    def discard(self, staged: Sequence[str]) -> None:
        for handle in staged:
            self.con.execute(f'DROP TABLE IF EXISTS "{STAGING}"."{_checked_handle(handle)}"')

    def append(self, table: str, rows: pl.DataFrame) -> None:
        if self.read_only:
            raise WarehouseError(f"{self.describe()} is open read-only")
        self._insert(table, rows)

    def _insert(self, table: str, rows: pl.DataFrame) -> None:
        self.con.register("staged_rows", rows.to_arrow())
        try:
            self.con.execute(f"INSERT INTO {quoted(table)} BY NAME SELECT * FROM staged_rows")
        finally:
            self.con.unregister("staged_rows")

    def _drop_leftover_staging(self) -> None:
        """Rows a killed run staged and never wrote: nobody else can use them once we hold the lock."""
        if self.path.exists() and not self.read_only and STAGING in {t.split(".", 1)[0] for t in self.catalog()}:
            self.con.execute(f'DROP SCHEMA IF EXISTS "{STAGING}" CASCADE')
            self._catalog = None

    # -- lock -------------------------------------------------------------------------------

    @contextmanager
    def lock(self, *, holder: Mapping[str, object], wait_seconds: float, stale_seconds: float) -> Iterator[None]:
        # stale_seconds does not apply: the kernel releases a dead holder's flock at once.
        lock_path, holder_path = self.lock_path, self.holder_path
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WarehouseError(f"cannot create the lock file {lock_path} next to the warehouse (warehouse.path): {exc.strerror}") from exc
        started = time.monotonic()
        deadline, told = started + wait_seconds, False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise WarehouseLocked(_locked_message(self.path, holder_path, wait_seconds)) from None
                    if not told:
                        told = True
                        log.warning("waiting up to %.0fs for the warehouse: %s", wait_seconds, _holder_text(holder_path))
                    time.sleep(LOCK_POLL_SECONDS)
            if told:
                log.info("warehouse lock acquired after waiting %.1fs", time.monotonic() - started)
            # A holder file with the lock free: its run died holding the lock (a clean release removes it).
            self._taken_over_from = _read_holder(holder_path) or None
            if self._taken_over_from:
                log.warning("the previous holder of the warehouse lock died holding it (%s)", holder_text(self._taken_over_from))
            _write_holder(holder_path, holder)
            try:
                self._drop_leftover_staging()
                yield
            finally:
                self._taken_over_from = None
                # While the flock is still ours: once it goes, the file may be the next holder's.
                # DuckDB keeps its own lock on the database file while a connection is open:
                # closed here, the run the flock lets in next can open the file at once (it
                # failed with "Conflicting lock" when this process closed it a moment later).
                self.close()
                holder_path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing the descriptor releases the flock; the kernel does so on a kill too


def _write_holder(holder_path: Path, holder: Mapping[str, object]) -> None:
    """Replace the holder file whole: a reader finds the previous file, none, or this one."""
    temp = holder_path.with_name(f"{holder_path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(dict(holder), default=str))
        os.replace(temp, holder_path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise WarehouseError(f"cannot write the lock holder file {holder_path} next to the warehouse (warehouse.path): {exc.strerror}") from exc


def _read_holder(holder_path: Path) -> dict[str, object]:
    try:
        holder = json.loads(holder_path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _gone(holder: Mapping[str, object]) -> bool:
    """Whether the holder is known not to run any more: a pid on this host that no process has."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False  # another host's process, or no pid: cannot tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user
        return False
    return False


def _holder_text(holder_path: Path) -> str:
    """The holder, as a run that found the lock (or the database) taken names it: "held by run
    X, pid N, ...".

    The holder writes its file right after it takes the lock, so a reader that came in between
    finds no file, or the file of an earlier holder that was killed: it reads again for up to
    HOLDER_SETTLE_SECONDS before it names the holder as unknown."""
    deadline = time.monotonic() + HOLDER_SETTLE_SECONDS
    while True:
        holder = _read_holder(holder_path)
        if (holder and not _gone(holder)) or time.monotonic() >= deadline:
            break
        time.sleep(HOLDER_POLL_SECONDS)
    if not holder:
        return holder_text({})
    if _gone(holder):
        return f"held by an unknown holder (the last one recorded, {holder_text(holder).removeprefix('held by ')}, no longer runs)"
    return holder_text(holder)


def _locked_message(path: Path, holder_path: Path, waited: float) -> str:
    waited_text = f" after waiting {waited:.0f}s" if waited else ""
    return (
        f"warehouse {path} is in use by another run ({_holder_text(holder_path)}){waited_text}. "
        "Let it finish, or pass lock.wait_seconds=N to wait for it."
    )


def _filters(
    partition_by: str, start: dt.date | None, end: dt.date | None, where: Mapping[str, object], dates: list[dt.date] | None = None
) -> tuple[str, dict[str, object]]:
    """The WHERE clause of a read or a replacement: the partition column's range or values, and
    ``where``'s equalities; every value is a parameter."""
    clauses, params = [], {}
    if start is not None:
        clauses.append(f'"{partition_by}" >= $start')
        params["start"] = start
    if end is not None:
        clauses.append(f'"{partition_by}" <= $end')
        params["end"] = end
    if dates is not None:
        clauses.append(f'"{partition_by}" IN (SELECT unnest($dates))')
        params["dates"] = dates
    for i, (column, value) in enumerate(where.items()):
        if isinstance(value, (list, tuple, set, frozenset)):
            clauses.append(f'"{column}" IN (SELECT unnest($w{i}))')
            value = list(value)
        elif value is None:  # the interface's meaning of None; `= NULL` would select nothing
            clauses.append(f'"{column}" IS NULL')
            continue
        else:
            clauses.append(f'"{column}" = $w{i}')
        params[f"w{i}"] = value
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


STAGED_HANDLE = re.compile(r"s_[0-9a-f]{32}")


def _checked_handle(handle: str) -> str:
    if not STAGED_HANDLE.fullmatch(handle):
        raise WarehouseError(f"{handle!r} is not a handle of rows staged in a DuckDB warehouse")
    return handle
