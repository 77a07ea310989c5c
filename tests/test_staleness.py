"""What makes a built date stale: a table's formula version, its schema, a setting it reads.

The warehouse holds the run state of a history built with the current definitions (every table
on every date of the bundled data ``ok``, each with the input fingerprint the planner expects
today), written to a real DuckDB file; no table rows are needed, since the plan reads only the
run state and the raw files. Then one definition or setting changes, and the plan
``task=plan`` makes (``Context.open(...).plan()``, and once the command itself) must rebuild
exactly that table's dates and, as dependents, those of the tables that read it: nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

import pipeline.build
from conftest import pipeline_config, pipeline_overrides, run_in_process
from pipeline.build import Context
from pipeline.fingerprint import digest
from pipeline.planner import CHANGED_REASON, DEPENDENT_REASON
from pipeline.state import OK, RUN_STATE, state_rows, state_write
from pipeline.tables import registry
from pipeline.warehouse.duckdb import DuckDBWarehouse

BUILT_AT = dt.datetime(2025, 7, 1, 3, 0)
CONTEXT = "nba_analytics.upcoming_player_game_context"
FACTORS = "nba_precompute.player_composite_factors"
STORE = "nba_predictions.ml_feature_store"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A warehouse whose run state says every table is built and up to date on every date."""
    workdir = tmp_path_factory.mktemp("staleness")
    path = workdir / "warehouse.duckdb"
    with DuckDBWarehouse(path) as warehouse:
        warehouse.ensure_table(RUN_STATE)
        fingerprinter = Context.open(config(workdir), warehouse).fingerprinter
        calendar = fingerprinter.calendar
        # Registry order is topological: a table's inputs have their state (and output
        # fingerprints) before its own expected fingerprints are taken.
        for name in registry():
            days = list(calendar.dates)
            rows = state_rows(
                name, days, status=OK, attempts=dict.fromkeys(days, 1),
                input_fingerprints={d: fingerprinter.expected(name, d) for d in days},
                output_fingerprints={d: digest([name, d.isoformat()]) for d in days},
                rows_written=dict.fromkeys(days, 1), started_at=BUILT_AT, finished_at=BUILT_AT, node=None, run_id="built",
            )  # fmt: skip
            fingerprinter.state.update(name, rows)
            warehouse.write([state_write(name, rows)])
    return path


def config(workdir: Path, *overrides: str):
    return pipeline_config(pipeline_overrides(workdir, overrides, None))


def planned(path: Path, *overrides: str) -> dict[str, dict[str, int]]:
    """{table: {reason: dates}} of the tables the plan of ``task=plan`` would build."""
    with DuckDBWarehouse(path, read_only=True) as warehouse:
        plan = Context.open(config(path.parent, *overrides), warehouse).plan()
    return {name: p.reasons() for name, p in plan.tables.items() if p.build}


DATES = 634  # game dates of the bundled data; every table has state on each (checked below)


def changed_with_dependents(changed: set[str], dependents: set[str]) -> dict[str, dict[str, int]]:
    """Every date of ``changed`` rebuilt for its changed inputs, and of ``dependents`` as dependents."""
    return {name: {CHANGED_REASON: DATES} for name in changed} | {name: {DEPENDENT_REASON: DATES} for name in dependents}


def test_a_history_built_with_todays_definitions_has_nothing_to_rebuild(built):
    with DuckDBWarehouse(built, read_only=True) as warehouse:
        state = warehouse.read(RUN_STATE.name, columns=["table_name", "game_date"])
    assert state.group_by("table_name").len()["len"].unique().to_list() == [DATES] and state.height == DATES * len(registry())
    assert planned(built) == {}


def with_table(name: str, **changes) -> callable:
    """The registry with one table's declaration changed, as an edit of its module would."""

    def changed_registry(bootstrap_days: int = 0):
        tables = dict(registry(bootstrap_days))  # a copy: the registry is cached
        tables[name] = dataclasses.replace(tables[name], **changes)
        return tables

    return changed_registry


def test_a_changed_formula_version_makes_that_table_and_its_dependents_stale(built, monkeypatch):
    zones = registry()["nba_precompute.player_shot_zone_analysis"]
    monkeypatch.setattr(pipeline.build, "registry", with_table(zones.name, version=zones.version + 1))
    assert planned(built) == changed_with_dependents({zones.name}, {FACTORS, STORE})


def test_a_changed_schema_makes_that_table_and_its_dependents_stale(built, monkeypatch):
    defense = registry()["nba_precompute.team_defense_zone_analysis"]
    monkeypatch.setattr(pipeline.build, "registry", with_table(defense.name, schema={**defense.schema, "blocks_allowed_season": pl.Float64}))
    assert planned(built) == changed_with_dependents({defense.name}, {FACTORS, STORE})
    # A changed type is a changed schema too.
    monkeypatch.setattr(pipeline.build, "registry", with_table(defense.name, schema={**defense.schema, "games_season": pl.Int32}))
    assert planned(built) == changed_with_dependents({defense.name}, {FACTORS, STORE})


def test_a_changed_phase4_setting_makes_the_tables_that_read_it_and_their_dependents_stale(built):
    # phase4.prior_games is read by the player cache and the team context (their *_blended figures).
    readers = {n for n, t in registry().items() if "phase4.prior_games" in t.params.values()}
    assert readers == {"nba_precompute.player_daily_cache", "nba_analytics.upcoming_team_game_context"}
    assert planned(built, "phase4.prior_games=5") == changed_with_dependents(readers, {FACTORS, STORE})
    # phase4.bootstrap_days: only the dates of each season's first 14 days, of every Phase 4 table.
    tables = registry(14)
    with DuckDBWarehouse(built, read_only=True) as warehouse:
        calendar = Context.open(config(built.parent), warehouse).calendar
    opening = [d for d in calendar.dates if calendar.in_bootstrap(d, 14)]
    assert 0 < len(opening) < 60
    assert planned(built, "phase4.bootstrap_days=14") == {n: {CHANGED_REASON: len(opening)} for n, t in tables.items() if t.phase == 4}


@pytest.mark.slow  # the command itself, in the test process
def test_task_plan_prints_exactly_the_stale_tables(built):
    run = run_in_process(built.parent, "task=plan", "phase4.prior_games=5")
    assert run.returncode == 0, run.output
    rows = {cells[1]: cells[2:4] for cells in plan_rows(run.output)}
    assert len(rows) == len(registry())
    stale = {name: why for name, why in rows.items() if why != ["0", "-"]}
    assert stale == {
        "nba_analytics.upcoming_team_game_context": [f"{DATES}", f"{DATES} inputs changed"],
        "nba_precompute.player_daily_cache": [f"{DATES}", f"{DATES} inputs changed"],
        FACTORS: [f"{DATES}", f"{DATES} dependent of a rebuilt table"],
        STORE: [f"{DATES}", f"{DATES} dependent of a rebuilt table"],
    }


def plan_rows(output: str) -> list[list[str]]:
    """The cells of the plan's rows: level, table, dates to build, why, waiting."""
    return [[c.strip() for c in line.strip().strip("│┃").split("│")] for line in output.splitlines() if "│ nba_" in line]


def test_a_request_is_never_built_from_an_input_the_same_run_replaces(built, tmp_path):
    """``task=predict`` asks for the feature store of one date without dependents. Tonight's slate
    changed since the morning (its roster's inputs changed): the roster is rebuilt, and so is
    everything between it and the feature store on that date, though none of it was stale before
    the roster is rebuilt; no other date."""
    day = "2024-01-06"
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute(
            f"UPDATE {RUN_STATE.name} SET input_fingerprint = 'the morning slate' WHERE table_name = 'nba_raw.pregame_roster' AND game_date = '{day}'"
        )
    request = ("tables=[ml_feature_store]", "backfill.with_dependents=false", f"dates.start={day}", f"dates.end={day}")
    readers = {n for n, t in registry().items() if t.phase == 4} | {"nba_raw.schedule"}
    assert planned(copy, *request) == {"nba_raw.pregame_roster": {CHANGED_REASON: 1}} | {n: {DEPENDENT_REASON: 1} for n in readers}
    with DuckDBWarehouse(copy, read_only=True) as warehouse:
        plan = Context.open(config(tmp_path, *request), warehouse).plan()
    assert {d.isoformat() for p in plan.tables.values() for d in p.build} == {day}

    # A box-score table changed the day before: rebuilt there, with the Phase 4 tables that read
    # it on the requested date only; with dependents, on every later date of the season too.
    with duckdb.connect(str(copy)) as con:
        con.execute(
            f"UPDATE {RUN_STATE.name} SET input_fingerprint = 'a corrected box score' "
            "WHERE table_name = 'nba_analytics.player_game_summary' AND game_date = '2024-01-05'"
        )
    history_readers = {n for n, t in registry().items() if "nba_analytics.player_game_summary" in t.upstream_tables}
    assert history_readers == {CONTEXT, "nba_precompute.player_daily_cache", "nba_precompute.player_shot_zone_analysis"}
    expected = {"nba_analytics.player_game_summary": {CHANGED_REASON: 1}} | {n: {DEPENDENT_REASON: 1} for n in readers}
    assert planned(copy, *request) == expected | {"nba_raw.pregame_roster": {CHANGED_REASON: 1}}
    everywhere = planned(copy, *request[:1], *request[2:])
    assert all(everywhere[n][DEPENDENT_REASON] > 50 for n in (*history_readers, FACTORS, STORE)), everywhere
