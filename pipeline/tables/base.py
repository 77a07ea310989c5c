"""How a table declares itself: its output schema, natural key, inputs and lookback.

A table module defines one pure function decorated with :func:`table`. The function receives
the dates to build and one Polars frame per declared input (keyword arguments named after the
input's short table name) and returns the rows for exactly those dates. It does no I/O and
knows nothing of Ray or of the warehouse backend; the runner derives the DAG, the shards and
the reads from these declarations.
"""

from __future__ import annotations

import datetime as dt
import inspect
from dataclasses import dataclass, field
from typing import Callable, Mapping

import polars as pl

from pipeline.warehouse.base import TableSchema

SOURCE_PREFIX = "source."


@dataclass(frozen=True)
class Lookback:
    """Which earlier game dates a table reads from one input, besides the date it builds.

    ``days``: calendar days before the date. ``season_to_date``: every date from the opener of
    the date's season; with ``previous_season`` also, every date of the season before it (from
    its opener; nothing more where the data has no such season). Each includes the date itself,
    unless ``before``: then the window ends the day before, the date's own rows are never read,
    and the date does not wait for that input (Phase 4 reads its history this way, so a date
    whose games are not played yet can be built).
    """

    days: int = 0
    season_to_date: bool = False
    before: bool = False
    previous_season: bool = False

    def __post_init__(self) -> None:
        if self.before and not (self.season_to_date or self.days):
            raise ValueError("Lookback(before=True) needs days or season_to_date: the window would be empty")
        if self.previous_season and not self.season_to_date:
            raise ValueError("Lookback(previous_season=True) extends a season-to-date window: set season_to_date too")

    def describe(self) -> str:
        window = "season to date" if self.season_to_date else f"{self.days} days" if self.days else "same date"
        window = f"previous season and {window}" if self.previous_season else window
        return f"{window}, before the date" if self.before else window


SAME_DATE = Lookback()


@dataclass(frozen=True)
class Input:
    """One upstream dependency: a warehouse table (``dataset.table``) or a raw source
    (``source.name``), the columns read (None: all) and the lookback."""

    table: str
    columns: tuple[str, ...] | None = None
    lookback: Lookback = SAME_DATE

    @property
    def is_source(self) -> bool:
        return self.table.startswith(SOURCE_PREFIX)

    @property
    def arg_name(self) -> str:
        return self.table.split(".", 1)[1]


@dataclass(frozen=True)
class Table:
    """A warehouse table: where it lives, what it holds and how it is built."""

    name: str
    build: Callable[..., pl.DataFrame]
    schema: Mapping[str, pl.DataType]
    key: tuple[str, ...]
    inputs: tuple[Input, ...]
    phase: int
    description: str
    # Config values the build reads, as {argument: dotted config key}; they are part of the
    # input fingerprint, so changing one rebuilds the table.
    params: Mapping[str, str] = field(default_factory=dict)
    # No rows for this many days after each season opener (run_state ``skipped_bootstrap``): the
    # Phase 4 tables take ``phase4.bootstrap_days`` through :func:`pipeline.tables.registry`.
    bootstrap_days: int = 0
    # Bump when the formula changes: the fingerprint changes and resume rebuilds every date.
    version: int = 1
    # Clustering hint for warehouses that support it (BigQuery).
    cluster_by: tuple[str, ...] = ()
    # Tables whose every build also builds this one on the same dates (what they leave out).
    built_with: tuple[str, ...] = ()
    # A team's rows depend only on the history of the players listed for that team in the
    # window (its players' own games, wherever they played, and their teammates'): a shard may
    # build a subset of teams, reading only their players' rows. Lets the runner cut a
    # season-to-date table by teams instead of by dates, so no shard re-reads the season.
    split_by_team: bool = False
    # Rows only on dates whose games are played (box scores in): a date known only from a slate
    # has none, and validation expects none. The other tables have rows on every listed date.
    needs_box_scores: bool = False

    @property
    def dataset(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def upstream_tables(self) -> tuple[str, ...]:
        return tuple(i.table for i in self.inputs if not i.is_source)

    @property
    def warehouse_schema(self) -> TableSchema:
        """The table as a warehouse creates it (a declaration, not a connection)."""
        return TableSchema(self.name, self.schema, cluster_by=self.cluster_by)

    def run(self, dates: list[dt.date], frames: Mapping[str, pl.DataFrame], params: Mapping) -> pl.DataFrame:
        """Build the rows for ``dates`` and conform them to the declared schema."""
        kwargs = {i.arg_name: frames[i.table] for i in self.inputs}
        kwargs.update(params)
        out = self.build(dates, **kwargs)
        return conform(out, self.schema, self.name)


def conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], table_name: str) -> pl.DataFrame:
    """Select the declared columns in order with the declared types, or say what is missing."""
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{table_name}: build returned no column(s) {missing}")
    return frame.select(pl.col(c).cast(t, strict=True) for c, t in schema.items())


def table(
    name: str,
    *,
    schema: Mapping[str, pl.DataType],
    key: tuple[str, ...],
    inputs: list[Input],
    phase: int,
    params: Mapping[str, str] | None = None,
    bootstrap_days: int = 0,
    version: int = 1,
    cluster_by: tuple[str, ...] = (),
    built_with: tuple[str, ...] = (),
    split_by_team: bool = False,
    needs_box_scores: bool = False,
) -> Callable[[Callable[..., pl.DataFrame]], Table]:
    """Declare a table next to the function that builds it."""

    def wrap(fn: Callable[..., pl.DataFrame]) -> Table:
        expected = {"dates", *(i.arg_name for i in inputs), *(params or {})}
        got = set(inspect.signature(fn).parameters)
        if got != expected:
            raise TypeError(f"{name}: build function takes {sorted(got)}, declaration implies {sorted(expected)}")
        if "game_date" not in schema:
            raise TypeError(f"{name}: every table is partitioned by game_date")
        if split_by_team and ("team_abbr" not in schema or any(i.is_source or not {"player_id", "team_abbr"} <= set(i.columns or ()) for i in inputs)):
            raise TypeError(f"{name}: split_by_team needs team_abbr in its rows and player_id, team_abbr read from every input")
        return Table(
            name=name,
            build=fn,
            schema=dict(schema),
            key=tuple(key),
            inputs=tuple(inputs),
            phase=phase,
            description=(inspect.getdoc(fn) or "").split("\n\n")[0],
            params=dict(params or {}),
            bootstrap_days=bootstrap_days,
            version=version,
            cluster_by=cluster_by,
            built_with=tuple(built_with),
            split_by_team=split_by_team,
            needs_box_scores=needs_box_scores,
        )

    return wrap
