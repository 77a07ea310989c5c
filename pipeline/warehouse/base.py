"""The one interface every warehouse backend implements.

Tables are named ``dataset.table`` (the production BigQuery dataset names) and partitioned by
``game_date``, or by the other date column their :class:`TableSchema` names (``partition_by``);
reads, date lists and writes name that column the same way, ``game_date`` unless told otherwise.
Every write replaces whole date partitions, and one call's writes land together or not at all,
so a table never holds a half-written day and re-running gives the same rows.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import polars as pl


class WarehouseError(RuntimeError):
    """A warehouse operation failed in a way the caller should report, not retry."""


class WarehouseLocked(WarehouseError):
    """Another run holds the warehouse."""


def holder_text(holder: Mapping[str, object]) -> str:
    """Who holds the warehouse lock, as a run refused by it says: "held by run X, pid N, ..."."""
    return "held by " + (", ".join(f"{k} {v}" for k, v in holder.items()) or "an unknown holder")


@dataclass(frozen=True)
class TableSchema:
    """What the warehouse needs to create a table."""

    name: str
    columns: Mapping[str, pl.DataType]
    partition_by: str = "game_date"
    cluster_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One preflight check (``task=doctor``): what was checked, what was found, and if something
    is wrong, what (``problem``) and the role or setting that fixes it (``fix``)."""

    name: str
    detail: str = ""
    problem: str | None = None
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class PartitionWrite:
    """Replace the rows of ``table`` on ``dates`` with ``rows`` and the ``staged`` rows.

    ``where`` narrows the replaced rows further by column equality, for tables shared by
    several writers (``run_state`` rows belong to one table_name each); a ``None`` value
    replaces the rows where that column is NULL, as it reads them (:meth:`Warehouse.read`). ``partition_by`` is the
    date column ``dates`` are values of: the table's own (``TableSchema.partition_by``).
    ``staged`` names rows put aside earlier with :meth:`Warehouse.stage`, by this process or by
    another (a Ray worker): the write moves them into the table and drops them.
    """

    table: str
    dates: Sequence[dt.date]
    rows: pl.DataFrame | None = None
    where: Mapping[str, object] = field(default_factory=dict)
    partition_by: str = "game_date"
    staged: tuple[str, ...] = ()


class Warehouse(ABC):
    """Read date ranges, replace date partitions atomically, list dates, run checks."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs and error messages."""

    @abstractmethod
    def ensure_table(self, schema: TableSchema) -> None:
        """Create the table (and its dataset) or bring its columns in line with ``schema``."""

    @abstractmethod
    def exists(self, table: str) -> bool: ...

    @abstractmethod
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
        """Rows with ``start <= partition_by <= end`` (either bound may be open) and, for each
        ``where`` item, the column equal to the value (or in it, for a list of values); a
        ``None`` value selects the rows where the column is NULL (not SQL's ``= NULL``, which
        selects nothing)."""

    @abstractmethod
    def write(self, writes: Sequence[PartitionWrite]) -> None:
        """Apply every replacement in one transaction."""

    @abstractmethod
    def stage(self, table: str, rows: pl.DataFrame) -> str:
        """Put ``rows`` of ``table`` aside for a later :meth:`write`; return the handle that
        names them there (``PartitionWrite.staged``).

        Staged rows are in no table a read sees. They let a write of one transaction gather
        rows built in pieces (a table's teams built by several Ray tasks) without the writer
        holding them all in memory, and let a Ray worker hand over its rows without sending
        them through the driver (:attr:`reachable_from_workers`). A write that names them and
        commits consumes them; after a failed write they are still there, and :meth:`discard`
        drops them. What a killed run left staged is cleaned up by the warehouse itself."""

    @abstractmethod
    def discard(self, staged: Sequence[str]) -> None:
        """Drop staged rows that no write will use (their shard's date range failed)."""

    @property
    def reachable_from_workers(self) -> bool:
        """Whether a Ray worker on another machine can open this warehouse itself (from its
        config) to read a shard's inputs and stage its rows; if not, the driver does both."""
        return False

    @abstractmethod
    def append(self, table: str, rows: pl.DataFrame) -> None:
        """Add rows to an append-only log table (validation results), in one transaction."""

    @abstractmethod
    def dates_present(self, table: str, partition_by: str = "game_date") -> list[dt.date]:
        """The distinct values of the table's partition column, ascending (none if no table)."""

    @abstractmethod
    def lock(self, *, holder: Mapping[str, object], wait_seconds: float, stale_seconds: float) -> AbstractContextManager[None]:
        """Exclusive hold of the warehouse for one run; raise :class:`WarehouseLocked` naming
        the current holder if it is not free within ``wait_seconds``.

        A holder that died without releasing the lock must not hold it forever: where the
        backend cannot see a dead holder at once (a file lock is released by the kernel; a row
        in a remote table is not), a holder silent for ``stale_seconds`` is taken over, loudly.
        When the lock is released, the next holder can use the warehouse at once: nothing of
        this run (an open connection, a file handle) stands in its way. A warehouse opened
        read-only takes the lock as well: a backup holds it so that no run writes while it reads."""

    @property
    def lock_taken_over_from(self) -> Mapping[str, object] | None:
        """While this process holds the lock: the holder it took the lock over from, a run that
        died holding it (its heartbeat stale, or its process gone with the lock released by the
        kernel but its holder record left behind); None when the lock was free."""
        return None

    def checks(self) -> Iterator[Check]:
        """Preflight: can this process use the warehouse as configured (credentials, datasets,
        permissions)? Every problem is yielded as a failed :class:`Check`, none raised."""
        yield from ()

    def job_counts(self) -> dict[str, int]:
        """Jobs this process made, by kind (``transaction``, ``load``, ``query``), where a
        backend's cost is counted in jobs (BigQuery); empty otherwise."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional for backends without a connection
        pass

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
