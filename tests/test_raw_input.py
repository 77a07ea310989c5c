"""Bad raw input stops with an error naming the file, the row and the problem, and writes
nothing of the affected shard; quarantine mode loads the rest and keeps the bad rows, whichever
tables the run asks for."""

from __future__ import annotations

import polars as pl
import pytest

from conftest import query, run_in_process, unwrapped

pytestmark = pytest.mark.slow  # runs the pipeline end to end

SEASON_FILE = "player_boxscores_2023-24.parquet"
TEAM_LOGS = "team_game_logs_regular_season.parquet"
WEEK = ("dates.start=2023-11-01", "dates.end=2023-11-07")
BAD_DATE = "2023-11-03"


def break_row(raw_dir, change: dict) -> tuple[int, dict]:
    """Apply ``change`` to the first played row on BAD_DATE; return its 1-based row and values."""
    path = raw_dir / SEASON_FILE
    frame = pl.read_parquet(path).with_row_index("row", offset=1)
    target = frame.filter(pl.col("game_date").cast(pl.String) == BAD_DATE, ~pl.col("did_not_play")).row(0, named=True)
    broken = frame.with_columns(
        **{c: pl.when(pl.col("row") == target["row"]).then(pl.lit(v, frame.schema[c])).otherwise(pl.col(c)) for c, v in change.items()}
    )
    broken.drop("row").write_parquet(path)
    return target["row"], target


def state_by_status(warehouse, table="nba_raw.player_boxscores") -> dict[str, list[str]]:
    rows = query(warehouse, f"SELECT status, list(game_date::VARCHAR ORDER BY game_date) FROM nba_orchestration.run_state WHERE table_name = '{table}' GROUP BY ALL")
    return dict(rows)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"minutes_raw": "-79:0-6"}, "unparseable minutes '-79:0-6'"),
        ({"fga": -3}, "negative fga (-3)"),
    ],
)
def test_bad_row_fails_its_shard_naming_file_and_row(raw_copy, tmp_path, change, problem):
    row, target = break_row(raw_copy, change)
    # Three game dates per shard: 11-01..11-03 (the bad row's) and 11-04..11-06 (no games on 11-07).
    run = run_in_process(tmp_path, f"data.raw_dir={raw_copy}", "tables=[player_game_summary]", "shard.days=3", *WEEK)
    assert run.returncode == 1
    assert f"{raw_copy / SEASON_FILE} row {row}" in unwrapped(run.output)
    assert problem in run.output
    warehouse = tmp_path / "warehouse.duckdb"
    status = state_by_status(warehouse)
    assert status["failed"] == ["2023-11-01", "2023-11-02", BAD_DATE]
    assert status["ok"] == ["2023-11-04", "2023-11-05", "2023-11-06"]
    # Nothing of the failed shard was written, and the error text is stored in full on each of
    # its dates, with the node that ran it.
    assert query(warehouse, "SELECT count(*) FROM nba_raw.player_boxscores WHERE game_date <= '2023-11-03'")[0][0] == 0
    failed = query(warehouse, "SELECT last_error, node FROM nba_orchestration.run_state WHERE status = 'failed'")
    assert len(failed) == 3
    for error, node in failed:
        assert problem in error and f"row {row}" in error and node
    # Downstream never ran on the dates whose input failed.
    assert query(warehouse, "SELECT count(*) FROM nba_analytics.player_game_summary WHERE game_date <= '2023-11-03'")[0][0] == 0
    assert "retry the failed dates" in run.output


def test_duplicate_player_row_names_both_rows(raw_copy, tmp_path):
    path = raw_copy / SEASON_FILE
    frame = pl.read_parquet(path)
    first = frame.with_row_index("row", offset=1).filter(pl.col("game_date").cast(pl.String) == BAD_DATE).row(0, named=True)
    pl.concat([frame, frame.slice(first["row"] - 1, 1)]).write_parquet(path)
    run = run_in_process(tmp_path, f"data.raw_dir={raw_copy}", "tables=[player_boxscores]", *WEEK)
    assert run.returncode == 1
    text = unwrapped(run.output)
    assert f"row {frame.height + 1}" in text
    assert f"duplicate (game_id, player_id) of {path} row {first['row']}" in text


def test_missing_column_fails_that_files_dates_only(raw_copy, tmp_path):
    path = raw_copy / SEASON_FILE
    pl.read_parquet(path).drop("fga").write_parquet(path)
    # Three game dates per shard: the 2022-23 finals (06-07, 06-09, 06-12) make a shard of their own.
    run = run_in_process(
        tmp_path, f"data.raw_dir={raw_copy}", "tables=[player_boxscores]", "shard.days=3", "dates.start=2023-06-05", "dates.end=2023-11-01"
    )
    assert run.returncode == 1
    assert f"{path}: missing column(s) ['fga']" in unwrapped(run.output)
    status = state_by_status(tmp_path / "warehouse.duckdb")
    # The 2022-23 finals load; every 2023-24 date in range fails and writes nothing.
    assert status["ok"] == ["2023-06-07", "2023-06-09", "2023-06-12"]
    assert status["failed"] == ["2023-10-24", "2023-10-25", "2023-10-26", "2023-10-27", "2023-10-28", "2023-10-29", "2023-10-30", "2023-10-31", "2023-11-01"]
    assert query(tmp_path / "warehouse.duckdb", "SELECT count(*) FROM nba_raw.player_boxscores WHERE season = '2023-24'")[0][0] == 0


def test_quarantine_mode_loads_the_rest_and_keeps_the_bad_rows(raw_copy, tmp_path):
    row, target = break_row(raw_copy, {"minutes_raw": "-79:0-6"})
    # The quarantine is built with the raw tables, although the run does not ask for it.
    run = run_in_process(tmp_path, f"data.raw_dir={raw_copy}", "data.on_bad_rows=quarantine", "tables=[player_game_summary]", *WEEK)
    assert run.returncode == 0, run.output
    assert "1 raw row(s) quarantined" in run.output
    warehouse = tmp_path / "warehouse.duckdb"
    kept = query(warehouse, "SELECT source_file, source_row, game_id, player_id, reason FROM nba_raw.quarantine")
    assert kept == [(str(raw_copy / SEASON_FILE), row, target["game_id"], target["player_id"], "unparseable minutes '-79:0-6'")]
    loaded = query(warehouse, f"SELECT count(*) FROM nba_raw.player_boxscores WHERE game_id = '{target['game_id']}' AND player_id = {target['player_id']}")
    assert loaded == [(0,)]
    assert state_by_status(warehouse).keys() == {"ok"}


def test_a_quarantined_team_log_row_is_summed_from_its_players(raw_copy, tmp_path):
    path = raw_copy / TEAM_LOGS
    frame = pl.read_parquet(path).with_row_index("row", offset=1)
    target = frame.filter(pl.col("game_date").cast(pl.String) == BAD_DATE).row(0, named=True)
    frame.with_columns(pf=pl.when(pl.col("row") == target["row"]).then(-1).otherwise(pl.col("pf"))).drop("row").write_parquet(path)
    run = run_in_process(tmp_path, f"data.raw_dir={raw_copy}", "data.on_bad_rows=quarantine", "tables=[player_game_summary]", *WEEK)
    assert run.returncode == 0, run.output
    assert "1 raw row(s) quarantined" in run.output
    warehouse = tmp_path / "warehouse.duckdb"
    assert query(warehouse, "SELECT source_file, source_row, reason FROM nba_raw.quarantine") == [(str(path), target["row"], "negative pf (-1)")]
    # Both teams of that game are there, the bad one summed from its player rows; Phase 3 ran.
    teams = dict(query(warehouse, f"SELECT team_abbr, source FROM nba_raw.team_boxscores WHERE game_id = '{target['game_id']}'"))
    assert teams == {target["team_abbr"]: "summed_players", target["opponent_abbr"]: "team_log"}
    assert query(warehouse, f"SELECT count(*) FROM nba_analytics.team_offense_game_summary WHERE game_id = '{target['game_id']}'") == [(2,)]
    assert state_by_status(warehouse, "nba_analytics.player_game_summary").keys() == {"ok"}


def test_optional_birth_dates_are_read_where_a_file_has_them(raw_copy, tmp_path):
    path = raw_copy / SEASON_FILE
    frame = pl.read_parquet(path)
    player = frame.filter(pl.col("game_date").cast(pl.String) == BAD_DATE)["player_id"][0]
    # As text in ISO form (a Date column reads the same).
    born = pl.when(pl.col("player_id") == player).then(pl.lit("1990-05-17"))
    frame.with_columns(birth_date=born).write_parquet(path)
    run = run_in_process(tmp_path, f"data.raw_dir={raw_copy}", "tables=[player_game_summary]", *WEEK)
    assert run.returncode == 0, run.output
    dates = query(tmp_path / "warehouse.duckdb", "SELECT DISTINCT player_id, birth_date::VARCHAR FROM nba_analytics.player_game_summary WHERE birth_date IS NOT NULL")
    assert dates == [(player, "1990-05-17")]

    # A birth date that does not read as one stops that file's dates, naming the file, row and value.
    frame.with_columns(birth_date=pl.lit("seventeenth of May")).write_parquet(path)
    run = run_in_process(tmp_path, f"data.raw_dir={raw_copy}", "tables=[player_boxscores]", "backfill.resume=false", *WEEK)
    assert run.returncode == 1
    text = unwrapped(run.output)
    assert f"{path}: a column does not have the expected type: column 'birth_date' row 1 holds 'seventeenth of May', which does not read as Date" in text
