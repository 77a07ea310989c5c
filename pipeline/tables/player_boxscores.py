"""``nba_raw.player_boxscores``: the raw player box scores, checked, one row per player and game.

DNP rows are kept (their zeros are not performances). Minutes are parsed here from the
source's ``MM:SS`` string rather than trusted from its decimal column.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._raw import COUNT_COLUMNS, parse_minutes, rows_to_load
from pipeline.tables.base import Input, table

KEY = ("game_id", "player_id")

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "team_id": pl.Int32,
    "team_abbr": pl.String,
    "opponent_id": pl.Int32,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "player_id": pl.Int32,
    "player_name": pl.String,
    "starter": pl.Boolean,
    "comment": pl.String,
    "did_not_play": pl.Boolean,
    "minutes_raw": pl.String,
    "minutes": pl.Float64,
    **{c: pl.Int16 for c in COUNT_COLUMNS},
    "plus_minus": pl.Int16,
    "birth_date": pl.Date,  # NULL where the raw files have no birth dates (the bundled ones do not)
}


@table(
    "nba_raw.player_boxscores",
    schema=SCHEMA,
    key=KEY,
    inputs=[Input("source.player_boxscores")],
    params={"on_bad_rows": "data.on_bad_rows"},
    phase=2,
    cluster_by=("player_id",),
    needs_box_scores=True,
)
def player_boxscores(dates: list[dt.date], player_boxscores: pl.DataFrame, on_bad_rows: str) -> pl.DataFrame:
    """Raw player box scores with parsed minutes; bad rows rejected or quarantined."""
    good = rows_to_load(player_boxscores, KEY, has_minutes=True, on_bad_rows=on_bad_rows, what="player box score")
    return good.with_columns(minutes=parse_minutes(pl.col("minutes_raw"))).sort("game_date", "game_id", "team_abbr", "player_id")
