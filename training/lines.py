"""Prop lines: where they come from, P(over) and edge at prediction time, the side's grade after the game.

- Lines: ``points_line`` and ``bookmaker`` of ``nba_raw.pregame_roster`` (the pre-game facts of
  a date: one row per listed player, ``points_line`` NULL without a line), joined to predictions
  on ``(game_id, player_id)``. Should a player have rows from several bookmakers, the first
  bookmaker by name with a line is used, so a rerun picks the same one. Where the roster has no
  line (a slate without one, or a date without a slate), the line comes from
  ``nba_raw.prop_lines`` (:func:`consensus_lines`): its ``used`` rows only, so never a line
  captured at or after tip-off; per bookmaker the median of its lines (one line, unless it posted
  several without capture times), then the median over bookmakers (``bookmaker`` then reads
  ``median of N: A, B``), or only the bookmaker ``lines.bookmaker`` names. A warehouse without
  those tables (older ones) has no lines: every line column is NULL.
- ``p_over``: the model's P(actual points > line), :func:`training.intervals.p_over` (whole-number
  points: a 24.5 line asks for 25 or more; a 24 line too, 24 being a push). NULL without a line.
- ``edge = p_over − 0.5``: how far the model's P(over) is from a coin flip at the line; positive
  favours the over, negative the under. A probability margin, not money: no odds, no vig, no
  stake are modelled (a real book's -110 prices need about 0.524 to break even).
- Grading: ``side`` = ``over`` when ``p_over ≥ 0.5``, else ``under``; ``side_hit`` is whether the
  side won (over: actual > line; under: actual < line), NULL on a push (actual = line), without
  a line, or when the player did not play (a book voids the prop). ``brier`` is the mean of
  ``(p_over − [actual > line])²`` over rows with a line whose player played.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.warehouse import Warehouse

PREGAME_ROSTER = "nba_raw.pregame_roster"
PROP_LINES = "nba_raw.prop_lines"
USED = "used"  # pipeline.tables.prop_lines.USED: the rows a line is taken from
LINE_SCHEMA = {"game_id": pl.String, "player_id": pl.Int32, "points_line": pl.Float64, "bookmaker": pl.String}


def no_lines() -> pl.DataFrame:
    return pl.DataFrame(schema=LINE_SCHEMA)


def pick_lines(roster: pl.DataFrame) -> pl.DataFrame:
    """One line per ``(game_id, player_id)`` from pregame_roster rows: rows with a line only, the
    first bookmaker by name (NULL bookmaker last)."""
    if roster.is_empty():
        return no_lines()
    return (
        roster.filter(pl.col("points_line").is_not_null())
        .sort("game_id", "player_id", "bookmaker", nulls_last=True)
        .unique(["game_id", "player_id"], keep="first", maintain_order=True)
        .select(
            pl.col("game_id").cast(pl.String),
            pl.col("player_id").cast(pl.Int32),
            pl.col("points_line").cast(pl.Float64),
            pl.col("bookmaker").cast(pl.String),
        )
    )


def book_lines(prop_lines: pl.DataFrame, bookmaker: str | None = None) -> pl.DataFrame:
    """One line per ``(game_id, player_id, bookmaker)`` from ``nba_raw.prop_lines`` rows: the used
    rows (of ``bookmaker`` only, if named), the median of the book's distinct lines."""
    used = prop_lines.filter(pl.col("status") == USED)
    if bookmaker:
        used = used.filter(pl.col("bookmaker") == bookmaker)
    return (
        used.unique(["game_id", "player_id", "bookmaker", "points_line", "captured_at"])
        .group_by("game_id", "player_id", "bookmaker")
        .agg(pl.col("points_line").median())
        .sort("game_id", "player_id", "bookmaker")
    )


def consensus_lines(prop_lines: pl.DataFrame, bookmaker: str | None = None) -> pl.DataFrame:
    """One line per ``(game_id, player_id)`` from ``nba_raw.prop_lines`` rows: the median over
    bookmakers of :func:`book_lines` (or the one bookmaker named)."""
    books = book_lines(prop_lines, bookmaker)
    if books.is_empty():
        return no_lines()
    return (
        books.group_by("game_id", "player_id")
        .agg(pl.col("points_line").median(), pl.col("bookmaker").sort().alias("books"))
        .select(
            pl.col("game_id").cast(pl.String),
            pl.col("player_id").cast(pl.Int32),
            pl.col("points_line").cast(pl.Float64),
            pl.when(pl.col("books").list.len() == 1)
            .then(pl.col("books").list.first())
            .otherwise(pl.format("median of {}: {}", pl.col("books").list.len(), pl.col("books").list.join(", ")))
            .alias("bookmaker"),
        )
        .sort("game_id", "player_id")
    )


def read_prop_lines(warehouse: Warehouse, start: dt.date | None, end: dt.date | None) -> pl.DataFrame | None:
    """The rows of ``nba_raw.prop_lines`` in ``start..end``; None if the table does not exist."""
    return warehouse.read(PROP_LINES, start=start, end=end) if warehouse.exists(PROP_LINES) else None


def read_lines(warehouse: Warehouse, start: dt.date | None, end: dt.date | None, bookmaker: str | None = None) -> pl.DataFrame:
    """The lines of ``start..end``: ``nba_raw.pregame_roster``'s, and for player-games without one
    there, ``nba_raw.prop_lines``' (:func:`consensus_lines`, ``bookmaker``: only that one's); none
    if neither table exists."""
    lines = no_lines()
    if warehouse.exists(PREGAME_ROSTER):
        lines = pick_lines(warehouse.read(PREGAME_ROSTER, start=start, end=end, columns=["game_id", "player_id", "points_line", "bookmaker"]))
    rows = read_prop_lines(warehouse, start, end)
    if rows is None:
        return lines
    from_feeds = consensus_lines(rows, bookmaker).join(lines, on=["game_id", "player_id"], how="anti")
    return pl.concat([lines, from_feeds]).sort("game_id", "player_id")


def edge_expr() -> pl.Expr:
    return (pl.col("p_over") - 0.5).alias("edge")


def side_expr() -> pl.Expr:
    """``over`` / ``under`` by ``p_over ≥ 0.5``; NULL without a line."""
    return pl.when(pl.col("p_over").is_null()).then(None).when(pl.col("p_over") >= 0.5).then(pl.lit("over")).otherwise(pl.lit("under")).alias("side")


def side_hit_expr(actual: str = "actual_points", played: str = "played") -> pl.Expr:
    """Whether the chosen side won; NULL on a push, without a line, or when the player did not play."""
    line, points = pl.col("points_line"), pl.col(actual)
    over = pl.col("side") == "over"
    return (
        pl.when(line.is_null() | pl.col("side").is_null() | ~pl.col(played).fill_null(False) | (points == line))
        .then(None)
        .otherwise(pl.when(over).then(points > line).otherwise(points < line))
        .alias("side_hit")
    )


def line_scores(graded: pl.DataFrame) -> dict[str, float | int | None]:
    """Over graded rows: rows with a line (player played), sides decided (no push), hit rate, Brier."""
    lined = graded.filter(pl.col("points_line").is_not_null() & pl.col("p_over").is_not_null() & pl.col("played"))
    decided = lined.filter(pl.col("side_hit").is_not_null())
    brier = lined.select(((pl.col("p_over") - (pl.col("actual_points") > pl.col("points_line")).cast(pl.Float64)) ** 2).mean()).item() if lined.height else None
    return {
        "lines": lined.height,
        "decided": decided.height,
        "hit_rate": decided["side_hit"].cast(pl.Float64).mean() if decided.height else None,
        "brier": brier,
    }
