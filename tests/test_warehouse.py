"""The warehouse contract (pipeline/warehouse/base.py), one suite run against every backend:
a real DuckDB file, and the real BigQuery client talking to a local emulator over REST and gRPC."""

from __future__ import annotations

import datetime as dt
import logging
import threading

import polars as pl
import pytest

from backends import Backend
from pipeline.warehouse.base import PartitionWrite, TableSchema, WarehouseError, WarehouseLocked

D = dt.date
EVENTS = TableSchema(
    name="nba_analytics.contract_events",
    columns={
        "game_date": pl.Date,
        "player_id": pl.Int32,
        "name": pl.String,
        "periods": pl.Int8,
        "minutes": pl.Int16,
        "points": pl.Float64,
        "starter": pl.Boolean,
        "shares": pl.List(pl.Float64),
        "loaded_at": pl.Datetime("us"),
    },
    cluster_by=("player_id",),
)
LOG = TableSchema(
    name="nba_orchestration.contract_log",
    columns={"table_name": pl.String, "game_date": pl.Date, "status": pl.String},
    cluster_by=("table_name",),
)
# Partitioned by another date column than game_date, as nba_orchestration.validation_results is.
RESULTS = TableSchema(
    name="nba_orchestration.contract_results",
    columns={"run_id": pl.String, "run_date": pl.Date, "check_name": pl.String, "observed": pl.Float64},
    partition_by="run_date",
    cluster_by=("check_name",),
)


def events(day: dt.date, players: range, points: float = 10.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "game_date": [day] * len(players),
            "player_id": list(players),
            "name": [f"O'Neal \\ {p}" for p in players],  # a quote and a backslash, kept as they are
            "periods": [4] * len(players),
            "minutes": [30 + p for p in players],
            "points": [points + p for p in players],
            "starter": [p % 2 == 0 for p in players],
            "shares": [[0.25, 0.5]] * len(players),
            "loaded_at": [dt.datetime(2024, 1, 5, 12, 30, 15, 250)] * len(players),
        },
        schema=EVENTS.columns,
    )


def ordered(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns[:3])


@pytest.fixture
def warehouse(backend: Backend):
    with backend.open() as opened:
        opened.ensure_table(EVENTS)
        opened.ensure_table(LOG)
        yield opened


def test_an_empty_read_has_the_declared_columns_and_types(warehouse):
    assert warehouse.exists(EVENTS.name) and not warehouse.exists("nba_analytics.never_made")
    empty = warehouse.read(EVENTS.name)
    assert empty.height == 0 and empty.schema == pl.Schema(EVENTS.columns)
    some = warehouse.read(EVENTS.name, columns=["points", "game_date"], start=D(2024, 1, 1))
    assert some.schema == pl.Schema({"points": pl.Float64, "game_date": pl.Date})
    assert warehouse.dates_present(EVENTS.name) == []


def test_rows_come_back_as_written_with_their_types(warehouse):
    rows = pl.concat([events(D(2024, 1, 5), range(3)), events(D(2024, 1, 6), range(2))])
    warehouse.write([PartitionWrite(EVENTS.name, [D(2024, 1, 5), D(2024, 1, 6)], rows)])
    assert ordered(warehouse.read(EVENTS.name)).equals(ordered(rows))
    assert warehouse.dates_present(EVENTS.name) == [D(2024, 1, 5), D(2024, 1, 6)]
    # Columns, the date range and equality filters are pushed down, in the order asked.
    one_day = warehouse.read(EVENTS.name, start=D(2024, 1, 6), end=D(2024, 1, 6), columns=["name", "player_id"])
    assert ordered(one_day).rows() == [("O'Neal \\ 0", 0), ("O'Neal \\ 1", 1)]
    quoted = warehouse.read(EVENTS.name, where={"name": "O'Neal \\ 2"})
    assert quoted["player_id"].to_list() == [2]
    assert warehouse.read(EVENTS.name, where={"starter": True, "game_date": D(2024, 1, 5)})["player_id"].sort().to_list() == [0, 2]


def test_a_write_replaces_whole_partitions_and_nothing_else(warehouse):
    first = pl.concat([events(D(2024, 1, 5), range(4)), events(D(2024, 1, 6), range(4))])
    warehouse.write([PartitionWrite(EVENTS.name, [D(2024, 1, 5), D(2024, 1, 6)], first)])
    # The 6th again, with fewer players: its old rows go, the 5th is untouched.
    again = events(D(2024, 1, 6), range(2), points=99.0)
    warehouse.write([PartitionWrite(EVENTS.name, [D(2024, 1, 6)], again)])
    after = warehouse.read(EVENTS.name)
    assert ordered(after.filter(pl.col("game_date") == D(2024, 1, 5))).equals(ordered(first.filter(pl.col("game_date") == D(2024, 1, 5))))
    assert ordered(after.filter(pl.col("game_date") == D(2024, 1, 6))).equals(ordered(again))
    # Replacing with no rows empties the partition; running the same write twice changes nothing.
    warehouse.write([PartitionWrite(EVENTS.name, [D(2024, 1, 6)], events(D(2024, 1, 6), range(0)))])
    warehouse.write([PartitionWrite(EVENTS.name, [D(2024, 1, 6)], events(D(2024, 1, 6), range(0)))])
    assert warehouse.dates_present(EVENTS.name) == [D(2024, 1, 5)]


def test_where_narrows_the_replaced_rows_to_one_writer(warehouse):
    def log(table: str, days: list[dt.date], status: str) -> PartitionWrite:
        rows = pl.DataFrame({"table_name": [table] * len(days), "game_date": days, "status": [status] * len(days)}, schema=LOG.columns)
        return PartitionWrite(LOG.name, days, rows, where={"table_name": table})

    days = [D(2024, 1, 5), D(2024, 1, 6)]
    warehouse.write([log("a", days, "ok"), log("b", days, "ok")])
    warehouse.write([log("b", days[:1], "failed")])
    assert sorted(warehouse.read(LOG.name).rows()) == [("a", days[0], "ok"), ("a", days[1], "ok"), ("b", days[0], "failed"), ("b", days[1], "ok")]


def test_a_none_in_where_means_null_when_reading_and_when_replacing(warehouse):
    """Both backends alike: ``where={column: None}`` reads and replaces the NULL rows only (SQL's
    ``= NULL`` would match nothing, so a replacement would add rows beside the old ones)."""

    def log(table: str | None, day: dt.date, status: str) -> PartitionWrite:
        rows = pl.DataFrame({"table_name": [table], "game_date": [day], "status": [status]}, schema=LOG.columns)
        return PartitionWrite(LOG.name, [day], rows, where={"table_name": table})

    day = D(2024, 1, 5)
    warehouse.write([log("a", day, "ok"), log(None, day, "ok")])
    assert warehouse.read(LOG.name, where={"table_name": None}).rows() == [(None, day, "ok")]
    warehouse.write([log(None, day, "failed")])
    assert sorted(warehouse.read(LOG.name).rows(), key=str) == sorted([("a", day, "ok"), (None, day, "failed")], key=str)
    assert warehouse.read(LOG.name, where={"table_name": "a"}).rows() == [("a", day, "ok")]


def test_a_table_partitioned_by_another_date_column_is_read_listed_and_replaced_by_it(warehouse):
    warehouse.ensure_table(RESULTS)

    def results(run_id: str, day: dt.date, checks: int) -> pl.DataFrame:
        return pl.DataFrame(
            {"run_id": [run_id] * checks, "run_date": [day] * checks, "check_name": [f"c{i}" for i in range(checks)], "observed": [0.5] * checks},
            schema=RESULTS.columns,
        )

    days = [D(2024, 1, 5), D(2024, 1, 6), D(2024, 1, 7)]
    first = pl.concat([results("first", day, 3) for day in days])
    warehouse.write([PartitionWrite(RESULTS.name, days, first, partition_by="run_date")])
    assert warehouse.dates_present(RESULTS.name, partition_by="run_date") == days
    middle = warehouse.read(RESULTS.name, start=days[1], end=days[1], partition_by="run_date")
    assert ordered(middle).equals(ordered(results("first", days[1], 3)))
    # The 6th replaced with fewer rows and the 7th emptied; the 5th is untouched.
    again = results("second", days[1], 1)
    warehouse.write([PartitionWrite(RESULTS.name, days[1:], again, partition_by="run_date")])
    assert ordered(warehouse.read(RESULTS.name)).equals(ordered(pl.concat([results("first", days[0], 3), again])))
    assert warehouse.dates_present(RESULTS.name, partition_by="run_date") == days[:2]
    # A table has no game_date to replace by unless it declares one.
    with pytest.raises(Exception, match="game_date"):
        warehouse.write([PartitionWrite(RESULTS.name, days[:1], results("third", days[0], 1))])
    assert warehouse.read(RESULTS.name).height == 4


def test_a_write_of_several_tables_lands_together_or_not_at_all(warehouse):
    day = D(2024, 1, 5)
    warehouse.write([PartitionWrite(EVENTS.name, [day], events(day, range(3)))])
    before = warehouse.read(EVENTS.name)
    state = pl.DataFrame({"table_name": ["x"], "game_date": [day], "status": ["ok"]}, schema=LOG.columns)
    broken = pl.DataFrame({"table_name": ["x"], "game_date": [day], "status": ["ok"], "no_such_column": [1]})
    with pytest.raises(Exception) as failure:
        warehouse.write(
            [
                PartitionWrite(EVENTS.name, [day], events(day, range(5), points=50.0)),
                PartitionWrite(LOG.name, [day], state),
                PartitionWrite(LOG.name, [day], broken),
            ]
        )
    assert "no_such_column" in str(failure.value)
    assert ordered(warehouse.read(EVENTS.name)).equals(ordered(before))
    assert warehouse.read(LOG.name).height == 0


def test_append_adds_rows_each_time(warehouse):
    rows = pl.DataFrame({"table_name": ["a", "b"], "game_date": [D(2024, 1, 5)] * 2, "status": ["ok", "ok"]}, schema=LOG.columns)
    warehouse.append(LOG.name, rows)
    warehouse.append(LOG.name, rows.head(1))
    assert sorted(warehouse.read(LOG.name)["table_name"].to_list()) == ["a", "a", "b"]


def test_a_new_column_is_added_in_place_and_a_changed_type_is_said_out_loud(warehouse, caplog):
    day = D(2024, 1, 5)
    warehouse.write([PartitionWrite(EVENTS.name, [day], events(day, range(3)))])
    grown = TableSchema(EVENTS.name, {**EVENTS.columns, "assists": pl.Int16}, cluster_by=EVENTS.cluster_by)
    warehouse.ensure_table(grown)
    kept = warehouse.read(EVENTS.name)
    assert kept.schema == pl.Schema(grown.columns) and kept["assists"].null_count() == 3
    assert ordered(kept.drop("assists")).equals(ordered(events(day, range(3))))

    # A changed type: that column's values go (the planner rebuilds the table's dates), loudly;
    # every other column keeps its values.
    changed = TableSchema(EVENTS.name, {**grown.columns, "name": pl.Int64}, cluster_by=EVENTS.cluster_by)
    with caplog.at_level(logging.WARNING):
        warehouse.ensure_table(changed)
    assert "column name changes type" in caplog.text and EVENTS.name in caplog.text
    after = warehouse.read(EVENTS.name)
    assert after.schema["name"] == pl.Int64 and after["name"].null_count() == 3
    assert ordered(after.select("game_date", "player_id", "points")).equals(ordered(kept.select("game_date", "player_id", "points")))
    # The same declaration again changes nothing.
    warehouse.ensure_table(changed)
    assert warehouse.read(EVENTS.name).equals(after)


def test_one_run_at_a_time(backend: Backend):
    holder = {"run": "first-run", "pid": 123, "host": "here"}
    with backend.open() as first, backend.open() as second:
        with first.lock(holder=holder, wait_seconds=0, stale_seconds=600):
            with pytest.raises(WarehouseLocked) as refused:
                with second.lock(holder={"run": "second-run"}, wait_seconds=0, stale_seconds=600):
                    pass
            assert "is in use by another run" in str(refused.value) and "held by run first-run, pid 123" in str(refused.value)
        # Released: the next run gets it at once.
        with second.lock(holder={"run": "second-run"}, wait_seconds=0, stale_seconds=600):
            pass


def test_a_waiting_run_gets_the_lock_when_the_holder_lets_go(backend: Backend):
    """The holder lets go only once the second run says it is waiting, and the second run gets the
    lock only after that: an order of events, not of clock readings."""
    waiting, letting_go = threading.Event(), threading.Event()

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("waiting up to 120s for the warehouse: held by run first-run"):
                waiting.set()

    watcher = Waiting()
    logging.getLogger("pipeline.warehouse").addHandler(watcher)
    with backend.open() as first, backend.open() as second:
        held = threading.Event()
        failures: list[BaseException] = []

        def hold_until_the_other_waits() -> None:
            try:
                with first.lock(holder={"run": "first-run"}, wait_seconds=0, stale_seconds=600):
                    held.set()
                    assert waiting.wait(300), "the second run never said it was waiting"
                    letting_go.set()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failures.append(exc)
                held.set()

        holder = threading.Thread(target=hold_until_the_other_waits)
        holder.start()
        try:
            assert held.wait(300) and not failures, failures
            with second.lock(holder={"run": "second-run"}, wait_seconds=120, stale_seconds=600):
                got_it_after_release = letting_go.is_set()
        finally:
            waiting.set()  # whatever happened, the holder does not wait on
            holder.join()
            logging.getLogger("pipeline.warehouse").removeHandler(watcher)
    assert not failures, failures
    assert got_it_after_release


def test_a_read_only_warehouse_refuses_to_write(backend: Backend):
    with backend.open() as writable:
        writable.ensure_table(LOG)
    with backend.open(read_only=True) as read_only:
        with pytest.raises(WarehouseError, match="read-only"):
            read_only.write([PartitionWrite(LOG.name, [D(2024, 1, 5)], pl.DataFrame(schema=LOG.columns))])


def test_where_takes_a_list_of_values(warehouse):
    day = D(2024, 1, 5)
    warehouse.write([PartitionWrite(EVENTS.name, [day], events(day, range(6)))])
    assert warehouse.read(EVENTS.name, where={"player_id": [1, 4, 99]}, columns=["player_id"])["player_id"].sort().to_list() == [1, 4]
    assert warehouse.read(EVENTS.name, where={"name": ("O'Neal \\ 2",)}).height == 1
    assert warehouse.read(EVENTS.name, where={"player_id": []}).height == 0


def test_staged_rows_are_invisible_until_a_write_consumes_them(warehouse):
    days = [D(2024, 1, 5), D(2024, 1, 6)]
    warehouse.write([PartitionWrite(EVENTS.name, days, pl.concat([events(d, range(3)) for d in days]))])
    before = ordered(warehouse.read(EVENTS.name))
    # Rows built in pieces: staged, then written with the write's own rows in one transaction.
    handles = tuple(warehouse.stage(EVENTS.name, piece) for piece in (events(days[0], range(10, 12)), events(days[1], range(20, 21))))
    assert ordered(warehouse.read(EVENTS.name)).equals(before)
    warehouse.write([PartitionWrite(EVENTS.name, days, events(days[0], range(30, 31)), staged=handles)])
    assert sorted(warehouse.read(EVENTS.name)["player_id"]) == [10, 11, 20, 30]


def test_staged_rows_survive_a_failed_write_and_are_discarded(warehouse):
    day = D(2024, 1, 5)
    handle = warehouse.stage(EVENTS.name, events(day, range(2)))
    broken = pl.DataFrame({"table_name": ["x"], "game_date": [day], "status": ["ok"], "no_such_column": [1]})
    with pytest.raises(Exception, match="no_such_column"):
        warehouse.write([PartitionWrite(EVENTS.name, [day], staged=(handle,)), PartitionWrite(LOG.name, [day], broken)])
    assert warehouse.read(EVENTS.name).height == 0
    warehouse.write([PartitionWrite(EVENTS.name, [day], staged=(handle,))])  # still there after the failure
    assert warehouse.read(EVENTS.name).height == 2
    discarded = warehouse.stage(EVENTS.name, events(day, range(5)))
    warehouse.discard([discarded])
    assert warehouse.read(EVENTS.name).height == 2
    with pytest.raises(WarehouseError, match="not a handle"):
        warehouse.write([PartitionWrite(EVENTS.name, [day], staged=("nba_analytics.contract_events",))])
    assert warehouse.read(EVENTS.name).height == 2


def test_rows_a_killed_run_staged_on_duckdb_are_dropped_when_the_next_run_takes_the_lock(tmp_path):
    from pipeline.warehouse.duckdb import DuckDBWarehouse

    path = tmp_path / "warehouse.duckdb"
    rows = pl.DataFrame({"table_name": ["x"], "game_date": [D(2024, 1, 5)], "status": ["ok"]}, schema=LOG.columns)
    with DuckDBWarehouse(path) as dead_run:
        dead_run.ensure_table(LOG)
        dead_run.stage(LOG.name, rows)  # and never written: the run was killed
    with DuckDBWarehouse(path) as next_run:
        assert [t for t in next_run.catalog() if t.startswith("nba_staging.")]
        with next_run.lock(holder={"run": "next"}, wait_seconds=0, stale_seconds=0):
            assert not [t for t in next_run.catalog() if t.startswith("nba_staging.")]
        assert next_run.read(LOG.name).height == 0
