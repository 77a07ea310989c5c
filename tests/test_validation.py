"""Validation checks on small hand-made frames, the config and its language, and the Validator
against a small DuckDB warehouse (gaps years back, bootstrap windows, tables not built)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from hydra import compose, initialize_config_dir

import pipeline.tasks
from pipeline.calendar import Calendar
from pipeline.state import OK, SKIPPED_BOOTSTRAP, DateState, RunState
from pipeline.tables import Input, registry, table
from pipeline.validation import checks
from pipeline.validation.checks import Scope
from pipeline.validation.config import load_settings
from pipeline.validation.engine import Validator
from pipeline.validation.expressions import ExpressionError, parse_condition, parse_identity, parse_population
from pipeline.validation.report import VALIDATION_RESULTS, render, store, write_json
from pipeline.calendar import date_runs
from pipeline.validation.results import FAIL, INFO, PASS, SKIP, Result, exit_code
from pipeline.warehouse.base import PartitionWrite, TableSchema
from pipeline.warehouse.duckdb import DuckDBWarehouse

CONF = Path(pipeline.tasks.__file__).resolve().parent.parent / "conf"  # the config `python -m pipeline` reads
D = dt.date


def project_validation_config(*overrides: str):
    """``cfg.validation`` as `python -m pipeline` composes it (with Hydra overrides)."""
    wired = "validation" in str(yaml.safe_load((CONF / "config.yaml").read_text()).get("defaults"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=([] if wired else ["+validation=default"]) + list(overrides))
    return cfg.validation


# -- the condition and identity languages ------------------------------------------------------


def frame_for_populations() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "did_not_play": [False, False, True, False, None],
            "minutes": [30.0, 0.0, None, 4.0, 12.0],
            "fga": [10, 0, 0, 0, 3],
            "fta": [2, 0, 0, 1, 0],
            "comment": [None, None, "DNP - Coach's Decision", None, None],
        }
    )


def test_population_conditions_select_the_right_rows():
    frame = frame_for_populations()
    named = {"played": parse_population(["did_not_play == false", "minutes > 0"], name="played")}

    def rows(spec) -> list[int]:
        return frame.with_row_index().filter(parse_population(spec, named).expr())["index"].to_list()

    assert rows("played") == [0, 3]  # a NULL did_not_play is in no population that reads it
    assert rows(["fga > 0 or fta > 0"]) == [0, 3, 4]
    assert rows("comment is not null") == [2]
    assert rows(["comment is null", "minutes >= 4"]) == [0, 3, 4]
    assert rows("comment == 'DNP - Coach''s Decision'") == []  # quotes are not escapes
    assert rows(None) == [0, 1, 2, 3, 4]
    assert parse_population("played", named).describe() == "played: did_not_play == false and minutes > 0"


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('true')", "minutes > ", "minutes ~ 3", "did_not_play == False()", "fga > fta", ""],
)
def test_conditions_that_are_not_the_grammar_are_refused(text):
    with pytest.raises(ExpressionError):
        parse_condition(text)


def test_identities_parse_and_evaluate():
    frame = pl.DataFrame({"pts": [7, 8], "fgm": [2, 2], "fg3m": [1, 1], "ftm": [2, 2], "fga": [5, 1]})
    points = parse_identity("pts = 2*fgm + fg3m + ftm")
    assert points.columns == {"pts", "fgm", "fg3m", "ftm"}
    assert frame.select(points.holds().alias("h"))["h"].to_list() == [True, False]
    assert frame.select(parse_identity("fgm <= fga").holds().alias("h"))["h"].to_list() == [True, False]
    assert frame.select(parse_identity("pts - 1 >= 2*fgm + fg3m").holds().alias("h"))["h"].to_list() == [True, True]
    for bad in ("pts", "pts = 2**fgm", "pts = fgm(1)", "pts = os.system"):
        with pytest.raises(ExpressionError):
            parse_identity(bad)


# -- config ------------------------------------------------------------------------------------


def test_project_config_loads_and_hydra_overrides_reach_one_threshold():
    settings = load_settings(project_validation_config(), registry())
    usage = settings.thresholds["nba_analytics.player_game_summary"]["usage_rate"]
    assert (usage.min_coverage, usage.severity, usage.population.name) == (1.0, "critical", "played")
    assert usage.population.text() == "did_not_play == false and minutes > 0"
    assert usage.reason
    assert settings.gate is True and settings.regression_max_drop == pytest.approx(0.10)
    # Every threshold names a real column and measures over columns its table has.
    for table_name, features in settings.thresholds.items():
        for feature, t in features.items():
            assert feature in registry()[table_name].schema
            assert t.population.columns <= set(registry()[table_name].schema)

    overridden = load_settings(
        project_validation_config(
            "validation.thresholds.player_game_summary.usage_rate.min_coverage=0.9",
            "validation.thresholds.player_game_summary.usage_rate.severity=warning",
            "validation.gate=false",
            "validation.ranges=[2024-01-01..2024-01-31]",
        ),
        registry(),
    )
    usage = overridden.thresholds["nba_analytics.player_game_summary"]["usage_rate"]
    assert (usage.min_coverage, usage.severity) == (0.9, "warning")
    assert overridden.gate is False
    assert overridden.ranges == ((D(2024, 1, 1), D(2024, 1, 31)),)


def test_config_mistakes_are_all_reported_at_once():
    cfg = {
        "populations": {"played": ["did_not_play == false"]},
        "thresholds": {
            "player_game_summary": {
                "usage_rate": {"min_coverage": 1.5, "population": "playd", "severity": "fatal", "reason": "x"},
                "no_such_column": {"min_coverage": 1.0, "population": "played", "reason": "x"},
                "minutes": {"min_coverage": 1.0, "population": "not_a_column > 0"},
            },
            "no_such_table": {},
        },
        "cross_layer": {"x": {"kind": "sums_match", "detail": "player_game_summary", "total": "team_offense_game_summary", "keys": ["nope"], "columns": {"pts": "pts"}}},
        "bounds": {"odd": {"match": "fg[a", "min": 0}},
        "drift": {"groups": {"odd": {"tables": ["player_game_summary"], "match": "pct(", "mean": {"max_z": 6, "min_change": 0.2}}}},
    }
    with pytest.raises(ValueError) as info:
        load_settings(cfg, registry())
    text = str(info.value)
    for expected in (
        "unknown population 'playd'",
        "no column 'no_such_column'",
        "no column(s) ['not_a_column']",
        "give a one-line `reason`",
        "thresholds.no_such_table: unknown table",
        "cross_layer.x: nba_analytics.player_game_summary has no column 'nope'",
        "bounds.odd.match: not a regular expression",
        "drift.groups.odd.match: not a regular expression",
    ):
        assert expected in text, text
    with pytest.raises(ValueError, match="no `validation` config"):
        load_settings(None, registry())


# -- checks on small frames --------------------------------------------------------------------

PLAYED = parse_population(["did_not_play == false", "minutes > 0"], name="played")
CAL = [D(2024, 1, 1), D(2024, 1, 3), D(2024, 1, 5), D(2024, 2, 1), D(2024, 2, 2), D(2024, 2, 4)]


def threshold(feature="usage_rate", min_coverage=1.0, severity="critical", population=PLAYED):
    from pipeline.validation.config import Threshold

    return Threshold("t.players", feature, min_coverage, population, severity, "because")


def players_frame() -> pl.DataFrame:
    """Two players a day; the DNP rows have NULL usage by design; 2024-02-01 lost its team row."""
    rows = []
    for day in CAL:
        rows.append((day, 1, False, 30.0, 20.0))
        rows.append((day, 2, True, None, None))
    rows[6] = (D(2024, 2, 1), 1, False, 30.0, None)
    return pl.DataFrame(rows, schema=["game_date", "player_id", "did_not_play", "minutes", "usage_rate"], orient="row")


def test_coverage_is_measured_over_the_population_and_names_the_failing_dates():
    daily = checks.coverage_by_date(players_frame(), {"usage_rate": threshold()})
    scopes = [Scope("all", tuple(CAL)), Scope("month 2024-01", tuple(CAL[:3])), Scope("month 2024-02", tuple(CAL[3:]))]
    results = checks.coverage_results("t.players", daily, {"usage_rate": threshold()}, scopes, CAL)
    by_scope = {r.scope: r for r in results}
    assert by_scope["month 2024-01"].status == PASS and by_scope["month 2024-01"].observed == 1.0
    assert by_scope["month 2024-01"].rows == 3  # the DNP rows are not in the population
    feb = by_scope["month 2024-02"]
    assert feb.status == FAIL and feb.observed == pytest.approx(2 / 3) and feb.failing == 1
    assert (feb.start_date, feb.end_date) == (D(2024, 2, 1), D(2024, 2, 1))
    assert "below 100% on 1 date(s): 2024-02-01" in feb.details
    assert by_scope["all"].observed == pytest.approx(5 / 6)
    # Measured over every row, as the old single threshold did, DNP rows look like failures.
    everyone = threshold(population=parse_population(None))
    old = checks.coverage_results("t.players", checks.coverage_by_date(players_frame(), {"usage_rate": everyone}), {"usage_rate": everyone}, scopes[:1], CAL)
    assert old[0].observed == pytest.approx(5 / 12)


def test_regression_compares_with_the_preceding_range_of_equal_length():
    t = {"usage_rate": threshold(min_coverage=0.0)}
    daily = checks.coverage_by_date(players_frame(), t)
    jan, feb = Scope("month 2024-01", tuple(CAL[:3])), Scope("month 2024-02", tuple(CAL[3:]))
    (result,) = checks.regression_results("t.players", daily, t, [(feb, jan)], max_drop=0.10)
    assert result.status == FAIL and result.observed == pytest.approx(2 / 3) and result.threshold == pytest.approx(0.9)
    (result,) = checks.regression_results("t.players", daily, t, [(feb, jan)], max_drop=0.40)
    assert result.status == PASS


def test_duplicates_on_the_natural_key():
    frame = pl.DataFrame({"game_date": [D(2024, 1, 1)] * 3 + [D(2024, 1, 3)], "game_id": ["a", "a", "b", "a"], "player_id": [1, 1, 1, 1]})
    (result,) = checks.duplicate_results("t.players", frame, ("game_id", "player_id"), Scope("all", tuple(CAL)))
    assert result.status == FAIL and result.failing == 2
    assert "game_id=a player_id=1 x3" in result.details


def test_impossible_values_and_flagged_short_stints():
    settings = load_settings(project_validation_config(), registry())
    rules = [r for r in settings.bounds]
    frame = pl.DataFrame(
        {
            "game_date": [D(2024, 1, 1)] * 6,
            "game_id": ["g"] * 6,
            "player_id": [1, 2, 3, 4, 5, 6],
            "minutes": [71.0, 30.0, 0.2, 10.0, 20.0, 0.0],
            "usage_rate": [20.0, 20.0, 572.9, 101.0, 20.0, None],
            "reb": [5, -1, 0, 0, 0, 0],
            "efg_pct": [1.5, 0.5, 0.0, 1.6, None, None],
            "zone_share": [0.5, 1.0000000000000002, 1.2, 0.0, 0.0, 0.0],
        }
    )
    results = {(r.check, r.feature): r for r in checks.bounds_results("t.players", frame, rules, ("game_id", "player_id"), Scope("all", (D(2024, 1, 1),)))}
    assert results[("impossible_values", "minutes")].failing == 1 and "player_id=1" in results[("impossible_values", "minutes")].details
    assert results[("impossible_values", "reb")].failing == 1
    assert results[("impossible_values", "efg_pct")].failing == 1  # 1.5 is the maximum, 1.6 is not
    assert results[("impossible_values", "zone_share")].failing == 1  # a rounding error is not outside 0..1
    usage = results[("impossible_values", "usage_rate")]
    assert usage.status == FAIL and usage.failing == 1 and "player_id=4" in usage.details  # 101 with 10 minutes
    flagged = results[("flagged_values", "usage_rate")]
    assert flagged.status == INFO and flagged.failing == 1 and "usage_rate=572.9, minutes=0.2" in flagged.details


def test_identities_name_the_rows_that_break_them():
    settings = load_settings(project_validation_config(), registry())
    frame = pl.DataFrame(
        {"game_date": [D(2024, 1, 1), D(2024, 1, 3)], "game_id": ["g1", "g2"], "team_abbr": ["BOS", "NYK"],
         "reb": [10, 9], "oreb": [3, 3], "dreb": [7, 7], "pts": [7, 7], "fgm": [2, 2], "fg3m": [1, 1], "ftm": [2, 2],
         "fga": [5, 5], "fg3a": [2, 2], "fta": [2, 2]}
    )  # fmt: skip
    results = {r.feature: r for r in checks.identity_results("t.teams", frame, settings.identities, ("game_id", "team_abbr"), Scope("all", tuple(CAL)))}
    assert results["rebounds"].status == FAIL and results["rebounds"].failing == 1
    assert "game_id=g2 team_abbr=NYK on 2024-01-03: 9 vs 10" in results["rebounds"].details
    assert results["points"].status == PASS and results["points"].rows == 2
    assert "points_allowed" not in results  # the table has none of its columns


def test_cross_layer_sums_and_keys_name_the_game():
    settings = load_settings(project_validation_config(), registry())
    sums = next(c for c in settings.cross if c.name == "player_points_equal_team_points")
    keys = next(c for c in settings.cross if c.name == "team_games_have_players")
    players = pl.DataFrame(
        {"game_date": [D(2024, 1, 1)] * 4 + [D(2024, 1, 3)], "game_id": ["g1", "g1", "g1", "g1", "g3"],
         "team_abbr": ["BOS", "BOS", "NYK", "NYK", "LAL"], "pts": [50, 60, 40, 62, 100]}
    )  # fmt: skip
    teams = pl.DataFrame(
        {"game_date": [D(2024, 1, 1), D(2024, 1, 1), D(2024, 1, 3)], "game_id": ["g1", "g1", "g2"],
         "team_abbr": ["BOS", "NYK", "MIA"], "pts": [112, 102, 99]}
    )  # fmt: skip
    scope = Scope("all", (D(2024, 1, 1), D(2024, 1, 3)))
    (result,) = checks.sums_match_results(sums, players, teams, scope)
    assert result.status == FAIL and result.failing == 1 and result.rows == 2
    assert "game g1 BOS on 2024-01-01: pts 110 in player_game_summary vs pts 112 in team_offense_game_summary" in result.details
    (result,) = checks.keys_match_results(keys, teams, players, scope)
    assert result.status == FAIL and result.failing == 2
    assert "1 in team_offense_game_summary without rows in player_game_summary on 2024-01-03, e.g. g2 MIA" in result.details
    assert "1 in player_game_summary without rows in team_offense_game_summary on 2024-01-03, e.g. g3 LAL" in result.details
    # A player row left out in quarantine mode explains a difference: flagged, not failed.
    quarantined = pl.DataFrame({"game_date": [D(2024, 1, 1), D(2024, 1, 3)], "game_id": ["g1", "g3"], "team_abbr": ["BOS", "LAL"]})
    (result,) = checks.sums_match_results(sums, players, teams, scope, excused=quarantined)
    assert (result.status, result.failing) == (INFO, 0)
    assert "1 more differ but have rows in quarantine (excused, not failed): g1 BOS (2024-01-01)" in result.details
    (result,) = checks.keys_match_results(keys, teams, players, scope, excused=quarantined)
    assert (result.status, result.failing) == (FAIL, 1) and "g2 MIA" in result.details and "excused, not failed): g3 LAL" in result.details


def test_gaps_are_runs_of_consecutive_game_dates():
    expected = CAL
    present = {CAL[0], CAL[3], CAL[5]}
    results = checks.gap_results("t.players", expected, present, CAL, "critical", Scope("all", tuple(CAL)), {CAL[1]: "failed"})
    assert [(r.start_date, r.end_date, r.failing) for r in results] == [(CAL[1], CAL[2], 2), (CAL[4], CAL[4], 1)]
    assert "run state of those dates: failed 1, no run state 1" in results[0].details
    assert date_runs([CAL[1], CAL[2], CAL[4]], CAL) == [(CAL[1], CAL[2], 2), (CAL[4], CAL[4], 1)]


def test_exit_codes():
    def result(status, severity):
        return Result("t", "coverage", "f", "all", None, None, None, None, status, severity)

    assert exit_code([result(PASS, "critical"), result(SKIP, "critical"), result(INFO, "warning")]) == 0
    assert exit_code([result(PASS, "critical"), result(FAIL, "warning")]) == 2
    assert exit_code([result(FAIL, "warning"), result(FAIL, "critical")]) == 1


# -- the Validator against a small warehouse ---------------------------------------------------


@table(
    "nba_test.players",
    schema={"game_id": pl.String, "game_date": pl.Date, "team_abbr": pl.String, "player_id": pl.Int32,
            "did_not_play": pl.Boolean, "minutes": pl.Float64, "usage_rate": pl.Float64, "pts": pl.Int16},
    key=("game_id", "player_id"), inputs=[Input("nba_test.teams")], phase=3,
)  # fmt: skip
def _players(dates, teams):
    raise NotImplementedError


@table(
    "nba_test.teams",
    schema={"game_id": pl.String, "game_date": pl.Date, "team_abbr": pl.String, "pts": pl.Int16},
    key=("game_id", "team_abbr"), inputs=[], phase=3,
)  # fmt: skip
def _teams(dates):
    raise NotImplementedError


@table(
    "nba_test.form",
    schema={"game_date": pl.Date, "player_id": pl.Int32, "points_avg": pl.Float64},
    key=("game_date", "player_id"), inputs=[Input("nba_test.players")], phase=4, bootstrap_days=14,
)  # fmt: skip
def _form(dates, players):
    raise NotImplementedError


@table(
    "nba_test.not_built",
    schema={"game_date": pl.Date, "x": pl.Int32},
    key=("game_date",), inputs=[], phase=4,
)  # fmt: skip
def _not_built(dates):
    raise NotImplementedError


SMALL = {t.name: t for t in (_teams, _players, _form, _not_built)}
# Two seasons, a game every second day; the second season's opener is 2023-10-24.
DAYS = [D(2022, 10, 18) + dt.timedelta(days=2 * i) for i in range(40)] + [D(2023, 10, 24) + dt.timedelta(days=2 * i) for i in range(40)]
SMALL_CONFIG = {
    "populations": {"played": ["did_not_play == false", "minutes > 0"]},
    "thresholds": {"players": {"usage_rate": {"min_coverage": 1.0, "population": "played", "severity": "critical", "reason": "r"}}},
    "bounds": {"minutes": {"columns": ["minutes"], "min": 0, "max": 70}},
    "identities": {},
    "cross_layer": {
        "points": {"kind": "sums_match", "detail": "players", "total": "teams", "keys": ["game_id", "team_abbr"], "columns": {"pts": "pts"}},
        "keys": {"kind": "keys_match", "left": "teams", "right": "players", "keys": ["game_id", "team_abbr"]},
    },
    "same_dates": {"phases": [3, 4]},
}


@pytest.fixture
def small_world(tmp_path):
    """A warehouse with two seasons of a players/teams pair and a Phase 4 table that skips each
    season's 14-day bootstrap window; 2022-12-31 (more than a season before the newest date) lost
    its players and form rows."""
    calendar = Calendar(
        dates=tuple(DAYS),
        season_of={d: "2022-23" if d.year == 2022 or d < D(2023, 7, 1) else "2023-24" for d in DAYS},
        opener_of={"2022-23": D(2022, 10, 18), "2023-24": D(2023, 10, 24)},
    )
    hole = D(2022, 12, 31)
    assert hole in DAYS
    players, teams, form, state = [], [], [], {}
    for i, day in enumerate(DAYS):
        gid = f"g{i}"
        teams += [(gid, day, "BOS", 30), (gid, day, "NYK", 20)]
        players += [(gid, day, "BOS", 1, False, 30.0, 25.0, 30), (gid, day, "NYK", 2, False, 30.0, 25.0, 20), (gid, day, "NYK", 3, True, None, None, 0)]
        for name in ("nba_test.players", "nba_test.teams"):
            state[(name, day)] = DateState(OK, 1, "x", "y", 2)
        if calendar.in_bootstrap(day, 14):
            state[("nba_test.form", day)] = DateState(SKIPPED_BOOTSTRAP, 1, "x", "empty", 0)
        else:
            form.append((day, 1, 25.0))
            state[("nba_test.form", day)] = DateState(OK, 1, "x", "y", 1)
    frames = {
        "nba_test.players": pl.DataFrame(players, schema=SMALL["nba_test.players"].schema, orient="row"),
        "nba_test.teams": pl.DataFrame(teams, schema=SMALL["nba_test.teams"].schema, orient="row"),
        "nba_test.form": pl.DataFrame(form, schema=SMALL["nba_test.form"].schema, orient="row"),
    }
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    for name, frame in frames.items():
        warehouse.ensure_table(TableSchema(name, SMALL[name].schema))
        warehouse.write([PartitionWrite(name, DAYS, frame.filter(pl.col("game_date") != hole) if name != "nba_test.teams" else frame)])
    yield warehouse, calendar, RunState(state), hole
    warehouse.close()


def test_validator_finds_an_old_gap_and_skips_bootstrap_windows_and_unbuilt_tables(small_world):
    warehouse, calendar, state, hole = small_world
    settings = load_settings(SMALL_CONFIG, SMALL)
    results = Validator(settings, warehouse, calendar, state, SMALL).run({name: DAYS for name in SMALL})
    failed = [r for r in results if r.status == FAIL]
    gaps = [r for r in failed if r.check == "gaps"]
    assert {(r.table, r.start_date, r.end_date) for r in gaps} == {("nba_test.players", hole, hole), ("nba_test.form", hole, hole)}
    assert "run state of those dates: ok 1" in gaps[0].details
    # The bootstrap windows (2 x 7 game dates here) are not gaps, and no coverage check fails.
    form_gap = next(r for r in gaps if r.table == "nba_test.form")
    assert form_gap.rows == len(DAYS) - 14
    assert not [r for r in failed if r.check == "coverage"]
    # Team-games without players on that date, and the same-dates check, point at it too.
    keys = next(r for r in failed if r.feature == "keys")
    assert "2 in teams without rows in players on 2022-12-31" in keys.details
    same = next(r for r in failed if r.check == "same_dates")
    assert (same.table, same.start_date, same.related) == ("nba_test.players", hole, ("nba_test.teams",))
    assert {r.check for r in failed} == {"gaps", "cross_layer", "same_dates"}
    skipped = [r for r in results if r.table == "nba_test.not_built"]
    assert len(skipped) == 1 and skipped[0].status == SKIP and "not built yet" in skipped[0].details
    assert exit_code(results) == 1
    # Only the dates asked for: a range after the hole passes.
    later = [d for d in DAYS if d > D(2023, 2, 1)]
    assert exit_code(Validator(settings, warehouse, calendar, state, SMALL).run({name: later for name in SMALL})) == 0


def test_coverage_failure_and_report_storage(small_world, tmp_path):
    warehouse, calendar, state, hole = small_world
    broken = [d for d in DAYS if D(2023, 11, 1) <= d <= D(2023, 11, 30)]
    frame = warehouse.read("nba_test.players", start=broken[0], end=broken[-1]).with_columns(usage_rate=pl.lit(None, pl.Float64))
    warehouse.write([PartitionWrite("nba_test.players", broken, frame)])
    settings = load_settings({**SMALL_CONFIG, "ranges": ["2023-11-10..2023-12-31", "2022-10-01..2022-10-31"]}, SMALL)
    results = Validator(settings, warehouse, calendar, state, SMALL).run({"nba_test.players": DAYS})
    months = {r.scope: r for r in results if r.check == "coverage"}
    given = months["range 2023-11-10..2023-12-31"]
    assert given.status == FAIL and given.rows == 2 * len([d for d in DAYS if D(2023, 11, 10) <= d <= D(2023, 12, 31)])
    assert given.failing == 2 * len([d for d in broken if d >= D(2023, 11, 10)])
    assert months["range 2022-10-01..2022-10-31"].status == PASS
    assert months["month 2023-11"].status == FAIL and months["month 2023-11"].observed == 0.0
    assert (months["month 2023-11"].start_date, months["month 2023-11"].end_date) == (broken[0], broken[-1])
    assert months["month 2023-10"].status == PASS and months["month 2023-12"].status == PASS
    assert months["season 2022-23"].status == PASS and months["season 2023-24"].status == FAIL
    regression = next(r for r in results if r.check == "regression" and r.scope == "month 2023-11")
    assert regression.status == FAIL
    # Terminal, JSON and warehouse copies of the same results.
    from rich.console import Console

    console = Console(record=True, width=200)
    render(results, console, "test")
    text = console.export_text()
    assert "critical checks failed" in text and "month 2023-11" in text
    path = write_json(results, tmp_path / "reports" / "r.json", {"run_id": "r1"})
    document = json.loads(path.read_text())
    assert document["summary"]["exit_code"] == 1
    assert document["results"][0]["status"] == FAIL  # failures first
    assert store(warehouse, results, "r1", "validate") == len(results)
    stored = warehouse.read(VALIDATION_RESULTS.name)
    assert stored.height == len(results) and set(stored["run_id"]) == {"r1"}
    assert stored.filter((pl.col("check_name") == "coverage") & (pl.col("scope") == "month 2023-11"))["passed"].to_list() == [False]


def test_the_gate_waits_for_later_levels_and_returns_the_failing_tables(small_world, tmp_path):
    from types import SimpleNamespace

    from omegaconf import OmegaConf
    from rich.console import Console

    from pipeline.validation.gate import make_gate

    warehouse, calendar, state, hole = small_world
    plan = SimpleNamespace(tables={name: SimpleNamespace(build={d: "missing" for d in DAYS}) for name in ("nba_test.teams", "nba_test.players")})
    for enforced in (True, False):
        cfg = OmegaConf.create({"validation": {**SMALL_CONFIG, "gate": enforced, "reports_dir": str(tmp_path / f"reports-{enforced}")}})
        console = Console(record=True, width=200)
        gate = make_gate(cfg, warehouse, calendar, state, run_id=f"run-{enforced}", plan=plan, tables=SMALL, console=console)
        # Level 1 built the teams; the players are rebuilt at the next level, so the checks that
        # compare the two wait for it instead of failing on the players' old rows.
        assert gate(["nba_test.teams"], {"nba_test.teams": DAYS}) == {}
        assert list(gate(["nba_test.players"], {"nba_test.players": DAYS})) == ["nba_test.players"]
        text = console.export_text()
        assert ("VALIDATION GATE FAILED for players" in text) is enforced
        assert ("VALIDATION GATE OVERRIDDEN (validation.gate=false)" in text) is not enforced
        document = json.loads((tmp_path / f"reports-{enforced}" / f"run-{enforced}-gate.json").read_text())
        assert [level["failing"] for level in document["levels"]] == [[], ["nba_test.players"]]
        failed = {(r["check"], r["feature"]) for r in document["results"] if r["status"] == FAIL}
        assert failed == {("gaps", ""), ("cross_layer", "keys"), ("same_dates", "phase 3")}
    stored = warehouse.read(VALIDATION_RESULTS.name, columns=["run_id", "context"])
    assert set(stored["run_id"]) == {"run-True", "run-False"} and set(stored["context"]) == {"gate"}
