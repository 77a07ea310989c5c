"""What each input folder holds: the files of a source, the columns a file must have and the
types they are read as, the optional ones, and the columns derived before anything reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import polars as pl

from pipeline.tables._raw import COUNT_COLUMNS
from pipeline.tables.schedule import CALENDAR_COLUMNS
from pipeline.warehouse.source.columns import read_as

_COUNTS = {c: pl.Int16 for c in COUNT_COLUMNS}


@dataclass(frozen=True)
class SourceSpec:
    name: str  # the input name tables declare: source.<name>
    patterns: tuple[str, ...]  # file globs inside the source's folder
    columns: dict[str, pl.DataType]  # required columns and the types they are read as
    calendar_columns: tuple[str, ...]  # needed just to place the rows on the calendar
    optional: dict[str, pl.DataType] = field(default_factory=dict)  # read when a file has them, else NULL
    folder: str = "raw"  # which folder: data.raw_dir, data.slate_dir ("slates") or data.lines_dir ("lines")
    # Groups of optional columns of which a file must have at least one (a player's name or id).
    one_of: tuple[tuple[str, ...], ...] = ()
    # Columns a file may lack and that are derived from others, before anything else reads it.
    derive: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None

    @property
    def all_columns(self) -> dict[str, pl.DataType]:
        return {**self.columns, **self.optional}


PLAYER_BOXSCORES = SourceSpec(
    name="source.player_boxscores",
    patterns=("player_boxscores_*.parquet",),
    columns={
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
        **_COUNTS,
        "plus_minus": pl.Int16,
    },
    calendar_columns=CALENDAR_COLUMNS,  # what nba_raw.schedule, and so the calendar, is built from
    optional={"birth_date": pl.Date},  # the player's; not in the bundled files (fatigue uses age when known)
)

TEAM_GAME_LOGS = SourceSpec(
    name="source.team_game_logs",
    patterns=("team_game_logs*.parquet",),
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_id": pl.Int32,
        "team_abbr": pl.String,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "min": pl.Int16,
        **_COUNTS,
    },
    calendar_columns=("game_date",),
)

# Tonight's listed players, before any box score: one row per player and game (see data/README.md).
SLATES = SourceSpec(
    name="source.slates",
    patterns=("*.parquet", "*.csv"),
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_abbr": pl.String,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "player_id": pl.Int32,
        "player_name": pl.String,
    },
    calendar_columns=("game_id", "game_date", "season", "season_type", "team_abbr", "opponent_abbr", "is_home"),
    optional={
        "team_id": pl.Int32,
        "starter": pl.Boolean,  # NULL until the lineups are announced
        "status": pl.String,  # active, questionable, out, inactive; NULL: active
        "points_line": pl.Float64,
        "bookmaker": pl.String,
        "birth_date": pl.Date,
    },
    folder="slates",
)


# The time zone of a game date: the NBA's dates are US Eastern, so a 7:30 pm tip-off on the west
# coast is 02:30 UTC the next day but still the same game date.
GAME_DATE_TIME_ZONE = "America/New_York"


def game_date_from_tipoff(scan: pl.LazyFrame) -> pl.LazyFrame:
    """A lines file without ``game_date`` gets it from ``commence_time`` (the US Eastern date of the
    tip-off); a file with neither is refused for lacking ``game_date``."""
    schema = scan.collect_schema()
    if "game_date" in schema or "commence_time" not in schema:
        return scan
    tipoff = read_as("commence_time", schema["commence_time"], pl.Datetime("us"), strict=False)
    eastern = tipoff.dt.replace_time_zone("UTC").dt.convert_time_zone(GAME_DATE_TIME_ZONE).dt.date()
    return scan.with_columns(eastern.alias("game_date"))


# Historical and tonight's player points lines (see data/README.md): one row per side of a line
# (``side``, ``price``) or one per line (``over_price``, ``under_price``); matched to NBA player
# and game ids in nba_raw.prop_lines.
PROP_LINES = SourceSpec(
    name="source.lines",
    patterns=("*.parquet", "*.csv"),
    columns={
        "game_date": pl.Date,  # the US Eastern date; derived from commence_time when absent
        "home_team": pl.String,  # full names (Boston Celtics) or abbreviations (BOS)
        "away_team": pl.String,
        "bookmaker": pl.String,
        "line": pl.Float64,
    },
    calendar_columns=("game_date",),
    optional={
        "player_name": pl.String,
        "player_id": pl.Int32,  # the NBA person id, when the feed has it
        "commence_time": pl.Datetime("us"),  # scheduled tip-off, UTC
        "captured_at": pl.Datetime("us"),  # when the line was seen, UTC
        "side": pl.String,  # Over / Under: one row per side, priced by `price`
        "price": pl.Float64,  # American odds of `side`
        "over_price": pl.Float64,  # one row per line: American odds of each side
        "under_price": pl.Float64,
        "real_prices": pl.Boolean,  # the prices are a sportsbook's odds (lines.real_price_books names whole books)
    },
    folder="lines",
    one_of=(("player_name", "player_id"),),
    derive=game_date_from_tipoff,
)

SOURCES = {s.name: s for s in (PLAYER_BOXSCORES, TEAM_GAME_LOGS, SLATES, PROP_LINES)}
