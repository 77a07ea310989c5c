"""``task=watch``: what only time reveals, checked from cron (hourly, say), changing nothing.

- ``box_scores_stale``: inside ``alerts.season_window``, the newest box-score date in
  ``data.raw_dir`` is more than ``alerts.stale_after_days`` days old (the scrapers stopped);
- ``predictions_due``: a date known from a slate has no row in
  ``nba_predictions.player_points_predictions`` and its first tip-off is less than
  ``alerts.predictions_due_hours`` away (or passed within the last day);
- ``backup_stale``: the newest complete backup under ``backup.target`` is older than
  ``alerts.backup_max_age_hours``, or there is none;
- ``model_worse``: the model's graded predictions over the last ``alerts.model_window_dates``
  graded dates are worse than the best baseline on the same rows (:mod:`training.monitor`).

Each finding is printed and sent as an alert (``conf/alerts/``); exit 1 if anything was found,
so a cron without alerts still mails it. The warehouse is opened read-only: while a run holds a
DuckDB file, its checks are skipped, said so.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

import polars as pl
from omegaconf import DictConfig
from rich.markup import escape

from pipeline.alerts import events
from pipeline.alerts.events import Event
from pipeline.alerts.settings import AlertSettings, load_settings
from pipeline.backup.manifest import BackupError
from pipeline.command import EXIT_FAILED, EXIT_OK
from pipeline.progress import console
from pipeline.state import utcnow
from pipeline.warehouse import Warehouse, WarehouseError, WarehouseLocked, open_warehouse
from pipeline.warehouse.source import RawSource
from pipeline.warehouse.source.specs import GAME_DATE_TIME_ZONE

log = logging.getLogger(__name__)

PREDICTIONS = "nba_predictions.player_points_predictions"
PROP_LINES = "nba_raw.prop_lines"
# A date whose first tip-off passed longer ago than this is history, not a missed deadline.
PAST_TIPOFF_GRACE = dt.timedelta(days=1)


def watch_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from pipeline.history import model_events, record_of

    settings = load_settings(cfg.get("alerts"))
    now = utcnow()
    found: list[Event] = []
    source = RawSource.from_config(cfg.data)
    calendar = source.calendar()
    played = [d for d in calendar.dates if calendar.is_played(d)]
    stale = box_scores_stale(played[-1] if played else None, now, settings, str(cfg.data.raw_dir))
    found += [stale] if stale else []
    slate_dates = [d for d in calendar.dates if not calendar.is_played(d)]
    try:
        with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
            found += predictions_due(slate_dates, predicted_dates(warehouse), first_tipoffs(warehouse, slate_dates), now, settings)
            found += model_events(warehouse, settings.model_window_dates)
    except WarehouseLocked as exc:
        console.print(f"[yellow]warehouse checks skipped: {escape(str(exc))}", highlight=False, soft_wrap=True)
    except WarehouseError as exc:
        console.print(f"[yellow]warehouse checks skipped: {escape(str(exc))}", highlight=False, soft_wrap=True)
    found += backup_events(cfg, now, settings)
    for event in found:
        console.print(f"[bold red]{event.kind}[/]: {escape(event.title)}", highlight=False, soft_wrap=True)
        for line in event.lines:
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    record = record_of(run_id)
    if record is not None:
        record.events += found
    if not found:
        console.print("watch: nothing wrong (box scores, slates' predictions, backups, the model)")
        return EXIT_OK
    return EXIT_FAILED


# -- the checks (pure but for their inputs) -----------------------------------------------------------


def box_scores_stale(newest: dt.date | None, now: dt.datetime, settings: AlertSettings, raw_dir: str) -> Event | None:
    """Inside the season window, no box score for more than ``stale_after_days`` days."""
    today = eastern_date(now)
    if newest is None or not settings.in_season(today) or (today - newest).days <= settings.stale_after_days:
        return None
    return events.box_scores_stale(newest, today, settings.stale_after_days, raw_dir)


def predictions_due(
    slate_dates: Sequence[dt.date], predicted: set[dt.date], tipoffs: Mapping[dt.date, dt.datetime], now: dt.datetime, settings: AlertSettings
) -> list[Event]:
    """Slate dates without predictions whose first tip-off (``tipoffs``, else ``first_tipoff``
    Eastern) is due within ``predictions_due_hours`` or passed within a day."""
    due = {}
    for day in slate_dates:
        tipoff = tipoffs.get(day) or default_tipoff(day, settings.first_tipoff)
        if day not in predicted and tipoff - dt.timedelta(hours=settings.predictions_due_hours) <= now <= tipoff + PAST_TIPOFF_GRACE:
            due[day] = tipoff
    return [events.predictions_due(due, now, settings.predictions_due_hours)] if due else []


def eastern_date(moment: dt.datetime) -> dt.date:
    """The US Eastern date (game dates' time zone) of a naive UTC time."""
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(GAME_DATE_TIME_ZONE)).date()


def default_tipoff(day: dt.date, clock: dt.time) -> dt.datetime:
    """``clock`` (US Eastern) on ``day``, as naive UTC."""
    local = dt.datetime.combine(day, clock, tzinfo=ZoneInfo(GAME_DATE_TIME_ZONE))
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


# -- what they read ---------------------------------------------------------------------------------


def predicted_dates(warehouse: Warehouse) -> set[dt.date]:
    return set(warehouse.dates_present(PREDICTIONS)) if warehouse.exists(PREDICTIONS) else set()


def first_tipoffs(warehouse: Warehouse, days: Sequence[dt.date]) -> dict[dt.date, dt.datetime]:
    """The earliest tip-off of each date's prop lines (UTC), where the lines give one."""
    if not days or not warehouse.exists(PROP_LINES):
        return {}
    rows = warehouse.read(PROP_LINES, start=min(days), end=max(days), columns=["game_date", "tipoff_at"])
    first = rows.drop_nulls("tipoff_at").group_by("game_date").agg(pl.col("tipoff_at").min())
    return dict(first.iter_rows())


def backup_events(cfg: DictConfig, now: dt.datetime, settings: AlertSettings) -> list[Event]:
    """The newest complete backup under ``backup.target``, if older than ``backup_max_age_hours``."""
    from pipeline.backup.retention import list_backups
    from pipeline.backup.task import target_folder

    try:
        target = target_folder(cfg)
        complete = [b for b in list_backups(target) if b.complete]
    except BackupError as exc:
        return [events.backup_failed(f"cannot list the backups: {exc}", str(cfg.backup.target), "")]
    newest = max((b.started_at for b in complete), default=None)
    if newest is not None and (now - newest).total_seconds() <= settings.backup_max_age_hours * 3600:
        return []
    return [events.backup_stale(target.url, newest, now, settings.backup_max_age_hours)]
