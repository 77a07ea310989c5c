"""``nba_analytics.team_offense_game_summary``: a team's offence in one game.

- possessions = FGA + 0.44·FTA + TOV − OREB
- offensive_rating = 100 · PTS / possessions
- pace = possessions · 48 / (team_minutes / 5): possessions per 48 minutes, with overtime
  counted from the real team minutes (240 regulation, +25 per overtime period)
- win_flag: the team scored more points than its opponent in the same game
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._raw import COUNT_COLUMNS
from pipeline.tables.base import Input, table

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "team_minutes": pl.Int16,
    "overtime_periods": pl.Int8,
    **{c: pl.Int16 for c in COUNT_COLUMNS if c not in ("stl", "blk")},
    "possessions": pl.Float64,
    "pace": pl.Float64,
    "offensive_rating": pl.Float64,
    "opponent_pts": pl.Int16,
    "win_flag": pl.Boolean,
}

# Weight of a free-throw attempt in a possession estimate (and-ones, technicals, three-shot fouls).
FREE_THROW_POSSESSION_WEIGHT = 0.44
REGULATION_TEAM_MINUTES = 240
OVERTIME_TEAM_MINUTES = 25


def possessions(fga: pl.Expr, fta: pl.Expr, tov: pl.Expr, oreb: pl.Expr) -> pl.Expr:
    return fga + FREE_THROW_POSSESSION_WEIGHT * fta + tov - oreb


def per_48_minutes(count: pl.Expr, team_minutes: pl.Expr) -> pl.Expr:
    """A team count scaled to one 48-minute game (team minutes are five players' minutes)."""
    return count * 48.0 / (team_minutes / 5.0)


@table(
    "nba_analytics.team_offense_game_summary",
    schema=SCHEMA,
    key=("game_id", "team_abbr"),
    inputs=[Input("nba_raw.team_boxscores")],
    phase=3,
    cluster_by=("team_abbr",),
    needs_box_scores=True,
)
def team_offense_game_summary(dates: list[dt.date], team_boxscores: pl.DataFrame) -> pl.DataFrame:
    """Team totals per game with possessions, pace, offensive rating and the win flag."""
    opponents = team_boxscores.select("game_id", opponent_abbr="team_abbr", opponent_pts="pts")
    poss = possessions(pl.col("fga"), pl.col("fta"), pl.col("tov"), pl.col("oreb"))
    return (
        team_boxscores.join(opponents, on=["game_id", "opponent_abbr"], how="left")
        .with_columns(
            overtime_periods=((pl.col("team_minutes") - REGULATION_TEAM_MINUTES) / OVERTIME_TEAM_MINUTES).round(),
            possessions=poss,
            pace=per_48_minutes(poss, pl.col("team_minutes")),
            offensive_rating=100.0 * pl.col("pts") / poss,
            win_flag=pl.col("pts") > pl.col("opponent_pts"),
        )
        .sort("game_date", "game_id", "team_abbr")
    )
