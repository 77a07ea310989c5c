"""The tasks `python -m pipeline task=...` runs: what each opens, prints and returns as exit code."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from omegaconf import DictConfig, OmegaConf
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table as RichTable

from pipeline.backup.manifest import BackupError
from pipeline.calendar import Calendar, date_runs, runs_text
from pipeline.command import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS, UsageError, fail, hold_lock, resolve_dates, resolve_tables
from pipeline.planner import Fingerprinter, Plan, make_plan
from pipeline.progress import RunSummary, console
from pipeline.state import FAILED, OK, SKIPPED_BOOTSTRAP, RunState
from pipeline.tables import Table, registry
from pipeline.warehouse import Warehouse, WarehouseError, open_warehouse
from pipeline.tables._raw import RawDataError
from pipeline.validation import gate_enforced, make_gate, validate_task
from pipeline.warehouse.source import RawSource

if TYPE_CHECKING:  # the runner imports Ray, which plan and status never need
    from pipeline.runner import RunSettings

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


def table_params(cfg: DictConfig, tables: dict[str, Table]) -> dict[str, dict[str, object]]:
    return {name: {arg: OmegaConf.select(cfg, key) for arg, key in t.params.items()} for name, t in tables.items()}


def run_settings(cfg: DictConfig, run_id: str, tables: dict[str, Table]) -> RunSettings:
    from pipeline.runner import RunSettings

    return RunSettings(
        run_id=run_id,
        shard_days=cfg.shard.days,
        max_attempts=cfg.backfill.max_attempts,
        retry_backoff_seconds=cfg.backfill.retry_backoff_seconds,
        force=cfg.backfill.force,
        params=table_params(cfg, tables),
        gate_enforced=gate_enforced(cfg),
        max_rows=cfg.shard.max_rows,
        # Names and endpoints only: a worker that opens the warehouse brings its own credentials.
        warehouse_config=OmegaConf.to_container(cfg.warehouse, resolve=True) if cfg.shard.worker_io else None,
    )


@dataclass
class Context:
    """What planning needs: the warehouse, the raw source, the calendar and the run state."""

    cfg: DictConfig
    warehouse: Warehouse
    source: RawSource
    calendar: Calendar
    state: RunState
    fingerprinter: Fingerprinter
    tables: dict[str, Table]

    @classmethod
    def open(cls, cfg: DictConfig, warehouse: Warehouse) -> "Context":
        tables = registry()
        source = RawSource.from_config(cfg.data)
        calendar = source.calendar()
        state = RunState.load(warehouse)
        source_fps = {name: source.fingerprints(name) for name in source.names}
        fingerprinter = Fingerprinter(tables, calendar, state, source_fps, table_params(cfg, tables))
        return cls(cfg, warehouse, source, calendar, state, fingerprinter, tables)

    def plan(self) -> Plan:
        b = self.cfg.backfill
        return make_plan(
            self.tables,
            self.calendar,
            self.state,
            self.fingerprinter,
            requested_tables=resolve_tables(list(self.cfg.tables), self.tables),
            requested_dates=resolve_dates(self.cfg, self.calendar),
            rebuild_requested=not b.resume or bool(self.cfg.dates.list),
            with_upstream=b.with_upstream,
            with_dependents=b.with_dependents,
        )


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


def refuse_blocking(plan: Plan, calendar: Calendar) -> None:
    lines = [f"  {t}: {len(d)} missing date(s): {runs_text(date_runs(d, calendar.dates), shown=None)}" for t, d in plan.blocking.items()]
    raise UsageError(
        "refused: backfill.with_upstream=false and upstream inputs are incomplete:\n"
        + "\n".join(lines)
        + "\nBuild them first, or drop backfill.with_upstream=false to build them in this run."
    )


# -- task=status -------------------------------------------------------------------------------


def status_frame(ctx: Context, by_month: bool) -> pl.DataFrame:
    """Per table and season (and month): dates ok / failed / missing / bootstrap-skipped, rows."""
    records = []
    for name in ctx.tables:
        for day in ctx.calendar.dates:
            row = ctx.state.get(name, day)
            records.append(
                (name, ctx.calendar.season_of[day], day.strftime("%Y-%m"), row.status if row else "missing", row.rows_written if row else 0)
            )
    frame = pl.DataFrame(records, schema=["table", "season", "month", "status", "rows"], orient="row")
    keys = ["table", "season", "month"] if by_month else ["table", "season"]
    return (
        frame.group_by(keys, maintain_order=True)
        .agg(
            ok=(pl.col("status") == OK).sum(),
            failed=(pl.col("status") == FAILED).sum(),
            missing=(pl.col("status") == "missing").sum(),
            bootstrap_skipped=(pl.col("status") == SKIPPED_BOOTSTRAP).sum(),
            rows=pl.col("rows").sum(),
        )
    )


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


def retry_command(unfinished: dict[str, list[dt.date]], overrides: list[str]) -> str | None:
    """The run again for the tables and dates it left unfinished (failed, gate-failed, or not
    run because an input failed): the same settings over the range that covers them, resuming,
    so only dates not ``ok`` are built."""
    if not unfinished:
        return None
    kept = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith(("tables", "dates.", "backfill.resume"))]
    days = sorted({d for dates in unfinished.values() for d in dates})
    tables = ",".join(sorted(unfinished))
    return " ".join(["python -m pipeline", *kept, f"'tables=[{tables}]'", f"dates.start={days[0]}", f"dates.end={days[-1]}"])


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
    """Run ``cfg.task``; return the process exit code."""
    run_id = new_run_id()
    log_path = setup_logging(cfg, run_id)
    log.debug("run %s: task=%s overrides=%s\n%s", run_id, cfg.task, overrides, OmegaConf.to_yaml(cfg))
    tasks = {
        "run": task_run,
        "plan": task_plan,
        "status": task_status,
        "validate": validate_task,
        "train": _model_task("train_task"),
        "predict": _model_task("predict_task"),
        "grade": _model_task("grade_task"),
        "backup": _backup_task("backup_task"),
        "restore": _backup_task("restore_task"),
        "backups": _backup_task("backups_task"),
    }
    if cfg.task not in tasks:
        return fail(f"unknown task {cfg.task!r}; known: {', '.join(tasks)}")
    try:
        return tasks[cfg.task](cfg, run_id, overrides)
    except (UsageError, WarehouseError, RawDataError, BackupError) as exc:
        log.debug("refused", exc_info=True)
        return fail(str(exc))
    finally:
        console.print(f"[dim]log: {log_path}")


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
    with warehouse, hold_lock(warehouse, cfg, run_id, overrides):
        summary = build(cfg, warehouse, run_id, overrides)
        if summary is not None and not summary.ok:
            if not cfg.tables and cfg.training.get("after_run", True):
                console.print("[bold red]the model was not trained: the run did not complete cleanly")
            return EXIT_FAILED
        if train_after(cfg, warehouse, run_id, overrides) != EXIT_OK:
            return EXIT_FAILED
        return EXIT_WARNINGS if summary is not None and summary.gate_overridden else EXIT_OK


def build(cfg: DictConfig, warehouse: Warehouse, run_id: str, overrides: list[str]) -> RunSummary | None:
    """Plan and build ``cfg.tables`` on ``cfg.dates`` in a warehouse the caller holds the lock of,
    each level behind its validation gate; print the summary. None when nothing needed building."""
    ctx = Context.open(cfg, warehouse)
    plan = ctx.plan()
    if plan.blocking and not cfg.backfill.with_upstream and not cfg.backfill.force:
        refuse_blocking(plan, ctx.calendar)
    if plan.is_empty:
        console.print("nothing to do: every requested date is built and up to date")
        return None
    from pipeline.ray_runtime import start_ray  # Ray only when there is work for it
    from pipeline.runner import Runner

    log.info("run %s: %d table-dates to build in %s", run_id, plan.total_dates, warehouse.describe())
    for name, table_plan in plan.tables.items():
        if table_plan.build:
            log.info("  %s: %d date(s): %s", name, len(table_plan.build), table_plan.why())
    start_ray(cfg.ray)
    settings = run_settings(cfg, run_id, ctx.tables)
    gate = make_gate(cfg, warehouse, ctx.calendar, ctx.state, run_id=run_id, plan=plan, tables=ctx.tables)
    runner = Runner(warehouse, ctx.source, ctx.calendar, ctx.state, ctx.fingerprinter, settings, ctx.tables)
    summary = runner.execute(plan, gate=gate)
    summary.render(retry_command(summary.unfinished, overrides))
    return summary


def train_after(cfg: DictConfig, warehouse: Warehouse, run_id: str, overrides: list[str]) -> int:
    """A run of the whole chain (no ``tables`` override) ends with the v5 model's figures."""
    if cfg.tables or not cfg.training.get("after_run", True):
        return EXIT_OK
    from training.task import train_after_run

    return train_after_run(cfg, warehouse, run_id, overrides)
