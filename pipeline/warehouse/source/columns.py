"""A file's values read as their declared types: text dates, booleans and times parsed the way
CSV files and feeds write them, and the first value that does not read named by column and row."""

from __future__ import annotations

import polars as pl

TRUE_TEXT = ("true", "t", "1", "yes")
FALSE_TEXT = ("false", "f", "0", "no")


# Text times: ISO 8601 with a UTC offset (``Z``, ``+01:00``) or without one (read as UTC), "T" or a
# space between date and time, seconds and their fractions optional.
_TIME_WITH_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")
_TIME_WITHOUT_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")


def read_as(column: str, source: pl.DataType, dtype: pl.DataType, *, strict: bool = True) -> pl.Expr:
    """``column`` as ``dtype``; text dates in ISO form (YYYY-MM-DD), text booleans (true/false,
    1/0, yes/no) and text times (ISO 8601) are parsed. Times come out naive, in UTC."""
    if source == pl.String and dtype == pl.Date:
        return pl.col(column).str.to_date("%Y-%m-%d", strict=strict)
    if dtype == pl.Datetime:
        if source == pl.String:
            # Other text reads as NULL; RawSource refuses such a file (first_uncastable finds the row).
            text = pl.col(column).str.strip_chars().str.replace(r"[zZ]$", "+00:00").str.replace(" ", "T")
            aware = [text.str.to_datetime(f, time_zone="UTC", time_unit="us", strict=False) for f in _TIME_WITH_OFFSET]
            naive = [text.str.to_datetime(f, time_unit="us", strict=False).dt.replace_time_zone("UTC") for f in _TIME_WITHOUT_OFFSET]
            return pl.coalesce(*aware, *naive).dt.replace_time_zone(None).alias(column)
        if isinstance(source, pl.Datetime) and source.time_zone is not None:
            return pl.col(column).dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.cast_time_unit("us")
    if source == pl.String and dtype == pl.Boolean:
        # Other text reads as NULL; RawSource refuses such a file (first_uncastable finds the row).
        text = pl.col(column).str.strip_chars().str.to_lowercase()
        return pl.when(text.is_in(TRUE_TEXT)).then(True).when(text.is_in(FALSE_TEXT)).then(False).alias(column)
    return pl.col(column).cast(dtype, strict=strict)


def first_uncastable(frame: pl.DataFrame, types: dict[str, pl.DataType]) -> str | None:
    """The first column and row whose value cannot be read as its declared type, as text."""
    for column, dtype in types.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        try:
            read = frame.select(read_as(column, values.dtype, dtype, strict=False)).to_series()
            bad = (read.is_null() & values.is_not_null()).arg_true()
        except pl.exceptions.PolarsError:
            return f"a column does not have the expected type: column {column!r} is {values.dtype}, not {dtype}"
        if bad.len():
            row = int(bad[0])
            return f"a column does not have the expected type: column {column!r} row {row + 1} holds {values[row]!r}, which does not read as {dtype}"
    return None
