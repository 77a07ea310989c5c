"""``nba_raw.team_boxscores``: one row per team and game.

The source's team game logs cover the regular season only. Playoff, play-in and NBA Cup final
games (and a team-game whose log row was quarantined) are summed from the player rows; their
team minutes are the summed player minutes rounded to the nearest 5 (240 in regulation, 265
after one overtime), which matches the team logs wherever both exist.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._raw import COUNT_COLUMNS, rows_to_load
from pipeline.tables.base import Input, table

KEY = ("game_id", "team_abbr")
GAME_COLUMNS = ("game_id", "game_date", "season", "season_type", "team_id", "team_abbr", "opponent_abbr", "is_home")

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "team_id": pl.Int32,
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "team_minutes": pl.Int16,
    **{c: pl.Int16 for c in COUNT_COLUMNS},
    "source": pl.String,
}


@table(
    "nba_raw.team_boxscores",
    schema=SCHEMA,
    key=KEY,
    inputs=[Input("source.team_game_logs"), Input("nba_raw.player_boxscores")],
    params={"on_bad_rows": "data.on_bad_rows"},
    phase=2,
    version=2,  # 2: a team-game without its log row is summed from players even when the other team has one
    needs_box_scores=True,
)
def team_boxscores(
    dates: list[dt.date], team_game_logs: pl.DataFrame, player_boxscores: pl.DataFrame, on_bad_rows: str
) -> pl.DataFrame:
    """Team game logs where they exist, otherwise team totals summed from the player rows
    (per team-game, so a game with one bad log row in quarantine mode still has both teams)."""
    logs = rows_to_load(team_game_logs, KEY, has_minutes=False, on_bad_rows=on_bad_rows, what="team game log")
    logged = logs.select(*GAME_COLUMNS, pl.col("min").alias("team_minutes"), *COUNT_COLUMNS, source=pl.lit("team_log"))
    summed = (
        player_boxscores.join(logged.select(KEY), on=KEY, how="anti")
        .group_by(GAME_COLUMNS)
        .agg(
            team_minutes=((pl.col("minutes").sum() / 5).round() * 5),
            **{c: pl.col(c).sum() for c in COUNT_COLUMNS},
        )
        .with_columns(source=pl.lit("summed_players"))
    )
    return pl.concat([logged, summed.select(logged.columns)], how="vertical_relaxed").sort("game_date", "game_id", "team_abbr")
