"""What the docs show, read once: the declarations, the run state, the profiles, validation
results, run history, backups and models. Reads only (the warehouse opened read-only, the
backup folder and the models' files); every figure a page shows comes from here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig

from pipeline.calendar import Calendar
from pipeline.history import RUN_HISTORY
from pipeline.profile import TABLE_PROFILE
from pipeline.state import FAILED, OK, RUN_STATE, SKIPPED_BOOTSTRAP, RunState, coverage_frame
from pipeline.tables import Table, registry
from pipeline.validation.config import Settings, load_settings
from pipeline.validation.report import VALIDATION_RESULTS
from pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class BackupView:
    target: str
    listed: list = field(default_factory=list)  # pipeline.backup.retention.Listed, oldest first
    newest: Any = None  # the newest complete one
    verified: bool | None = None  # None: not checked
    problem: str | None = None  # why it does not verify, or why the folder cannot be listed
    max_age_hours: float = float("inf")  # alerts.backup_max_age_hours: older is late


@dataclass
class SiteData:
    tables: dict[str, Table]
    calendar: Calendar
    state: RunState
    validation: Settings
    coverage: pl.DataFrame  # per table, season and month: ok / failed / missing / ... / rows
    rows_per_date: pl.DataFrame  # table_name, game_date, rows_written (run state, ok dates)
    latest_profile: pl.DataFrame  # table_profile on each table's newest profiled date
    results: pl.DataFrame  # validation_results of the newest runs
    runs: pl.DataFrame  # run_history, newest first
    backups: BackupView
    models: list[dict]  # metrics.json of every model under training.models_root, newest first
    latest_model_dir: Path | None
    graded: pl.DataFrame  # prediction_accuracy rows of players who played, with the baselines (training.monitor)
    warehouse: str
    built_at: dt.datetime

    def status_of(self, table: str) -> str:
        """``ok`` (every date done), ``failed`` (a failed date), ``incomplete`` (dates missing),
        ``unbuilt`` (no date done)."""
        rows = self.coverage.filter(pl.col("table") == table)
        if rows.is_empty() or (rows["ok"].sum() + rows["bootstrap_skipped"].sum()) == 0:
            return "unbuilt"
        if rows["failed"].sum():
            return "failed"
        return "incomplete" if rows["missing"].sum() else "ok"


def collect(cfg: DictConfig, warehouse: Warehouse, calendar: Calendar) -> SiteData:
    tables = registry(cfg.phase4.bootstrap_days)
    state = RunState.load(warehouse)
    docs = cfg.get("docs") or {}
    return SiteData(
        tables=tables,
        calendar=calendar,
        state=state,
        validation=load_settings(cfg.get("validation"), tables),
        coverage=coverage_frame(tables, calendar, state, by_month=True),
        rows_per_date=_rows_per_date(warehouse),
        latest_profile=_latest_profile(warehouse),
        results=_results(warehouse, int(docs.get("validation_runs", 30))),
        runs=_runs(warehouse, int(docs.get("runs_shown", 100))),
        backups=_backups(cfg, bool(docs.get("verify_backup", True))),
        models=_models(Path(cfg.training.models_root)),
        latest_model_dir=_latest_model_dir(Path(cfg.training.models_root)),
        graded=_graded(warehouse),
        warehouse=warehouse.describe(),
        built_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0),
    )


def _rows_per_date(warehouse: Warehouse) -> pl.DataFrame:
    if not warehouse.exists(RUN_STATE.name):
        return pl.DataFrame(schema={"table_name": pl.String, "game_date": pl.Date, "rows_written": pl.Int64, "status": pl.String})
    rows = warehouse.read(RUN_STATE.name, columns=["table_name", "game_date", "rows_written", "status"])
    return rows.filter(pl.col("status").is_in([OK, SKIPPED_BOOTSTRAP, FAILED])).sort("table_name", "game_date")


def _latest_profile(warehouse: Warehouse) -> pl.DataFrame:
    """Each table's profile on its newest date with rows."""
    if not warehouse.exists(TABLE_PROFILE.name):
        return pl.DataFrame(schema=TABLE_PROFILE.columns)
    newest = (
        warehouse.read(TABLE_PROFILE.name, columns=["table_name", "game_date", "row_count"])
        .filter(pl.col("row_count") > 0)
        .group_by("table_name")
        .agg(pl.col("game_date").max())
    )
    if newest.is_empty():
        return pl.DataFrame(schema=TABLE_PROFILE.columns)
    rows = warehouse.read(TABLE_PROFILE.name, start=newest["game_date"].min(), end=newest["game_date"].max())
    return rows.join(newest, on=["table_name", "game_date"], how="semi")


def _results(warehouse: Warehouse, runs: int) -> pl.DataFrame:
    """The results of the newest ``runs`` validation runs (task=validate, or a run's gates)."""
    if not warehouse.exists(VALIDATION_RESULTS.name):
        return pl.DataFrame(schema=VALIDATION_RESULTS.columns)
    days = warehouse.dates_present(VALIDATION_RESULTS.name, partition_by="run_date")
    frame = pl.DataFrame(schema=VALIDATION_RESULTS.columns)
    # Newest days first, until enough runs are in (a day may hold many).
    for start in range(len(days) - 1, -1, -7):
        first = days[max(0, start - 6)]
        frame = pl.concat([warehouse.read(VALIDATION_RESULTS.name, start=first, end=days[start], partition_by="run_date"), frame])
        if frame["run_id"].n_unique() >= runs:
            break
    newest = frame.group_by("run_id").agg(pl.col("checked_at").max()).sort("checked_at", descending=True).head(runs)
    return frame.join(newest.select("run_id"), on="run_id", how="semi")


def _runs(warehouse: Warehouse, shown: int) -> pl.DataFrame:
    if not warehouse.exists(RUN_HISTORY.name):
        return pl.DataFrame(schema=RUN_HISTORY.columns)
    return warehouse.read(RUN_HISTORY.name, partition_by="run_date").sort("started_at", descending=True).head(shown)


def _backups(cfg: DictConfig, verify: bool) -> BackupView:
    from pipeline.backup.manifest import BackupError, owned_tables
    from pipeline.backup.restore import verify_backup
    from pipeline.backup.retention import list_backups
    from pipeline.backup.task import target_folder

    from pipeline.alerts.settings import load_settings as alert_settings

    view = BackupView(str(cfg.backup.target), max_age_hours=alert_settings(cfg.get("alerts")).backup_max_age_hours)
    try:
        target = target_folder(cfg)
        view.target = target.url
        view.listed = list_backups(target)
    except BackupError as exc:
        view.problem = str(exc)
        return view
    complete = [b for b in view.listed if b.complete]
    view.newest = complete[-1] if complete else None
    if view.newest is not None and verify:
        try:
            verify_backup(target.child(view.newest.name), owned_tables())
            view.verified = True
        except BackupError as exc:
            view.verified, view.problem = False, str(exc)
    return view


def _models(root: Path) -> list[dict]:
    found = []
    for path in sorted(root.glob("*/metrics.json")) if root.exists() else []:
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("docs: %s is not readable (%s); left out", path, exc)
            continue
        metrics["_dir"] = str(path.parent)
        found.append(metrics)
    return sorted(found, key=lambda m: str(m.get("created_at", "")), reverse=True)


def _latest_model_dir(root: Path) -> Path | None:
    from training.artifacts import latest_model_dir

    try:
        return latest_model_dir(root)
    except Exception:  # noqa: BLE001 - no model yet: the page says so
        return None


def _graded(warehouse: Warehouse) -> pl.DataFrame:
    from training.monitor import graded_with_baselines

    return graded_with_baselines(warehouse)
