"""The runner's validation gates: after each level, that level's checks on the dates just built.

Wiring (pipeline/tasks.py, task_run)::

    from pipeline.validation import gate_enforced, make_gate
    settings = RunSettings(..., gate_enforced=gate_enforced(cfg))
    summary = runner.execute(plan, gate=make_gate(cfg, warehouse, ctx.calendar, ctx.state, run_id=run_id, plan=plan))
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Mapping

from omegaconf import DictConfig
from rich.console import Console

from pipeline.calendar import Calendar
from pipeline.planner import Plan
from pipeline.state import RunState
from pipeline.tables import Table, registry
from pipeline.validation.config import load_settings
from pipeline.validation.engine import Validator
from pipeline.validation.report import render, store, write_json
from pipeline.validation.results import Result, failures
from pipeline.warehouse.base import Warehouse

log = logging.getLogger(__name__)


def gate_enforced(cfg: DictConfig) -> bool:
    """``validation.gate`` (true unless the run turns the gates into warnings)."""
    validation = cfg.get("validation")
    return True if validation is None else bool(validation.get("gate", True))


def make_gate(
    cfg: DictConfig,
    warehouse: Warehouse,
    calendar: Calendar,
    state: RunState,
    *,
    run_id: str,
    plan: Plan | None = None,
    tables: Mapping[str, Table] | None = None,
    console: Console | None = None,
):
    """A :data:`pipeline.runner.Gate`: checks a finished level's tables on the dates it built (and
    the cross-layer checks that involve them, against tables no later level of this run will
    still rebuild on those dates), prints the outcome, rewrites the run's JSON report
    (``<reports_dir>/<run_id>-gate.json``), appends to ``nba_orchestration.validation_results``
    and returns the tables whose critical checks failed, each with those checks as text. Reads
    ``cfg.validation`` now, so a config mistake stops the run before anything is built."""
    if console is None:
        from pipeline.progress import console
    tables = dict(tables or registry(cfg.phase4.bootstrap_days))
    settings = load_settings(cfg.get("validation"), tables)
    # Dates each table will still be rebuilt on later in this run: not compared against yet.
    pending: dict[str, set[dt.date]] = {n: set(p.build) for n, p in plan.tables.items() if p.build} if plan else {}
    collected: list[Result] = []
    path = settings.reports_dir / f"{run_id}-gate.json"
    levels: list[dict[str, object]] = []

    def gate(level_tables: list[str], built: dict[str, list[dt.date]]) -> list[str]:
        for name in level_tables:
            pending.pop(name, None)
        request = {name: sorted(days) for name, days in built.items() if days}
        if not request:
            return {}
        validator = Validator(settings, warehouse, calendar, state, tables)
        results = validator.run(request, unsettled=pending)
        collected.extend(results)
        names = ", ".join(tables[n].short_name if n in tables else n for n in request)
        first = min(d for days in request.values() for d in days)
        last = max(d for days in request.values() for d in days)
        title = f"validation gate: {names} ({first}..{last})"
        failing: dict[str, list[str]] = {}
        for r in failures(results, "critical"):
            for name in sorted(set(r.tables) & set(level_tables) or set(request)):
                failing.setdefault(name, []).append(r.label)
        levels.append({"tables": list(request), "first_date": first, "last_date": last, "failing": sorted(failing)})
        render(results, console, title, compact=True)
        write_json(
            collected,
            path,
            {"run_id": run_id, "context": "gate", "warehouse": warehouse.describe(), "gate_enforced": settings.gate, "levels": levels},
        )
        try:
            store(warehouse, results, run_id, "gate")
        except Exception:  # noqa: BLE001 - the report is on disk; a storage error must not hide it
            log.exception("could not store the gate's results in nba_orchestration.validation_results")
        if failing:
            listed = ", ".join(sorted(tables[n].short_name for n in failing))
            if settings.gate:
                console.print(f"[bold red]VALIDATION GATE FAILED for {listed}: their dependents will not run. Report: {path}")
            else:
                console.print(
                    f"[bold yellow]VALIDATION GATE OVERRIDDEN (validation.gate=false): critical checks failed for {listed}; "
                    f"their dependents run anyway. Report: {path}"
                )
        return {name: f"{checks_text(checks)} (report: {path})" for name, checks in sorted(failing.items())}

    gate.report_path = path  # type: ignore[attr-defined]
    gate.results = collected  # type: ignore[attr-defined]
    return gate


def checks_text(checks: list[str], shown: int = 8) -> str:
    """The first ``shown`` failed checks' labels, and how many more there are."""
    more = len(checks) - shown
    return ", ".join(checks[:shown]) + (f" and {more} more" if more > 0 else "")


FEATURE_STORE = "nba_predictions.ml_feature_store"


def pre_training_failures(cfg: DictConfig, warehouse: Warehouse, dates: list[dt.date]) -> tuple[list[Result], int]:
    """The feature store's checks on the dates training reads: the critical failures, and how many
    checks ran. Reads the checked columns of every date: where the warehouse lets it, training runs
    this on a Ray worker (:func:`check_before_training` then only reports)."""
    tables = registry(cfg.phase4.bootstrap_days)
    settings = load_settings(cfg.get("validation"), tables)
    calendar = Calendar.from_schedule(warehouse.read("nba_raw.schedule"))
    results = Validator(settings, warehouse, calendar, RunState.load(warehouse), tables).run({FEATURE_STORE: dates})
    return failures(results, "critical"), len(results)


def check_before_training(
    cfg: DictConfig,
    warehouse: Warehouse,
    dates: list[dt.date],
    console: Console | None = None,
    *,
    checked: tuple[list[Result], int] | None = None,
) -> list[Result]:
    """The gate in front of every fit: the feature store's checks on the dates training reads.

    A run's gates check only the dates that run built; a model is fitted on the whole table, so
    the table is checked again here. Returns the critical failures that must stop training:
    none when every check passed, or when ``validation.gate=false`` (then they are printed
    loudly and training goes on). ``checked``: :func:`pre_training_failures` as it came from
    where it ran; without it, the checks run here.
    """
    if console is None:
        from pipeline.progress import console
    critical, count = checked if checked is not None else pre_training_failures(cfg, warehouse, dates)
    if critical:
        render(critical, console, f"validation before training: {FEATURE_STORE} ({dates[0]}..{dates[-1]})")
        if not gate_enforced(cfg):
            console.print("[bold yellow]VALIDATION GATE OVERRIDDEN (validation.gate=false): training on a feature store that fails critical checks")
            return []
    else:
        log.info("validation before training: %d checks on %s passed", count, FEATURE_STORE)
    return critical
