"""History: ``nba_orchestration.run_history`` (one row per run, written when it takes the lock and
completed when it lets go) and ``nba_orchestration.table_profile`` (per table, date and column,
written with the rows it describes); both in backups."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from conftest import kill_process_group, read_table, run_in_process, stop_in_process_ray

from pipeline.profile import column_profile, merged_profile
from pipeline.runner.faults import FAULTS_ENV
from pipeline.tables import dag_levels, registry

D1, D2, D3 = dt.date(2024, 1, 5), dt.date(2024, 1, 6), dt.date(2024, 1, 7)


def rows_of(profile: pl.DataFrame, day: dt.date, column: str) -> dict:
    return profile.filter((pl.col("game_date") == day) & (pl.col("column_name") == column)).row(0, named=True)


# -- the profile of rows, by hand ----------------------------------------------------------------------


def test_profile_of_a_date_worked_out_by_hand():
    rows = pl.DataFrame(
        {
            "game_date": [D1, D1, D1, D1, D2],
            "pts": [1, 2, 4, None, 10],
            "played": [True, False, True, None, True],
            "name": ["a", None, "c", "d", "e"],
        },
        schema={"game_date": pl.Date, "pts": pl.Int16, "played": pl.Boolean, "name": pl.String},
    )
    profile = column_profile(rows, [D1, D2])
    pts = rows_of(profile, D1, "pts")
    # 4 rows, 1 NULL; the values 1, 2, 4: mean 7/3; linear quartiles at positions 0.5, 1, 1.5 of
    # the sorted values: 1 + 0.5 * (2 - 1) = 1.5, 2, 2 + 0.5 * (4 - 2) = 3.
    assert (pts["row_count"], pts["null_count"], pts["null_fraction"]) == (4, 1, 0.25)
    assert pts["mean_value"] == pytest.approx(7 / 3)
    assert (pts["min_value"], pts["p25"], pts["p50"], pts["p75"], pts["max_value"]) == (1.0, 1.5, 2.0, 3.0, 4.0)
    assert pts["column_type"] == "Int16" and pts["quartiles_exact"]
    played = rows_of(profile, D1, "played")  # a boolean: the share true (2 of 3), no quartiles
    assert played["mean_value"] == pytest.approx(2 / 3) and played["null_count"] == 1 and played["p50"] is None
    name = rows_of(profile, D1, "name")  # text: rows and NULLs only
    assert (name["null_count"], name["null_fraction"], name["mean_value"]) == (1, 0.25, None)
    alone = rows_of(profile, D2, "pts")  # one value: every quartile is it
    assert (alone["row_count"], alone["p25"], alone["p75"]) == (1, 10.0, 10.0)


def test_a_date_without_rows_has_a_row_per_column_with_no_rows():
    rows = pl.DataFrame({"game_date": [D1], "pts": [3]}, schema={"game_date": pl.Date, "pts": pl.Int16})
    profile = column_profile(rows, [D1, D3])
    empty = rows_of(profile, D3, "pts")
    assert (empty["row_count"], empty["null_count"], empty["null_fraction"], empty["mean_value"]) == (0, 0, None, None)
    assert profile.height == 2  # a row per date and column (game_date is the partition, not profiled)


def test_pieces_merge_to_the_exact_counts_means_and_extremes():
    """Two teams' pieces of the same date: counts add, the mean is weighted by values, not rows."""
    a = pl.DataFrame({"game_date": [D1] * 3, "pts": [2, None, 4]}, schema={"game_date": pl.Date, "pts": pl.Int16})
    b = pl.DataFrame({"game_date": [D1] * 2, "pts": [9, 30]}, schema={"game_date": pl.Date, "pts": pl.Int16})
    merged = rows_of(merged_profile([column_profile(a, [D1, D2]), column_profile(b, [D1, D2])]), D1, "pts")
    # 5 rows, 1 NULL; values 2, 4, 9, 30: mean 45 / 4; min 2, max 30.
    assert (merged["row_count"], merged["null_count"], merged["null_fraction"]) == (5, 1, 0.2)
    assert merged["mean_value"] == pytest.approx(45 / 4)
    assert (merged["min_value"], merged["max_value"]) == (2.0, 30.0)
    assert merged["quartiles_exact"] is False


def test_merged_text_columns_have_counts_and_nothing_numeric():
    a = pl.DataFrame({"game_date": [D1, D1], "name": ["x", None]}, schema={"game_date": pl.Date, "name": pl.String})
    merged = rows_of(merged_profile([column_profile(a, [D1]), column_profile(a, [D1])]), D1, "name")
    assert (merged["row_count"], merged["null_count"], merged["mean_value"], merged["min_value"], merged["p50"]) == (4, 2, None, None, None)


def test_a_piece_alone_on_a_date_gives_its_exact_quartiles():
    a = pl.DataFrame({"game_date": [D1, D1, D1, D2], "pts": [1, 2, 4, None]}, schema={"game_date": pl.Date, "pts": pl.Int16})
    b = pl.DataFrame({"game_date": [D2], "pts": [None]}, schema={"game_date": pl.Date, "pts": pl.Int16})
    merged = merged_profile([column_profile(a, [D1, D2]), column_profile(b, [D1, D2])])
    d1 = rows_of(merged, D1, "pts")
    assert (d1["p25"], d1["p50"], d1["p75"], d1["quartiles_exact"]) == (1.5, 2.0, 3.0, True)
    d2 = rows_of(merged, D2, "pts")  # two rows, both NULL
    assert (d2["row_count"], d2["null_count"], d2["null_fraction"], d2["p50"], d2["mean_value"]) == (2, 2, 1.0, None, None)


def test_two_pieces_alike_merge_to_their_own_quartiles():
    """Each piece taken as linear between its five points: two identical pieces make the same
    distribution, so the merged quartiles are theirs (0, 4, 8, 12, 16: quartiles 4, 8, 12)."""
    piece = pl.DataFrame({"game_date": [D1] * 5, "pts": [0.0, 4.0, 8.0, 12.0, 16.0]})
    merged = rows_of(merged_profile([column_profile(piece, [D1]), column_profile(piece, [D1])]), D1, "pts")
    assert (merged["p25"], merged["p50"], merged["p75"]) == pytest.approx((4.0, 8.0, 12.0))


def test_merged_quartiles_of_teams_cut_apart_stay_within_a_few_percent_of_rank():
    """Points of 400 players in 3 groups of teams (different sizes and levels): each merged
    quartile's rank among the true values is within 0.05 of its quartile."""
    rng = np.random.default_rng(7)
    teams = rng.integers(0, 30, 400)
    points = rng.gamma(2.0, 5.0, 400) + teams * 0.3
    rows = pl.DataFrame({"game_date": [D1] * 400, "team": teams, "pts": points})
    pieces = [column_profile(rows.filter(pl.col("team").is_between(lo, hi)).drop("team"), [D1]) for lo, hi in ((0, 9), (10, 14), (15, 29))]
    merged = rows_of(merged_profile(pieces), D1, "pts")
    for name, q in (("p25", 0.25), ("p50", 0.5), ("p75", 0.75)):
        rank = float((points < merged[name]).mean())
        assert abs(rank - q) <= 0.05, (name, merged[name], rank)


# -- what a run records --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_main_command_records_its_run_and_profiles_every_table_and_date(main_command):
    workdir, output = main_command
    warehouse = workdir / "warehouse.duckdb"
    history = read_table(warehouse, "nba_orchestration.run_history")
    # Its own row (other tests in this worker may have run read-only tasks on this warehouse since).
    run_id = re.search(r"run (\d{8}T\d{6}-[0-9a-f]{4})", output)[1]
    mine = history.filter(run_id=run_id)
    assert mine.height == 1, history.select("run_id", "task")
    run = mine.row(0, named=True)
    assert (run["task"], run["status"], run["exit_code"], run["error"]) == ("run", "ok", 0, None)
    assert run["ended_at"] > run["started_at"] and run["run_date"] == run["started_at"].date()
    assert "training.after_run=true" in json.loads(run["overrides"])
    levels = json.loads(run["level_seconds"])
    tables = registry()
    assert [level["tables"] for level in levels] == dag_levels(tables)  # every level, in order, with its tables
    assert all(level["seconds"] > 0 for level in levels)
    state = read_table(warehouse, "nba_orchestration.run_state")
    assert json.loads(run["dates_built"]) == dict(state.group_by("table_name").len().iter_rows())
    assert run["rows_written"] == state["rows_written"].sum()
    assert (run["first_date"], run["last_date"]) == (state["game_date"].min(), state["game_date"].max())
    assert set(json.loads(run["nodes"])) == set(",".join(state["node"].unique()).split(","))
    profile = read_table(warehouse, "nba_orchestration.table_profile")
    per_table = profile.group_by("table_name").agg(dates=pl.col("game_date").n_unique(), rows=pl.len())
    dates = state["game_date"].n_unique()
    assert sorted(per_table["table_name"]) == sorted(tables) and set(per_table["dates"]) == {dates}  # a row per table and date ...
    for name, _, count in per_table.iter_rows():
        assert count == dates * (len(tables[name].schema) - 1), name  # ... and column (game_date is the partition)
    assert set(profile["run_id"]) == {run["run_id"]}


@pytest.mark.slow
def test_the_profile_is_that_of_the_rows_each_table_holds(main_command, tmp_path):
    """Read back, each date's profile is the profile of its rows: exactly, but for the quartiles
    of a table built in pieces (its teams apart: a season of player_daily_cache rebuilt here in
    several, by a small shard.max_rows), which stay close."""
    workdir, _ = main_command
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(workdir / "warehouse.duckdb", warehouse)
    rebuilt = run_in_process(
        tmp_path, "tables=[player_daily_cache]", "dates.start=2023-10-24", "dates.end=2024-06-17", "backfill.resume=false",
        "backfill.with_dependents=false", "shard.max_rows=60000",
    )  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.output
    profile = read_table(warehouse, "nba_orchestration.table_profile")
    compared = ["row_count", "null_count", "null_fraction", "mean_value", "min_value", "max_value"]
    for name in ("nba_analytics.player_game_summary", "nba_precompute.player_daily_cache"):
        rows = read_table(warehouse, name)
        exact = column_profile(rows, sorted(rows["game_date"].unique()))
        stored = profile.filter(pl.col("table_name") == name).drop("table_name", "run_id")
        joined = exact.join(stored, on=["game_date", "column_name"], suffix="_stored")
        assert joined.height == exact.height == stored.height
        for column in compared:
            assert close(joined[column], joined[f"{column}_stored"]), (name, column)
        exact_rows = joined.filter(pl.col("quartiles_exact_stored"))
        for q in ("p25", "p50", "p75"):
            assert close(exact_rows[q], exact_rows[f"{q}_stored"]), (name, q)
        if name == "nba_precompute.player_daily_cache":  # the season rebuilt in pieces: its quartiles merged
            merged = joined.filter(~pl.col("quartiles_exact_stored") & pl.col("p50").is_not_null())
            assert merged["game_date"].n_unique() > 100
            spread = merged["p75"] - merged["p25"]
            error = ((merged["p50"] - merged["p50_stored"]).abs() / spread).filter(spread > 0)
            print(f"merged medians, error / interquartile range: {error.describe()}")
            assert error.quantile(0.95) < 0.1  # within a tenth of the interquartile range, 95 times in 100 (measured: median 0.016)


def close(a: pl.Series, b: pl.Series) -> bool:
    """Equal but for float rounding, NULL where the other is NULL."""
    return bool(((a - b).abs().fill_null(0) <= 1e-9 * (1 + a.abs().fill_null(0))).all() and (a.is_null() == b.is_null()).all())


@pytest.mark.slow
def test_a_killed_run_stays_running_with_no_end(phase3_copy, tmp_path):
    """A run killed while it holds the lock keeps its row as written when it started; the next
    run completes its own and leaves that one as it was."""
    barrier = tmp_path / "go"
    args = [
        sys.executable, "-m", "pipeline", f"warehouse.path={phase3_copy}", f"logs.dir={tmp_path / 'logs'}", "ray.num_cpus=2",
        "tables=[team_offense_game_summary]", "dates.list=[2024-01-10]",
    ]  # fmt: skip
    stop_in_process_ray()
    env = {**os.environ, FAULTS_ENV: f"nba_analytics.team_offense_game_summary@2024-01-10:wait_for={barrier}"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not barrier.with_name("go.waiting").exists():  # the shard is parked inside the run's lock
            assert proc.poll() is None and time.monotonic() < deadline, "the run never reached its shard"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_process_group(proc.pid)
    killed = read_table(phase3_copy, "nba_orchestration.run_history", order_by="started_at").row(-1, named=True)
    assert (killed["status"], killed["ended_at"], killed["exit_code"]) == ("running", None, None)
    assert "dates.list=[2024-01-10]" in json.loads(killed["overrides"])
    again = run_in_process(tmp_path, "tables=[team_offense_game_summary]", "dates.list=[2024-01-10]")
    assert again.returncode == 0, again.output
    history = read_table(phase3_copy, "nba_orchestration.run_history", order_by="started_at")
    assert history.filter(pl.col("run_id") == killed["run_id"]).row(0, named=True) == killed
    newest = history.row(-1, named=True)
    assert (newest["status"], newest["exit_code"]) == ("ok", 0) and newest["ended_at"] is not None


@pytest.mark.slow
def test_a_backup_restores_the_history_and_the_profiles(main_command, tmp_path):
    workdir, _ = main_command
    source = workdir / "warehouse.duckdb"
    backups = tmp_path / "backups"
    made = run_in_process(tmp_path, "task=backup", f"warehouse.path={source}", f"backup.target={backups}")
    assert made.returncode == 0, made.output
    restored_path = tmp_path / "restored.duckdb"
    restored = run_in_process(tmp_path, "task=restore", f"warehouse.path={restored_path}", f"backup.target={backups}")
    assert restored.returncode == 0, restored.output
    for table, key in (("nba_orchestration.run_history", "run_id"), ("nba_orchestration.table_profile", "table_name, game_date, column_name")):
        expected = read_table(source, table, order_by=key)
        got = read_table(restored_path, table, order_by=key)
        if table.endswith("run_history"):  # the restore records itself once the rows are back
            assert got.filter(pl.col("task") == "restore").height == 1
            got = got.filter(pl.col("task") != "restore")
        assert got.equals(expected), table


@pytest.mark.slow
def test_both_backends_record_the_run_and_profile_what_the_workers_built(backend, tmp_path):
    """On BigQuery the workers stage their own rows (the driver never sees them) and return the
    profile with their result; the history and the profiles are the same on both backends."""
    run = run_in_process(
        tmp_path, "tables=[team_offense_game_summary]", "backfill.with_dependents=false", "dates.start=2024-01-01", "dates.end=2024-01-07",
        warehouse=backend.overrides,
    )  # fmt: skip
    assert run.returncode == 0, run.output
    with backend.open(read_only=True) as warehouse:
        history = warehouse.read("nba_orchestration.run_history", partition_by="run_date")
        profile = warehouse.read("nba_orchestration.table_profile")
        built = warehouse.read("nba_analytics.team_offense_game_summary")
        state = warehouse.read("nba_orchestration.run_state")
    assert history.height == 1
    row = history.row(0, named=True)
    assert (row["status"], row["exit_code"]) == ("ok", 0) and row["ended_at"] is not None
    assert [level["tables"] for level in json.loads(row["level_seconds"])] == [
        ["nba_raw.player_boxscores", "nba_raw.quarantine"], ["nba_raw.team_boxscores"], ["nba_analytics.team_offense_game_summary"],
    ]  # fmt: skip
    assert set(profile["table_name"]) == set(state["table_name"])
    assert profile.select("table_name", "game_date").unique().height == state.height  # a profile for every table and date built
    stored = profile.filter(pl.col("table_name") == "nba_analytics.team_offense_game_summary").drop("table_name", "run_id").sort("game_date", "column_name")
    exact = column_profile(built, sorted(built["game_date"].unique())).sort("game_date", "column_name")
    for column in ("row_count", "null_count", "null_fraction", "mean_value", "min_value", "p25", "p50", "p75", "max_value"):
        assert close(exact[column], stored[column]), column
