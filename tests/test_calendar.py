"""The game-date calendar: windows, their unions, bootstrap, dependents."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from conftest import RAW_DIR
from pipeline.calendar import Calendar
from pipeline.tables.base import Lookback
from pipeline.warehouse.source import RawSource

LOOKBACKS = [Lookback(), Lookback(days=14), Lookback(season_to_date=True)]


@pytest.fixture(scope="module")
def calendar() -> Calendar:
    return RawSource(RAW_DIR).calendar()


def test_openers_come_from_the_schedule(calendar):
    assert calendar.opener_of == {"2022-23": dt.date(2022, 10, 18), "2023-24": dt.date(2023, 10, 24), "2024-25": dt.date(2024, 10, 22)}
    # Days 0..13 after the opener are the bootstrap window (no games on 2023-11-07, day 14).
    assert calendar.in_bootstrap(dt.date(2023, 11, 6), 14) and not calendar.in_bootstrap(dt.date(2023, 11, 8), 14)
    # Season-to-date windows stop at the opener: the 2023 Finals are not in 2023-24's window.
    assert calendar.window(Lookback(season_to_date=True), dt.date(2023, 10, 26)) == [dt.date(2023, 10, 24), dt.date(2023, 10, 25), dt.date(2023, 10, 26)]


@pytest.mark.parametrize("lookback", LOOKBACKS, ids=lambda lb: lb.describe())
@pytest.mark.parametrize("count", [1, 5, 50, 600])
def test_covering_is_the_union_of_the_windows(calendar, lookback, count):
    days = random.Random(count).sample(calendar.dates, count)
    assert calendar.covering(lookback, days) == {d for day in days for d in calendar.window(lookback, day)}


@pytest.mark.parametrize("lookback", LOOKBACKS, ids=lambda lb: lb.describe())
def test_dependents_are_the_dates_whose_window_holds_a_change(calendar, lookback):
    changed = {dt.date(2023, 1, 18), dt.date(2024, 3, 1)}
    expected = {day for day in calendar.dates if changed & set(calendar.window(lookback, day))}
    assert calendar.dependents_of(lookback, changed) == expected
    if lookback.season_to_date:  # a change reaches the end of its season, and no further
        assert max(d for d in expected if d.year < 2024) == dt.date(2023, 6, 12)
