"""The tasks `python -m pipeline task=...` runs: what each opens, prints and returns as exit code."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections import defaultdict
from pathlib import Path

import polars as pl
from omegaconf import DictConfig, OmegaConf
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table as RichTable

from pipeline.backup.manifest import BackupError
from pipeline.build import Context, build
from pipeline.calendar import Calendar, date_runs, runs_text
from pipeline.command import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS, UsageError, fail, hold_lock
from pipeline.planner import Plan
from pipeline.progress import console
from pipeline.state import FAILED, coverage_frame
from pipeline.warehouse import Warehouse, WarehouseError, open_warehouse
from pipeline.tables._raw import RawDataError
from pipeline.validation import validate_task

log = logging.getLogger("pipeline")


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)


def setup_logging(cfg: DictConfig, run_id: str) -> Path:
    """Terminal gets INFO and up through rich; the run's own file under logs.dir gets DEBUG."""
    log_dir = Path(cfg.logs.dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{run_id}-{cfg.task}.log"
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_pipeline", False):
            root.removeHandler(handler)
            handler.close()
    terminal = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    terminal.setLevel(logging.INFO)
    to_file = logging.FileHandler(path)
    to_file.setLevel(logging.DEBUG)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler in (terminal, to_file):
        handler._pipeline = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in ("ray", "filelock", "urllib3", "matplotlib", "google", "gcsfs", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


# -- task=plan ---------------------------------------------------------------------------------


def print_plan(plan: Plan, calendar: Calendar) -> None:
    console.print(
        f"[bold]plan[/] for {len(plan.requested_tables)} requested table(s) on {len(plan.requested_dates)} date(s) "
        f"({plan.requested_dates[0]} .. {plan.requested_dates[-1]})"
    )
    grid = RichTable(show_lines=False)
    for column in ("level", "table", "dates to build", "why", "waiting on upstream"):
        grid.add_column(column, justify="right" if column in ("level", "dates to build") else "left")
    for number, level in enumerate(plan.levels):
        for name in level:
            p = plan.tables[name]
            why = p.why()
            bootstrap = sum(1 for d in p.build if calendar.in_bootstrap(d, p.table.bootstrap_days))
            if bootstrap:
                why += f" ({bootstrap} in the bootstrap window: marked, not built)"
            grid.add_row(str(number), name, f"{len(p.build):,}", why or "-", f"{len(p.waiting):,}" if p.waiting else "")
    console.print(grid)
    for table_name, days in plan.blocking.items():
        console.print(f"[red]blocking gap: {table_name} is missing {len(days)} date(s): {runs_text(date_runs(days, calendar.dates), shown=None)}")
    if plan.is_empty and not plan.blocking:
        console.print("nothing to do: every requested date is built and up to date")


# -- task=status -------------------------------------------------------------------------------


def status_frame(ctx: Context, by_month: bool) -> pl.DataFrame:
    """Per table and season (and month): dates ok / failed / missing / bootstrap-skipped /
    awaiting box scores, rows (:func:`pipeline.state.coverage_frame`)."""
    return coverage_frame(ctx.tables, ctx.calendar, ctx.state, by_month)


def print_status(ctx: Context, by_month: bool) -> int:
    frame = status_frame(ctx, by_month)
    grid = RichTable(title=f"run state in {ctx.warehouse.describe()}", title_justify="left")
    for column in frame.columns:
        grid.add_column(column, justify="left" if column in ("table", "season", "month") else "right")
    for row in frame.iter_rows():
        cells = [str(v) if not isinstance(v, int) else f"{v:,}" for v in row]
        if row[frame.columns.index("failed")]:
            cells = [f"[red]{c}" for c in cells]
        grid.add_row(*cells)
    console.print(grid)
    slate_only = [day for day in ctx.calendar.dates if not ctx.calendar.is_played(day)]
    if slate_only:
        console.print(
            f"{len(slate_only)} date(s) known from a slate only, before their box scores "
            f"({runs_text(date_runs(slate_only, ctx.calendar.dates), shown=None)}): the box-score tables count them as awaiting_box_scores",
            highlight=False,
        )
    failures: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    for (name, day), row in sorted(ctx.state.rows.items()):
        if row.status == FAILED:
            failures[name].append((day, row.last_error or ""))
    for name, items in failures.items():
        console.print(f"[red]{name}: {len(items)} failed date(s)")
        for day, error in items[:20]:
            console.print(f"  [red]{day}[/]: {escape(error_summary(error))}", soft_wrap=True)
    return EXIT_FAILED if failures else EXIT_OK


def error_summary(traceback_text: str) -> str:
    """The exception line(s) at the end of a stored traceback."""
    lines = traceback_text.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] and not lines[i].startswith(" ") and ": " in lines[i] and (i == 0 or lines[i - 1].startswith(" ")):
            return " ".join(line.strip() for line in lines[i:])
    return lines[-1] if lines else "(no error text)"


# -- dispatch ----------------------------------------------------------------------------------


def _model_task(name: str):
    """A task of training/task.py, imported when it runs: LightGBM and matplotlib take a second
    to import, which plan, status and a run with nothing to do should not pay."""

    def run(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
        from training import task

        return getattr(task, name)(cfg, run_id, overrides)

    return run


def _backup_task(name: str):
    """A task of pipeline/backup/task.py, imported when it runs (fsspec, and gcsfs for gs://)."""

    def run(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
        from pipeline.backup import task

        return getattr(task, name)(cfg, run_id, overrides)

    return run


def run_task(cfg: DictConfig, overrides: list[str]) -> int:
    """Run ``cfg.task``; return the process exit code. The run is recorded (:mod:`pipeline.history`:
    ``run_history`` for a task that holds the warehouse lock) and what it found wrong is sent as
    alerts (``conf/alerts/``) when it ends."""
    from pipeline.history import RunRecord

    run_id = new_run_id()
    log_path = setup_logging(cfg, run_id)
    if "labels" in cfg.warehouse:  # BigQuery: every job of the run says which run made it, workers' too
        OmegaConf.update(cfg, "warehouse.labels", {"task": cfg.task, "run_id": run_id}, merge=True, force_add=True)
    log.debug("run %s: task=%s overrides=%s\n%s", run_id, cfg.task, overrides, OmegaConf.to_yaml(cfg))
    tasks = {
        "run": task_run,
        "plan": task_plan,
        "status": task_status,
        "validate": validate_task,
        "train": _model_task("train_task"),
        "predict": _model_task("predict_task"),
        "grade": _model_task("grade_task"),
        "backtest": _model_task("backtest_task"),
        "backup": _backup_task("backup_task"),
        "restore": _backup_task("restore_task"),
        "backups": _backup_task("backups_task"),
        "doctor": task_doctor,
        "watch": task_watch,
        "docs": task_docs,
    }
    if cfg.task not in tasks:
        return fail(f"unknown task {cfg.task!r}; known: {', '.join(tasks)}")
    record, code, error = None, EXIT_FAILED, None
    try:
        record = RunRecord(cfg, run_id, cfg.task, overrides, log_path)
        redact_logs(record.alerts)
        code = tasks[cfg.task](cfg, run_id, overrides)
        return code
    except (UsageError, WarehouseError, RawDataError, BackupError) as exc:
        log.debug("refused", exc_info=True)
        error = exc
        return fail(str(exc))
    except BaseException as exc:
        error = exc
        raise
    finally:
        if record is not None:
            record.finish(error=error, code=code)
        console.print(f"[dim]log: {log_path}")


def redact_logs(settings) -> None:
    """The alerts' secrets never reach the run's log file or the terminal (pipeline.alerts.settings)."""
    from pipeline.alerts import RedactingFilter

    for handler in logging.getLogger().handlers:
        if getattr(handler, "_pipeline", False):
            handler.addFilter(RedactingFilter(settings))


def task_doctor(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from pipeline.doctor import doctor_task

    return doctor_task(cfg, run_id, overrides)


def task_watch(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from pipeline.alerts.watch import watch_task

    return watch_task(cfg, run_id, overrides)


def task_docs(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from pipeline.docs import docs_task

    return docs_task(cfg, run_id, overrides)


def task_plan(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
        ctx = Context.open(cfg, warehouse)
        plan = ctx.plan()
        print_plan(plan, ctx.calendar)
    return EXIT_FAILED if plan.blocking and not cfg.backfill.with_upstream else EXIT_OK


def task_status(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
        return print_status(Context.open(cfg, warehouse), cfg.status.by_month)


def task_run(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    warehouse = open_warehouse(cfg.warehouse)
    with warehouse, hold_lock(warehouse, cfg, run_id, overrides) as record:
        return record.ended(run_in_lock(cfg, warehouse, run_id, overrides))


def run_in_lock(cfg: DictConfig, warehouse: Warehouse, run_id: str, overrides: list[str]) -> int:
    summary = build(cfg, warehouse, run_id, overrides)
    if summary is not None and not summary.ok:
        if not cfg.tables and cfg.training.get("after_run", True):
            console.print("[bold red]the model was not trained: the run did not complete cleanly")
        return EXIT_FAILED
    if train_after(cfg, warehouse, run_id, overrides) != EXIT_OK:
        return EXIT_FAILED
    return EXIT_WARNINGS if summary is not None and summary.gate_overridden else EXIT_OK


def train_after(cfg: DictConfig, warehouse: Warehouse, run_id: str, overrides: list[str]) -> int:
    """A run of the whole chain (no ``tables`` override) ends with the v5 model's figures."""
    if cfg.tables or not cfg.training.get("after_run", True):
        return EXIT_OK
    from training.task import train_after_run

    return train_after_run(cfg, warehouse, run_id, overrides)
