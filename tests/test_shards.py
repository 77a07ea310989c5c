"""How the runner cuts a table's dates (pipeline.runner.ShardCutter): at least one shard per CPU,
about shard.max_rows input rows at most, and the season-to-date player tables by teams."""

from __future__ import annotations

import pytest

from pipeline.runner import ShardCutter
from pipeline.state import OK, DateState, RunState
from pipeline.tables import registry

TABLES = registry()
PGS = "nba_analytics.player_game_summary"


@pytest.fixture(scope="module")
def state(source, calendar) -> RunState:
    """Every Phase 2 and 3 table built, each date holding as many rows as its raw player rows."""
    per_date = source.rows_per_date["source.player_boxscores"]
    rows = {(name, day): DateState(OK, 1, "in", "out", per_date.get(day, 0)) for name, spec in TABLES.items() if spec.phase <= 3 for day in calendar.dates}
    return RunState(rows)


def cutter(calendar, state, source, cpus: int, max_rows: int) -> ShardCutter:
    return ShardCutter(calendar, state, source, cpus=cpus, max_rows=max_rows, shard_days=None)


@pytest.mark.parametrize(("cpus", "max_rows"), [(2, 250_000), (2, 20_000), (16, 250_000), (4, 5_000)])
def test_a_same_date_table_has_a_shard_per_cpu_and_no_shard_over_max_rows(calendar, state, source, cpus, max_rows):
    spec = TABLES[PGS]
    cut = cutter(calendar, state, source, cpus, max_rows)
    units = cut.cut(spec, list(calendar.dates))
    assert [d for u in units for d in u.dates] == list(calendar.dates)  # every date once, in order
    assert len(units) >= min(cpus, len(calendar.dates))
    for unit in units:
        assert len(unit.shards) == 1 and unit.shards[0].teams is None
        # A shard holds more than max_rows only when one date alone does.
        assert cut.rows(spec, unit.dates) <= max_rows or len(unit.dates) == 1


def test_the_player_tables_are_cut_by_teams_within_a_season_and_read_no_season_twice(calendar, state, source):
    spec = TABLES["nba_precompute.player_daily_cache"]
    assert spec.split_by_team
    cut = cutter(calendar, state, source, cpus=2, max_rows=12_000)
    units = cut.cut(spec, list(calendar.dates))
    seasons = sorted(set(calendar.season_of.values()))
    assert len(units) == len(seasons)  # one unit (a date range committed together) per season ...
    for unit in units:
        season = calendar.season_of[unit.dates[0]]
        assert {calendar.season_of[d] for d in unit.dates} == {season}
        teams = [t for shard in unit.shards for t in shard.teams]
        assert sorted(teams) == list(calendar.teams_of[season])  # ... its teams split among its shards, each once
        assert all(shard.dates == unit.dates for shard in unit.shards)
        # ... into as many groups as the season's rows need, each about max_rows.
        season_rows = cut.rows(spec, unit.dates)
        assert len(unit.shards) == -(-season_rows // 12_000) > 1


def test_a_season_to_date_table_that_cannot_split_by_team_is_cut_only_as_far_as_it_must(calendar, state, source):
    """A league-wide table (league averages need every team) cut by dates re-reads its season in
    each later shard: one shard per season unless the CPUs or its own dates' rows ask for more."""
    spec = TABLES["nba_precompute.team_defense_zone_analysis"]
    assert not spec.split_by_team
    units = cutter(calendar, state, source, cpus=2, max_rows=250_000).cut(spec, list(calendar.dates))
    assert len(units) == len(set(calendar.season_of.values()))


def test_shard_days_asks_for_exactly_that_many_dates(calendar, state, source):
    cut = ShardCutter(calendar, state, source, cpus=2, max_rows=1, shard_days=10)
    units = cut.cut(TABLES["nba_precompute.player_daily_cache"], list(calendar.dates[:25]))
    assert [len(u.dates) for u in units] == [10, 10, 5] and all(len(u.shards) == 1 for u in units)
