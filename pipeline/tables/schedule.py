"""``nba_raw.schedule``: one row per game with its date, season, type and the two teams, for
every listed game: played (box scores) or not yet (a slate), from ``nba_raw.pregame_roster``.

The season opener (first regular-season date of a season), which Phase 4's bootstrap window and
season-to-date lookbacks start from, is read from this table, never hard-coded. Seasons are
labelled ``YYYY-YY`` (``"2023-24"``); :func:`season_before` names the one before.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables.base import Input, table

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "home_team_id": pl.Int32,
    "home_team_abbr": pl.String,
    "away_team_id": pl.Int32,
    "away_team_abbr": pl.String,
}

CALENDAR_COLUMNS = ("game_id", "game_date", "season", "season_type", "team_id", "team_abbr", "opponent_abbr", "is_home")


@table(
    "nba_raw.schedule",
    schema=SCHEMA,
    key=("game_id",),
    inputs=[Input("nba_raw.pregame_roster", columns=CALENDAR_COLUMNS)],
    phase=2,
    version=3,  # 2: games of slates too; 3: a game listed for one team only
)
def schedule(dates: list[dt.date], pregame_roster: pl.DataFrame) -> pl.DataFrame:
    """Games, dates, home and away teams, season and season type."""
    return games(pregame_roster)


def games(listed: pl.DataFrame) -> pl.DataFrame:
    """One row per game from rows of ``CALENDAR_COLUMNS`` (a roster's, or the raw files' calendar),
    with its date, season and type from whichever side lists it: a game whose players are listed
    for one team only (a slate of one side) is on the calendar too, its other team named by the
    listed side's ``opponent_abbr`` (that team's id unknown: NULL)."""
    sides = listed.select(CALENDAR_COLUMNS).unique(["game_id", "team_abbr"], keep="first", maintain_order=True)
    home, away = pl.col("is_home"), ~pl.col("is_home")
    return (
        sides.group_by("game_id", maintain_order=True)
        .agg(
            pl.col("game_date", "season", "season_type").first(),
            home_team_id=pl.col("team_id").filter(home).first(),
            home_team_abbr=pl.coalesce(pl.col("team_abbr").filter(home).first(), pl.col("opponent_abbr").filter(away).first()),
            away_team_id=pl.col("team_id").filter(away).first(),
            away_team_abbr=pl.coalesce(pl.col("team_abbr").filter(away).first(), pl.col("opponent_abbr").filter(home).first()),
        )
        .select(list(SCHEMA))
        .sort("game_date", "game_id")
    )


def season_openers(schedule_frame: pl.DataFrame) -> pl.DataFrame:
    """``season, opener``: the first regular-season game date of each season (first game date of
    any type where a season has no regular-season games in the frame)."""
    return (
        schedule_frame.group_by("season")
        .agg(
            opener=pl.col("game_date").filter(pl.col("season_type") == "regular").min().fill_null(pl.col("game_date").min())
        )
        .sort("season")
    )


def season_before(season: str) -> str:
    """``"2023-24"`` -> ``"2022-23"``: the season before, in the ``YYYY-YY`` labels."""
    try:
        first = int(season[:4]) - 1
    except (TypeError, ValueError):
        raise ValueError(f"season {season!r} is not of the form YYYY-YY") from None
    return f"{first}-{(first + 1) % 100:02d}"
