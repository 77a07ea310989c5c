"""``nba_orchestration.table_profile``: what every table holds, per date and column.

Long format, one row per table, date and column: the date's rows, how many are NULL and their
share, and for numbers (booleans as 0 / 1) the mean, minimum, quartiles and maximum. A unit's
profile rows replace the table's profile on its dates in the same transaction as the rows they
describe (:mod:`pipeline.runner.commits`), so the profile of a date is always that of the rows
the table holds; a date built with no rows (a bootstrap date, an empty quarantine day) has a
row per column with ``row_count`` 0.

Where it is computed: on the Ray worker that built the rows (:mod:`pipeline.runner.worker`),
which returns the small profile with its result, so the driver never needs the rows (with
BigQuery it never sees them). A unit built in several pieces (the ``split_by_team`` tables: some
teams' rows per Ray task) has one profile per piece, merged by :func:`merged_profile`:

- ``row_count``, ``null_count``, ``null_fraction``, ``mean_value``, ``min_value`` and
  ``max_value`` are exact (sums, and the mean weighted by each piece's non-NULL values);
- the quartiles are exact when at most one piece has values of the column on the date;
  otherwise they are estimated from each piece's minimum, quartiles and maximum (each piece's
  distribution taken as linear between those five points, the pieces mixed in proportion to
  their values), and ``quartiles_exact`` is false on that row.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
import polars as pl

from pipeline.warehouse.base import PartitionWrite, TableSchema

TABLE_PROFILE = TableSchema(
    name="nba_orchestration.table_profile",
    columns={
        "table_name": pl.String,
        "game_date": pl.Date,
        "column_name": pl.String,
        "column_type": pl.String,  # the declared Polars type
        "row_count": pl.Int64,  # rows of the table on the date (the same for every column)
        "null_count": pl.Int64,
        "null_fraction": pl.Float64,  # NULL when the date has no rows
        "mean_value": pl.Float64,  # numbers and booleans (share true) only
        "min_value": pl.Float64,
        "p25": pl.Float64,  # quartiles: numbers only (linear interpolation between values)
        "p50": pl.Float64,
        "p75": pl.Float64,
        "max_value": pl.Float64,
        "quartiles_exact": pl.Boolean,
        "run_id": pl.String,
    },
    cluster_by=("table_name",),
)

# The profile of one piece of rows, as a worker returns it: every column above but the table's
# name and the run's.
PIECE_COLUMNS = [c for c in TABLE_PROFILE.columns if c not in ("table_name", "run_id")]
QUARTILES = {"p25": 0.25, "p50": 0.5, "p75": 0.75}
# A piece's distribution between its five known points, as this many equally likely values.
MERGE_POINTS = 20


def _is_number(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def column_profile(rows: pl.DataFrame, dates: Sequence[dt.date]) -> pl.DataFrame:
    """The exact profile (``PIECE_COLUMNS``) of ``rows`` on each of ``dates`` and each column
    but ``game_date``; a date without rows gets ``row_count`` 0 for every column."""
    columns = {c: t for c, t in rows.schema.items() if c != "game_date"}
    numbers = [c for c, t in columns.items() if _is_number(t)]
    grid = pl.DataFrame({"game_date": sorted(set(dates))}, schema={"game_date": pl.Date}).join(
        pl.DataFrame({"column_name": list(columns), "column_type": [str(t) for t in columns.values()]}), how="cross"
    )
    per_date = rows.group_by("game_date").agg(pl.len().alias("row_count"), *[pl.col(c).null_count().alias(c) for c in columns])
    nulls = per_date.unpivot(index=["game_date", "row_count"], on=list(columns), variable_name="column_name", value_name="null_count")
    values = (
        rows.select("game_date", *[pl.col(c).cast(pl.Float64) for c in numbers])
        .unpivot(index="game_date", variable_name="column_name", value_name="value")
        .drop_nulls("value")
    )
    stats = values.group_by("game_date", "column_name").agg(
        mean_value=pl.col("value").mean(),
        min_value=pl.col("value").min(),
        **{name: pl.col("value").quantile(q, interpolation="linear") for name, q in QUARTILES.items()},
        max_value=pl.col("value").max(),
    )
    booleans = [c for c, t in columns.items() if t == pl.Boolean]
    return (
        grid.join(nulls, on=["game_date", "column_name"], how="left")
        .join(stats, on=["game_date", "column_name"], how="left")
        .with_columns(
            pl.col("row_count", "null_count").fill_null(0).cast(pl.Int64),
            *[pl.when(~pl.col("column_name").is_in(booleans)).then(pl.col(name)).alias(name) for name in QUARTILES],
        )
        .with_columns(
            null_fraction=pl.when(pl.col("row_count") > 0).then(pl.col("null_count") / pl.col("row_count")),
            quartiles_exact=pl.lit(True),
        )
        .select(PIECE_COLUMNS)
        .cast({c: TABLE_PROFILE.columns[c] for c in PIECE_COLUMNS})
        .sort("game_date", "column_name")
    )


def merged_profile(pieces: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One profile from the profiles of pieces of the same dates' rows (a table's teams built
    apart): exact but for the quartiles of a date and column that several pieces have values
    of (see the module's docstring)."""
    if len(pieces) == 1:
        return pieces[0]
    stacked = pl.concat(pieces).with_columns(
        values=pl.col("row_count") - pl.col("null_count"), piece=pl.int_range(pl.len()).over("game_date", "column_name")
    )
    keys = ["game_date", "column_name", "column_type"]
    totals = stacked.group_by(keys, maintain_order=True).agg(
        row_count=pl.col("row_count").sum(),
        null_count=pl.col("null_count").sum(),
        mean_value=(pl.col("mean_value") * pl.col("values")).sum() / pl.col("values").sum(),
        min_value=pl.col("min_value").min(),
        max_value=pl.col("max_value").max(),
        contributing=(pl.col("values") > 0).sum(),
        has_mean=pl.col("mean_value").is_not_null().any(),  # numbers and booleans only
        has_quartiles=pl.col("p50").is_not_null().any(),
    )
    quartiles = _mixed_quartiles(stacked, keys, len(pieces))
    return (
        totals.join(quartiles, on=keys, how="left")
        .with_columns(
            null_fraction=pl.when(pl.col("row_count") > 0).then(pl.col("null_count") / pl.col("row_count")),
            mean_value=pl.when((pl.col("contributing") > 0) & pl.col("has_mean")).then(pl.col("mean_value")),
            quartiles_exact=(pl.col("contributing") <= 1) | ~pl.col("has_quartiles"),
            **{name: pl.when(pl.col("has_quartiles")).then(pl.col(name)) for name in QUARTILES},
        )
        .select(PIECE_COLUMNS)
        .cast({c: TABLE_PROFILE.columns[c] for c in PIECE_COLUMNS})
        .sort("game_date", "column_name")
    )


def _mixed_quartiles(stacked: pl.DataFrame, keys: list[str], pieces: int) -> pl.DataFrame:
    """Per group of ``keys``: the quartiles of the mixture of the pieces' distributions, each
    linear between its minimum, quartiles and maximum and weighted by its non-NULL values (a
    piece alone on a group gives its own quartiles back)."""
    knots = ["min_value", "p25", "p50", "p75", "max_value"]
    wide = stacked.filter(pl.col("p50").is_not_null() & (pl.col("values") > 0))
    groups = wide.select(keys).unique(maintain_order=True).with_row_index("group")
    if groups.is_empty():
        return pl.DataFrame(schema={**{k: stacked.schema[k] for k in keys}, **dict.fromkeys(QUARTILES, pl.Float64)})
    wide = wide.join(groups, on=keys).with_columns(slot=pl.int_range(pl.len()).over("group"))
    shape = (groups.height, pieces)
    points = np.zeros((*shape, len(knots)))
    weights = np.zeros(shape)
    g, s = wide["group"].to_numpy(), wide["slot"].to_numpy()
    points[g, s] = wide.select(knots).to_numpy()
    weights[g, s] = wide["values"].to_numpy()
    # Each piece as MERGE_POINTS equally likely values: its quantile function at their midpoints.
    probs = (np.arange(MERGE_POINTS) + 0.5) / MERGE_POINTS
    segment = np.minimum((probs * 4).astype(int), 3)
    within = probs * 4 - segment
    samples = points[..., segment] + (points[..., segment + 1] - points[..., segment]) * within  # (groups, pieces, points)
    sample_weights = np.repeat(weights[..., None] / MERGE_POINTS, MERGE_POINTS, axis=2)
    values = samples.reshape(shape[0], -1)
    value_weights = sample_weights.reshape(shape[0], -1)
    values[value_weights == 0] = np.inf  # the empty slots of groups with fewer pieces sort last
    order = np.argsort(values, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    value_weights = np.take_along_axis(value_weights, order, axis=1)
    cumulative = np.cumsum(value_weights, axis=1)
    midpoints = (cumulative - value_weights / 2) / cumulative[:, -1:]  # each value's place in the mixture, in 0..1
    midpoints[value_weights == 0] = np.inf
    last = (value_weights > 0).sum(axis=1) - 1
    rows = np.arange(shape[0])
    result = {}
    for name, q in QUARTILES.items():
        hi = np.clip((midpoints < q).sum(axis=1), 1, last)
        lo = hi - 1
        x0, x1 = values[rows, lo], values[rows, hi]
        p0, p1 = midpoints[rows, lo], midpoints[rows, hi]
        share = np.clip((q - p0) / np.where(p1 > p0, p1 - p0, 1.0), 0.0, 1.0)
        result[name] = x0 + (x1 - x0) * share
    mixed = groups.with_columns(**{name: pl.Series(values) for name, values in result.items()})
    alone = wide.filter(pl.len().over("group") == 1).select(*keys, *QUARTILES)
    return pl.concat([mixed.join(alone.select(keys), on=keys, how="anti").drop("group"), alone])


def profile_rows(table: str, profile: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """A piece profile as rows of ``nba_orchestration.table_profile``."""
    return profile.with_columns(table_name=pl.lit(table), run_id=pl.lit(run_id)).select(list(TABLE_PROFILE.columns))


def profile_write(table: str, dates: Sequence[dt.date], profile: pl.DataFrame, run_id: str) -> PartitionWrite:
    """The replacement of ``table``'s profile on ``dates`` (``profile``: a piece profile of them)."""
    return PartitionWrite(TABLE_PROFILE.name, list(dates), profile_rows(table, profile, run_id), where={"table_name": table})
