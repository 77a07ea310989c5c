"""Per (table, game_date) run state: the checkpoint resume works from.

One row per table and date: status (``ok``, ``failed``, ``skipped_bootstrap``), attempts since
the date was last ``ok``, the full text of the last error, the fingerprint of the exact inputs
it was built from and of the rows it wrote, the row count, when it ran, and on which Ray node
(its node ID, unique on any cluster, and its IP address beside it; several, comma-separated,
for a date built in pieces on several nodes).
The driver keeps the state in memory for the run and writes each shard's rows in the same
transaction as the shard's data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import polars as pl

from pipeline.warehouse.base import PartitionWrite, TableSchema, Warehouse

if TYPE_CHECKING:
    from pipeline.calendar import Calendar
    from pipeline.tables import Table

OK = "ok"
FAILED = "failed"
SKIPPED_BOOTSTRAP = "skipped_bootstrap"
DONE = (OK, SKIPPED_BOOTSTRAP)
# What task=status and the docs call a date without run state: not built yet, or (a date known
# only from a slate, in a table of box-score results) not expected before its box scores.
MISSING = "missing"
AWAITING_BOX_SCORES = "awaiting_box_scores"

RUN_STATE = TableSchema(
    name="nba_orchestration.run_state",
    columns={
        "table_name": pl.String,
        "game_date": pl.Date,
        "status": pl.String,
        "attempts": pl.Int32,
        "last_error": pl.String,
        "input_fingerprint": pl.String,
        "output_fingerprint": pl.String,
        "rows_written": pl.Int64,
        "started_at": pl.Datetime("us"),
        "finished_at": pl.Datetime("us"),
        "node": pl.String,
        "node_ip": pl.String,
        "run_id": pl.String,
    },
    cluster_by=("table_name",),
)


@dataclass(frozen=True)
class DateState:
    status: str
    attempts: int
    input_fingerprint: str | None
    output_fingerprint: str | None
    rows_written: int
    last_error: str | None = None
    run_id: str | None = None


class RunState:
    """The run_state table held in memory: ``state[table, date]``."""

    def __init__(self, rows: dict[tuple[str, dt.date], DateState] | None = None):
        self.rows = rows or {}

    @classmethod
    def load(cls, warehouse: Warehouse) -> "RunState":
        if not warehouse.exists(RUN_STATE.name):
            return cls()
        frame = warehouse.read(
            RUN_STATE.name,
            columns=["table_name", "game_date", "status", "attempts", "input_fingerprint", "output_fingerprint", "rows_written", "last_error", "run_id"],
        )
        return cls(
            {
                (t, d): DateState(s, a or 0, i, o, r or 0, e, run)
                for t, d, s, a, i, o, r, e, run in frame.iter_rows()
            }
        )

    def get(self, table: str, day: dt.date) -> DateState | None:
        return self.rows.get((table, day))

    def status(self, table: str, day: dt.date) -> str | None:
        row = self.rows.get((table, day))
        return row.status if row else None

    def is_done(self, table: str, day: dt.date) -> bool:
        return self.status(table, day) in DONE

    def output_fingerprint(self, table: str, day: dt.date) -> str | None:
        row = self.rows.get((table, day))
        return row.output_fingerprint if row and row.status in DONE else None

    def rows_written(self, table: str, day: dt.date) -> int:
        """Rows the date holds in the table, as far as the state knows (0 if it is not done)."""
        row = self.rows.get((table, day))
        return row.rows_written if row and row.status in DONE else 0

    def attempts_before(self, table: str, day: dt.date) -> int:
        """Attempts already spent on a date since it was last ok (0 if it is ok or new)."""
        row = self.rows.get((table, day))
        return row.attempts if row and row.status == FAILED else 0

    def update(self, table: str, rows: pl.DataFrame) -> None:
        for d, s, a, i, o, r, e, run in rows.select(
            "game_date", "status", "attempts", "input_fingerprint", "output_fingerprint", "rows_written", "last_error", "run_id"
        ).iter_rows():
            self.rows[(table, d)] = DateState(s, a, i, o, r, e, run)

    def dates(self, table: str, statuses: Iterable[str]) -> list[dt.date]:
        wanted = set(statuses)
        return sorted(d for (t, d), row in self.rows.items() if t == table and row.status in wanted)


def state_rows(
    table: str,
    dates: list[dt.date],
    *,
    status: str,
    attempts: dict[dt.date, int],
    input_fingerprints: dict[dt.date, str],
    output_fingerprints: dict[dt.date, str] | None = None,
    rows_written: dict[dt.date, int] | None = None,
    error: str | None = None,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    node: str | None,
    node_ip: str | None = None,
    run_id: str,
) -> pl.DataFrame:
    output_fingerprints = output_fingerprints or {}
    rows_written = rows_written or {}
    return pl.DataFrame(
        {
            "table_name": [table] * len(dates),
            "game_date": dates,
            "status": [status] * len(dates),
            "attempts": [attempts[d] for d in dates],
            "last_error": [error] * len(dates),
            "input_fingerprint": [input_fingerprints[d] for d in dates],
            "output_fingerprint": [output_fingerprints.get(d) for d in dates],
            "rows_written": [rows_written.get(d, 0) for d in dates],
            "started_at": [started_at] * len(dates),
            "finished_at": [finished_at] * len(dates),
            "node": [node] * len(dates),
            "node_ip": [node_ip] * len(dates),
            "run_id": [run_id] * len(dates),
        },
        schema=RUN_STATE.columns,
    )


def state_write(table: str, rows: pl.DataFrame) -> PartitionWrite:
    return PartitionWrite(RUN_STATE.name, rows["game_date"].to_list(), rows, where={"table_name": table})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def coverage_frame(tables: Mapping[str, Table], calendar: Calendar, state: RunState, by_month: bool) -> pl.DataFrame:
    """Per table and season (and month, ``by_month``): dates ok, failed, missing, skipped in the
    bootstrap window and awaiting box scores, and rows; tables in ``tables``' order.

    A date known from a slate only (no box scores yet) is not missing from a table of box-score
    results (``needs_box_scores``: Phase 2's box scores, Phase 3): it is awaiting its box scores,
    and counted apart."""
    records = []
    for name, table in tables.items():
        for day in calendar.dates:
            row = state.get(name, day)
            if row:
                status = row.status
            else:
                status = AWAITING_BOX_SCORES if calendar.awaits_box_scores(table, day) else MISSING
            records.append((name, calendar.season_of[day], day.strftime("%Y-%m"), status, row.rows_written if row else 0))
    frame = pl.DataFrame(records, schema=["table", "season", "month", "status", "rows"], orient="row")
    keys = ["table", "season", "month"] if by_month else ["table", "season"]
    return frame.group_by(keys, maintain_order=True).agg(
        ok=(pl.col("status") == OK).sum(),
        failed=(pl.col("status") == FAILED).sum(),
        missing=(pl.col("status") == MISSING).sum(),
        bootstrap_skipped=(pl.col("status") == SKIPPED_BOOTSTRAP).sum(),
        awaiting_box_scores=(pl.col("status") == AWAITING_BOX_SCORES).sum(),
        rows=pl.col("rows").sum(),
    )
