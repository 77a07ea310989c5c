"""``python -m pipeline task=validate [tables=[...]] [dates.start=... dates.end=...]``.

Checks every requested table (default: all) over the requested dates (default: the whole
history in the raw data), prints the report, writes it as JSON under ``validation.reports_dir``
and appends it to ``nba_orchestration.validation_results``. Exit code 0 when every check
passed, 1 when a critical check failed, 2 when only warnings failed.
"""

from __future__ import annotations

import datetime as dt

from omegaconf import DictConfig

from pipeline.command import EXIT_FAILED, fail, hold_lock, resolve_dates, resolve_tables
from pipeline.state import RunState
from pipeline.tables import registry
from pipeline.validation.config import load_settings
from pipeline.validation.engine import Validator
from pipeline.validation.report import render, store, write_json
from pipeline.validation.results import SKIP, TABLE, exit_code
from pipeline.warehouse import open_warehouse
from pipeline.warehouse.source import RawSource


def validate_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from pipeline.progress import console

    tables = registry(cfg.phase4.bootstrap_days)
    settings = load_settings(cfg.get("validation"), tables)
    requested = resolve_tables(list(cfg.tables), tables)
    source = RawSource.from_config(cfg.data)
    calendar = source.calendar()
    dates = resolve_dates(cfg, calendar)
    warehouse = open_warehouse(cfg.warehouse)
    with warehouse, hold_lock(warehouse, cfg, run_id, overrides) as record:
        state = RunState.load(warehouse)
        validator = Validator(settings, warehouse, calendar, state, tables, drift_severity=settings.drift.severity)
        results = validator.run({name: dates for name in requested})
        unbuilt = {r.table for r in results if r.check == TABLE and r.status == SKIP}
        if set(requested) <= unbuilt:
            return record.ended(fail(f"nothing to validate: none of the requested tables is built in {warehouse.describe()}"))
        title = f"validation {run_id} ({dates[0]}..{dates[-1]}, {len(dates)} game dates)"
        render(results, console, title)
        path = settings.reports_dir / f"{run_id}-validate.json"
        write_json(
            results,
            path,
            {
                "run_id": run_id,
                "context": "validate",
                "created_at": dt.datetime.now().isoformat(timespec="seconds"),
                "warehouse": warehouse.describe(),
                "tables": requested,
                "first_date": dates[0],
                "last_date": dates[-1],
                "game_dates": len(dates),
                "overrides": overrides,
            },
        )
        stored = store(warehouse, results, run_id, "validate")
        console.print(f"report: {path}; {stored:,} result rows stored in nba_orchestration.validation_results (run_id {run_id})")
        record.note_drift(results, str(path))
        code = exit_code(results)
        return record.ended(EXIT_FAILED if code == 1 else code)
