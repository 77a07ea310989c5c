"""``nba_raw.pregame_roster``: who is listed for each game, with exactly what is known before tip-off.

One row per listed player and game, on every date, played or not yet:

- where a slate lists a game (``source.slates``, files in ``data.slate_dir``): the slate's rows
  (``source = 'slate'``): ``starter`` as given (NULL until lineups are announced), ``status``
  (NULL reads as ``active``), ``points_line`` and ``bookmaker`` where a line is posted;
- every other game: derived from its box scores (``source = 'boxscores'``): every listed player,
  ``starter`` from the box score, ``status`` ``inactive`` for the league's inactive list (``DND`` /
  ``NWT`` comments, published before tip-off) and ``active`` otherwise (a coach's-decision DNP is
  a result of the game, not a pre-game fact), no line.

``is_inactive`` = status ``inactive`` or ``out``: such a player gets no Phase 4 row and his recent
share of the team's plays counts as missing tonight. ``questionable`` players are listed and
predicted. A slate replaces the box scores game by game, so a morning slate stays the record of
what was known before tip-off after the box scores arrive.

A bad slate row (a missing key, an unknown status, a negative line, a player listed twice for a
game) is treated like a bad box-score row: ``data.on_bad_rows=fail`` names the file, row and
value; ``quarantine`` leaves it out and records it in ``nba_raw.quarantine``.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._raw import rows_to_load
from pipeline.tables.base import Input, table
from pipeline.tables.player_game_summary import INACTIVE_PREFIXES

KEY = ("game_id", "player_id")
STATUSES = ("active", "questionable", "out", "inactive")
NOT_PLAYING = ("out", "inactive")
SLATE, BOXSCORES = "slate", "boxscores"

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "team_id": pl.Int32,  # NULL for slate rows without one
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "player_id": pl.Int32,
    "player_name": pl.String,
    "starter": pl.Boolean,
    "status": pl.String,
    "is_inactive": pl.Boolean,
    "points_line": pl.Float64,
    "bookmaker": pl.String,
    "birth_date": pl.Date,  # where the raw files or the slate give one
    "source": pl.String,
}

BOXSCORE_COLUMNS = (
    "game_id", "game_date", "season", "season_type", "team_id", "team_abbr", "opponent_abbr", "is_home",
    "player_id", "player_name", "starter", "comment", "birth_date",
)  # fmt: skip


def slate_problems() -> list[pl.Expr]:
    """Checks of a slate row beyond keys and duplicates, as reasons (NULL where the row is fine)."""
    return [
        pl.when(pl.col("status").is_not_null() & ~pl.col("status").is_in(STATUSES)).then(
            pl.format(f"status '{{}}' is not one of {', '.join(STATUSES)}", pl.col("status"))
        ),
        pl.when(pl.col("points_line") < 0).then(pl.format("negative points_line ({})", pl.col("points_line"))),
        pl.when(pl.col("team_abbr") == pl.col("opponent_abbr")).then(pl.lit("team_abbr equals opponent_abbr")),
    ]


def slate_checks() -> dict[str, object]:
    """How a slate row is checked, by ``rows_to_load`` here and ``find_bad_rows`` in the
    quarantine alike: its key and duplicates, no minutes or counting stats, and :func:`slate_problems`."""
    return {"has_minutes": False, "count_columns": (), "extra": slate_problems()}


def from_slate(slates: pl.DataFrame, on_bad_rows: str) -> pl.DataFrame:
    good = rows_to_load(slates, KEY, on_bad_rows=on_bad_rows, what="slate", **slate_checks())
    status = pl.col("status").fill_null("active")
    return good.with_columns(status=status, is_inactive=status.is_in(NOT_PLAYING), source=pl.lit(SLATE))


def from_boxscores(player_boxscores: pl.DataFrame) -> pl.DataFrame:
    inactive = pl.col("comment").str.contains(INACTIVE_PREFIXES).fill_null(False)
    return player_boxscores.select(BOXSCORE_COLUMNS).with_columns(
        status=pl.when(inactive).then(pl.lit("inactive")).otherwise(pl.lit("active")),
        is_inactive=inactive,
        points_line=pl.lit(None, pl.Float64),
        bookmaker=pl.lit(None, pl.String),
        source=pl.lit(BOXSCORES),
    )


# The columns of a slate derived from box scores (data/README.md lists every slate column).
DERIVED_SLATE_COLUMNS = (
    "game_id", "game_date", "season", "season_type", "team_id", "team_abbr", "opponent_abbr", "is_home",
    "player_id", "player_name", "starter", "status",
)  # fmt: skip


def slate_from_boxscores(player_boxscores: pl.DataFrame) -> pl.DataFrame:
    """The slate a desk would have had on the morning of the games in raw box-score rows: every
    listed player, starters, the inactive list, no lines (tests and the example slate)."""
    rows = player_boxscores if "birth_date" in player_boxscores.columns else player_boxscores.with_columns(birth_date=pl.lit(None, pl.Date))
    return from_boxscores(rows).select(DERIVED_SLATE_COLUMNS).sort("game_date", "game_id", "team_abbr", "player_id")


@table(
    "nba_raw.pregame_roster",
    schema=SCHEMA,
    key=KEY,
    inputs=[Input("source.slates"), Input("nba_raw.player_boxscores", columns=BOXSCORE_COLUMNS)],
    params={"on_bad_rows": "data.on_bad_rows"},
    phase=2,
    cluster_by=("player_id",),
)
def pregame_roster(dates: list[dt.date], slates: pl.DataFrame, player_boxscores: pl.DataFrame, on_bad_rows: str) -> pl.DataFrame:
    """Listed players per game with the pre-game facts: from the slate where one lists the game,
    else from the box scores."""
    slated = from_slate(slates, on_bad_rows)
    derived = from_boxscores(player_boxscores).join(slated.select("game_id").unique(), on="game_id", how="anti")
    return (
        pl.concat([slated.select(list(SCHEMA)), derived.select(list(SCHEMA))], how="vertical_relaxed")
        .select(pl.col(c).cast(t) for c, t in SCHEMA.items())
        .sort("game_date", "game_id", "team_abbr", "player_id")
    )
