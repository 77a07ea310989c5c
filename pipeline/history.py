"""``nba_orchestration.run_history``: one row per run of a task that writes to the warehouse, and
what the run found wrong, sent as alerts.

The row is written as soon as the run holds the warehouse lock (``status`` ``running``, no end)
and completed when it lets go of the lock (its end, exit code and status; dates built and
failed per table, seconds per level, rows written, Ray nodes used, and the alerts sent with
what became of them), so a run that was killed stays ``running`` with no end: the docs show it
as such. Both writes replace the run's own row only (``run_id``), in the partition of the day
it started (``run_date``, UTC).

A :class:`RunRecord` follows one run: ``run_task`` opens it, the warehouse lock
(:func:`pipeline.command.hold_lock`) writes and completes the row, and what builds tables
(:func:`pipeline.build.build`) or validates reports to it. Its :meth:`RunRecord.finish` sends the
alerts (:mod:`pipeline.alerts`): a failure to send, or to write the row, is logged, never raised.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import polars as pl

from pipeline.alerts import Delivery, Event, dispatch, events, load_settings
from pipeline.state import utcnow
from pipeline.validation.results import DRIFT, failures
from pipeline.warehouse.base import PartitionWrite, TableSchema, Warehouse

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from pipeline.progress import RunSummary
    from pipeline.validation.results import Result

log = logging.getLogger(__name__)

RUNNING, OK, FAILED, WARNINGS = "running", "ok", "failed", "warnings"
STATUS_OF_CODE = {0: OK, 1: FAILED, 2: WARNINGS}

RUN_HISTORY = TableSchema(
    name="nba_orchestration.run_history",
    columns={
        "run_id": pl.String,
        "run_date": pl.Date,  # UTC date it started: the partition
        "task": pl.String,
        "overrides": pl.String,  # the command line's overrides, as a JSON list
        "host": pl.String,
        "pid": pl.Int64,
        "started_at": pl.Datetime("us"),  # UTC
        "ended_at": pl.Datetime("us"),  # NULL while running, or if the run was killed
        "status": pl.String,  # running | ok | failed | warnings
        "exit_code": pl.Int16,
        "error": pl.String,  # what stopped it, when something did
        "first_date": pl.Date,  # of the dates it built
        "last_date": pl.Date,
        "dates_built": pl.String,  # JSON {table: dates built}
        "dates_failed": pl.String,  # JSON {table: [failed dates]}
        "rows_written": pl.Int64,
        "level_seconds": pl.String,  # JSON [{"level": n, "tables": [...], "seconds": s}]
        "nodes": pl.String,  # JSON {Ray node ID: IP}
        "alerts": pl.String,  # JSON [{"kind", "channel", "delivered", "attempts", "error", "at"}]
    },
    partition_by="run_date",
    cluster_by=("task",),
)

_open: dict[str, "RunRecord"] = {}


def record_of(run_id: str) -> "RunRecord | None":
    """The record of run ``run_id``, while it runs in this process."""
    return _open.get(run_id)


class RunRecord:
    """One run's row of ``run_history`` and the events it alerts on."""

    def __init__(self, cfg: DictConfig, run_id: str, task: str, overrides: list[str], log_path: Path | None = None):
        self.run_id = run_id
        self.task = task
        self.overrides = list(overrides)
        self.log_path = str(Path(log_path).absolute()) if log_path else None
        self.log_dir = str(cfg.logs.dir) if cfg.get("logs") else None
        self.alerts = load_settings(cfg.get("alerts"))
        self.started_at = utcnow()
        self.events: list[Event] = []
        self.builds: list[RunSummary] = []
        self.exit_code: int | None = None
        self.deliveries: list[Delivery] = []
        self.row_written = False
        self.finished = False
        _open[run_id] = self

    # -- what the run reports -------------------------------------------------------------------

    def ended(self, code: int) -> int:
        """The task's exit code, as it will return it (before it lets go of the lock)."""
        self.exit_code = code
        return code

    def note_build(self, summary: RunSummary, gate_results: Iterable[Result], report: str | None, retry: str | None) -> None:
        """A build ended: its failed dates, failed gates and drift warnings become events."""
        self.builds.append(summary)
        report = str(Path(report).absolute()) if report else None
        if summary.failed_dates:
            self.events.append(events.run_failed(summary.failed_dates, summary.unfinished, retry, self.log_path or ""))
        results = list(gate_results)
        critical = [r for r in failures(results, "critical") if not r.check == DRIFT]
        if critical:
            self.events.append(events.gate_failed(critical, report or self.log_path or ""))
        self.note_drift(results, report)

    def note_drift(self, results: Iterable[Result], report: str | None) -> None:
        report = str(Path(report).absolute()) if report else None
        drifted = [r for r in failures(results) if r.check == DRIFT]
        if drifted:
            self.events.append(events.drift(drifted, report or self.log_path or ""))

    # -- the row --------------------------------------------------------------------------------

    def opened(self, warehouse: Warehouse) -> None:
        """The run holds the warehouse lock: note a lock taken over, and write the row (status ``running``)."""
        taken = getattr(warehouse, "lock_taken_over_from", None)
        if taken:
            self.events.append(events.lock_taken_over(taken, warehouse.describe(), self.log_path or ""))
        if not getattr(warehouse, "read_only", False):
            self.row_written = self._write(warehouse, self._row(ended=False))

    def finish(self, warehouse: Warehouse | None = None, error: BaseException | str | None = None, code: int | None = None) -> None:
        """The run ended (``warehouse``: while this run still holds its lock; ``code``: the exit
        code, when the task has returned it): the task's own events, the alerts sent, and the row
        completed. A second call does nothing."""
        if self.finished:
            return
        self.finished = True
        _open.pop(self.run_id, None)
        self.error = None if error is None else str(error)
        if self.exit_code is None:
            self.exit_code = code if code is not None else 1 if error is not None or any(not s.ok for s in self.builds) else 0
        if self.task == "backup" and self.exit_code != 0:
            self.events.append(events.backup_failed(self.error or "see the log", "backup.target", self.log_path or ""))
        if self.task == "grade" and warehouse is not None and error is None:
            self.events += model_events(warehouse, self.alerts.model_window_dates)
        self.deliveries = dispatch(self.events, self.alerts, run_id=self.run_id, task=self.task, log_dir=self.log_dir)
        if warehouse is not None and self.row_written:
            self._write(warehouse, self._row(ended=True))

    def _row(self, *, ended: bool) -> pl.DataFrame:
        built: dict[str, int] = {}
        failed: dict[str, list[str]] = {}
        levels: list[dict] = []
        nodes: dict[str, str] = {}
        rows = 0
        first = last = None
        for summary in self.builds:
            for table, outcome in summary.tables.items():
                built[table] = built.get(table, 0) + outcome.built
                rows += outcome.rows
                if outcome.failed:
                    failed.setdefault(table, []).extend(str(d) for d in sorted(outcome.failed))
            levels += summary.levels
            nodes.update(summary.nodes)
            if summary.first_date is not None:
                first = min(first or summary.first_date, summary.first_date)
                last = max(last or summary.last_date, summary.last_date)
        code = self.exit_code if ended else None
        return pl.DataFrame(
            [{
                "run_id": self.run_id,
                "run_date": self.started_at.date(),
                "task": self.task,
                "overrides": json.dumps(self.overrides),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self.started_at,
                "ended_at": utcnow() if ended else None,
                "status": STATUS_OF_CODE.get(code, FAILED) if ended else RUNNING,
                "exit_code": code,
                "error": self.alerts.redact(self.error) if ended and self.error else None,
                "first_date": first,
                "last_date": last,
                "dates_built": json.dumps(built),
                "dates_failed": json.dumps(failed),
                "rows_written": rows,
                "level_seconds": json.dumps(levels),
                "nodes": json.dumps(nodes),
                "alerts": json.dumps([d.to_dict() for d in self.deliveries]),
            }],
            schema=RUN_HISTORY.columns,
        )  # fmt: skip

    def _write(self, warehouse: Warehouse, row: pl.DataFrame) -> bool:
        try:
            warehouse.ensure_table(RUN_HISTORY)
            warehouse.write([PartitionWrite(RUN_HISTORY.name, [self.started_at.date()], row, where={"run_id": self.run_id}, partition_by="run_date")])
            return True
        except Exception as exc:  # noqa: BLE001 - the history must never fail the run it records
            log.warning("could not write run %s to %s: %s", self.run_id, RUN_HISTORY.name, self.alerts.redact(str(exc)))
            return False


def model_events(warehouse: Warehouse, window_dates: int) -> list[Event]:
    """The model against the best baseline on its last graded dates (training.monitor)."""
    from training.monitor import graded_against_baselines

    try:
        found = graded_against_baselines(warehouse, window_dates)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run is logged, not an alert
        log.warning("could not compare the graded predictions with the baselines: %s", exc)
        return []
    return [events.model_worse(found)] if found and found["model_mae"] > found["best_baseline_mae"] else []
