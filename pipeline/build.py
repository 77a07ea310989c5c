"""Plan and build tables: what ``task=run`` does inside the warehouse lock, and what
``task=predict`` does first for the dates it predicts (``training/task.py``).

Below ``pipeline/tasks.py`` and ``training/``, which both call :func:`build`; imports neither.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
from omegaconf import DictConfig, OmegaConf

from pipeline.calendar import Calendar, date_runs, runs_text
from pipeline.command import UsageError, resolve_dates, resolve_tables
from pipeline.history import record_of
from pipeline.planner import Fingerprinter, Plan, make_plan
from pipeline.progress import RunSummary, console
from pipeline.state import RunState
from pipeline.tables import Table, registry
from pipeline.tables.prop_lines import USED
from pipeline.tables.prop_lines import prop_lines as prop_lines_table
from pipeline.validation import gate_enforced, make_gate
from pipeline.warehouse import Warehouse
from pipeline.warehouse.source import RawSource

if TYPE_CHECKING:  # the runner imports Ray, which plan and status never need
    from pipeline.runner import RunSettings

log = logging.getLogger("pipeline")

PROP_LINES = prop_lines_table.name


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
        commit_interval_seconds=cfg.warehouse.get("commit_interval_seconds") or 0.0,
        reachable_cpus=cfg.ray.get("reachable_cpus"),
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
        tables = registry(cfg.phase4.bootstrap_days)
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


def refuse_blocking(plan: Plan, calendar: Calendar) -> None:
    lines = [f"  {t}: {len(d)} missing date(s): {runs_text(date_runs(d, calendar.dates), shown=None)}" for t, d in plan.blocking.items()]
    raise UsageError(
        "refused: backfill.with_upstream=false and upstream inputs are incomplete:\n"
        + "\n".join(lines)
        + "\nBuild them first, or drop backfill.with_upstream=false to build them in this run."
    )



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



def refuse_unshared_folders(cfg: DictConfig, warehouse: Warehouse) -> None:
    """On a Ray cluster with worker-side I/O (BigQuery) every worker reads the raw files itself: a
    local folder is refused unless ``data.shared_filesystem`` says every node sees it."""
    from pipeline.warehouse.source import SOURCES, list_files
    from pipeline.warehouse.storage import is_remote

    on_cluster = cfg.ray.get("address") is not None
    worker_io = cfg.shard.worker_io and warehouse.reachable_from_workers
    if not (on_cluster and worker_io) or cfg.data.get("shared_filesystem"):
        return
    local = []
    for key, folder in (("raw_dir", "raw"), ("slate_dir", "slates"), ("lines_dir", "lines")):
        path = cfg.data.get(key)
        patterns = tuple(p for spec in SOURCES.values() if spec.folder == folder for p in spec.patterns)
        if path and not is_remote(str(path)) and list_files(str(path), patterns, None):  # an empty slate folder holds nothing to read
            local.append(f"data.{key}={path}")
    if local:
        raise UsageError(
            f"refused: on a Ray cluster with {warehouse.describe()} every worker reads its own raw files, and "
            f"{' and '.join(local)} {'is a local folder' if len(local) == 1 else 'are local folders'} the other nodes may not see. "
            "Put the files in Cloud Storage "
            "(data.raw_dir=gs://bucket/path), or, if every node mounts the same folder, say so with data.shared_filesystem=true "
            "(or let the driver read every shard: shard.worker_io=false)."
        )


def lines_set_aside(warehouse: Warehouse, plan: Plan) -> dict[str, int]:
    """Rows of ``nba_raw.prop_lines`` on the dates this run built that are not used, by status,
    the most frequent first (a line that matched no player does not stop a run: it is counted)."""
    built = plan.tables.get(PROP_LINES)
    if built is None or not built.build or not warehouse.exists(PROP_LINES):
        return {}
    days = sorted(built.build)
    rows = warehouse.read(PROP_LINES, start=days[0], end=days[-1], columns=["game_date", "status"])
    aside = rows.filter(pl.col("game_date").is_in(days) & (pl.col("status") != USED))
    return dict(aside.group_by("status").len().sort("len", "status", descending=[True, False]).iter_rows())


def build(cfg: DictConfig, warehouse: Warehouse, run_id: str, overrides: list[str]) -> RunSummary | None:
    """Plan and build ``cfg.tables`` on ``cfg.dates`` in a warehouse the caller holds the lock of,
    each level behind its validation gate; print the summary. None when nothing needed building."""
    refuse_unshared_folders(cfg, warehouse)
    if cfg.ray.address:  # joining a Ray that is up costs little: its workers import while this plans
        from pipeline.ray_runtime import start_ray, warm_workers

        start_ray(cfg.ray)
        warm_workers()
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
    summary.lines_set_aside = lines_set_aside(warehouse, plan)
    retry = retry_command(summary.unfinished, overrides)
    summary.render(retry)
    record = record_of(run_id)
    if record is not None:
        record.note_build(summary, gate.results, str(gate.report_path), retry)
    return summary
