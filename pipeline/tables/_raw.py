"""Row checks shared by the Phase 2 tables that read the raw files and the slates.

A raw row is bad when its minutes string does not parse, a counting stat is negative or
missing, a key is missing, or it repeats the natural key of an earlier row (a slate row: when a
key is missing, it repeats a key, or a check of its own fails: see ``pregame_roster``). The same checks
decide both outcomes: ``data.on_bad_rows=fail`` raises :class:`RawDataError` naming the file,
the row and the problem; ``quarantine`` drops the rows from the table and writes them, with the
reason, to ``nba_raw.quarantine``.
"""

from __future__ import annotations

from typing import Sequence

import polars as pl

# Added by the source reader to every raw row, so an error can name where the row came from.
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"

COUNT_COLUMNS = (
    "fgm", "fga", "fg3m", "fg3a", "ftm", "fta", "oreb", "dreb", "reb",
    "ast", "stl", "blk", "tov", "pf", "pts",
)  # fmt: skip

# Seconds run to 60: the source rounds 59.6 seconds up to "33:60" in about 200 rows.
MINUTES_PATTERN = r"^(\d{1,3}):([0-5]\d|60)$"

ON_BAD_ROWS = ("fail", "quarantine")

# How many bad rows an error message lists before it summarises the rest.
ERROR_ROWS_SHOWN = 5


class RawDataError(ValueError):
    """A raw input file holds rows the pipeline refuses to load."""


def parse_minutes(minutes_raw: pl.Expr) -> pl.Expr:
    """``MM:SS`` to decimal minutes; NULL where the string is empty or does not parse."""
    parts = minutes_raw.str.extract_groups(MINUTES_PATTERN)
    return parts.struct.field("1").cast(pl.Float64) + parts.struct.field("2").cast(pl.Float64) / 60.0


def find_bad_rows(
    frame: pl.DataFrame,
    key: tuple[str, ...],
    *,
    has_minutes: bool,
    count_columns: tuple[str, ...] = COUNT_COLUMNS,
    extra: Sequence[pl.Expr] = (),
) -> pl.DataFrame:
    """One row per bad input row: where it came from, its key, and every problem it has
    (``extra``: more reasons, each NULL where the row passes)."""
    reasons: list[pl.Expr] = [
        pl.when(pl.any_horizontal(pl.col(k).is_null() for k in (*key, "game_date"))).then(
            pl.lit(f"missing key ({', '.join((*key, 'game_date'))})")
        )
    ]
    if has_minutes:
        played = ~pl.col("did_not_play").fill_null(False)
        reasons.append(
            pl.when(played & parse_minutes(pl.col("minutes_raw")).is_null()).then(
                pl.format("unparseable minutes '{}'", pl.col("minutes_raw").fill_null("<empty>"))
            )
        )
    reasons += list(extra)
    for column in count_columns:
        reasons.append(pl.when(pl.col(column) < 0).then(pl.format(f"negative {column} ({{}})", pl.col(column))))
        reasons.append(pl.when(pl.col(column).is_null()).then(pl.lit(f"missing {column}")))
    first_row = pl.col(SOURCE_ROW).first().over(key)
    first_file = pl.col(SOURCE_FILE).first().over(key)
    reasons.append(
        pl.when(pl.int_range(pl.len()).over(key) > 0).then(
            pl.format(f"duplicate ({', '.join(key)}) of {{}} row {{}}", first_file, first_row)
        )
    )
    checked = frame.sort(SOURCE_FILE, SOURCE_ROW).with_columns(
        reason=pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    )
    return checked.filter(pl.col("reason").is_not_null() & (pl.col("reason") != ""))


def rows_to_load(
    frame: pl.DataFrame,
    key: tuple[str, ...],
    *,
    has_minutes: bool,
    on_bad_rows: str,
    what: str,
    count_columns: tuple[str, ...] = COUNT_COLUMNS,
    extra: Sequence[pl.Expr] = (),
) -> pl.DataFrame:
    """The good rows of ``frame``; bad rows raise (``fail``) or are left out (``quarantine``)."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"data.on_bad_rows must be one of {ON_BAD_ROWS}, not {on_bad_rows!r}")
    bad = find_bad_rows(frame, key, has_minutes=has_minutes, count_columns=count_columns, extra=extra)
    if bad.is_empty():
        return frame
    if on_bad_rows == "fail":
        raise RawDataError(describe_bad_rows(bad, key, what))
    return frame.join(bad.select(SOURCE_FILE, SOURCE_ROW), on=[SOURCE_FILE, SOURCE_ROW], how="anti")


def describe_bad_rows(bad: pl.DataFrame, key: tuple[str, ...], what: str) -> str:
    lines = [
        f"{row[SOURCE_FILE]} row {row[SOURCE_ROW]} (game_date {row['game_date']}, "
        + ", ".join(f"{k} {row[k]}" for k in key)
        + f"): {row['reason']}"
        for row in bad.head(ERROR_ROWS_SHOWN).iter_rows(named=True)
    ]
    more = bad.height - len(lines)
    files = sorted(set(bad[SOURCE_FILE]))
    return (
        f"{bad.height} bad {what} row(s) in {', '.join(files)}:\n  "
        + "\n  ".join(lines)
        + (f"\n  ... and {more} more" if more else "")
        + "\nFix the file, or run with data.on_bad_rows=quarantine to load the rest and keep these"
        " rows in nba_raw.quarantine."
    )
