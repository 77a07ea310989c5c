"""The rules played offline (tests/bigquery_faults.py), checked against real BigQuery.

Opt in, for a team with a Google Cloud project and Application Default Credentials whose account
has the roles README lists::

    NBA_PIPELINE_LIVE_PROJECT=my-project pytest -m bigquery_live -n 0

(``NBA_PIPELINE_LIVE_LOCATION`` if not US.) Everything is made in datasets of a prefix of its own
(``live_<random>_``), deleted at the end. Without ``-m bigquery_live`` these tests are deselected,
never run nor counted as skipped; with it and no project named, the run stops at once.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid

import polars as pl
import pytest

from conftest import run_in_process, unwrapped
from pipeline.state import RUN_STATE
from pipeline.warehouse.base import PartitionWrite, TableSchema, WarehouseLocked
from pipeline.warehouse.bigquery import DATASETS, BigQueryWarehouse

pytestmark = pytest.mark.bigquery_live

PROJECT_ENV, LOCATION_ENV = "NBA_PIPELINE_LIVE_PROJECT", "NBA_PIPELINE_LIVE_LOCATION"
SCORES = TableSchema("nba_analytics.live_scores", {"game_date": pl.Date, "player_id": pl.Int32, "points": pl.Float64})
HEARTBEAT = r"SET heartbeat_at = CURRENT_TIMESTAMP\(\) WHERE lock_key = @lock_key"


@pytest.fixture(scope="module")
def live():
    project = os.environ[PROJECT_ENV]
    location = os.environ.get(LOCATION_ENV, "US")
    prefix = f"live_{uuid.uuid4().hex[:8]}_"

    def open_warehouse() -> BigQueryWarehouse:
        return BigQueryWarehouse(project, location=location, dataset_prefix=prefix, labels={"task": "live-test"})

    yield project, location, prefix, open_warehouse
    with open_warehouse() as warehouse:
        for dataset in (*DATASETS, "nba_staging"):
            warehouse.client.delete_dataset(f"{project}.{prefix}{dataset}", delete_contents=True, not_found_ok=True)


def overrides(project: str, location: str, prefix: str) -> list[str]:
    return ["warehouse=bigquery", f"warehouse.project={project}", f"warehouse.location={location}", f"warehouse.dataset_prefix={prefix}"]


def test_two_claims_at_once_exactly_one_wins(live):
    *_, open_warehouse = live
    start, results = threading.Barrier(2), {}

    def claim(run: str) -> None:
        with open_warehouse() as warehouse:
            start.wait()
            try:
                with warehouse.lock(holder={"run": run}, wait_seconds=0, stale_seconds=600):
                    results[run] = "held"
                    done.wait(timeout=300)
            except WarehouseLocked:
                results[run] = "refused"

    done = threading.Event()
    threads = [threading.Thread(target=claim, args=(run,)) for run in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    while len(results) < 2 and all(t.is_alive() for t in threads):
        threading.Event().wait(0.2)
    done.set()
    for thread in threads:
        thread.join(timeout=600)
    assert sorted(results.values()) == ["held", "refused"]


def test_a_commit_after_a_takeover_is_refused_with_nothing_written(live):
    from bigquery_faults import wrap
    from test_bigquery_rules import Blocked

    *_, open_warehouse = live
    with open_warehouse() as a, open_warehouse() as b:
        a.ensure_table(SCORES)
        wrap(a, Blocked, matches=HEARTBEAT)
        with a.lock(holder={"run": "run-a"}, wait_seconds=0, stale_seconds=20):
            with b.lock(holder={"run": "run-b"}, wait_seconds=300, stale_seconds=20):
                rows = pl.DataFrame({"game_date": [dt.date(2024, 1, 5)], "player_id": [1], "points": [3.0]}, schema=SCORES.columns)
                with pytest.raises(WarehouseLocked, match="lost the warehouse lock"):
                    a.write([PartitionWrite(SCORES.name, [dt.date(2024, 1, 5)], rows)])
                assert b.read(SCORES.name).height == 0


def test_doctor_and_a_one_week_build(live, tmp_path):
    project, location, prefix, open_warehouse = live
    built = run_in_process(tmp_path, "dates.start=2024-01-08", "dates.end=2024-01-14", "training.after_run=false",
                           warehouse=overrides(project, location, prefix))  # fmt: skip
    assert built.returncode == 0, built.output
    with open_warehouse() as warehouse:
        state = warehouse.read(RUN_STATE.name, columns=["status"])
        assert state.height and set(state["status"]) == {"ok"}
    doctor = run_in_process(tmp_path, "task=doctor", f"backup.target={tmp_path / 'backups'}", warehouse=overrides(project, location, prefix))
    assert doctor.returncode == 0, doctor.output
    assert "checks passed" in unwrapped(doctor.output)
