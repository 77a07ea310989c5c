"""What only the BigQuery backend has to prove: names checked before any request, transient
faults retried by the client's own retry objects (a fault BigQuery cannot be made to throw on
demand is injected into the real client's HTTP session), a dead holder's lock taken over."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import polars as pl
import pytest

from backends import Backend
from bigquery_faults import FlakySession, wrap
from pipeline.emulator import EmulatorProcess
from conftest import PROJECT_ROOT
from pipeline.warehouse.base import PartitionWrite, TableSchema, WarehouseError, WarehouseLocked
from pipeline.warehouse.bigquery import BigQueryWarehouse, row_restriction

D = dt.date
SCORES = TableSchema("nba_analytics.fault_scores", {"game_date": pl.Date, "player_id": pl.Int32, "points": pl.Float64})
STATE = TableSchema("nba_orchestration.fault_state", {"table_name": pl.String, "game_date": pl.Date, "status": pl.String})


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"project": "nba`raw"}, "warehouse.project 'nba`raw'"),
        ({"project": "x; DROP TABLE y"}, "warehouse.project 'x; DROP TABLE y'"),
        ({"project": "local", "dataset_prefix": "dev-"}, "warehouse.dataset_prefix 'dev-'"),
        ({"project": "local", "staging_dataset": "nba_staging` WHERE 1=1"}, "warehouse.staging_dataset"),
    ],
)
def test_a_bad_name_in_config_is_refused_before_any_request(settings, named):
    # Endpoints where nothing listens: a request would fail with a connection error instead.
    with pytest.raises(WarehouseError, match="is not a valid BigQuery name") as refused:
        BigQueryWarehouse(**settings, rest_endpoint="http://127.0.0.1:9", grpc_endpoint="127.0.0.1:9")
    assert named in str(refused.value)


def test_a_bad_table_or_column_name_is_refused_before_any_request():
    warehouse = BigQueryWarehouse("local", rest_endpoint="http://127.0.0.1:9", grpc_endpoint="127.0.0.1:9")
    for table in ("nba`raw.x", "nba_raw.x; DROP TABLE y", "no_dataset"):
        with pytest.raises(WarehouseError, match="not"):
            warehouse.exists(table)
    with pytest.raises(WarehouseError, match="is not a valid BigQuery name"):
        row_restriction(None, None, {"status` = 'x' OR `1": "ok"})
    # Values in a read's filter are typed literals, never raw text.
    assert row_restriction(D(2024, 1, 5), None, {"name": "it's \\ me"}) == "game_date >= DATE '2024-01-05' AND `name` = 'it\\'s \\\\ me'"


def test_the_command_line_refuses_a_bad_project_cleanly(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "warehouse=bigquery", "warehouse.project='x; DROP'", f"logs.dir={tmp_path}",
         "warehouse.endpoints.rest=http://127.0.0.1:9", "warehouse.endpoints.grpc=127.0.0.1:9"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 1
    assert "warehouse.project 'x; DROP' is not a valid BigQuery name" in output and "Traceback" not in output
    missing = subprocess.run(
        [sys.executable, "-m", "pipeline", "warehouse=bigquery", f"logs.dir={tmp_path}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert missing.returncode == 1 and "warehouse.project is required with warehouse=bigquery" in " ".join((missing.stdout + missing.stderr).split())


def flaky(warehouse: BigQueryWarehouse, **faults) -> FlakySession:
    return wrap(warehouse, FlakySession, **faults)


def scores_write(day: dt.date, players: int) -> list[PartitionWrite]:
    rows = pl.DataFrame({"game_date": [day] * players, "player_id": range(players), "points": [10.0] * players}, schema=SCORES.columns)
    state = pl.DataFrame({"table_name": [SCORES.name], "game_date": [day], "status": ["ok"]}, schema=STATE.columns)
    return [PartitionWrite(SCORES.name, [day], rows), PartitionWrite(STATE.name, [day], state, where={"table_name": SCORES.name})]


@pytest.fixture
def bigquery(bigquery_emulator):
    with Backend.bigquery(bigquery_emulator).open() as warehouse:
        warehouse.ensure_table(SCORES)
        warehouse.ensure_table(STATE)
        yield warehouse


def test_transient_faults_are_retried_and_the_write_lands_exactly_once(bigquery):
    session = flaky(bigquery, unavailable=True, commit_error="Could not serialize access to table local.nba_analytics.fault_scores due to concurrent update")
    bigquery.write(scores_write(D(2024, 1, 5), 40))
    assert sorted(session.injected) == ["503 datasets", "503 queries", "503 upload", "commit"]
    assert session.commits == 2  # the aborted transaction ran again, once
    session.unavailable = {"upload", "queries"}
    bigquery.write(scores_write(D(2024, 1, 5), 40))  # the same write again: still one copy
    scores = bigquery.read(SCORES.name)
    assert scores.height == 40 and scores["player_id"].n_unique() == 40
    assert bigquery.read(STATE.name).rows() == [(SCORES.name, D(2024, 1, 5), "ok")]


def test_a_permanent_error_fails_at_once_naming_the_tables_and_dates(bigquery):
    session = flaky(bigquery, commit_error="Syntax error: Unexpected keyword (injected)", commit_errors=5)
    with pytest.raises(WarehouseError) as failed:
        bigquery.write(scores_write(D(2024, 1, 5), 3))
    assert session.commits == 1  # not retried
    text = str(failed.value)
    assert "nba_analytics.fault_scores on 2024-01-05" in text and "Syntax error" in text
    assert bigquery.read(SCORES.name).height == 0


HOLD_THE_LOCK = textwrap.dedent(
    """
    import sys, time
    from pipeline.warehouse.bigquery import BigQueryWarehouse
    rest, grpc, prefix = sys.argv[1:4]
    warehouse = BigQueryWarehouse("local", dataset_prefix=prefix, rest_endpoint=rest, grpc_endpoint=grpc)
    with warehouse.lock(holder={"run": "doomed-run", "pid": __import__("os").getpid()}, wait_seconds=0, stale_seconds=3):
        print("holding", flush=True)
        time.sleep(600)
    """
)


def test_a_holder_killed_with_sigkill_is_taken_over_once_its_heartbeat_is_stale(bigquery_emulator, caplog):
    backend = Backend.bigquery(bigquery_emulator)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, bigquery_emulator.rest, bigquery_emulator.grpc, backend.prefix],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        with backend.open() as warehouse:
            # Held past its stale_seconds by the server's clock: only the heartbeat keeps it.
            held_for = f"SELECT TIMESTAMP_DIFF(heartbeat_at, acquired_at, MILLISECOND) FROM {warehouse.sql_name('nba_orchestration.run_lock')}"
            while next(iter(warehouse.client.query(held_for).result()))[0] <= 3000:
                assert holder.poll() is None, "the holder died"
                time.sleep(0.2)
            # Alive, so refused (a claimer that presumes death only after 60 s of silence: no race
            # with a heartbeat late on a busy machine).
            with pytest.raises(WarehouseLocked, match=f"held by run doomed-run, pid {holder.pid}"):
                with warehouse.lock(holder={"run": "next-run"}, wait_seconds=0, stale_seconds=60):
                    pass
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
            # Refused while the dead run's last heartbeat is fresh, taken over once it is stale.
            with caplog.at_level(logging.WARNING), warehouse.lock(holder={"run": "next-run"}, wait_seconds=60, stale_seconds=3):
                pass
        assert "TOOK OVER the warehouse lock from a run presumed dead (held by run doomed-run" in caplog.text
        assert "waiting up to 60s for the warehouse: held by run doomed-run" in caplog.text
    finally:
        holder.kill()
        holder.wait()


def test_staging_tables_expire_in_a_day_and_are_dropped_after_the_commit(bigquery):
    bigquery.write(scores_write(D(2024, 1, 5), 10))
    staging = bigquery.client.get_dataset(f"{bigquery.project}.{bigquery.staging_dataset}")
    assert staging.default_table_expiration_ms == 24 * 3600 * 1000
    assert list(bigquery.client.list_tables(staging)) == []


def test_the_emulator_keeps_its_tables_across_a_restart(tmp_path):
    day = D(2024, 1, 5)
    with EmulatorProcess.start(data_dir=tmp_path / "bqemulator") as emulator:
        with Backend.bigquery(emulator, prefix="kept_").open() as warehouse:
            warehouse.ensure_table(SCORES)
            warehouse.ensure_table(STATE)
            warehouse.write(scores_write(day, 7))
    with EmulatorProcess.start(data_dir=tmp_path / "bqemulator") as emulator:
        with Backend.bigquery(emulator, prefix="kept_").open() as warehouse:
            assert warehouse.read(SCORES.name).height == 7
            assert warehouse.dates_present(STATE.name) == [day]
            # Its catalog follows a new column and a changed type, as the in-memory one does.
            changed = TableSchema(SCORES.name, {**SCORES.columns, "points": pl.Int16, "assists": pl.Int8})
            warehouse.ensure_table(changed)
            after = warehouse.read(SCORES.name)
            assert after.schema == pl.Schema(changed.columns) and after["points"].null_count() == after["assists"].null_count() == 7


def test_legacy_type_names_are_the_same_columns():
    """Google's REST API describes INT64 columns as INTEGER (and FLOAT64, BOOL as FLOAT, BOOLEAN):
    the same column, which ensure_table must not take for a changed one and drop."""
    from google.cloud.bigquery import SchemaField

    from pipeline.warehouse.bigquery import Column

    for legacy, dtype in (("INTEGER", pl.Int16), ("FLOAT", pl.Float64), ("BOOLEAN", pl.Boolean)):
        declared = Column.declared("x", dtype)
        assert Column.of(SchemaField("x", legacy, description=declared.field().description)) == declared
    repeated = Column.declared("shares", pl.List(pl.Float64))
    assert Column.of(SchemaField("shares", "FLOAT", mode="REPEATED", description=repeated.field().description)) == repeated


def test_rows_staged_by_another_process_are_written_by_this_one(bigquery_emulator, bigquery):
    """What a Ray worker does with worker-side I/O: it opens the warehouse itself, stages its
    shard's rows, and hands the driver only the handle."""
    day = D(2024, 1, 5)
    worker = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import datetime as dt, sys, polars as pl
            from pipeline.warehouse.bigquery import BigQueryWarehouse
            rest, grpc, prefix = sys.argv[1:4]
            warehouse = BigQueryWarehouse("local", dataset_prefix=prefix, rest_endpoint=rest, grpc_endpoint=grpc)
            rows = pl.DataFrame({"game_date": [dt.date(2024, 1, 5)] * 3, "player_id": [1, 2, 3], "points": [4.0, 5.0, 6.0]})
            print(warehouse.stage("nba_analytics.fault_scores", rows.cast({"player_id": pl.Int32})))
            """
        ), bigquery_emulator.rest, bigquery_emulator.grpc, bigquery.prefix],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    handle = worker.stdout.strip()
    assert bigquery.read(SCORES.name).height == 0
    bigquery.write([PartitionWrite(SCORES.name, [day], staged=(handle,)), *scores_write(day, 0)[1:]])
    assert sorted(bigquery.read(SCORES.name)["player_id"]) == [1, 2, 3]
    assert list(bigquery.client.list_tables(f"{bigquery.project}.{bigquery.staging_dataset}")) == []
