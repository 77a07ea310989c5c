"""Drift: a watched feature's null fraction or mean on a date against its trailing window of the
same season (``validation.drift``), from the profiles every run writes. Worked numbers by hand;
then the bundled data, which raises none, and a copy of its raw files where the shooting columns
of the newest dates went blank, which raises the warning and its alert, naming the features."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pytest
from alert_servers import alert_env, alert_overrides
from conftest import PROJECT_ROOT, pipeline_config, query, run_in_process

from pipeline.command import UsageError
from pipeline.tables import registry
from pipeline.tables.ml_feature_store import FEATURE_GROUPS
from pipeline.validation.config import load_settings
from pipeline.validation.drift import DriftGroup, DriftSettings, Limit, drift_results
from pipeline.validation.results import DRIFT, FAIL, PASS

TABLE = "nba_analytics.player_game_summary"
SEASON = "2023-24"
WINDOW = [0.20, 0.22, 0.18, 0.20, 0.21, 0.19, 0.20, 0.23, 0.17, 0.20]


def profile(values: list[float], *, start: dt.date = dt.date(2024, 1, 1), statistic: str = "null_fraction") -> pl.DataFrame:
    days = [start + dt.timedelta(days=i) for i in range(len(values))]
    other = "mean_value" if statistic == "null_fraction" else "null_fraction"
    return pl.DataFrame(
        {"game_date": days, "column_name": ["ts_pct"] * len(days), "row_count": [100] * len(days), statistic: values, other: [0.0] * len(days)}
    )


def check(frame: pl.DataFrame, checked: list[dt.date], *, window: int = 20, least: int = 10, limit: Limit = Limit(8, 0.2), season_of=None, mean=False):
    group = DriftGroup("box_scores", (TABLE,), ("ts_pct",), None, (), None if mean else limit, limit if mean else None)
    season_of = season_of or dict.fromkeys(frame["game_date"], SEASON)
    return drift_results(TABLE, frame, checked, season_of, {"ts_pct": group}, DriftSettings(window_dates=window, min_window_dates=least), "warning")


def test_a_null_fraction_that_jumps_drifts_worked_by_hand():
    # The window (10 earlier dates): sorted 0.17 0.18 0.19 0.20 0.20 0.20 0.20 0.21 0.22 0.23, median 0.20;
    # deviations from it sorted 0 0 0 0 0.01 0.01 0.02 0.02 0.03 0.03, MAD 0.01, scale 1.4826 * 0.01;
    # 0.90 is 0.70 off: robust z = 0.70 / 0.014826 = 47.2, and 0.70 >= 0.2.
    frame = profile([*WINDOW, 0.90])
    day = frame["game_date"][-1]
    [result] = check(frame, [day])
    assert (result.check, result.feature, result.scope, result.status, result.severity) == (DRIFT, "ts_pct", "null fraction", FAIL, "warning")
    assert (result.start_date, result.end_date, result.observed, result.threshold, result.failing) == (day, day, 0.90, 8, 1)
    assert f"{day}: 90.0% against a median of 20.0% (robust z 47.2)" in result.details


def test_a_change_too_small_to_matter_does_not_drift_however_steady_the_window():
    # 0.35 is 0.15 off the median: robust z 10.1 is above 8, but 0.15 is under min_change 0.2.
    frame = profile([*WINDOW, 0.35])
    [result] = check(frame, [frame["game_date"][-1]])
    assert result.status == PASS and result.failing == 0


def test_a_flat_window_takes_any_real_change_as_drift_but_not_none():
    frame = profile([0.0] * 10 + [0.0, 0.5])  # MAD 0: no change is not drift, a change of 0.5 is
    days = frame["game_date"].to_list()
    [result] = check(frame, days[-2:])
    assert result.failing == 1 and result.start_date == days[-1]


def test_windows_never_reach_into_the_season_before():
    """The jump on the first date of a season has no window: not checked at all (null fractions
    restart at every opener by design); ten dates in, it is."""
    frame = profile([*WINDOW, 0.90, *WINDOW, 0.90])
    days = frame["game_date"].to_list()
    season_of = {d: ("2023-24" if i < 10 else "2024-25") for i, d in enumerate(days)}
    assert check(frame, [days[10]], season_of=season_of) == []  # the opener of 2024-25: nothing before it in its season
    [result] = check(frame, [days[-1]], season_of=season_of)  # the new season's 11th date: its window is its own 10
    assert result.failing == 1 and result.start_date == days[-1]


def test_too_short_a_window_is_not_checked():
    frame = profile([*WINDOW[:9], 0.90])  # 9 earlier dates, 10 needed
    assert check(frame, [frame["game_date"][-1]]) == []


def test_the_window_is_the_newest_dates_only():
    # 5 old dates at 0.90, then WINDOW: with window_dates=10 only WINDOW counts (median 0.20, z 47.2
    # as above); with all 15 the median is the 8th of them sorted, 0.21, the deviations from it
    # sorted put MAD at 0.02 (its 8th), and z = 0.69 / (1.4826 * 0.02) = 23.3.
    frame = profile([0.90] * 5 + WINDOW + [0.90])
    day = frame["game_date"][-1]
    assert "against a median of 20.0% (robust z 47.2)" in check(frame, [day], window=10)[0].details
    assert "against a median of 21.0% (robust z 23.3)" in check(frame, [day], window=15)[0].details


def test_a_mean_drifts_by_its_relative_change():
    # means 10.0 +- 0.2; 13.0 is 30 % above the median 10.0 (min_change 0.3 of it) and z = 3 / (1.4826 * 0.1) = 20.2
    means = [10.0, 10.2, 9.8, 10.0, 10.1, 9.9, 10.0, 10.0, 10.2, 9.8]
    frame = profile([*means, 13.0], statistic="mean_value")
    [result] = check(frame, [frame["game_date"][-1]], limit=Limit(8, 0.3), mean=True)
    assert result.scope == "mean" and result.status == FAIL and "13 against a median of 10 (robust z 20.2)" in result.details
    frame = profile([*means, 12.9], statistic="mean_value")  # 29 %: under the relative change asked for
    assert check(frame, [frame["game_date"][-1]], limit=Limit(8, 0.3), mean=True)[0].status == PASS


def test_feature_groups_name_the_feature_store_columns_and_typos_are_refused():
    settings = load_settings(pipeline_config([]).validation, registry())
    watched = settings.drift.watched("nba_predictions.ml_feature_store", list(registry()["nba_predictions.ml_feature_store"].schema))
    assert {c for c, g in watched.items() if g.name == "recent_form"} == set(FEATURE_GROUPS["recent form"])
    with pytest.raises(UsageError, match=r"drift.groups.recent_form.feature_groups: no feature group 'recent fom'"):
        load_settings(pipeline_config(["validation.drift.groups.recent_form.feature_groups=[recent fom]"]).validation, registry())


# -- the pipeline ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_bundled_data_raises_no_drift(main_command, tmp_path):
    """Every date of every watched feature, against its window: in the main command's gates and
    in task=validate over the whole history."""
    workdir, _ = main_command
    gate = json.loads(next((workdir / "reports").glob("*-gate.json")).read_text())
    drift = [r for r in gate["results"] if r["check"] == DRIFT]
    assert len(drift) > 100 and all(r["status"] == PASS for r in drift)
    shutil.copy(workdir / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    run = run_in_process(tmp_path, "task=validate", f"validation.reports_dir={tmp_path / 'reports'}")
    assert run.returncode == 0, run.output
    report = json.loads(next((tmp_path / "reports").glob("*-validate.json")).read_text())
    checked = [r for r in report["results"] if r["check"] == DRIFT]
    assert {r["feature"] for r in checked} >= {"ts_pct", "points_avg_last_10"} and all(r["status"] == PASS for r in checked)
    assert sum(r["rows"] for r in checked) > 50_000  # feature-dates checked


def blank_shooting_on_the_newest_dates(raw: str, days: int = 2) -> list[dt.date]:
    """In a copy of the raw files: every player's shots, points and offensive rebounds on the
    newest dates made 0 (a feed that delivered empty shooting columns), rebounds kept equal to
    defensive rebounds, so every box-score identity still holds. Returns the dates."""
    path = f"{raw}/player_boxscores_2024-25.parquet"
    rows = pl.read_parquet(path)
    newest = sorted(rows["game_date"].unique())[-days:]
    blank = pl.col("game_date").is_in(newest)
    zeroed = {c: pl.when(blank).then(0).otherwise(pl.col(c)).cast(rows.schema[c]) for c in ("fgm", "fga", "fg3m", "fg3a", "ftm", "fta", "pts", "oreb")}
    rows.with_columns(**zeroed).with_columns(reb=pl.when(blank).then(pl.col("dreb")).otherwise(pl.col("reb")).cast(rows.schema["reb"])).write_parquet(path)
    return [d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)) for d in newest]


@pytest.mark.slow
def test_blank_shooting_on_the_newest_dates_raises_the_drift_warning_and_its_alert(phase3_copy, raw_copy, tmp_path, webhook_server, smtp_server):
    assert query(phase3_copy, "SELECT count(*) FROM nba_orchestration.validation_results WHERE check_name = 'drift' AND status = 'fail'") == [(0,)]
    days = blank_shooting_on_the_newest_dates(str(raw_copy))
    webhook_server.inbox.clear()
    run = run_in_process(
        tmp_path, "tables=[player_game_summary]", f"data.raw_dir={raw_copy}",
        *alert_overrides(webhook_server, smtp_server), env=alert_env(webhook_server),
    )  # fmt: skip
    assert run.returncode == 0, run.output  # a drift warns; the run's exit code is what it was
    post = webhook_server.inbox.wait_for(lambda items: any(p["text"].startswith("nba-pipeline: drift in") for p in items), "drift alert")
    text = next(p["text"] for p in post if p["text"].startswith("nba-pipeline: drift in"))
    mail = smtp_server.inbox.wait_for(lambda items: any(m["Subject"].strip().startswith("[nba-pipeline] drift in") for m in items), "drift mail")
    assert any("nba_analytics.player_game_summary.ts_pct null fraction: " in m.get_content() for m in mail)
    for feature in ("ts_pct null fraction", "efg_pct null fraction", "pts mean"):
        assert f"nba_analytics.player_game_summary.{feature}: " in text, text
    line = next(x for x in text.splitlines() if ".ts_pct null fraction" in x)
    assert f"{days[0]}: 100.0% against a median of" in line and f"{days[1]}: 100.0%" in line
    # task=validate over the same dates: the same drift, a warning: exit 2, in its report.
    validated = run_in_process(tmp_path, "task=validate", "tables=[player_game_summary]", f"data.raw_dir={raw_copy}", f"dates.start={days[0]}", f"validation.reports_dir={tmp_path / 'reports'}")
    assert validated.returncode == 2, validated.output
    report = json.loads(next((tmp_path / "reports").glob("*-validate.json")).read_text())
    drifted = {(r["feature"], r["scope"]) for r in report["results"] if r["check"] == DRIFT and r["status"] == "fail"}
    assert {("ts_pct", "null fraction"), ("efg_pct", "null fraction"), ("pts", "mean")} <= drifted
    assert all(r["severity"] == "warning" for r in report["results"] if r["check"] == DRIFT)


def test_the_raw_copy_helper_keeps_every_identity(tmp_path):
    """The planted change breaks no box-score identity (so only drift can see it)."""
    shutil.copytree(PROJECT_ROOT / "data" / "raw", tmp_path / "raw")
    days = blank_shooting_on_the_newest_dates(str(tmp_path / "raw"))
    rows = pl.read_parquet(tmp_path / "raw" / "player_boxscores_2024-25.parquet").filter(pl.col("game_date").is_in(days))
    assert rows.height > 0 and rows["pts"].sum() == 0
    assert (rows["reb"] == rows["oreb"] + rows["dreb"]).all() and (rows["pts"] == 2 * rows["fgm"] + rows["fg3m"] + rows["ftm"]).all()
