"""Phase 3 formulas against numbers worked out by hand from real games.

Each expected value below was computed on paper from the box-score line quoted beside it,
not read back from the pipeline.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipeline.tables import registry
from pipeline.warehouse.source import RawSource
from conftest import RAW_DIR

PHASE2_3 = [
    "nba_raw.player_boxscores",
    "nba_raw.team_boxscores",
    "nba_analytics.team_offense_game_summary",
    "nba_analytics.team_defense_game_summary",
    "nba_analytics.player_game_summary",
]


def build_in_memory(days: list[dt.date]) -> dict[str, pl.DataFrame]:
    """The Phase 2/3 tables for ``days``, each table's function fed its inputs like the runner does."""
    source = RawSource(RAW_DIR)
    tables = registry()
    frames: dict[str, pl.DataFrame] = {}
    start, end = min(days), max(days)
    for name in PHASE2_3:
        spec = tables[name]
        inputs = {
            i.table: source.read(i.table, start, end) if i.is_source else frames[i.table] for i in spec.inputs
        }
        frames[name] = spec.run(days, inputs, {"on_bad_rows": "fail"} if spec.params else {})
    return frames


@pytest.fixture(scope="module")
def early_season_2023() -> dict[str, pl.DataFrame]:
    return build_in_memory([dt.date(2023, 10, 24), dt.date(2023, 11, 1), dt.date(2023, 11, 2)])


def player_row(frames, game_id: str, name: str) -> dict:
    rows = frames["nba_analytics.player_game_summary"].filter(game_id=game_id, player_name=name)
    assert rows.height == 1
    return rows.row(0, named=True)


def team_row(frames, game_id: str, team: str) -> dict:
    rows = frames["nba_analytics.team_offense_game_summary"].filter(game_id=game_id, team_abbr=team)
    assert rows.height == 1
    return rows.row(0, named=True)


def test_usage_rate_regulation_game(early_season_2023):
    # Nikola Jokic, DEN v LAL, 2023-10-24 (0022300061), regulation (team minutes 240):
    # 36:15 played, 22 FGA, 4 FTA, 2 TOV; Denver 91 FGA, 12 FTA, 11 TOV.
    # 100 * (22 + 1.76 + 2) * 48 / (36.25 * (91 + 5.28 + 11)) = 123648 / 3888.9 = 31.7951
    row = player_row(early_season_2023, "0022300061", "Nikola Jokić")
    assert row["minutes"] == pytest.approx(36.25)
    assert row["usage_rate"] == pytest.approx(31.7951, abs=1e-4)


def test_usage_rate_overtime_game_uses_real_team_minutes(early_season_2023):
    # LeBron James, LAL v LAC, 2023-11-01 (0022300127), one overtime (team minutes 265):
    # 42:29 played, 19 FGA, 10 FTA, 4 TOV; Lakers 90 FGA, 36 FTA, 14 TOV.
    # 100 * (19 + 4.4 + 4) * 53 / (42.48333 * (90 + 15.84 + 14)) = 145220 / 5091.19 = 28.5237
    assert team_row(early_season_2023, "0022300127", "LAL")["team_minutes"] == 265
    row = player_row(early_season_2023, "0022300127", "LeBron James")
    assert row["usage_rate"] == pytest.approx(28.5237, abs=1e-4)
    # Treating the game as 240 minutes (the old mistake) would have said 25.83.
    assert abs(row["usage_rate"] - 25.83) > 2


def test_dnp_row_keeps_its_zeros_but_has_no_rates(early_season_2023):
    # Taurean Prince, LAL, 2023-11-01: "DND - Injury/Illness", no minutes.
    row = player_row(early_season_2023, "0022300127", "Taurean Prince")
    assert row["did_not_play"] is True
    assert row["is_inactive"] is True
    assert row["dnp_reason_category"] == "injury_illness"
    assert row["minutes"] is None
    assert row["usage_rate"] is None and row["ts_pct"] is None and row["efg_pct"] is None
    assert row["pts"] == 0


def test_zero_for_n_shooter_gets_zero_not_null(early_season_2023):
    # Rudy Gobert, MIN, 2023-11-01 (0022300123): 0-7 FG, 4-4 FT, 4 points.
    # eFG% = (0 + 0) / 7 = 0.0; TS% = 4 / (2 * (7 + 0.44 * 4)) = 4 / 17.52 = 0.228311
    row = player_row(early_season_2023, "0022300123", "Rudy Gobert")
    assert row["efg_pct"] == 0.0
    assert row["ts_pct"] == pytest.approx(0.228311, abs=1e-6)


def test_pace_and_ratings_regulation(early_season_2023):
    # Denver v Lakers, 2023-10-24: DEN 91 FGA, 12 FTA, 11 TOV, 9 OREB, 119 PTS; LAL scored 107.
    # possessions = 91 + 5.28 + 11 - 9 = 98.28; pace = 98.28 * 48 / 48 = 98.28;
    # offensive rating = 100 * 119 / 98.28 = 121.0826
    row = team_row(early_season_2023, "0022300061", "DEN")
    assert row["possessions"] == pytest.approx(98.28)
    assert row["pace"] == pytest.approx(98.28)
    assert row["offensive_rating"] == pytest.approx(121.0826, abs=1e-4)
    assert row["win_flag"] is True
    assert team_row(early_season_2023, "0022300061", "LAL")["win_flag"] is False
    # The Lakers' defence saw the same possessions: 100 * 119 / 98.28.
    defence = early_season_2023["nba_analytics.team_defense_game_summary"].filter(
        game_id="0022300061", defending_team_abbr="LAL"
    )
    assert defence["defensive_rating"][0] == pytest.approx(121.0826, abs=1e-4)
    assert defence["points_allowed"][0] == 119


def test_pace_overtime_is_per_48_minutes(early_season_2023):
    # Lakers at the Clippers, 2023-11-01, one overtime: LAL 90 FGA, 36 FTA, 14 TOV, 9 OREB.
    # possessions = 90 + 15.84 + 14 - 9 = 110.84; pace = 110.84 * 48 / 53 = 100.3834
    row = team_row(early_season_2023, "0022300127", "LAL")
    assert row["overtime_periods"] == 1
    assert row["possessions"] == pytest.approx(110.84)
    assert row["pace"] == pytest.approx(100.3834, abs=1e-4)


def test_playoff_team_rows_are_summed_from_players():
    # 2024 Finals game 5, BOS v DAL, 2024-06-17: no team log exists for playoff games.
    frames = build_in_memory([dt.date(2024, 6, 17)])
    teams = frames["nba_raw.team_boxscores"]
    assert teams.height == 2
    assert set(teams["source"]) == {"summed_players"}
    players = frames["nba_raw.player_boxscores"]
    for team in teams.iter_rows(named=True):
        mine = players.filter(team_abbr=team["team_abbr"])
        assert team["pts"] == mine["pts"].sum()
        assert team["team_minutes"] == 240
    boston = teams.filter(team_abbr="BOS").row(0, named=True)
    assert boston["pts"] == 106  # Celtics 106, Mavericks 88 (the title-clinching game)
