"""The game-date calendar: windows, their unions, bootstrap, dependents."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from omegaconf import OmegaConf

from conftest import RAW_DIR
from pipeline.calendar import Calendar
from pipeline.command import resolve_dates
from pipeline.tables.base import Lookback
from pipeline.tables.schedule import CALENDAR_COLUMNS, games
from pipeline.warehouse.source import RawSource

LOOKBACKS = [
    Lookback(),
    Lookback(days=14),
    Lookback(season_to_date=True),
    Lookback(season_to_date=True, previous_season=True, before=True),
]


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
    if lookback.previous_season:  # a change reaches the end of the next season, and no further
        assert max(expected) == calendar.last and min(expected) == dt.date(2023, 1, 19)
        assert calendar.dependents_of(lookback, {dt.date(2023, 1, 18)}) == {
            d for d in calendar.dates if dt.date(2023, 1, 18) < d <= dt.date(2024, 6, 17)
        }  # the rest of 2022-23 and all of 2023-24 (its last date, the Finals, is 2024-06-17)
    elif lookback.season_to_date:  # a change reaches the end of its season, and no further
        assert max(d for d in expected if d.year < 2024) == dt.date(2023, 6, 12)


def test_a_previous_season_window_is_that_season_whole_and_this_one_before_the_date(calendar):
    lookback = Lookback(season_to_date=True, previous_season=True, before=True)
    opener = calendar.window(lookback, dt.date(2023, 10, 24))
    assert opener == calendar.between(dt.date(2022, 10, 18), dt.date(2023, 6, 12))  # 2022-23 whole, nothing of 2023-24
    later = calendar.window(lookback, dt.date(2023, 10, 26))
    assert later == [*opener, dt.date(2023, 10, 24), dt.date(2023, 10, 25)]
    # The first season of the data has no season before it: its own season to date only.
    assert calendar.window(lookback, dt.date(2022, 10, 20)) == [dt.date(2022, 10, 18), dt.date(2022, 10, 19)]
    assert calendar.window(lookback, dt.date(2022, 10, 18)) == []
    with pytest.raises(ValueError, match="season_to_date"):
        Lookback(days=3, previous_season=True)


def test_an_input_fingerprint_covers_the_previous_season_it_reads(calendar):
    """The planner's fingerprint of a previous-season window changes with any partition of that
    season (so a corrected 2022-23 box score rebuilds 2023-24's figures) and with none of the
    season before it."""
    from pipeline.planner import Fingerprinter
    from pipeline.state import DateState, RunState
    from pipeline.tables import registry

    pgs, cache = "nba_analytics.player_game_summary", "nba_precompute.player_daily_cache"
    tables = registry()
    assert any(i.table == pgs and i.lookback.previous_season for i in tables[cache].inputs)

    def expected(changed: dt.date | None) -> dict[dt.date, str]:
        state = RunState({(pgs, d): DateState("ok", 1, "in", "changed" if d == changed else f"out{d}", 1) for d in calendar.dates})
        fingerprinter = Fingerprinter(tables, calendar, state, {}, {cache: {"prior_games": 10}})
        return {d: fingerprinter.expected(cache, d) for d in calendar.dates}

    base = expected(None)
    moved = expected(dt.date(2023, 3, 1))  # 2022-23
    differ = {d for d in calendar.dates if moved[d] != base[d]}
    assert differ == {d for d in calendar.dates if dt.date(2023, 3, 1) < d <= dt.date(2024, 6, 17)}


# -- games listed by a slate ------------------------------------------------------------------------

EXAMPLE_SLATE = RAW_DIR.parent / "examples" / "slates" / "slate_2025-06-22.csv"  # IND at OKC, game 7 of the 2025 Finals


def one_side(team: str, players: int, target) -> None:
    """The example slate with only ``players`` players of ``team`` (a desk pricing one side)."""
    target.mkdir()
    slate = pl.read_csv(EXAMPLE_SLATE, infer_schema=False)
    slate.filter(pl.col("team_abbr") == team).head(players).write_csv(target / "tonight.csv")


@pytest.mark.parametrize(("team", "home"), [("IND", False), ("OKC", True)])
def test_a_game_listed_for_one_team_only_is_on_the_calendar_with_its_date(tmp_path, team, home):
    """Four players of one side of 2025-06-22, the morning of that date: the game is on the
    calendar, dated, with both teams (the listed side names its opponent), and the date can be
    asked for (before: "no game dates in 2025-06-22..2025-06-22; ... cover None..2025-06-19")."""
    one_side(team, 4, tmp_path / "slates")
    source = RawSource(RAW_DIR, tmp_path / "slates", dt.date(2025, 6, 21))
    schedule = games(source.calendar_frame())
    final = schedule.filter(pl.col("game_date") == dt.date(2025, 6, 22))
    assert final.select("game_id", "season", "season_type", "home_team_abbr", "away_team_abbr").rows() == [
        ("0042400407", "2024-25", "playoffs", "OKC", "IND")
    ]
    assert schedule["game_date"].null_count() == 0
    calendar = source.calendar()
    assert (calendar.first, calendar.last, calendar.season_of[dt.date(2025, 6, 22)]) == (dt.date(2022, 10, 18), dt.date(2025, 6, 22), "2024-25")
    assert not calendar.is_played(dt.date(2025, 6, 22)) and {"IND", "OKC"} <= set(calendar.teams_of["2024-25"])
    asked = OmegaConf.create({"dates": {"list": [], "start": "2025-06-22", "end": "2025-06-22"}})
    assert resolve_dates(asked, calendar) == [dt.date(2025, 6, 22)]


def test_the_calendar_never_holds_a_null_date_whatever_the_slate_lists(source):
    """Slates listing any subset of the players of the example slate's game (one player, one side,
    both sides, a few of each), beside the bundled history: every game has its date, season and both
    teams, once, and every calendar date has a season."""
    slate = pl.read_csv(EXAMPLE_SLATE, infer_schema=False).with_columns(
        game_date=pl.col("game_date").str.to_date(), is_home=pl.col("is_home") == "true", team_id=pl.col("team_id").cast(pl.Int32)
    )
    history = source.calendar_frame().filter(pl.col("game_date") < dt.date(2025, 6, 22))
    rng = random.Random(22)
    subsets = [slate.head(1), slate.tail(1), slate.filter(team_abbr="IND"), slate.filter(team_abbr="OKC"), slate]
    subsets += [slate[sorted(rng.sample(range(slate.height), rng.randint(1, slate.height)))] for _ in range(20)]
    for listed in subsets:
        schedule = games(pl.concat([history, listed.select(CALENDAR_COLUMNS)]))
        assert schedule.select("game_date", "season", "home_team_abbr", "away_team_abbr").null_count().row(0) == (0, 0, 0, 0)
        assert schedule["game_id"].is_unique().all()
        assert schedule.filter(pl.col("game_date") == dt.date(2025, 6, 22))[["home_team_abbr", "away_team_abbr"]].rows() == [("OKC", "IND")]
        calendar = Calendar.from_schedule(schedule)
        assert None not in calendar.dates and calendar.dates[-1] == dt.date(2025, 6, 22)
        assert all(season is not None for season in calendar.season_of.values())
