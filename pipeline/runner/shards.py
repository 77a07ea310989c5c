"""Cutting a table's dates into shards (one Ray task each) and units (committed together).

A table's dates are cut so that every CPU the run can reach has work and no shard reads much more
than ``shard.max_rows`` input rows (its dates plus the lookback its table declares), so a task's
memory does not grow with the data. A table whose inputs reach back to the season's opener
cannot be cut by dates without every later shard re-reading the season before it; a table
declared ``split_by_team`` is cut by teams instead: a shard builds some teams' rows on all of
the season's dates, from the history of the players listed for those teams. The shards of one
date range (its teams) form a *unit*, committed together.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass
from typing import Sequence

from pipeline.calendar import Calendar
from pipeline.state import RunState
from pipeline.tables import Table
from pipeline.warehouse.source import RawSource


@dataclass(frozen=True)
class Shard:
    """One Ray task: a table's rows on ``dates`` (of the teams in ``teams``; None: all teams)."""

    table: str
    dates: tuple[dt.date, ...]
    teams: tuple[str, ...] | None = None


# shard.max_rows unset: see conf/config.yaml for how this was chosen.
DEFAULT_MAX_ROWS = 250_000


@dataclass(frozen=True)
class Unit:
    """A table's dates committed together, and the shards that build them (one per team group)."""

    table: str
    dates: tuple[dt.date, ...]
    shards: tuple[Shard, ...]


class ShardCutter:
    """Cuts a table's dates into units: at least one shard per CPU where there are dates enough,
    and at most about ``max_rows`` input rows per shard (counted from the rows each input date
    holds: the run state's row counts, the raw files' for raw inputs)."""

    def __init__(self, calendar: Calendar, state: RunState, source: RawSource, *, cpus: int, max_rows: int, shard_days: int | None):
        self.calendar = calendar
        self.state = state
        self.source = source
        self.cpus = max(1, cpus)
        self.max_rows = max(1, max_rows)
        self.shard_days = shard_days

    def rows(self, spec: Table, dates: Sequence[dt.date]) -> int:
        """Input rows a shard of ``dates`` reads: every input over its lookback windows."""
        return sum(self._input_rows(spec, inp.table, self.calendar.covering(inp.lookback, list(dates))) for inp in spec.inputs)

    def cut(self, spec: Table, dates: Sequence[dt.date]) -> list[Unit]:
        ordered = sorted(dates)
        if not ordered:
            return []
        if self.shard_days:  # asked for: exactly this many dates per shard
            return [self._unit(spec, chunk) for chunk in _chunks(ordered, self.shard_days)]
        if not any(inp.lookback.season_to_date for inp in spec.inputs):
            return [self._unit(spec, chunk) for chunk in self._by_rows(spec, ordered, max(1, math.ceil(len(ordered) / self.cpus)))]
        seasons = [list(group) for _, group in itertools.groupby(ordered, key=self.calendar.season_of.__getitem__)]
        units = []
        for season_dates in seasons:
            if spec.split_by_team:
                units.append(self._by_team(spec, season_dates, wanted=math.ceil(self.cpus / len(seasons))))
            else:
                # Each later shard of a season re-reads the season before it: cut by dates only
                # as far as CPUs or its own dates' rows ask for.
                per_chunk = max(1, math.ceil(len(season_dates) / math.ceil(self.cpus / len(seasons))))
                units += [self._unit(spec, chunk) for chunk in self._by_rows(spec, season_dates, per_chunk, own_dates_only=True)]
        return units

    def _by_rows(self, spec: Table, dates: list[dt.date], most_dates: int, own_dates_only: bool = False) -> list[list[dt.date]]:
        """Contiguous chunks of at most ``most_dates`` dates and about ``max_rows`` input rows
        (with ``own_dates_only``, rows of the chunk's own dates: a season-to-date window's
        earlier part is read by every chunk of the season whatever the cut)."""
        chunks: list[list[dt.date]] = []
        covered: dict[str, set[dt.date]] = {}
        rows = 0
        for day in dates:
            windows = {inp.table: {day} if own_dates_only else set(self.calendar.window(inp.lookback, day)) for inp in spec.inputs}
            added = sum(self._input_rows(spec, table, days - covered.get(table, set())) for table, days in windows.items())
            if not chunks or len(chunks[-1]) >= most_dates or (rows + added > self.max_rows and chunks[-1]):
                chunks.append([])
                covered, rows = {}, 0
                added = sum(self._input_rows(spec, table, days) for table, days in windows.items())
            chunks[-1].append(day)
            for table, days in windows.items():
                covered.setdefault(table, set()).update(days)
            rows += added
        return chunks

    def _input_rows(self, spec: Table, table: str, days: set[dt.date]) -> int:
        if table in self.source.rows_per_date:
            per_date = self.source.rows_per_date[table]
            return sum(per_date.get(d, 0) for d in days)
        return sum(self.state.rows_written(table, d) for d in days)

    def _by_team(self, spec: Table, dates: list[dt.date], wanted: int) -> Unit:
        """One unit for the season's dates, its teams in as many groups as the rows or the CPUs want."""
        teams = self.calendar.teams_of[self.calendar.season_of[dates[0]]]
        groups = min(len(teams), max(wanted, math.ceil(self.rows(spec, dates) / self.max_rows)))
        if groups <= 1:
            return self._unit(spec, dates)
        # Exactly `groups` runs of teams whose sizes differ by one at most (30 teams in 9 groups:
        # 3 or 4 each, where runs of ceil(30 / 9) = 4 would make only 8).
        bounds = [round(i * len(teams) / groups) for i in range(groups + 1)]
        shards = tuple(Shard(spec.name, tuple(dates), tuple(teams[a:b])) for a, b in itertools.pairwise(bounds))
        return Unit(spec.name, tuple(dates), shards)

    @staticmethod
    def _unit(spec: Table, dates: Sequence[dt.date]) -> Unit:
        return Unit(spec.name, tuple(dates), (Shard(spec.name, tuple(dates)),))


def _chunks(dates: list[dt.date], size: int) -> list[list[dt.date]]:
    return [dates[i : i + size] for i in range(0, len(dates), max(1, size))]

