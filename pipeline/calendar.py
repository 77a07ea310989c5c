"""The game-date calendar: which dates exist, their season, each season's opener and teams, and
the lookback window an input covers for a date."""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import polars as pl

from pipeline.tables.base import Lookback, Table
from pipeline.tables.schedule import season_before, season_openers


@dataclass(frozen=True)
class Calendar:
    dates: tuple[dt.date, ...]  # every game date, ascending
    season_of: dict[dt.date, str]
    opener_of: dict[str, dt.date]  # season -> first regular-season game date
    teams_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # season -> its teams, sorted
    # Dates with box scores; the others are known from a slate only (None: every date is played).
    played: frozenset[dt.date] | None = None

    @classmethod
    def from_schedule(cls, schedule: pl.DataFrame, played: Iterable[dt.date] | None = None) -> "Calendar":
        per_date = schedule.group_by("game_date").agg(pl.col("season").min()).sort("game_date")
        openers = season_openers(schedule)
        sides = pl.concat([schedule.select("season", team="home_team_abbr"), schedule.select("season", team="away_team_abbr")])
        teams = sides.group_by("season").agg(pl.col("team").unique().sort())
        return cls(
            dates=tuple(per_date["game_date"]),
            season_of=dict(per_date.iter_rows()),
            opener_of=dict(openers.iter_rows()),
            teams_of={season: tuple(names) for season, names in teams.iter_rows()},
            played=None if played is None else frozenset(played),
        )

    def is_played(self, day: dt.date) -> bool:
        return self.played is None or day in self.played

    def awaits_box_scores(self, spec: Table, day: dt.date) -> bool:
        """``spec`` holds box-score results (``needs_box_scores``) and ``day`` is known only from a
        slate: the table has no rows for it yet, and none are expected."""
        return spec.needs_box_scores and not self.is_played(day)

    @property
    def first(self) -> dt.date:
        return self.dates[0]

    @property
    def last(self) -> dt.date:
        return self.dates[-1]

    def between(self, start: dt.date | None, end: dt.date | None) -> list[dt.date]:
        lo = 0 if start is None else bisect.bisect_left(self.dates, start)
        hi = len(self.dates) if end is None else bisect.bisect_right(self.dates, end)
        return list(self.dates[lo:hi])

    def opener(self, day: dt.date) -> dt.date:
        return self.opener_of[self.season_of[day]]

    def window_start(self, lookback: Lookback, day: dt.date) -> dt.date:
        if lookback.season_to_date:
            start = min(self.opener(day), day)
            previous = season_before(self.season_of[day]) if lookback.previous_season else None
            return min(self.opener_of[previous], start) if previous in self.opener_of else start
        return day - dt.timedelta(days=lookback.days)

    @staticmethod
    def window_end(lookback: Lookback, day: dt.date) -> dt.date:
        return day - dt.timedelta(days=1) if lookback.before else day

    def window(self, lookback: Lookback, day: dt.date) -> list[dt.date]:
        """Game dates an input with ``lookback`` is read for when building ``day`` (inclusive of
        ``day`` unless ``lookback.before``; may then be empty: a season's opener)."""
        return self.between(self.window_start(lookback, day), self.window_end(lookback, day))

    def covering(self, lookback: Lookback, days: list[dt.date]) -> set[dt.date]:
        """Every game date in the window of any of ``days``: the union of their windows."""
        merged: list[list[dt.date]] = []
        for start, end in sorted((self.window_start(lookback, day), self.window_end(lookback, day)) for day in days):
            if end < start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return {d for start, end in merged for d in self.between(start, end)}

    def in_bootstrap(self, day: dt.date, bootstrap_days: int) -> bool:
        """True in the first ``bootstrap_days`` days from the season opener (opener included),
        and on any date before it (a pre-opener date has no season history at all)."""
        return bootstrap_days > 0 and (day - self.opener(day)).days < bootstrap_days

    def dependents_of(self, lookback: Lookback, changed: set[dt.date]) -> set[dt.date]:
        """Dates whose window for ``lookback`` contains any of ``changed``."""
        if not changed:
            return set()
        if not lookback.season_to_date and lookback.days == 0:
            return changed & set(self.dates)
        ordered = sorted(changed)
        hit: set[dt.date] = set()
        for day in self.dates[bisect.bisect_left(self.dates, ordered[0]):]:
            first_at_or_after_start = bisect.bisect_left(ordered, self.window_start(lookback, day))
            if first_at_or_after_start < len(ordered) and ordered[first_at_or_after_start] <= self.window_end(lookback, day):
                hit.add(day)
        return hit


def date_runs(dates: Iterable[dt.date], reference: Sequence[dt.date]) -> list[tuple[dt.date, dt.date, int]]:
    """``dates`` grouped into runs that are consecutive in ``reference`` (the game-date calendar):
    (first, last, number of dates). Dates outside ``reference`` each start a run of their own."""
    position = {d: i for i, d in enumerate(reference)}
    runs: list[list] = []
    previous = None
    for day in sorted(set(dates)):
        at = position.get(day)
        if runs and at is not None and previous is not None and at == previous + 1:
            runs[-1][1] = day
            runs[-1][2] += 1
        else:
            runs.append([day, day, 1])
        previous = at
    return [(a, b, n) for a, b, n in runs]


def runs_text(runs: Sequence[tuple[dt.date, dt.date, int]], shown: int | None = 5) -> str:
    """"2023-01-02..2023-01-09 (5 dates), 2023-02-01": the first ``shown`` runs (None: all)."""
    shown = len(runs) if shown is None else shown
    parts = [f"{a}" if n == 1 else f"{a}..{b} ({n} dates)" for a, b, n in runs[:shown]]
    more = len(runs) - shown
    return ", ".join(parts) + (f" and {more} more run(s)" if more > 0 else "")
