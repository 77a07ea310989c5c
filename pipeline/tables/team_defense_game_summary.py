"""``nba_analytics.team_defense_game_summary``: the opponent's offence seen from the defending team.

- defensive_rating = 100 · points allowed / opponent possessions
- opponent_pace = opponent possessions · 48 / (team_minutes / 5)

The opponent shooting splits (made and attempted twos and threes) feed Phase 4's zone defence.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables.base import Input, table
from pipeline.tables.team_offense_game_summary import per_48_minutes

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "defending_team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "team_minutes": pl.Int16,
    "points_allowed": pl.Int16,
    "opp_fgm": pl.Int16,
    "opp_fga": pl.Int16,
    "opp_fg3m": pl.Int16,
    "opp_fg3a": pl.Int16,
    "opp_ftm": pl.Int16,
    "opp_fta": pl.Int16,
    "opp_tov": pl.Int16,
    "opp_oreb": pl.Int16,
    "opp_possessions": pl.Float64,
    "defensive_rating": pl.Float64,
    "opponent_pace": pl.Float64,
}


@table(
    "nba_analytics.team_defense_game_summary",
    schema=SCHEMA,
    key=("game_id", "defending_team_abbr"),
    inputs=[Input("nba_analytics.team_offense_game_summary")],
    phase=3,
    cluster_by=("defending_team_abbr",),
    needs_box_scores=True,
)
def team_defense_game_summary(dates: list[dt.date], team_offense_game_summary: pl.DataFrame) -> pl.DataFrame:
    """Points, shots and possessions allowed per team-game, defensive rating, opponent pace."""
    offense = team_offense_game_summary
    return (
        offense.select(
            "game_id",
            "game_date",
            "season",
            "season_type",
            "team_minutes",
            defending_team_abbr="opponent_abbr",
            opponent_abbr="team_abbr",
            is_home=~pl.col("is_home"),
            points_allowed="pts",
            opp_fgm="fgm",
            opp_fga="fga",
            opp_fg3m="fg3m",
            opp_fg3a="fg3a",
            opp_ftm="ftm",
            opp_fta="fta",
            opp_tov="tov",
            opp_oreb="oreb",
            opp_possessions="possessions",
        )
        .with_columns(
            defensive_rating=100.0 * pl.col("points_allowed") / pl.col("opp_possessions"),
            opponent_pace=per_48_minutes(pl.col("opp_possessions"), pl.col("team_minutes")),
        )
        .sort("game_date", "game_id", "defending_team_abbr")
    )
