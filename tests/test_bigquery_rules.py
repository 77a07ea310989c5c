"""BigQuery as it really behaves: the rules of Google's DML, transaction, partitioning, quota and
access pages that the emulator (serial, DuckDB underneath) does not show, each played where it
cannot be caused for real (tests/bigquery_faults.py names the rule and its page).

Each test here failed on the version before this one (the lock claimed by an insert-only MERGE,
commits per shard with a table of keys, unchecked jobs, no labels, trusted datasets)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading

import polars as pl
import pytest
import yaml

from backends import EMULATOR_PROJECT, Backend
from bigquery_faults import JobRecorder, LostReply, PartitionFilterRequired, Race, wrap
from conftest import PROJECT_ROOT
from pipeline.warehouse.base import PartitionWrite, TableSchema, WarehouseError, WarehouseLocked

D = dt.date
SCORES = TableSchema("nba_analytics.rule_scores", {"game_date": pl.Date, "player_id": pl.Int32, "points": pl.Float64})
STATE = TableSchema("nba_orchestration.rule_state", {"table_name": pl.String, "game_date": pl.Date, "status": pl.String})
# The statement that claims the lock (this version's UPDATE, or the older insert-only MERGE); not
# the heartbeat's or the release's.
CLAIM = r"run_lock`.*(?:WHEN NOT MATCHED|taken_over_from = IF)"
HEARTBEAT = r"SET heartbeat_at = CURRENT_TIMESTAMP\(\) WHERE lock_key = @lock_key"
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def scores(day: dt.date, players: int, points: float = 10.0) -> list[PartitionWrite]:
    rows = pl.DataFrame({"game_date": [day] * players, "player_id": range(players), "points": [points] * players}, schema=SCORES.columns)
    state = pl.DataFrame({"table_name": [SCORES.name], "game_date": [day], "status": ["ok"]}, schema=STATE.columns)
    return [PartitionWrite(SCORES.name, [day], rows), PartitionWrite(STATE.name, [day], state, where={"table_name": SCORES.name})]


@pytest.fixture
def backend(bigquery_emulator) -> Backend:
    backend = Backend.bigquery(bigquery_emulator)
    with backend.open() as warehouse:
        warehouse.ensure_table(SCORES)
        warehouse.ensure_table(STATE)
    return backend


def claim(backend: Backend, run: str, results: dict, *, wait_seconds: float = 0, stale_seconds: float = 600, race: Race | None = None):
    """A run that takes the lock, then lets it go; ``results[run]`` says which it got."""
    with backend.open() as warehouse:
        if race is not None:
            race.join(warehouse)
        try:
            with warehouse.lock(holder={"run": run}, wait_seconds=wait_seconds, stale_seconds=stale_seconds):
                results[run] = "held"
                results.setdefault("holding", threading.Event()).wait(timeout=120)
        except WarehouseLocked as exc:
            results[run] = f"refused: {exc}"


# -- 1. two runs at once ---------------------------------------------------------------------


def test_two_claims_at_once_exactly_one_wins_and_a_third_run_later_still_gets_the_lock(backend):
    """Both claims are sent before either commits (Race). An insert-only MERGE does not conflict
    with another, so both used to win; two UPDATEs of one row conflict and one is run again."""
    race = Race(CLAIM)
    results: dict = {"holding": threading.Event()}
    runs = [threading.Thread(target=claim, args=(backend, run, results), kwargs={"race": race}) for run in ("run-a", "run-b")]
    for thread in runs:
        thread.start()
    # Once both claims are settled, the winner lets go.
    while not all(run in results for run in ("run-a", "run-b")) and any(t.is_alive() for t in runs):
        threading.Event().wait(0.05)
    results["holding"].set()
    for thread in runs:
        thread.join(timeout=300)
    outcomes = sorted(results[run][:7] for run in ("run-a", "run-b"))
    assert outcomes == ["held", "refused"], (results, race.outcomes)
    loser = next(run for run in ("run-a", "run-b") if results[run].startswith("refused"))
    winner = ({"run-a", "run-b"} - {loser}).pop()
    assert f"held by run {winner}" in results[loser]
    # Later, a third run takes it (the table still has one row, free).
    third: dict = {"holding": threading.Event()}
    third["holding"].set()
    claim(backend, "run-c", third)
    assert third["run-c"] == "held"
    with backend.open() as warehouse:
        rows = warehouse.client.query(f"SELECT lock_key, token FROM {warehouse.sql_name('nba_orchestration.run_lock')}").result()
        assert [tuple(r.values()) for r in rows] == [(backend.prefix, None)]


# -- 2. a run that lost its lock cannot write ----------------------------------------------------


class Blocked:
    """A statement that cannot get through (a network cut): every attempt answered with a 503."""

    def __init__(self, session, *, matches: str):
        self.session, self.pattern, self.blocked = session, re.compile(matches), 0

    def __getattr__(self, name):
        return getattr(self.session, name)

    def request(self, method, url, data=None, headers=None, **kwargs):
        from bigquery_faults import fake_response, job_body, query_text

        body = job_body(method, url, data)
        if body is not None and self.pattern.search(query_text(body)):
            self.blocked += 1
            return fake_response(method, url, 503, "backendError", "unreachable (injected)")
        return self.session.request(method, url, data=data, headers=headers, **kwargs)


def test_a_run_whose_heartbeat_stopped_is_taken_over_and_its_next_commit_is_refused_with_nothing_written(backend, caplog):
    """Run A's heartbeat cannot get through; run B takes the stale lock over (waiting on the
    takeover itself, by the server's clock); A's next commit is refused, nothing written."""
    with backend.open() as a, backend.open() as b:
        cut = wrap(a, Blocked, matches=HEARTBEAT)
        with a.lock(holder={"run": "run-a"}, wait_seconds=0, stale_seconds=2):
            with caplog.at_level(logging.WARNING), b.lock(holder={"run": "run-b"}, wait_seconds=120, stale_seconds=2):
                assert "TOOK OVER the warehouse lock from a run presumed dead (held by run run-a" in caplog.text
                with pytest.raises(WarehouseLocked, match="lost the warehouse lock to another run") as refused:
                    a.write(scores(D(2024, 1, 5), 3))
                assert "held by run run-b" in str(refused.value) and "nothing of it was written" in str(refused.value)
                assert b.read(SCORES.name).height == 0 and b.read(STATE.name).height == 0
                b.write(scores(D(2024, 1, 6), 2))  # the new holder writes
        assert cut.blocked >= 1
        assert a.read(SCORES.name)["game_date"].unique().to_list() == [D(2024, 1, 6)]


def test_the_heartbeat_gives_up_retrying_well_before_the_lock_goes_stale(backend, caplog):
    """A heartbeat that cannot get through is reported, not retried for the whole of
    ``stale_seconds`` (600 s of retries used to equal the default lock.stale_seconds)."""
    failed = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record):
            if "heartbeat on the warehouse lock failed" in record.getMessage():
                failed.set()

    handler = Signal(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        with backend.open() as warehouse:
            wrap(warehouse, Blocked, matches=HEARTBEAT)
            # stale 30 s: heartbeats every 6 s, each retrying for at most 10 s. Reported within
            # the lock's own stale time; older versions retried for 600 s without a word.
            with warehouse.lock(holder={"run": "run-a"}, wait_seconds=0, stale_seconds=30):
                assert failed.wait(timeout=30), "the failed heartbeat was never reported"
    finally:
        logging.getLogger().removeHandler(handler)


# -- 3. a claim run twice ------------------------------------------------------------------------


def test_a_claim_whose_answer_was_lost_is_run_again_and_still_holds_the_lock(backend):
    with backend.open() as warehouse, backend.open() as other:
        lost = wrap(warehouse, LostReply, matches=CLAIM)
        with warehouse.lock(holder={"run": "run-a"}, wait_seconds=0, stale_seconds=600):
            assert lost.lost == 1 and lost.sent >= 2  # it committed, was told it failed, and ran again
            with pytest.raises(WarehouseLocked, match="held by run run-a"):
                with other.lock(holder={"run": "run-b"}, wait_seconds=0, stale_seconds=600):
                    pass
            warehouse.write(scores(D(2024, 1, 5), 1))
        with other.lock(holder={"run": "run-b"}, wait_seconds=0, stale_seconds=600):
            pass  # released


# -- 5. partition filters ------------------------------------------------------------------------


def test_partitions_are_replaced_by_constant_filters_a_partition_filter_requirement_accepts(backend):
    with backend.open() as warehouse:
        required = wrap(warehouse, PartitionFilterRequired, tables=[warehouse.table_id(SCORES.name), warehouse.table_id(STATE.name)])
        warehouse.write(scores(D(2024, 1, 5), 3))
        warehouse.write([*scores(D(2024, 1, 5), 2), *scores(D(2024, 1, 7), 1)])
        assert required.refused == []
        assert warehouse.read(SCORES.name).group_by("game_date").len().sort("game_date").rows() == [(D(2024, 1, 5), 2), (D(2024, 1, 7), 1)]


# -- 6. labels and caps --------------------------------------------------------------------------


def test_every_job_is_labelled_with_valid_labels_and_capped(bigquery_emulator):
    backend = Backend.bigquery(bigquery_emulator)
    labels = {"task": "run", "run_id": "20261205T073722-ab12"}
    with BigQueryWarehouse(backend, labels=labels, maximum_bytes_billed=10**9, job_timeout_seconds=600) as warehouse:
        recorder = wrap(warehouse, JobRecorder)
        warehouse.ensure_table(SCORES)
        warehouse.ensure_table(STATE)
        with warehouse.lock(holder={"run": "labels"}, wait_seconds=0, stale_seconds=600):
            warehouse.write(scores(D(2024, 1, 5), 3))
            handle = warehouse.stage(SCORES.name, scores(D(2024, 1, 6), 2)[0].rows)
            warehouse.write([PartitionWrite(SCORES.name, [D(2024, 1, 6)], staged=(handle,))])
            warehouse.append(STATE.name, scores(D(2024, 1, 7), 0)[1].rows)
            warehouse.dates_present(SCORES.name)
    kinds = {job["kind"] for job in recorder.jobs}
    assert kinds == {"query", "load"}, recorder.jobs
    for job in recorder.jobs:
        assert {"pipeline", "task", "run_id"} <= set(job["labels"]), job
        for key, value in job["labels"].items():
            assert LABEL_KEY.fullmatch(key) and LABEL_VALUE.fullmatch(value), (key, value)
        assert job["labels"]["run_id"] == "20261205t073722-ab12"
        assert job["job_timeout_ms"] is not None and int(job["job_timeout_ms"]) == 600_000, job
        if job["kind"] == "query":
            assert int(job["maximum_bytes_billed"]) == 10**9, job
    tables = {job["labels"].get("table") for job in recorder.jobs}
    assert "nba_analytics-rule_scores" in tables  # a dotted name, as a label may hold it


# -- 7. set-up checked ---------------------------------------------------------------------------


def test_a_dataset_in_another_location_is_refused_naming_both(bigquery_emulator):
    from google.cloud import bigquery

    backend = Backend.bigquery(bigquery_emulator)
    with backend.open() as warehouse:
        elsewhere = bigquery.Dataset(f"{warehouse.project}.{backend.prefix}nba_analytics")
        elsewhere.location = "EU"
        warehouse.client.create_dataset(elsewhere)
        with pytest.raises(WarehouseError, match=r"is in location EU, not US \(warehouse.location\)"):
            warehouse.ensure_table(SCORES)


def test_an_existing_staging_dataset_gets_its_expiry(bigquery_emulator):
    from google.cloud import bigquery

    backend = Backend.bigquery(bigquery_emulator)
    with backend.open() as warehouse:
        warehouse.client.create_dataset(bigquery.Dataset(f"{warehouse.project}.{warehouse.staging_dataset}"))
        warehouse.ensure_table(SCORES)
        warehouse.ensure_table(STATE)
        warehouse.write(scores(D(2024, 1, 5), 1))
        staging = warehouse.client.get_dataset(f"{warehouse.project}.{warehouse.staging_dataset}")
        assert staging.default_table_expiration_ms == 24 * 3600 * 1000


def test_the_cluster_config_lists_every_role_and_scope_the_pipeline_needs():
    text = (PROJECT_ROOT / "ray_cluster.yaml").read_text()
    for role in ("roles/bigquery.dataEditor", "roles/bigquery.jobUser", "roles/bigquery.readSessionUser", "roles/storage.objectViewer",
                 "roles/storage.objectAdmin"):  # fmt: skip
        assert role in text, role
    config = yaml.safe_load(text)
    for node in config["available_node_types"].values():
        scopes = {s for account in node["node_config"]["serviceAccounts"] for s in account["scopes"]}
        assert "https://www.googleapis.com/auth/bigquery" in scopes
        assert scopes & {"https://www.googleapis.com/auth/devstorage.read_only", "https://www.googleapis.com/auth/devstorage.read_write"}
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "roles/bigquery.readSessionUser" in readme and "roles/storage.objectViewer" in readme


# -- 8. a failing statement raises ---------------------------------------------------------------


def test_a_write_whose_statement_fails_raises_and_changes_nothing(backend):
    """The emulator answers a failed statement with rows and keeps the error on the job: a write
    that read a staged table that is not there must raise, and leave the partition as it was."""
    with backend.open() as warehouse:
        warehouse.write(scores(D(2024, 1, 5), 4))
        missing = f"{warehouse.project}.{warehouse.staging_dataset}.rows_{'0' * 32}"
        with pytest.raises(WarehouseError, match="rule_scores on 2024-01-05"):
            warehouse.write([PartitionWrite(SCORES.name, [D(2024, 1, 5)], staged=(missing,))])
        assert warehouse.read(SCORES.name).height == 4


# -- helpers -------------------------------------------------------------------------------------


def BigQueryWarehouse(backend: Backend, **options):  # noqa: N802 - reads as the class it builds
    from pipeline.warehouse.bigquery import BigQueryWarehouse as Warehouse

    emulator = backend.emulator
    return Warehouse(EMULATOR_PROJECT, dataset_prefix=backend.prefix, rest_endpoint=emulator.rest, grpc_endpoint=emulator.grpc, **options)


# -- 4. commits follow the run's length, not its shards ----------------------------------------------


class DriverJobs:
    """Jobs this process sends (the driver's: Ray workers are other processes), counted from the
    requests themselves: transactions, load jobs, other queries."""

    def __init__(self, monkeypatch):
        import requests

        self.counts = {"transaction": 0, "load": 0, "query": 0}
        self.labels: list[dict] = []
        original = requests.Session.request

        def counted(session, method, url, *args, **kwargs):
            from bigquery_faults import job_body, query_text

            body = job_body(method, url, kwargs.get("data"))
            if body is not None:
                self.counts["transaction" if "BEGIN TRANSACTION" in query_text(body) else "query"] += 1
                self.labels.append(body.get("labels") or body.get("configuration", {}).get("labels") or {})
            elif method == "POST" and "/upload/" in url:
                self.counts["load"] += 1
            return original(session, method, url, *args, **kwargs)

        monkeypatch.setattr(requests.Session, "request", counted)


@pytest.mark.slow
def test_transactions_and_load_jobs_do_not_grow_with_the_number_of_shards(bigquery_emulator, tmp_path, monkeypatch):
    """The same dates built in 8 times as many shards (shard.days=1 against 8): at most 1.5 times
    the driver's transactions and load jobs (they used to grow with the shards: a transaction
    and two load jobs for every shard)."""
    from conftest import run_in_process

    counts = {}
    for days in (8, 1):
        backend = Backend.bigquery(bigquery_emulator)
        workdir = tmp_path / f"days{days}"
        workdir.mkdir()
        jobs = DriverJobs(monkeypatch)
        run = run_in_process(
            workdir, "tables=[team_offense_game_summary]", "backfill.with_dependents=false",
            "dates.start=2023-11-01", "dates.end=2023-11-30", f"shard.days={days}", warehouse=backend.overrides,
        )  # fmt: skip
        assert run.returncode == 0, run.output
        counts[days] = jobs.counts
        run_id = re.search(r"run (\d{8}T\d{6}-[0-9a-f]{4}): ", run.output)[1].lower()
        assert all(labels.get("task") == "run" and labels.get("run_id") == run_id for labels in jobs.labels), jobs.labels
        monkeypatch.undo()
    for kind in ("transaction", "load"):
        assert counts[1][kind] <= 1.5 * counts[8][kind], counts
    # ... and the run says what it cost
    assert re.search(r"warehouse jobs: \d+ transactions, \d+ load jobs, \d+ other queries by the driver", " ".join(run.output.split()))


def test_a_lock_table_of_an_older_layout_is_refused_with_what_to_do(backend):
    """Older versions kept no row between runs (their claim inserted it): a claim by UPDATE
    would never match there, so the table is refused, not trusted."""
    with backend.open() as warehouse:
        table = warehouse.sql_name("nba_orchestration.run_lock")
        warehouse.client.query(
            f"CREATE TABLE {table} (lock_key STRING, token STRING, holder STRING, acquired_at TIMESTAMP, heartbeat_at TIMESTAMP, "
            "taken_over_from STRING)"
        ).result()
        with pytest.raises(WarehouseError, match=r"holds no usable rows for this warehouse, not 1 .* drop the table \(bq rm -f -t local:"):
            with warehouse.lock(holder={"run": "upgraded"}, wait_seconds=0, stale_seconds=600):
                pass


def test_dates_listed_while_holding_the_lock_follow_this_runs_own_writes(backend):
    """Listing a table's dates is a query job: while it holds the lock a run keeps the list, and
    its own writes (the only ones possible meanwhile) change it."""
    with backend.open() as warehouse, warehouse.lock(holder={"run": "dates"}, wait_seconds=0, stale_seconds=600):
        assert warehouse.dates_present(SCORES.name) == []
        warehouse.write(scores(D(2024, 1, 5), 2))
        assert warehouse.dates_present(SCORES.name) == [D(2024, 1, 5)]
        warehouse.write(scores(D(2024, 1, 3), 1))
        assert warehouse.dates_present(SCORES.name) == [D(2024, 1, 3), D(2024, 1, 5)]
        warehouse.append(STATE.name, scores(D(2024, 1, 9), 0)[1].rows)
        assert warehouse.dates_present(STATE.name) == [D(2024, 1, 3), D(2024, 1, 5), D(2024, 1, 9)]
