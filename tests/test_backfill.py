"""The backfill control plane: per-date state, honest resume, dependency planning, the lock."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from backends import Backend
from conftest import PHASE3_TABLES, RAW_DIR, kill_process_group, query, run_in_process, run_pipeline, stop_in_process_ray, unwrapped
from pipeline.state import RUN_STATE
from pipeline.tables import registry

pytestmark = pytest.mark.slow  # runs the pipeline end to end

PHASE_2_3 = [n for n, t in registry().items() if t.phase <= 3]
PHASE_4 = [n for n, t in registry().items() if t.phase == 4]
NOVEMBER_END = "2023-11-12"
NOVEMBER = ("dates.start=2023-11-01", f"dates.end={NOVEMBER_END}")
FIRST_WEEK = ("dates.start=2023-11-01", "dates.end=2023-11-05")  # two runs at once: long enough to overlap
FAULTS = "NBA_PIPELINE_FAULTS"


def opened(warehouse: Path | Backend):
    """The warehouse a test looks into, read-only: a DuckDB file by its path, or any backend."""
    return (warehouse if isinstance(warehouse, Backend) else Backend.duckdb(warehouse)).open(read_only=True)


def states(warehouse: Path | Backend) -> pl.DataFrame:
    with opened(warehouse) as w:
        rows = w.read(RUN_STATE.name, columns=["table_name", "game_date", "status", "attempts", "run_id", "last_error"])
    return rows.select(
        pl.col("table_name").alias("table"), pl.col("game_date").cast(pl.String).alias("date"), "status", "attempts", "run_id",
        pl.col("last_error").alias("error"),
    )  # fmt: skip


def rebuilt_by(before: pl.DataFrame, after: pl.DataFrame) -> set[tuple[str, str]]:
    """(table, date) pairs whose state row was written by a later run than ``before`` saw."""
    joined = after.join(before.select("table", "date", old="run_id"), on=["table", "date"], how="left")
    return {(t, d) for t, d in joined.filter(pl.col("old").is_null() | (pl.col("old") != pl.col("run_id"))).select("table", "date").iter_rows()}


def no_duplicates(warehouse: Path | Backend) -> None:
    with opened(warehouse) as w:
        for name in [*PHASE_2_3, *PHASE_4]:
            if w.exists(name):
                keys = w.read(name, columns=list(registry()[name].key))
                assert not keys.is_duplicated().any(), name


# On BigQuery a killed run's lock row stays behind: the rerun takes it over once its heartbeat
# is this old (DuckDB's file lock dies with the process).
STALE_LOCK = ("lock.stale_seconds=5", "lock.wait_seconds=120")


def test_sigkill_mid_level_then_rerun_completes_without_redoing_work(tmp_path, backend):
    """A real subprocess killed with SIGKILL while one shard of a level is still running."""
    logs = tmp_path / "logs"
    args = [
        sys.executable, "-m", "pipeline", *backend.overrides, f"logs.dir={logs}", *STALE_LOCK,
        "ray.num_cpus=2", "shard.days=8", f"tables={PHASE3_TABLES}", "backfill.with_dependents=false",
        "dates.start=2022-12-01", "dates.end=2023-02-28",
    ]  # fmt: skip
    # The shard of 2023-01-15 parks until a file appears that the test never makes: it is still
    # running when the run is killed, however long the other shards take.
    parked = tmp_path / "never"
    env = {**os.environ, FAULTS: f"nba_analytics.player_game_summary@2023-01-15:wait_for={parked}"}
    stop_in_process_ray()
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        committed = 0
        while not (committed >= 5 and Path(f"{parked}.waiting").exists()):
            assert proc.poll() is None, f"the run ended (exit code {proc.returncode}) before the level got going"
            assert time.monotonic() < deadline, f"the level did not get going in 600 s ({committed} shards committed)"
            time.sleep(0.5)
            text = "".join(p.read_text() for p in logs.glob("*.log")) if logs.exists() else ""
            committed = text.count("DEBUG pipeline.runner.commits: nba_analytics.player_game_summary 20")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_process_group(proc.pid)  # Ray's helpers in the same session, if still alive
    assert proc.returncode == -signal.SIGKILL
    before = states(backend)
    done_before = before.filter(table="nba_analytics.player_game_summary", status="ok")
    assert 5 <= done_before.height < 83  # killed in the middle of the level ...
    assert "2023-01-15" not in done_before["date"].to_list()  # ... while the sleeping shard ran
    # Every partition is whole: a date has rows iff its state says ok.
    with opened(backend) as w:
        with_rows = set(w.read("nba_analytics.player_game_summary", columns=["game_date"])["game_date"].cast(pl.String))
    assert with_rows == set(done_before["date"])

    resumed = run_pipeline(
        tmp_path, f"tables={PHASE3_TABLES}", "backfill.with_dependents=false", "dates.start=2022-12-01", "dates.end=2023-02-28",
        *STALE_LOCK, warehouse=backend.overrides,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.output
    if backend.name == "bigquery":
        assert "TOOK OVER the warehouse lock from a run presumed dead" in unwrapped(resumed.output)
    after = states(backend)
    assert set(after.filter(pl.col("table").is_in(PHASE_2_3))["status"]) == {"ok"}
    game_dates = (
        pl.scan_parquet(RAW_DIR / "player_boxscores_2022-23.parquet")
        .filter(pl.col("game_date").is_between(pl.date(2022, 12, 1), pl.date(2023, 2, 28)))
        .select(pl.col("game_date").n_unique())
        .collect()
        .item()
    )
    assert game_dates == 83
    assert after.filter(pl.col("table").is_in(PHASE_2_3)).height == len(PHASE_2_3) * game_dates
    redone = rebuilt_by(before.filter(status="ok"), after)
    assert not redone & {(t, d) for t, d in before.filter(status="ok").select("table", "date").iter_rows()}
    no_duplicates(backend)
    with opened(backend) as w:
        players = w.read("nba_analytics.player_game_summary", columns=["player_id"]).height
        assert players == w.read("nba_raw.player_boxscores", columns=["player_id"]).height > 10_000


# The first weeks of the first season of the data: the whole history every Phase 4 date reads (its
# season to date, and no season before it) is in the range, so the dependents do run.
OPENING_END = "2022-11-12"
OPENING = ("dates.start=2022-10-18", f"dates.end={OPENING_END}")


def test_failed_date_is_recorded_then_rebuilt_alone_with_its_dependents(tmp_path):
    failing = "2022-11-05"
    first = run_in_process(
        tmp_path, f"tables={PHASE3_TABLES}", *OPENING, env={FAULTS: f"nba_analytics.team_offense_game_summary@{failing}:fail"}
    )
    assert first.returncode == 1
    assert failing in first.output and "retry the failed dates" in first.output
    warehouse = tmp_path / "warehouse.duckdb"
    before = states(warehouse)
    failed = before.filter(status="failed")
    assert failed.select("table", "date").rows() == [("nba_analytics.team_offense_game_summary", failing)]
    assert f"injected failure for nba_analytics.team_offense_game_summary on {failing}" in failed["error"][0]
    assert "Traceback" in failed["error"][0]  # the full text, not a summary
    assert failed["attempts"][0] == 1  # a permanent error is not retried
    phase3 = before.filter(pl.col("table").is_in(PHASE_2_3))
    assert phase3.filter(status="ok").height == phase3.height - 1
    # Its dependents did not run on that date.
    for table in ("nba_analytics.player_game_summary", "nba_analytics.team_defense_game_summary"):
        assert before.filter(table=table, date=failing).height == 0
    # task=status says so, with the error, and exits 1.
    status = run_in_process(tmp_path, "task=status")
    assert status.returncode == 1, status.output
    text = unwrapped(status.output)
    assert "nba_analytics.team_offense_game_summary: 1 failed date(s)" in text
    assert f"{failing}: RuntimeError: injected failure for nba_analytics.team_offense_game_summary on {failing}" in text

    second = run_in_process(tmp_path, f"tables={PHASE3_TABLES}", *OPENING)
    assert second.returncode == 0, second.output
    assert run_in_process(tmp_path, "task=status").returncode == 0
    after = states(warehouse)
    assert set(after["status"]) == {"ok"}
    redone = rebuilt_by(before, after)
    assert {p for p in redone if p[0] in PHASE_2_3} == {
        ("nba_analytics.team_offense_game_summary", failing),
        ("nba_analytics.player_game_summary", failing),
        ("nba_analytics.team_defense_game_summary", failing),
    }
    # Phase 4 reruns only dates whose lookback windows hold the failed date (none before it, and
    # nothing after the range the first run built), every Phase 4 table on them.
    phase4 = {(t, d) for t, d in redone if t in PHASE_4}
    assert {t for t, _ in phase4} == set(PHASE_4) and all(failing <= d <= OPENING_END for _, d in phase4)
    no_duplicates(warehouse)


def test_the_printed_retry_command_finishes_the_run(tmp_path):
    """Without dependents, a failed upstream date holds back the requested table on that date;
    the command the run prints builds both, and nothing else."""
    failing = "2023-11-05"
    request = ("tables=[player_game_summary]", "backfill.with_dependents=false", *NOVEMBER)
    first = run_in_process(tmp_path, *request, env={FAULTS: f"nba_analytics.team_offense_game_summary@{failing}:fail"})
    assert first.returncode == 1
    printed = first.output.split("held back, with:", 1)[1].strip().splitlines()[0]
    assert printed.startswith("python -m pipeline ") and "'tables=[nba_analytics.player_game_summary,nba_analytics.team_offense_game_summary]'" in printed
    warehouse = tmp_path / "warehouse.duckdb"
    before = states(warehouse)
    assert before.filter(table="nba_analytics.player_game_summary", date=failing).height == 0

    args = shlex.split(printed)[3:]
    stop_in_process_ray()
    retry = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    after = states(warehouse)
    assert set(after["status"]) == {"ok"}
    assert rebuilt_by(before, after) == {
        ("nba_analytics.team_offense_game_summary", failing),
        ("nba_analytics.player_game_summary", failing),
    }


def test_changed_raw_day_rebuilds_exactly_that_date_and_its_dependents(raw_copy, tmp_path):
    common = (f"data.raw_dir={raw_copy}", f"tables={PHASE3_TABLES}", *NOVEMBER)
    assert run_in_process(tmp_path, *common).returncode == 0
    warehouse = tmp_path / "warehouse.duckdb"
    before = states(warehouse)
    changed = "2023-11-08"
    path = raw_copy / "player_boxscores_2023-24.parquet"
    frame = pl.read_parquet(path)
    one_row = (pl.col("game_date").cast(pl.String) == changed) & (pl.col("player_name") == "Stephen Curry")
    frame.with_columns(pf=pl.when(one_row).then(pl.col("pf") + 1).otherwise(pl.col("pf"))).write_parquet(path)

    plan = run_in_process(tmp_path, "task=plan", *common)
    assert plan.returncode == 0 and "inputs changed" in plan.output
    rerun = run_in_process(tmp_path, *common)
    assert rerun.returncode == 0, rerun.output
    redone = rebuilt_by(before, states(warehouse))
    assert {p for p in redone if p[0] in PHASE_2_3} == {(t, changed) for t in PHASE_2_3}
    assert all(d >= changed for t, d in redone if t in PHASE_4)
    pf = query(warehouse, f"SELECT pf FROM nba_analytics.player_game_summary WHERE game_date = '{changed}' AND player_name = 'Stephen Curry'")
    assert pf == [(frame.filter(one_row)["pf"][0] + 1,)]


def test_transient_errors_are_retried_with_backoff(tmp_path):
    run = run_in_process(
        tmp_path, "tables=[team_offense_game_summary]", *NOVEMBER, "backfill.retry_backoff_seconds=0.1",
        env={FAULTS: "nba_analytics.team_offense_game_summary@2023-11-03:transient=2"},
    )  # fmt: skip
    assert run.returncode == 0, run.output
    attempts = query(tmp_path / "warehouse.duckdb", "SELECT attempts, status FROM nba_orchestration.run_state WHERE table_name = 'nba_analytics.team_offense_game_summary' AND game_date = '2023-11-03'")
    assert attempts == [(3, "ok")]
    assert "transient error" in run.output

    out_of_retries = run_in_process(
        tmp_path, "tables=[team_offense_game_summary]", *NOVEMBER, "backfill.resume=false", "backfill.max_attempts=2",
        "backfill.retry_backoff_seconds=0.1", env={FAULTS: "nba_analytics.team_offense_game_summary@2023-11-03:transient=5"},
    )  # fmt: skip
    assert out_of_retries.returncode == 1
    assert query(tmp_path / "warehouse.duckdb", "SELECT attempts, status FROM nba_orchestration.run_state WHERE table_name = 'nba_analytics.team_offense_game_summary' AND game_date = '2023-11-03'") == [(2, "failed")]


def test_two_runs_at_once_one_is_refused_and_the_tables_are_right(tmp_path, backend):
    """A run holding the warehouse (parked inside its lock until the test lets it go, so the two
    surely overlap, however busy the machine): a second run is refused, or with
    lock.wait_seconds waits and then runs; the tables are right after both."""
    def start(*extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", "pipeline", *backend.overrides, f"logs.dir={tmp_path / 'logs'}", "ray.num_cpus=2", f"tables={PHASE3_TABLES}", *FIRST_WEEK, *extra]
        return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})})

    def holding(name: str, *extra: str) -> tuple[subprocess.Popen, Path]:
        """A run whose shard of 2023-11-03 waits for the file ``name``, once that shard is waiting."""
        barrier = tmp_path / name
        run = start(*extra, env={FAULTS: f"nba_analytics.player_game_summary@2023-11-03:wait_for={barrier}"})
        wait_until(lambda: Path(f"{barrier}.waiting").exists(), run, "the holding run to park its shard")
        return run, barrier

    def wait_until(condition, run: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + 300
        while not condition():
            assert run.poll() is None, f"the run ended before {what}:\n{run.communicate()[0]}"
            assert time.monotonic() < deadline, f"no {what} in 300 s"
            time.sleep(0.2)

    stop_in_process_ray()
    holder, barrier = holding("first")
    second = start()
    refused = second.communicate(timeout=300)[0]
    barrier.touch()
    held = holder.communicate(timeout=300)[0]
    assert (holder.returncode, second.returncode) == (0, 1), held + refused
    assert re.search(r"is in use by another run \(held by run \S+, pid \d+, host ", unwrapped(refused)), refused
    assert set(states(backend)["status"]) <= {"ok", "skipped_bootstrap"}
    no_duplicates(backend)

    # Asked to wait, the second run waits for the first instead of refusing, and then runs.
    holder, barrier = holding("again", "backfill.resume=false")
    logs_before = set((tmp_path / "logs").glob("*.log"))
    waiter = start("backfill.resume=false", "lock.wait_seconds=300")
    waiting = "waiting up to 300s for the warehouse: held by run"
    wait_until(lambda: any(waiting in p.read_text() for p in set((tmp_path / "logs").glob("*.log")) - logs_before), waiter, "waiting")
    barrier.touch()
    outputs = [p.communicate(timeout=300)[0] for p in (holder, waiter)]
    assert [holder.returncode, waiter.returncode] == [0, 0], outputs
    assert waiting in unwrapped(outputs[1]) and "warehouse lock acquired after waiting" in unwrapped(outputs[1])
    no_duplicates(backend)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_writes_nothing_and_explains_itself(phase3_copy, tmp_path):
    before = file_digest(phase3_copy)
    plan = run_pipeline(tmp_path, "task=plan", "tables=[player_game_summary]", "backfill.resume=false", "dates.start=2024-03-01", "dates.end=2024-03-10")
    assert plan.returncode == 0, plan.output
    assert file_digest(phase3_copy) == before
    assert "nba_analytics.player_game_summary" in plan.output and "rebuild requested" in plan.output
    assert "dependent of a rebuilt table" in plan.output
    # On a warehouse that does not exist yet, plan does not create one.
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh = run_pipeline(empty, "task=plan", "tables=[player_game_summary]", "dates.start=2024-03-01", "dates.end=2024-03-10")
    assert fresh.returncode == 0 and "missing" in fresh.output
    assert not (empty / "warehouse.duckdb").exists()


def test_status_while_a_run_writes_names_the_run(phase3_copy, tmp_path):
    """DuckDB lets no other process open a file another one writes: status says who holds it."""
    from pipeline.command import holder_info
    from pipeline.warehouse.duckdb import DuckDBWarehouse

    with DuckDBWarehouse(phase3_copy) as warehouse, warehouse.lock(holder=holder_info("run-in-test", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
        warehouse.read("nba_orchestration.run_state", columns=["table_name"])  # opens it for writing
        status = run_pipeline(tmp_path, "task=status")
    assert status.returncode == 1
    text = unwrapped(status.output)
    assert "another process has it open for writing (held by run run-in-test, pid" in text


def test_without_upstream_an_incomplete_request_is_refused_before_anything_runs(tmp_path):
    request = ("tables=[player_game_summary]", "backfill.with_upstream=false", "dates.start=2024-03-01", "dates.end=2024-03-03")
    # task=plan refuses too: it shows the gaps and exits 1.
    plan = run_in_process(tmp_path, "task=plan", *request)
    assert plan.returncode == 1, plan.output
    assert "blocking gap: nba_analytics.team_offense_game_summary is missing 3 date(s): 2024-03-01..2024-03-03 (3 dates)" in unwrapped(plan.output)
    assert not (tmp_path / "warehouse.duckdb").exists()
    run = run_pipeline(tmp_path, *request)
    assert run.returncode == 1
    assert "refused" in run.output
    # Every missing date is listed, as runs of consecutive game dates.
    assert "nba_analytics.team_offense_game_summary: 3 missing date(s): 2024-03-01..2024-03-03 (3 dates)" in run.output
    assert "nba_raw.player_boxscores: 3 missing date(s)" in run.output
    assert not (tmp_path / "warehouse.duckdb").exists() or query(
        tmp_path / "warehouse.duckdb", "SELECT count(*) FROM information_schema.tables WHERE table_name = 'run_state'"
    ) == [(0,)]


def test_dates_list_rebuilds_exactly_those_dates_and_status_reports(phase3_copy, tmp_path):
    before = states(phase3_copy)
    run = run_in_process(tmp_path, "tables=[team_offense_game_summary]", "dates.list=[2024-01-10,2024-01-12]", "backfill.with_dependents=false")
    assert run.returncode == 0, run.output
    assert rebuilt_by(before, states(phase3_copy)) == {
        ("nba_analytics.team_offense_game_summary", "2024-01-10"),
        ("nba_analytics.team_offense_game_summary", "2024-01-12"),
    }
    status = run_pipeline(tmp_path, "task=status", "status.by_month=true")
    assert status.returncode == 0, status.output
    assert "2023-24" in status.output and "2024-01" in status.output
    line = next(text for text in status.output.splitlines() if "nba_analytics.player_game_summary" in text and "2024-01" in text)
    cells = [c.strip() for c in line.strip("│┃ ").split("│")]
    days, rows = query(phase3_copy, "SELECT count(DISTINCT game_date), count(*) FROM nba_analytics.player_game_summary WHERE game_date BETWEEN '2024-01-01' AND '2024-01-31'")[0]
    # table, season, month, ok, failed, missing, bootstrap_skipped, awaiting_box_scores, rows
    assert cells == ["nba_analytics.player_game_summary", "2023-24", "2024-01", str(days), "0", "0", "0", "0", f"{rows:,}"]


@pytest.mark.parametrize("task", ["run", "status"])
def test_a_file_that_is_not_a_warehouse_is_refused_and_left_alone(tmp_path, task):
    (tmp_path / "warehouse.duckdb").write_text("notes, not a database\n")
    run = run_pipeline(tmp_path, f"task={task}")
    assert run.returncode == 1
    assert f"cannot open {tmp_path / 'warehouse.duckdb'} as a DuckDB database (warehouse.path)" in unwrapped(run.output)
    assert "Traceback" not in run.output
    assert (tmp_path / "warehouse.duckdb").read_text() == "notes, not a database\n"
