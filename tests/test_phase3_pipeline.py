"""Phase 3 on the full bundled history, built by a real `python -m pipeline` run."""

from __future__ import annotations

import polars as pl
import pytest

from conftest import PHASE3_TABLES, RAW_DIR, query, read_table, run_in_process
from pipeline.state import utcnow
from pipeline.tables import registry

pytestmark = pytest.mark.slow  # runs the pipeline end to end

PHASE3_AND_RAW = [n for n, t in registry().items() if t.phase <= 3]


def test_every_team_games_player_points_add_up_to_team_points(phase3_warehouse):
    mismatches = query(
        phase3_warehouse,
        """
        SELECT t.game_id, t.team_abbr, t.pts, sum(p.pts)
        FROM nba_analytics.team_offense_game_summary t
        JOIN nba_analytics.player_game_summary p USING (game_id, team_abbr)
        GROUP BY ALL HAVING t.pts <> sum(p.pts)
        """,
    )
    assert mismatches == []
    assert query(phase3_warehouse, "SELECT count(*) FROM nba_analytics.team_offense_game_summary")[0][0] == 7920


def test_usage_rate_present_for_everyone_who_played(phase3_warehouse):
    players = read_table(phase3_warehouse, "nba_analytics.player_game_summary")
    assert players.height == 103_981
    played = players.filter(~pl.col("did_not_play") & (pl.col("minutes") > 0))
    assert played.height > 80_000
    assert played["usage_rate"].null_count() == 0
    # NULL exactly where it should be: the DNP rows and the rows that played 0:00, counted in the raw files.
    raw = pl.concat([pl.read_parquet(f) for f in sorted(RAW_DIR.glob("player_boxscores_*.parquet"))])
    dnp = raw["did_not_play"].sum()
    zero_minutes = raw.filter(pl.col("minutes_raw") == "0:00").height
    assert (dnp, zero_minutes) == (19_745, 15)
    assert players.filter(pl.col("usage_rate").is_null()).height == dnp + zero_minutes
    # Short stints above 100 are kept and flagged, never clipped.
    flagged = players.filter(pl.col("usage_rate_above_100"))
    assert flagged.height == 21
    assert flagged["minutes"].max() < 2.5


def test_no_duplicate_keys_and_two_teams_per_game(phase3_warehouse):
    for name in PHASE3_AND_RAW:
        key = ", ".join(registry()[name].key)
        dupes = query(phase3_warehouse, f"SELECT {key}, count(*) FROM {name} GROUP BY ALL HAVING count(*) > 1")
        assert dupes == [], name
    for name, team_column in [
        ("nba_raw.team_boxscores", "team_abbr"),
        ("nba_analytics.team_offense_game_summary", "team_abbr"),
        ("nba_analytics.team_defense_game_summary", "defending_team_abbr"),
    ]:
        odd = query(phase3_warehouse, f"SELECT game_id FROM {name} GROUP BY game_id HAVING count(DISTINCT {team_column}) <> 2")
        assert odd == [], name
    games = query(phase3_warehouse, "SELECT count(*), count(DISTINCT game_id) FROM nba_raw.schedule")[0]
    assert games == (3960, 3960)


def test_default_range_is_the_whole_raw_history(phase3_warehouse):
    first, last, days = query(
        phase3_warehouse, "SELECT min(game_date), max(game_date), count(DISTINCT game_date) FROM nba_analytics.player_game_summary"
    )[0]
    assert (str(first), str(last), days) == ("2022-10-18", "2025-06-22", 634)


def snapshot(path) -> dict[str, pl.DataFrame]:
    return {name: read_table(path, name, order_by=", ".join(registry()[name].key)) for name in PHASE3_AND_RAW}


def test_running_twice_leaves_every_table_identical(phase3_copy, tmp_path):
    """A rebuild of every date (backfill.resume=false) writes the same rows, and writes every date
    itself; a plain rerun after it writes nothing."""
    before = snapshot(phase3_copy)
    every_table = "[" + ",".join(PHASE3_AND_RAW) + "]"
    started = utcnow()
    rebuilt = run_in_process(tmp_path, f"tables={every_table}", "backfill.with_dependents=false", "backfill.resume=false")
    assert rebuilt.returncode == 0, rebuilt.output
    after = snapshot(phase3_copy)
    for name in PHASE3_AND_RAW:
        assert before[name].equals(after[name]), name
    # Every state row is the rebuild's own: its run id (the name of its log), written after it started.
    (log,) = (tmp_path / "logs").glob("*-run.log")
    rebuild = log.name.removesuffix("-run.log")
    state = read_table(phase3_copy, "nba_orchestration.run_state")
    assert state.height == len(PHASE3_AND_RAW) * 634
    assert state["run_id"].unique().to_list() == [rebuild]
    assert state["started_at"].min() >= started
    # ... and a plain rerun finds nothing to do, and leaves every state row as the rebuild wrote it.
    again = run_in_process(tmp_path, f"tables={PHASE3_TABLES}", "backfill.with_dependents=false")
    assert again.returncode == 0
    assert "nothing to do" in again.output
    assert read_table(phase3_copy, "nba_orchestration.run_state").sort("table_name", "game_date").equals(state.sort("table_name", "game_date"))
