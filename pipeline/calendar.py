"""The game-date calendar: which dates exist, their season, each season's opener, and the
lookback window an input covers for a date."""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass

import polars as pl

from pipeline.tables.base import Lookback
from pipeline.tables.schedule import season_openers


@dataclass(frozen=True)
class Calendar:
    dates: tuple[dt.date, ...]  # every game date, ascending
    season_of: dict[dt.date, str]
    opener_of: dict[str, dt.date]  # season -> first regular-season game date

    @classmethod
    def from_schedule(cls, schedule: pl.DataFrame) -> "Calendar":
        per_date = schedule.group_by("game_date").agg(pl.col("season").min()).sort("game_date")
        openers = season_openers(schedule)
        return cls(
            dates=tuple(per_date["game_date"]),
            season_of=dict(per_date.iter_rows()),
            opener_of=dict(openers.iter_rows()),
        )

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
            return min(self.opener(day), day)
        return day - dt.timedelta(days=lookback.days)

    def window(self, lookback: Lookback, day: dt.date) -> list[dt.date]:
        """Game dates an input with ``lookback`` is read for when building ``day`` (inclusive)."""
        return self.between(self.window_start(lookback, day), day)

    def covering(self, lookback: Lookback, days: list[dt.date]) -> set[dt.date]:
        """Every game date in the window of any of ``days``: the union of their windows."""
        merged: list[list[dt.date]] = []
        for start, end in sorted((self.window_start(lookback, day), day) for day in days):
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
            if first_at_or_after_start < len(ordered) and ordered[first_at_or_after_start] <= day:
                hit.add(day)
        return hit
