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
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import duckdb
import polars as pl

from pipeline.warehouse.base import PartitionWrite, TableSchema, Warehouse, WarehouseError, WarehouseLocked

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


def sql_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List):
        return f"{sql_type(dtype.inner)}[]"
    try:
        return _SQL_TYPES[dtype.base_type()]
    except KeyError:
        raise WarehouseError(f"no DuckDB type for Polars {dtype}") from None


def quoted(table: str) -> str:
    dataset, name = table.split(".", 1)
    return f'"{dataset}"."{name}"'


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, threads: int | None = None):
        self.path = Path(path)
        self.read_only = read_only
        self.threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._owner = threading.get_ident()
        self._thread_cons = threading.local()  # other threads' cursors on the same database
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._opening = threading.Lock()
        self._known_tables: set[str] | None = None  # cached: the catalog query costs ~7 ms

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection. The database opens on first use (so a run can take the lock
        before it opens); another thread (the runner's writer) gets its own cursor on it, since a
        DuckDB connection must not be shared between threads."""
        if threading.get_ident() == self._owner:
            return self._root()
        if getattr(self._thread_cons, "con", None) is None:
            self._thread_cons.con = self._root().cursor()
            self._cursors.append(self._thread_cons.con)
        return self._thread_cons.con

    def _root(self) -> duckdb.DuckDBPyConnection:
        with self._opening:
            return self._con or self._open()

    def _open(self) -> duckdb.DuckDBPyConnection:
        config = {"threads": self.threads} if self.threads else {}
        if self.read_only and not self.path.exists():
            # Nothing built yet: answer from an empty database rather than create the file.
            self._con = duckdb.connect(":memory:", config=config)
            return self._con
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=self.read_only, config=config)
        except duckdb.IOException as exc:
            raise WarehouseLocked(
                f"cannot open {self.path}: another process has it open for writing. "
                f"Wait for that run to finish. ({exc})"
            ) from exc
        return self._con

    def describe(self) -> str:
        return f"duckdb:{self.path}"

    def close(self) -> None:
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        if self._con is not None:
            self._con.close()
            self._con = None
            self._known_tables = None

    # -- schema -----------------------------------------------------------------------------

    def ensure_table(self, schema: TableSchema) -> None:
        dataset = schema.name.split(".", 1)[0]
        self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{dataset}"')
        if not self.exists(schema.name):
            columns = ", ".join(f'"{c}" {sql_type(t)}' for c, t in schema.columns.items())
            self.con.execute(f"CREATE TABLE {quoted(schema.name)} ({columns})")
            self._known_tables = None
            return
        current = self._columns(schema.name)
        wanted = {c: sql_type(t) for c, t in schema.columns.items()}
        for column, type_ in current.items():
            if wanted.get(column) != type_:
                self.con.execute(f'ALTER TABLE {quoted(schema.name)} DROP COLUMN "{column}"')
        for column, type_ in wanted.items():
            if current.get(column) != type_:
                self.con.execute(f'ALTER TABLE {quoted(schema.name)} ADD COLUMN "{column}" {type_}')

    def _columns(self, table: str) -> dict[str, str]:
        dataset, name = table.split(".", 1)
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [dataset, name],
        ).fetchall()
        return dict(rows)

    def exists(self, table: str) -> bool:
        if self._known_tables is None:
            rows = self.con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()
            self._known_tables = {r[0] for r in rows}
        return table in self._known_tables

    # -- reads ------------------------------------------------------------------------------

    def read(
        self,
        table: str,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, object] | None = None,
    ) -> pl.DataFrame:
        if not self.exists(table):
            raise WarehouseError(f"table {table} does not exist in {self.describe()}")
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        clauses, params = _filters(start, end, where or {})
        result = self.con.execute(f"SELECT {selected} FROM {quoted(table)}{clauses}", params)
        return pl.from_arrow(result.to_arrow_table())

    def dates_present(self, table: str) -> list[dt.date]:
        if not self.exists(table):
            return []
        rows = self.con.execute(f"SELECT DISTINCT game_date FROM {quoted(table)} ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def query(self, sql: str) -> pl.DataFrame:
        return pl.from_arrow(self.con.execute(sql).to_arrow_table())

    # -- writes -----------------------------------------------------------------------------

    def write(self, writes: Sequence[PartitionWrite]) -> None:
        if self.read_only:
            raise WarehouseError(f"{self.describe()} is open read-only")
        self.con.execute("BEGIN TRANSACTION")
        try:
            for w in writes:
                clauses, params = _filters(None, None, w.where, dates=list(w.dates))
                self.con.execute(f"DELETE FROM {quoted(w.table)}{clauses}", params)
                if w.rows.height:
                    self._insert(w.table, w.rows)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

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

    # -- lock -------------------------------------------------------------------------------

    @contextmanager
    def lock(self, *, holder: Mapping[str, object], wait_seconds: float) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_seconds
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise WarehouseLocked(_locked_message(self.path, lock_path, wait_seconds)) from None
                    time.sleep(LOCK_POLL_SECONDS)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(dict(holder), default=str).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock; the kernel does so on a kill too


def _locked_message(path: Path, lock_path: Path, waited: float) -> str:
    try:
        holder = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = ", ".join(f"{k} {v}" for k, v in holder.items()) or "unknown holder"
    waited_text = f" after waiting {waited:.0f}s" if waited else ""
    return (
        f"warehouse {path} is in use by another run ({who}){waited_text}. "
        "Let it finish, or pass lock.wait_seconds=N to wait for it."
    )


def _filters(
    start: dt.date | None, end: dt.date | None, where: Mapping[str, object], dates: list[dt.date] | None = None
) -> tuple[str, dict[str, object]]:
    clauses, params = [], {}
    if start is not None:
        clauses.append("game_date >= $start")
        params["start"] = start
    if end is not None:
        clauses.append("game_date <= $end")
        params["end"] = end
    if dates is not None:
        clauses.append("game_date IN (SELECT unnest($dates))")
        params["dates"] = dates
    for i, (column, value) in enumerate(where.items()):
        clauses.append(f'"{column}" = $w{i}')
        params[f"w{i}"] = value
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
