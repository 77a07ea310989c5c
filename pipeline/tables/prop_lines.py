"""``nba_raw.prop_lines``: every row of the lines files (``data.lines_dir``), matched to the NBA
``game_id`` and ``player_id`` of its game, with a ``status`` saying whether it is used and why not.

One row per row of the files, for every date with games (a line on a date without games is not
read). A file gives one row per side of a line (``side`` Over / Under with its ``price``) or one row
per line (``over_price``, ``under_price``); either way the row keeps its prices as ``over_price`` /
``under_price`` and a line is the rows that share date, teams, player, bookmaker, line and capture
time. How each row is matched, in order (the first step a row fails is its status):

1. ``duplicate``: the row repeats an earlier row of the files in every column (it is kept once:
   the earlier row).
2. ``no_game``: the date has no game between the row's two teams (``home_team``, ``away_team``:
   full names or abbreviations, :mod:`pipeline.tables._matching`; either order) in
   ``nba_raw.pregame_roster``.
3. ``no_player`` / ``ambiguous_player``: looked up in that game's two rosters only, never by name
   alone across games: by ``player_id`` when the file gives one, else by the normalised name with
   ``lines.aliases`` applied (:func:`pipeline.tables._matching.name_key`). No player matches
   (a player who did not dress is often not listed at all, or the name needs an alias), or more
   than one does.
4. ``after_tipoff``: captured (``captured_at``) at or after the scheduled tip-off
   (``commence_time``), where both are known: never used, so no prediction or backtest sees a line
   from after the game started.
5. ``superseded``: the same bookmaker posted another line for the player-game later, before
   tip-off: when every line of the bookmaker for the player-game has a capture time, only the
   latest is used.
6. ``used``: the line counts. A bookmaker with several different lines for a player-game, not
   all with a capture time, keeps them all (``reason`` says so), and the bookmaker's line is
   their median (:func:`training.lines.consensus_lines`). A line for a player listed inactive is used as well:
   he gets no prediction, and a backtest scores only players who played.

Rows that cannot be read as a line (no line or a negative one, no bookmaker, neither player name
nor id, a team name not known, a side other than Over / Under) are bad raw rows:
``data.on_bad_rows=fail`` names the file, row and value; ``quarantine`` leaves them out of this
table and keeps them in ``nba_raw.quarantine``. A run ends by counting the rows set aside here
(every status but ``used``).
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

import polars as pl

from pipeline.tables._matching import name_key, team_abbr
from pipeline.tables._raw import SOURCE_FILE, SOURCE_ROW, rows_to_load
from pipeline.tables.base import Input, table

USED, SUPERSEDED, AFTER_TIPOFF, DUPLICATE = "used", "superseded", "after_tipoff", "duplicate"
NO_GAME, NO_PLAYER, AMBIGUOUS_PLAYER = "no_game", "no_player", "ambiguous_player"
STATUSES = (USED, SUPERSEDED, AFTER_TIPOFF, DUPLICATE, NO_GAME, NO_PLAYER, AMBIGUOUS_PLAYER)
SIDES = ("over", "under")
ROW_KEY = (SOURCE_FILE, SOURCE_ROW)

SCHEMA = {
    "game_date": pl.Date,
    "game_id": pl.String,  # NULL: no game matched
    "player_id": pl.Int32,  # NULL: no player matched
    "team_abbr": pl.String,  # the matched player's team
    "player_name": pl.String,  # as the file spells it (the roster's, when the file gives only an id)
    "bookmaker": pl.String,
    "points_line": pl.Float64,
    "side": pl.String,  # over / under; NULL for a row of both sides
    "over_price": pl.Float64,  # American odds, NULL where not given
    "under_price": pl.Float64,
    "real_prices": pl.Boolean,  # the file's flag: the prices are a sportsbook's odds (NULL: not said)
    "home_team": pl.String,  # abbreviations
    "away_team": pl.String,
    "tipoff_at": pl.Datetime("us"),  # UTC; NULL when the file gives no commence_time
    "captured_at": pl.Datetime("us"),  # UTC; NULL when the file gives no capture time
    "status": pl.String,  # one of STATUSES
    "reason": pl.String,  # why it is set aside; for a used line, what the consensus makes of it
    SOURCE_FILE: pl.String,  # the file's name in data.lines_dir (its folder does not matter)
    SOURCE_ROW: pl.Int64,  # 1-based row in the file
}

ROSTER_COLUMNS = ("game_id", "game_date", "team_abbr", "opponent_abbr", "player_id", "player_name")

# What makes two rows the same line (and, with the side and prices, the same row).
LINE_COLUMNS = ("game_date", "home_team", "away_team", "player_name", "player_id", "bookmaker", "points_line", "tipoff_at", "captured_at")
ROW_COLUMNS = (*LINE_COLUMNS, "side", "over_price", "under_price", "real_prices")


def line_problems() -> list[pl.Expr]:
    """Checks of a lines row beyond its key, as reasons (NULL where the row is fine)."""
    side = pl.col("side").str.strip_chars().str.to_lowercase()
    problems = [
        pl.when(pl.col("line").is_null()).then(pl.lit("missing line")),
        pl.when(pl.col("line") < 0).then(pl.format("negative line ({})", pl.col("line"))),
        pl.when(pl.col("bookmaker").str.strip_chars().fill_null("") == "").then(pl.lit("missing bookmaker")),
        pl.when(pl.col("player_id").is_null() & (pl.col("player_name").str.strip_chars().fill_null("") == "")).then(
            pl.lit("no player_name or player_id")
        ),
        pl.when(side.is_not_null() & ~side.is_in(SIDES)).then(pl.format("side '{}' is not Over or Under", pl.col("side"))),
    ]
    for column in ("home_team", "away_team"):
        problems.append(
            pl.when(team_abbr(pl.col(column)).is_null()).then(
                pl.format(f"unknown team '{{}}' in {column} (a full name such as Boston Celtics, or an abbreviation such as BOS)", pl.col(column))
            )
        )
    problems.append(pl.when(team_abbr(pl.col("home_team")) == team_abbr(pl.col("away_team"))).then(pl.lit("home_team equals away_team")))
    return problems


def line_checks() -> dict[str, object]:
    """How a lines row is checked, by ``rows_to_load`` here and ``find_bad_rows`` in the quarantine
    alike: no minutes or counting stats, :func:`line_problems`; rows are told apart by file and
    row (a repeated line is a ``duplicate`` here, not a bad row)."""
    return {"has_minutes": False, "count_columns": (), "extra": line_problems()}


def normalised(lines: pl.DataFrame) -> pl.DataFrame:
    """Rows in the table's terms: teams as abbreviations, the side lower case, its price as
    ``over_price`` or ``under_price``, ``line`` as ``points_line``, ``commence_time`` as ``tipoff_at``."""
    side = pl.col("side").str.strip_chars().str.to_lowercase()
    return lines.with_columns(
        home_team=team_abbr(pl.col("home_team")),
        away_team=team_abbr(pl.col("away_team")),
        side=side,
        over_price=pl.when(side == "over").then(pl.col("price")).otherwise(pl.col("over_price")),
        under_price=pl.when(side == "under").then(pl.col("price")).otherwise(pl.col("under_price")),
        points_line=pl.col("line"),
        tipoff_at=pl.col("commence_time"),
    ).sort(SOURCE_FILE, SOURCE_ROW)


def with_games(rows: pl.DataFrame, roster: pl.DataFrame) -> pl.DataFrame:
    """``game_id`` of the game between the row's two teams on its date (either order), else NULL."""
    pair = [pl.min_horizontal("team_abbr", "opponent_abbr").alias("_team_a"), pl.max_horizontal("team_abbr", "opponent_abbr").alias("_team_b")]
    games = roster.select("game_date", "game_id", *pair).unique(["game_date", "_team_a", "_team_b"], keep="first")
    keyed = rows.with_columns(
        _team_a=pl.min_horizontal("home_team", "away_team"),
        _team_b=pl.max_horizontal("home_team", "away_team"),
    )
    return keyed.join(games, on=["game_date", "_team_a", "_team_b"], how="left").drop("_team_a", "_team_b")


def with_players(rows: pl.DataFrame, roster: pl.DataFrame, aliases: Mapping[str, str] | None) -> pl.DataFrame:
    """Per row, how many players of its game's rosters it names (``_candidates``: by id when the
    row has one, else by normalised name) and, when exactly one, his id, team and roster name."""

    def match_key(frame_name: pl.Expr, frame_id: pl.Expr) -> pl.Expr:
        return pl.when(frame_id.is_not_null()).then(pl.format("id:{}", frame_id)).otherwise(pl.format("name:{}", name_key(frame_name, aliases)))

    listed = pl.concat(
        [
            roster.select("game_id", "player_id", "team_abbr", "player_name", _key=pl.format("id:{}", pl.col("player_id"))),
            roster.select("game_id", "player_id", "team_abbr", "player_name", _key=pl.format("name:{}", name_key(pl.col("player_name"), aliases))),
        ]
    )
    candidates = listed.group_by("game_id", "_key").agg(
        _candidates=pl.len(),
        _player_id=pl.col("player_id").first(),
        _team_abbr=pl.col("team_abbr").first(),
        _roster_name=pl.col("player_name").first(),
    )
    keyed = rows.with_columns(_key=match_key(pl.col("player_name"), pl.col("player_id")))
    return keyed.join(candidates, on=["game_id", "_key"], how="left").with_columns(pl.col("_candidates").fill_null(0)).drop("_key")


def _time(moment: pl.Expr) -> pl.Expr:
    return moment.dt.strftime("%Y-%m-%d %H:%M")


def _who(row_name: pl.Expr) -> pl.Expr:
    return pl.when(pl.col("player_id").is_not_null()).then(pl.format("player_id {}", pl.col("player_id"))).otherwise(pl.format("'{}'", row_name))


def statuses(rows: pl.DataFrame) -> pl.DataFrame:
    """``status`` and ``reason`` of matched rows (steps 1-6 of the module docstring)."""
    first = pl.struct(SOURCE_FILE, SOURCE_ROW).first().over(ROW_COLUMNS, order_by=[SOURCE_FILE, SOURCE_ROW])
    duplicate = pl.int_range(pl.len()).over(ROW_COLUMNS, order_by=[SOURCE_FILE, SOURCE_ROW]) > 0
    after = pl.col("captured_at").is_not_null() & pl.col("tipoff_at").is_not_null() & (pl.col("captured_at") >= pl.col("tipoff_at"))
    game = pl.format("{} vs {} on {}", pl.col("home_team"), pl.col("away_team"), pl.col("game_date"))
    staged = rows.with_columns(
        status=pl.when(duplicate)
        .then(pl.lit(DUPLICATE))
        .when(pl.col("game_id").is_null())
        .then(pl.lit(NO_GAME))
        .when(pl.col("_candidates") == 0)
        .then(pl.lit(NO_PLAYER))
        .when(pl.col("_candidates") > 1)
        .then(pl.lit(AMBIGUOUS_PLAYER))
        .when(after)
        .then(pl.lit(AFTER_TIPOFF))
        .otherwise(pl.lit(USED)),
        reason=pl.when(duplicate)
        .then(pl.format("duplicate of {} row {}", first.struct.field(SOURCE_FILE), first.struct.field(SOURCE_ROW)))
        .when(pl.col("game_id").is_null())
        .then(pl.format("no game {}", game))
        .when(pl.col("_candidates") == 0)
        .then(pl.format("{} is not on the rosters of {}: not listed (did not dress), or a spelling lines.aliases lacks", _who(pl.col("player_name")), game))
        .when(pl.col("_candidates") > 1)
        .then(pl.format("{} players on the rosters of {} match {}", pl.col("_candidates"), game, _who(pl.col("player_name"))))
        .when(after)
        .then(pl.format("captured {} UTC, at or after tip-off {} UTC", _time(pl.col("captured_at")), _time(pl.col("tipoff_at")))),
    ).with_columns(player_id=pl.when(pl.col("_candidates") == 1).then(pl.col("_player_id")))
    return _latest_per_book(staged)


def _latest_per_book(rows: pl.DataFrame) -> pl.DataFrame:
    """Among used rows: per game, player and bookmaker, only the latest capture when every row has
    a capture time; several lines without capture times are all kept, and said so."""
    book = ["game_id", "player_id", "bookmaker"]
    candidate = pl.col("status") == USED
    captured = pl.col("captured_at").filter(candidate)
    all_captured = captured.is_not_null().all().over(book)
    latest = captured.max().over(book)
    latest_line = pl.col("points_line").filter(candidate).sort_by(pl.col("captured_at").filter(candidate)).last().over(book)
    distinct_lines = pl.col("points_line").filter(candidate).n_unique().over(book)
    superseded = candidate & all_captured & (pl.col("captured_at") < latest)
    conflicting = candidate & ~all_captured & (distinct_lines > 1)
    return rows.with_columns(
        status=pl.when(superseded).then(pl.lit(SUPERSEDED)).otherwise(pl.col("status")),
        reason=pl.when(superseded)
        .then(pl.format("{} posted {} later, at {} UTC, before tip-off", pl.col("bookmaker"), latest_line, _time(latest)))
        .when(conflicting)
        .then(pl.format("one of {} lines of {} for the player-game, not all with a capture time: their median is the book's line", distinct_lines, pl.col("bookmaker")))
        .otherwise(pl.col("reason")),
    )


@table(
    "nba_raw.prop_lines",
    schema=SCHEMA,
    key=ROW_KEY,
    inputs=[Input("source.lines"), Input("nba_raw.pregame_roster", columns=ROSTER_COLUMNS)],
    params={"aliases": "lines.aliases", "on_bad_rows": "data.on_bad_rows"},
    phase=2,
    cluster_by=("player_id",),
)
def prop_lines(dates: list[dt.date], lines: pl.DataFrame, pregame_roster: pl.DataFrame, aliases: Mapping[str, str] | None, on_bad_rows: str) -> pl.DataFrame:
    """Prop lines matched to the game and player of the date's rosters, each with its status."""
    good = rows_to_load(lines, ROW_KEY, on_bad_rows=on_bad_rows, what="prop line", **line_checks())
    # The file's name, not its path: the same rows wherever the folder is (a copy, a cluster's job).
    good = good.with_columns(pl.col(SOURCE_FILE).str.extract(r"([^/\\]+)$"))
    rows = with_players(with_games(normalised(good), pregame_roster), pregame_roster, aliases)
    matched = statuses(rows).with_columns(
        team_abbr=pl.when(pl.col("player_id").is_not_null()).then(pl.col("_team_abbr")),
        player_name=pl.coalesce("player_name", pl.when(pl.col("player_id").is_not_null()).then(pl.col("_roster_name"))),
    )
    return matched.select(list(SCHEMA)).sort("game_date", SOURCE_FILE, SOURCE_ROW)
