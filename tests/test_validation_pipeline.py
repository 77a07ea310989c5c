"""Validation end to end: real `python -m pipeline` runs (with their gates) and
`python -m pipeline task=validate` on the bundled history, with numbers checked against the raw
files, and the failures the old system missed reproduced on purpose."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import RAW_DIR, Run, query, run_in_process
from pipeline.tables import registry

PGS = "nba_analytics.player_game_summary"
TEAM_OFFENSE = "nba_analytics.team_offense_game_summary"


pytestmark = pytest.mark.slow


def downstream_of(name: str) -> list[str]:
    tables = registry()
    found: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {t for t, spec in tables.items() if set(spec.upstream_tables) & frontier} - found
        found |= frontier
    return sorted(found)


def raw_players() -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in sorted(RAW_DIR.glob("player_boxscores_*.parquet"))])


def reports(workdir: Path, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "reports").glob(f"*-{kind}.json"))]


def pipeline_run(workdir: Path, *overrides: str) -> Run:
    return run_in_process(workdir, f"validation.reports_dir={workdir / 'reports'}", *overrides)


def validate(workdir: Path, *overrides: str) -> tuple[Run, dict]:
    before = {p.name for p in (workdir / "reports").glob("*-validate.json")} if (workdir / "reports").exists() else set()
    run = pipeline_run(workdir, "task=validate", *overrides)
    new = [p for p in sorted((workdir / "reports").glob("*-validate.json")) if p.name not in before]
    assert len(new) == 1, run.output
    return run, json.loads(new[0].read_text())


def find(report: dict, **match) -> list[dict]:
    return [r for r in report["results"] if all(r[k] == v for k, v in match.items())]


def one(report: dict, **match) -> dict:
    found = find(report, **match)
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.fixture(scope="module")
def built(main_command) -> tuple[Path, Run]:
    """Every table over the whole bundled history, built once by a real run with its gates:
    README's main command (conftest.main_command, its gate report under ``reports/``)."""
    workdir, output = main_command
    return workdir / "warehouse.duckdb", Run(0, output, "")


@pytest.fixture
def copy(built, tmp_path) -> Path:
    shutil.copy(built[0], tmp_path / "warehouse.duckdb")
    return tmp_path


def test_the_full_build_passes_every_gate(built):
    path, run = built
    text = " ".join(run.output.split())  # undo the terminal's line wrapping
    gates = text.count("validation gate:")
    assert gates >= 4, run.output  # one line per level: raw, schedule/team, team offense, player/defense (+ Phase 4)
    assert text.count(" checks passed") == gates, run.output
    assert "FAILED" not in run.output and "OVERRIDDEN" not in run.output
    (report,) = reports(path.parent, "gate")
    assert report["summary"]["failed"] == 0 and report["summary"]["exit_code"] == 0
    stored = query(path, f"SELECT count(*), count(DISTINCT context) FROM nba_orchestration.validation_results WHERE run_id = '{report['run_id']}'")
    assert stored == [(report["summary"]["checks"], 1)]


def test_validate_passes_on_the_bundled_data_with_numbers_checked_by_hand(copy):
    run, report = validate(copy)
    assert run.returncode == 0, run.output
    assert report["summary"]["failed"] == 0 and report["summary"]["exit_code"] == 0
    assert "all checks passed" in run.output

    raw = raw_players()
    played = raw.filter(~pl.col("did_not_play") & (pl.col("minutes") > 0))
    dnp = raw.filter(pl.col("did_not_play"))
    usage = one(report, table=PGS, check="coverage", feature="usage_rate", scope="all")
    assert (usage["rows"], usage["observed"], usage["status"]) == (played.height, 1.0, "pass")
    assert played.height == 84_221
    january = played.filter(pl.col("game_date").is_between(dt.date(2024, 1, 1), dt.date(2024, 1, 31))).height
    assert one(report, table=PGS, check="coverage", feature="usage_rate", scope="month 2024-01")["rows"] == january
    season = one(report, table=PGS, check="coverage", feature="usage_rate", scope="season 2023-24")
    assert season["rows"] == played.filter(pl.col("season") == "2023-24").height

    # A DNP row without a comment exists (Thomas Bryant, 2024-02-23): a warning threshold of 99%.
    comment = one(report, table="nba_raw.player_boxscores", check="coverage", feature="comment", scope="all")
    assert (comment["rows"], comment["failing"]) == (dnp.height, dnp.filter(pl.col("comment").is_null()).height) == (19_745, 1)
    assert comment["observed"] == pytest.approx(19_744 / 19_745)

    # Usage above 100 only for short stints: recomputed here from the raw files and team logs.
    logs = pl.read_parquet(RAW_DIR / "team_game_logs_regular_season.parquet").select("game_id", "team_abbr", logged_minutes="min")
    teams = (
        raw.group_by("game_id", "team_abbr")
        .agg(t_fga=pl.col("fga").sum(), t_fta=pl.col("fta").sum(), t_tov=pl.col("tov").sum(), summed=pl.col("minutes").sum())
        .join(logs, on=["game_id", "team_abbr"], how="left")
        .with_columns(team_minutes=pl.coalesce(pl.col("logged_minutes").cast(pl.Float64), (pl.col("summed") / 5).round() * 5))
    )
    usage_rate = (
        played.join(teams, on=["game_id", "team_abbr"])
        .with_columns(
            usage=100 * (pl.col("fga") + 0.44 * pl.col("fta") + pl.col("tov")) * (pl.col("team_minutes") / 5)
            / (pl.col("minutes") * (pl.col("t_fga") + 0.44 * pl.col("t_fta") + pl.col("t_tov")))
        )
    )  # fmt: skip
    above = usage_rate.filter(pl.col("usage") > 100)
    assert above.height == 21 and above["minutes"].max() < 2.5
    flagged = one(report, table=PGS, check="flagged_values", feature="usage_rate")
    assert (flagged["failing"], flagged["status"]) == (21, "info")
    bounded = one(report, table=PGS, check="impossible_values", feature="usage_rate")
    assert (bounded["rows"], bounded["failing"]) == (usage_rate.filter(pl.col("minutes") >= 5).height, 0)

    team_games = raw.select("game_id", "team_abbr").unique().height
    assert one(report, feature="raw_player_points_equal_team_points")["rows"] == team_games == 7_920
    assert one(report, feature="player_points_equal_team_points")["rows"] == team_games
    assert one(report, table="nba_raw.player_boxscores", check="duplicates")["rows"] == raw.height

    # Gaps over the whole history: every table has rows on every game date (Phase 4 from each opener).
    dates = sorted(set(raw["game_date"]))
    for name in registry():
        if name in ("nba_raw.quarantine", "nba_raw.prop_lines"):  # validation.may_be_empty: lines cover part of one season
            assert not find(report, table=name, check="gaps"), name
            continue
        gap = one(report, table=name, check="gaps")
        assert gap["status"] == "pass", gap
        assert gap["rows"] == len(dates), name

    stored = query(copy / "warehouse.duckdb", f"SELECT count(*), sum(passed::int) FROM nba_orchestration.validation_results WHERE run_id = '{report['run_id']}'")
    assert stored == [(len(report["results"]), len(report["results"]))]


def test_usage_over_every_row_is_the_old_false_failure(copy):
    run, report = validate(copy, "tables=[player_game_summary]", "validation.thresholds.player_game_summary.usage_rate.population=all")
    assert run.returncode == 1, run.output
    usage = one(report, table=PGS, check="coverage", feature="usage_rate", scope="all")
    assert usage["rows"] == 103_981 and usage["observed"] == pytest.approx(84_221 / 103_981)  # 81.0%: the DNP rows
    months = find(report, table=PGS, check="coverage", feature="usage_rate", status="fail")
    assert len([m for m in months if m["scope"].startswith("month")]) == 27  # every month fails, for the wrong reason


def test_only_warnings_failing_gives_exit_code_2(copy):
    run, report = validate(copy, "tables=[player_boxscores]", "validation.thresholds.player_boxscores.comment.min_coverage=1.0")
    assert run.returncode == 2, run.output
    failed = [r for r in report["results"] if r["status"] == "fail"]
    assert failed and {r["severity"] for r in failed} == {"warning"}
    assert {r["scope"] for r in failed} == {"all", "season 2023-24", "month 2024-02"}
    month = one(report, check="coverage", feature="comment", scope="month 2024-02")
    assert (month["start_date"], month["end_date"], month["failing"]) == ("2024-02-23", "2024-02-23", 1)
    assert "only warnings failed" in run.output


def test_a_date_deleted_years_before_the_newest_is_a_gap(copy):
    warehouse = copy / "warehouse.duckdb"
    hole = dt.date(2023, 1, 18)
    dates = sorted(set(raw_players()["game_date"]))
    assert hole in dates and dates[-1] - hole > dt.timedelta(days=800)
    with duckdb.connect(str(warehouse)) as con:
        deleted = con.execute(f"DELETE FROM {PGS} WHERE game_date = ?", [hole]).fetchone()[0]
    assert deleted > 0  # the run state still says ok: the silent hole the old monitors missed

    run, report = validate(copy)
    assert run.returncode == 1, run.output
    gaps = find(report, table=PGS, check="gaps", status="fail")
    assert [(g["start_date"], g["end_date"], g["failing"]) for g in gaps] == [(str(hole), str(hole), 1)]
    assert "run state of those dates: ok 1" in gaps[0]["details"]
    assert one(report, table=PGS, check="same_dates")["start_date"] == str(hole)
    assert str(hole) in run.output

    # Looking only at recent days, as the old validation did, misses it.
    recent, _ = validate(copy, "dates.start=2024-10-01")
    assert recent.returncode == 0, recent.output


def test_a_team_row_with_wrong_points_fails_the_cross_layer_check_naming_the_game(copy):
    warehouse = copy / "warehouse.duckdb"
    game_id, team, day = query(warehouse, f"SELECT game_id, team_abbr, game_date FROM {TEAM_OFFENSE} WHERE game_date = '2024-03-01' ORDER BY game_id, team_abbr LIMIT 1")[0]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"UPDATE {TEAM_OFFENSE} SET pts = pts + 3 WHERE game_id = ? AND team_abbr = ?", [game_id, team])

    run, report = validate(copy, "tables=[team_offense_game_summary]")
    assert run.returncode == 1, run.output
    check = one(report, check="cross_layer", feature="player_points_equal_team_points")
    assert check["status"] == "fail" and check["failing"] == 1
    assert (check["start_date"], check["end_date"]) == (str(day), str(day))
    assert f"game {game_id} {team} on {day}" in check["details"]
    assert game_id in run.output


def remove_team_offense(workdir: Path, start: str, end: str) -> list[dt.date]:
    """Delete team_offense_game_summary (rows and run state) on start..end; return those game dates."""
    with duckdb.connect(str(workdir / "warehouse.duckdb")) as con:
        for table in (TEAM_OFFENSE, "nba_orchestration.run_state"):
            where = " AND table_name = ?" if table.endswith("run_state") else ""
            con.execute(f"DELETE FROM {table} WHERE game_date BETWEEN ? AND ?{where}", [start, end] + ([TEAM_OFFENSE] if where else []))
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return sorted(d for d in set(raw_players()["game_date"]) if first <= d <= last)


def forced(start: str, end: str) -> tuple[str, ...]:
    """Build player_game_summary on start..end although its upstream is incomplete there."""
    return ("tables=[player_game_summary]", f"dates.start={start}", f"dates.end={end}", "backfill.force=true", "backfill.with_upstream=false", "backfill.resume=false")


PHASE_4_IMPOSSIBLE = {
    "nba_analytics.upcoming_player_game_context": ("games_last_7d", "-3", "game_counts"),
    "nba_analytics.upcoming_team_game_context": ("win_pct_season", "1.5", "fractions"),
    "nba_precompute.player_daily_cache": ("minutes_avg_season", "100", "minutes_per_game"),
    "nba_precompute.player_shot_zone_analysis": ("pct_pts_2pt_season", "2.0", "fractions"),
    "nba_precompute.team_defense_zone_analysis": ("opp_fg3_pct_allowed_season", "-0.1", "fractions"),
    "nba_precompute.player_composite_factors": ("fatigue_score", "120", "fatigue"),
    "nba_predictions.ml_feature_store": ("points_avg_season", "-5", "averages"),
}


def test_impossible_values_in_every_phase_4_table_fail_naming_the_column(copy):
    day = "2024-01-06"
    with duckdb.connect(str(copy / "warehouse.duckdb")) as con:
        for table, (column, value, _) in PHASE_4_IMPOSSIBLE.items():
            con.execute(f"UPDATE {table} SET {column} = {value} WHERE rowid = (SELECT min(rowid) FROM {table} WHERE game_date = '{day}')")
    short = ",".join(t.split(".")[1] for t in PHASE_4_IMPOSSIBLE)
    run, report = validate(copy, f"tables=[{short}]", f"dates.start={day}", f"dates.end={day}")
    assert run.returncode == 1, run.output
    failed = {(r["table"], r["feature"]) for r in find(report, check="impossible_values", status="fail")}
    assert failed == {(table, column) for table, (column, _, _) in PHASE_4_IMPOSSIBLE.items()}
    for table, (column, value, rule) in PHASE_4_IMPOSSIBLE.items():
        (result,) = [r for r in find(report, table=table, check="impossible_values", feature=column) if f"rule {rule} " in r["details"]]
        assert result["failing"] == 1 and result["status"] == "fail" and result["severity"] == "critical"


def test_the_old_usage_failure_is_caught_by_the_gate_and_phase_4_does_not_run(copy):
    january = remove_team_offense(copy, "2024-01-01", "2024-01-31")
    before = query(copy / "warehouse.duckdb", "SELECT table_name, count(*), max(finished_at) FROM nba_orchestration.run_state GROUP BY 1 ORDER BY 1")
    run = pipeline_run(copy, *forced("2023-12-01", "2024-02-29"))
    assert run.returncode == 1, run.output
    assert "VALIDATION GATE FAILED for player_game_summary" in run.output
    (report,) = reports(copy, "gate")
    run_id = report["run_id"]
    coverage = {r["scope"]: r for r in find(report, table=PGS, check="coverage", feature="usage_rate")}
    assert coverage["month 2024-01"]["status"] == "fail" and coverage["month 2024-01"]["observed"] == 0.0
    assert (coverage["month 2024-01"]["start_date"], coverage["month 2024-01"]["end_date"]) == (str(january[0]), str(january[-1]))
    assert f"below 100% on {len(january)} date(s): {january[0]}..{january[-1]}" in coverage["month 2024-01"]["details"]
    assert coverage["month 2023-12"]["status"] == "pass" and coverage["month 2024-02"]["status"] == "pass"
    assert {r["scope"] for r in find(report, check="coverage", status="fail")} == {"all", "season 2023-24", "month 2024-01"}
    assert report["levels"][-1]["failing"] == [PGS]

    # Nothing downstream of player_game_summary ran: no run-state row of this run, nothing rewritten.
    warehouse = copy / "warehouse.duckdb"
    ran = query(warehouse, f"SELECT DISTINCT table_name FROM nba_orchestration.run_state WHERE run_id = '{run_id}'")
    assert ran == [(PGS,)]
    after = query(warehouse, "SELECT table_name, count(*), max(finished_at) FROM nba_orchestration.run_state GROUP BY 1 ORDER BY 1")
    assert [row for row in after if row[0] != PGS] == [row for row in before if row[0] != PGS]
    for name in downstream_of(PGS):
        assert name in run.output  # planned, and reported blocked
    stored = query(
        warehouse,
        "SELECT scope FROM nba_orchestration.validation_results WHERE run_id = "
        f"'{run_id}' AND context = 'gate' AND check_name = 'coverage' AND feature = 'usage_rate' AND NOT passed ORDER BY scope",
    )
    assert stored == [("all",), ("month 2024-01",), ("season 2023-24",)]

    # The dates that failed their gate are `failed` in the run state, so that a later run cannot
    # build dependents on them; a plain rerun builds the missing upstream, rebuilds and re-checks.
    marked = query(warehouse, f"SELECT DISTINCT status, last_error FROM nba_orchestration.run_state WHERE table_name = '{PGS}' AND run_id = '{run_id}'")
    assert len(marked) == 1 and marked[0][0] == "failed"
    assert "validation gate failed: coverage usage_rate" in marked[0][1] and "month 2024-01" in marked[0][1]
    assert "retry the failed dates" in run.output
    rerun = pipeline_run(copy, "tables=[player_game_summary]", "dates.start=2023-12-01", "dates.end=2024-02-29")
    assert rerun.returncode == 0, rerun.output
    statuses = query(warehouse, "SELECT DISTINCT status FROM nba_orchestration.run_state WHERE status <> 'skipped_bootstrap'")
    assert statuses == [("ok",)]


def test_gate_false_runs_the_dependents_and_says_so_loudly(copy):
    # Late in the season, so that the dependents (season-to-date lookbacks) have few dates to redo.
    remove_team_offense(copy, "2024-04-12", "2024-04-14")
    run = pipeline_run(copy, *forced("2024-04-10", "2024-04-14"), "validation.gate=false")
    assert run.returncode == 2, run.output  # a gate failed, overridden
    assert "VALIDATION GATE OVERRIDDEN" in run.output and "validation.gate=false" in run.output
    (report,) = reports(copy, "gate")
    assert report["gate_enforced"] is False and report["levels"][0]["failing"] == [PGS]
    ran = {r[0] for r in query(copy / "warehouse.duckdb", f"SELECT DISTINCT table_name FROM nba_orchestration.run_state WHERE run_id = '{report['run_id']}'")}
    assert ran == {PGS, *downstream_of(PGS)}
