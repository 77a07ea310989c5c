"""Alerts, sent for real: every event reaches a webhook on a local HTTP server and a mailbox on a
local SMTP server (STARTTLS, login); a dead endpoint changes nothing about the run; the secrets
(the webhook URL with its token, the SMTP password) appear in no output, file or table.

The drift alert is tested with the drift check itself, in tests/test_drift.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest
from alert_servers import PASSWORD_ENV, SMTP_PASSWORD, WEBHOOK_ENV, WEBHOOK_TOKEN, alert_env, alert_overrides, closed_port
from conftest import PROJECT_ROOT, Run, pipeline_config, read_table, run_in_process, unwrapped

from pipeline.alerts import events, watch
from pipeline.alerts.events import Event, messages
from pipeline.alerts.settings import load_settings
from pipeline.command import UsageError
from pipeline.runner.faults import FAULTS_ENV

DAY = "2024-01-10"
OFFENSE = "nba_analytics.team_offense_game_summary"


@pytest.fixture(autouse=True)
def _fresh_inboxes(webhook_server, smtp_server):
    webhook_server.inbox.clear()
    smtp_server.inbox.clear()
    webhook_server.status[0] = 200


def secrets(webhook_server) -> list[str]:
    return [webhook_server.url, WEBHOOK_TOKEN, SMTP_PASSWORD]


def assert_no_secrets(webhook_server, run: Run, workdir: Path) -> None:
    """Neither the output, nor any file the run wrote, nor any table holds a secret."""
    for secret in secrets(webhook_server):
        assert secret not in run.output
        for path in (p for p in workdir.rglob("*") if p.is_file() and p.suffix != ".duckdb" and ".wal" not in p.name):
            assert secret not in path.read_text(errors="replace"), f"{secret!r} in {path}"
    warehouse = workdir / "warehouse.duckdb"
    if warehouse.exists():
        with duckdb.connect(str(warehouse), read_only=True) as con:
            columns = con.execute(
                "SELECT table_schema, table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
            ).fetchall()
            for schema, table, column in columns:
                for secret in secrets(webhook_server):
                    found = con.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains("{column}", ?)', [secret]).fetchone()[0]
                    assert found == 0, f"{secret!r} in {schema}.{table}.{column}"


def newest_run(workdir: Path) -> dict:
    """The run_history row of the newest run in the warehouse under ``workdir`` (a copy holds the runs that built it)."""
    return read_table(workdir / "warehouse.duckdb", "nba_orchestration.run_history", order_by="started_at").row(-1, named=True)


def received(webhook_server, smtp_server, kinds: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Wait until both servers have a message per kind (its title's start, ``kinds``); return
    {kind: webhook text} and {kind: mail body}."""
    posts = webhook_server.inbox.wait_for(lambda items: all(any(p["text"].startswith(f"nba-pipeline: {t}") for p in items) for t in kinds.values()), "webhook posts")
    mails = smtp_server.inbox.wait_for(lambda items: all(any(m["Subject"].strip().startswith(f"[nba-pipeline] {t}") for m in items) for t in kinds.values()), "mails")
    hooks = {k: next(p["text"] for p in posts if p["text"].startswith(f"nba-pipeline: {t}")) for k, t in kinds.items()}
    bodies = {k: next(m.get_content() for m in mails if m["Subject"].strip().startswith(f"[nba-pipeline] {t}")) for k, t in kinds.items()}
    assert all(p["path"] == f"/services/{WEBHOOK_TOKEN}" for p in posts)  # posted to the URL the environment gave
    assert all(m["To"] == "team@example.com" and m["From"] == "nba-pipeline@localhost" for m in mails)
    return hooks, bodies


# -- messages and settings, without a run --------------------------------------------------------------


def test_one_message_per_kind_of_event_with_every_finding_in_it():
    found = [
        Event("run_failed", "run ended with 2 failed date(s)", ("a: 1 failed date",), "runs.html", "/logs/r.log"),
        Event("drift", "drift in 1 feature(s)", ("x.y null fraction",), "validation.html", "/reports/r.json"),
        Event("run_failed", "second finding", ("b: 1 failed date",), "runs.html", "/logs/r.log"),
    ]
    sent = messages(found, run_id="r1", task="run", host="h", docs_url="https://docs.example/nba")
    assert [m.kind for m in sent] == ["run_failed", "drift"]
    first = sent[0].text.splitlines()
    assert first[0] == "nba-pipeline: run ended with 2 failed date(s) (and 1 more)"
    assert first[1:5] == ["run ended with 2 failed date(s)", "a: 1 failed date", "second finding", "b: 1 failed date"]
    assert "docs: https://docs.example/nba/runs.html" in first and "report: /logs/r.log" in first
    assert sent[1].subject == "[nba-pipeline] drift in 1 feature(s)"


def test_a_secret_put_in_the_config_is_refused_without_being_repeated():
    url = f"https://hooks.example.com/services/{WEBHOOK_TOKEN}"
    cfg = pipeline_config([f"alerts.webhook.url_env='{url}'", "alerts.enabled=true"])
    with pytest.raises(UsageError, match=r"alerts.webhook.url_env: the name of an environment variable") as refused:
        load_settings(cfg.alerts)
    assert WEBHOOK_TOKEN not in str(refused.value)


def test_the_season_window_wraps_the_new_year():
    settings = load_settings(pipeline_config([]).alerts)  # 10-15 .. 06-30
    assert settings.in_season(dt.date(2025, 1, 3)) and settings.in_season(dt.date(2024, 10, 15)) and settings.in_season(dt.date(2025, 6, 30))
    assert not settings.in_season(dt.date(2025, 7, 1)) and not settings.in_season(dt.date(2025, 10, 14))


# -- events of a run ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_failed_dates_and_a_lock_taken_over_reach_the_webhook_and_the_mailbox(phase3_copy, tmp_path, webhook_server, smtp_server):
    """A run killed holding the DuckDB lock left its holder record; the next run takes over, and
    one of its dates fails: one message each, by both channels, recorded in run_history."""
    dead = {"run": "20240101T000000-dead", "pid": 2**22 + 12345, "host": socket.gethostname(), "since": "2024-01-01T00:00:00", "command": "python -m pipeline"}
    (tmp_path / "warehouse.duckdb.lock.holder").write_text(json.dumps(dead))
    run = run_in_process(
        tmp_path, f"tables=[{OFFENSE}]", f"dates.list=[{DAY}]", *alert_overrides(webhook_server, smtp_server),
        env={**alert_env(webhook_server), FAULTS_ENV: f"{OFFENSE}@{DAY}:fail"},
    )  # fmt: skip
    assert run.returncode == 1, run.output
    hooks, mails = received(webhook_server, smtp_server, {"run_failed": "run ended with 1 failed date(s)", "lock_taken_over": "warehouse lock taken over"})
    for text in (hooks["run_failed"], mails["run_failed"]):
        assert f"{OFFENSE}: 1 failed date(s): {DAY}" in text
        assert "retry: python -m pipeline" in text and f"dates.start={DAY}" in text  # its dependents through the season wait too
        assert f"report: {tmp_path / 'logs'}" in text  # the run's log
    for text in (hooks["lock_taken_over"], mails["lock_taken_over"]):
        assert "warehouse lock taken over from run 20240101T000000-dead" in text and "died without releasing the lock" in text
    assert len(webhook_server.inbox.items) == 2 and len(smtp_server.inbox.items) == 2  # one message per event
    row = newest_run(tmp_path)
    assert row["status"] == "failed" and row["exit_code"] == 1
    assert json.loads(row["dates_failed"]) == {OFFENSE: [DAY]}
    recorded = json.loads(row["alerts"])
    assert sorted((a["kind"], a["channel"], a["delivered"], a["attempts"]) for a in recorded) == [
        ("lock_taken_over", "email", True, 1), ("lock_taken_over", "webhook", True, 1),
        ("run_failed", "email", True, 1), ("run_failed", "webhook", True, 1),
    ]  # fmt: skip
    assert_no_secrets(webhook_server, run, tmp_path)


@pytest.mark.slow
def test_a_failed_gate_says_the_table_check_dates_threshold_and_value(phase3_copy, tmp_path, webhook_server, smtp_server):
    run = run_in_process(
        tmp_path, "tables=[player_game_summary]", f"dates.list=[{DAY}]", "validation.bounds.minutes.max=40",
        *alert_overrides(webhook_server, smtp_server), env=alert_env(webhook_server),
    )  # fmt: skip
    assert run.returncode == 1, run.output
    hooks, mails = received(webhook_server, smtp_server, {"gate_failed": "validation gate failed for player_game_summary"})
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        most, over = con.execute(
            f"SELECT max(minutes), count(*) FILTER (WHERE minutes > 40) FROM nba_analytics.player_game_summary WHERE game_date = '{DAY}'"
        ).fetchone()
    assert over > 0  # the planted threshold really is crossed on that date
    for text in (hooks["gate_failed"], mails["gate_failed"]):
        line = next(x for x in text.splitlines() if "impossible_values minutes" in x)
        # the table, check and dates; the value (rows outside) against the threshold (none allowed); the rule and the worst value
        assert line.startswith(f"nba_analytics.player_game_summary: impossible_values minutes all on {DAY}: observed {over} against threshold 0 ")
        assert "(rule minutes (0..40)" in line and f"..{most:.4g};" in line
        assert f"report: {tmp_path / 'reports'}" in text
    assert_no_secrets(webhook_server, run, tmp_path)


@pytest.mark.slow
def test_a_failed_backup_is_sent(tmp_path, webhook_server, smtp_server, phase3_copy):
    not_a_folder = tmp_path / "backups-are-here"
    not_a_folder.write_text("a file where the backup folder should be")
    run = run_in_process(tmp_path, "task=backup", f"backup.target={not_a_folder}", *alert_overrides(webhook_server, smtp_server), env=alert_env(webhook_server))
    assert run.returncode == 1, run.output
    hooks, mails = received(webhook_server, smtp_server, {"backup_failed": "backup into backup.target failed"})
    for text in (hooks["backup_failed"], mails["backup_failed"]):
        assert str(not_a_folder) in text  # the error names the folder
    assert_no_secrets(webhook_server, run, tmp_path)


@pytest.mark.slow
def test_watch_finds_what_only_time_reveals(main_command, tmp_path, webhook_server, smtp_server):
    """task=watch on a warehouse with graded predictions planted worse than the baselines, a
    slate for today without predictions, no backup, and box scores long past inside a season
    window of the whole year: one message per finding, exit 1."""
    workdir, _ = main_command
    shutil.copy(workdir / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    model = [f"training.model_dir={workdir / 'model'}"]
    for task in ("predict", "grade"):
        run = run_in_process(tmp_path, f"task={task}", "dates.start=2025-06-05", "dates.end=2025-06-22", *model)
        assert run.returncode == 0, run.output
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:  # the model, 8 points off on every graded row
        con.execute("UPDATE nba_predictions.prediction_accuracy SET predicted_points = predicted_points + 8, absolute_error = abs(predicted_points + 8 - actual_points)")
    today = dt.datetime.now(ZoneInfo("America/New_York")).date()
    slates = tmp_path / "slates"
    slates.mkdir()
    slate = pl.read_csv(PROJECT_ROOT / "data/examples/slates/slate_2025-06-22.csv")
    season = f"{today.year if today.month >= 7 else today.year - 1}-{(today.year + (1 if today.month >= 7 else 0)) % 100:02d}"
    slate.with_columns(game_date=pl.lit(str(today)), game_id=pl.lit(99900001), season=pl.lit(season), season_type=pl.lit("regular")).write_csv(slates / "tonight.csv")
    backups = tmp_path / "backups"
    backups.mkdir()
    run = run_in_process(
        tmp_path, "task=watch", f"data.slate_dir={slates}", f"backup.target={backups}", "alerts.season_window.start=01-01",
        "alerts.season_window.end=12-31", "alerts.predictions_due_hours=24", *model, *alert_overrides(webhook_server, smtp_server),
        env=alert_env(webhook_server),
    )  # fmt: skip
    assert run.returncode == 1, run.output
    kinds = {
        "box_scores_stale": "no new box scores for", "predictions_due": "no predictions for 1 slate date(s)",
        "backup_stale": f"no complete backup under {backups}", "model_worse": "model worse than the",
    }  # fmt: skip
    hooks, mails = received(webhook_server, smtp_server, kinds)
    newest = dt.date(2025, 6, 22)
    assert f"no new box scores for {(today - newest).days} days (newest 2025-06-22)" in hooks["box_scores_stale"]
    assert f"{today}: first tip-off" in hooks["predictions_due"] and "has no row for it" in mails["predictions_due"]
    # The model's and the best baseline's MAE, as the alert says them, against the same rows worked out here.
    graded = read_table(tmp_path / "warehouse.duckdb", "nba_predictions.prediction_accuracy").filter(pl.col("played"))
    features = read_table(tmp_path / "warehouse.duckdb", "nba_predictions.ml_feature_store").select(
        "game_id", "player_id", "points_avg_last_5", "points_avg_last_10", "points_avg_season"
    )
    rows = graded.join(features, on=["game_id", "player_id"]).drop_nulls(["points_avg_last_5", "points_avg_last_10", "points_avg_season"])
    model_mae = rows["absolute_error"].mean()
    core_mae = (0.35 * rows["points_avg_last_5"] + 0.40 * rows["points_avg_last_10"] + 0.25 * rows["points_avg_season"] - rows["actual_points"]).abs().mean()
    said = re.search(r"MAE ([\d.]+) against (.+) ([\d.]+) on the same ([\d,]+) graded player-games", hooks["model_worse"])
    assert said is not None, hooks["model_worse"]
    assert float(said[1]) == pytest.approx(model_mae, abs=5e-4) and int(said[4].replace(",", "")) == rows.height
    assert float(said[3]) <= core_mae + 5e-4 and float(said[3]) < model_mae  # the best baseline is at least as good as the rules core
    assert len(webhook_server.inbox.items) == 4 and len(smtp_server.inbox.items) == 4
    assert_no_secrets(webhook_server, run, tmp_path)


# -- a dead endpoint; the doctor -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_dead_endpoint_is_retried_recorded_and_changes_nothing(phase3_copy, tmp_path, webhook_server, monkeypatch):
    dead_hook = f"http://127.0.0.1:{closed_port()}/services/{WEBHOOK_TOKEN}"
    dead_mail = ["alerts.smtp.host=127.0.0.1", f"alerts.smtp.port={closed_port()}", "alerts.smtp.starttls=false", "alerts.smtp.to=[team@example.com]"]
    run = run_in_process(
        tmp_path, f"tables=[{OFFENSE}]", f"dates.list=[{DAY}]", "alerts.enabled=true", f"alerts.webhook.url_env={WEBHOOK_ENV}",
        "alerts.attempts=2", "alerts.retry_backoff_seconds=0.05", *dead_mail,
        env={WEBHOOK_ENV: dead_hook, FAULTS_ENV: f"{OFFENSE}@{DAY}:fail"},
    )  # fmt: skip
    assert run.returncode == 1, run.output  # what the failed date makes it, as without alerts
    assert "alert '[nba-pipeline] run ended with 1 failed date(s) in 1 table(s)' NOT delivered by webhook after 2 attempt(s)" in unwrapped(run.output)
    row = newest_run(tmp_path)
    assert row["status"] == "failed" and row["exit_code"] == 1
    recorded = json.loads(row["alerts"])
    assert {(a["channel"], a["delivered"], a["attempts"]) for a in recorded} == {("webhook", False, 2), ("email", False, 2)}
    assert all("ConnectionRefused" in a["error"] or "Connection refused" in a["error"] or "Errno 111" in a["error"] for a in recorded), recorded
    logged = [json.loads(line) for line in (tmp_path / "logs" / "alerts.jsonl").read_text().splitlines()]
    assert [(a["channel"], a["delivered"]) for a in logged] == [(a["channel"], a["delivered"]) for a in recorded]
    for text in (run.output, (tmp_path / "logs" / "alerts.jsonl").read_text(), row["alerts"]):
        assert dead_hook not in text and WEBHOOK_TOKEN not in text
    # The same failing run with alerts off ends the same way.
    quiet = run_in_process(tmp_path, f"tables=[{OFFENSE}]", f"dates.list=[{DAY}]", env={FAULTS_ENV: f"{OFFENSE}@{DAY}:fail"})
    assert quiet.returncode == run.returncode


def test_doctor_checks_the_variables_the_alerts_name_without_showing_them(tmp_path, webhook_server, smtp_server):
    on = ["alerts.enabled=true", f"alerts.webhook.url_env={WEBHOOK_ENV}", *smtp_server.overrides(), f"backup.target={tmp_path / 'b'}"]
    missing = run_in_process(tmp_path, "task=doctor", *on)
    assert missing.returncode == 1
    text = unwrapped(missing.output)
    assert f"FAIL alerts: alerts.webhook.url_env: the environment variable {WEBHOOK_ENV} is not set" in text
    assert f"FAIL alerts: alerts.smtp.password_env: the environment variable {PASSWORD_ENV} is not set" in text
    present = run_in_process(tmp_path, "task=doctor", *on, env=alert_env(webhook_server))
    text = unwrapped(present.output)
    assert f"ok alerts: alerts.webhook.url_env: {WEBHOOK_ENV} is set (not shown)" in text
    assert f"ok alerts: smtp: 127.0.0.1:{smtp_server.port} (STARTTLS, login as nba-alerts) to team@example.com" in text
    for secret in secrets(webhook_server):
        assert secret not in present.output
    assert webhook_server.inbox.items == [] and smtp_server.inbox.items == []  # the doctor sends nothing


def test_the_alert_texts_of_each_backup_and_data_event():
    """What each watch finding says, from given inputs (the end-to-end test checks they are sent)."""
    now = dt.datetime(2025, 1, 10, 12, 0)
    stale = events.backup_stale("gs://b/nba", dt.datetime(2025, 1, 8, 12, 0), now, 36)
    assert stale.title == "newest complete backup is 48 hours old" and "alerts.backup_max_age_hours is 36" in stale.lines[0]
    box = events.box_scores_stale(dt.date(2025, 1, 6), dt.date(2025, 1, 10), 2, "/raw")
    assert box.title == "no new box scores for 4 days (newest 2025-01-06)"


# -- when task=watch finds something: its checks on given inputs ------------------------------------------


def test_box_scores_are_stale_past_the_days_allowed_and_only_in_season():
    settings = load_settings(pipeline_config([]).alerts)  # stale_after_days 2, season 10-15 .. 06-30
    noon = dt.datetime(2025, 1, 10, 17, 0)  # 12:00 Eastern (UTC-5 in January) on 2025-01-10
    assert watch.box_scores_stale(dt.date(2025, 1, 8), noon, settings, "/raw") is None  # 2 days old: allowed
    stale = watch.box_scores_stale(dt.date(2025, 1, 7), noon, settings, "/raw")  # 3 days old
    assert stale is not None and stale.title == "no new box scores for 3 days (newest 2025-01-07)"
    # 03:00 UTC on 2025-01-11 is still 22:00 on 2025-01-10 in New York: 2 days, allowed.
    assert watch.box_scores_stale(dt.date(2025, 1, 8), dt.datetime(2025, 1, 11, 3, 0), settings, "/raw") is None
    # Out of season (2025-08-01), a newest box score of 2025-06-22 is no news.
    assert watch.box_scores_stale(dt.date(2025, 6, 22), dt.datetime(2025, 8, 1, 16, 0), settings, "/raw") is None
    assert watch.box_scores_stale(None, noon, settings, "/raw") is None


def test_a_slate_date_is_due_from_hours_before_its_first_tipoff_until_a_day_after():
    settings = load_settings(pipeline_config([]).alerts)  # predictions_due_hours 2, first_tipoff 19:00 Eastern
    day = dt.date(2025, 1, 10)
    # 19:00 Eastern on 2025-01-10 is 00:00 UTC on the 11th (EST, UTC-5); in October (EDT, UTC-4) 23:00 UTC.
    assert watch.default_tipoff(day, settings.first_tipoff) == dt.datetime(2025, 1, 11, 0, 0)
    assert watch.default_tipoff(dt.date(2024, 10, 22), settings.first_tipoff) == dt.datetime(2024, 10, 22, 23, 0)

    def due(now: dt.datetime, predicted=frozenset(), tipoffs=None) -> list[str]:
        """The detail lines of the dates found due."""
        found = watch.predictions_due([day], set(predicted), tipoffs or {}, now, settings)
        return [line for e in found for line in e.lines if line.startswith(f"{day}:")]

    first = f"{day}: first tip-off 2025-01-11 00:00 UTC"
    tail = "and nba_predictions.player_points_predictions has no row for it"

    assert due(dt.datetime(2025, 1, 10, 21, 59)) == []  # 2 h 1 min before 00:00 UTC: not yet
    assert due(dt.datetime(2025, 1, 10, 22, 0)) == [f"{first} in 2.0 hours {tail}"]  # exactly 2 h before
    assert due(dt.datetime(2025, 1, 10, 22, 0), predicted={day}) == []  # predicted: nothing due
    assert due(dt.datetime(2025, 1, 12, 0, 0)) == [f"{first} passed 24.0 hours ago {tail}"]  # a day after tip-off: still reported
    assert due(dt.datetime(2025, 1, 12, 0, 1)) == []  # later: history
    # A prop line's tip-off (earlier than the default) moves the deadline: 17:30 UTC, due from 15:30.
    early = {day: dt.datetime(2025, 1, 10, 17, 30)}
    assert due(dt.datetime(2025, 1, 10, 15, 29), tipoffs=early) == []
    assert due(dt.datetime(2025, 1, 10, 15, 30), tipoffs=early) == [f"{day}: first tip-off 2025-01-10 17:30 UTC in 2.0 hours {tail}"]
