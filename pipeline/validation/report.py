"""What validation shows and keeps: a terminal table (failures first, then a compact summary of
what passed), a JSON report under ``validation.reports_dir``, and one row per result in
``nba_orchestration.validation_results``."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import polars as pl
from rich.console import Console
from rich.table import Table as RichTable

from pipeline.validation.checks import pct
from pipeline.validation.results import (
    CHECK_ORDER,
    COVERAGE,
    FAIL,
    INFO,
    PASS,
    REGRESSION,
    SKIP,
    Result,
    exit_code,
    failures,
)
from pipeline.warehouse.base import TableSchema, Warehouse

VALIDATION_RESULTS = TableSchema(
    name="nba_orchestration.validation_results",
    columns={
        "run_id": pl.String,
        "context": pl.String,  # validate | gate
        "checked_at": pl.Datetime("us"),
        "run_date": pl.Date,
        "table_name": pl.String,
        "check_name": pl.String,
        "feature": pl.String,
        "scope": pl.String,
        "start_date": pl.Date,
        "end_date": pl.Date,
        "observed": pl.Float64,
        "threshold": pl.Float64,
        "status": pl.String,
        "passed": pl.Boolean,
        "severity": pl.String,
        "rows_measured": pl.Int64,
        "rows_failing": pl.Int64,
        "related_tables": pl.String,
        "details": pl.String,
    },
    partition_by="run_date",
    cluster_by=("table_name",),
)

FAILURES_SHOWN = 40
SHARE_CHECKS = (COVERAGE, REGRESSION)


def _short(table: str) -> str:
    return table.split(".", 1)[-1]


def _number(result: Result, value: float | None) -> str:
    if value is None:
        return "-"
    if result.check in SHARE_CHECKS:
        return pct(value)
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def _dates(result: Result) -> str:
    if result.start_date is None:
        return "-"
    if result.end_date is None or result.end_date == result.start_date:
        return str(result.start_date)
    return f"{result.start_date}..{result.end_date}"


def _order(result: Result) -> tuple:
    kind = CHECK_ORDER.index(result.check) if result.check in CHECK_ORDER else len(CHECK_ORDER)
    return (0 if result.severity == "critical" else 1, result.table, kind, result.feature, result.start_date or dt.date.min)


def summary(results: Sequence[Result]) -> dict[str, object]:
    status = Counter(r.status for r in results)
    failed = failures(results)
    return {
        "checks": len(results),
        "passed": status[PASS],
        "failed": len(failed),
        "failed_critical": sum(r.severity == "critical" for r in failed),
        "failed_warning": sum(r.severity == "warning" for r in failed),
        "skipped": status[SKIP],
        "flagged": status[INFO],
        "exit_code": exit_code(results),
        "failing_tables": sorted({t for r in failed for t in r.tables}),
    }


def render(results: Sequence[Result], console: Console, title: str, *, shown: int = FAILURES_SHOWN, compact: bool = False) -> None:
    """Failures first (critical before warning), then per table what was checked and passed.
    ``compact``: one line when everything passed (the gates after each level)."""
    failed = sorted(failures(results), key=_order)
    s = summary(results)
    if compact and not failed:
        console.print(
            f"[green]{title}: {s['checks']:,} checks passed[/]"
            + (f", {s['skipped']} skipped" if s["skipped"] else "")
            + (f", {s['flagged']} flagged" if s["flagged"] else "")
        )
        return
    if failed:
        grid = RichTable(title=f"{title}: {len(failed)} failing check(s)", title_justify="left")
        for column in ("#", "severity", "table", "check", "feature", "scope", "dates", "observed", "threshold"):
            grid.add_column(column, justify="right" if column in ("#", "observed", "threshold") else "left", overflow="fold")
        for i, r in enumerate(failed[:shown], 1):
            style = "red" if r.severity == "critical" else "yellow"
            grid.add_row(
                str(i), f"[{style}]{r.severity}", _short(r.table), r.check, r.feature, r.scope, _dates(r),
                _number(r, r.observed), _number(r, r.threshold),
            )  # fmt: skip
        console.print(grid)
        for i, r in enumerate(failed[:shown], 1):
            console.print(f"  [bold]#{i}[/] {_short(r.table)} {r.check} {r.feature} {r.scope}: {r.details}", highlight=False)
        if len(failed) > shown:
            console.print(f"[red]... and {len(failed) - shown} more failing check(s) in the JSON report")
    if not compact or failed:
        _render_summary(results, console, title)
    for r in [r for r in results if r.status in (SKIP, INFO) and r.check != COVERAGE]:
        label = "flagged" if r.status == INFO else "skipped"
        what = " ".join(x for x in (_short(r.table), r.check if r.check != "table" else "", r.feature) if x)
        console.print(f"[cyan]{label}[/] {what}: {r.details}", highlight=False)
    verdict = {0: "[green]all checks passed", 1: "[bold red]critical checks failed", 2: "[yellow]only warnings failed"}[s["exit_code"]]
    console.print(
        f"{title}: {s['checks']:,} checks, {s['passed']:,} passed, {s['failed']} failed "
        f"({s['failed_critical']} critical, {s['failed_warning']} warning), {s['skipped']} skipped, "
        f"{s['flagged']} flagged: {verdict}"
    )


def _render_summary(results: Sequence[Result], console: Console, title: str) -> None:
    per_table: dict[str, Counter] = defaultdict(Counter)
    kinds: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        per_table[r.table][r.status] += 1
        kinds[r.table][r.check] += 1
    grid = RichTable(title=f"{title}: per table", title_justify="left")
    for column in ("table", "passed", "failed", "skipped", "flagged", "checks run"):
        grid.add_column(column, justify="left" if column in ("table", "checks run") else "right")
    for table in per_table:  # in the order checked (the DAG's)
        c = per_table[table]
        ordered = sorted(kinds[table].items(), key=lambda kv: CHECK_ORDER.index(kv[0]) if kv[0] in CHECK_ORDER else 99)
        grid.add_row(
            _short(table),
            f"{c[PASS]:,}",
            f"[red]{c[FAIL]:,}" if c[FAIL] else "0",
            f"{c[SKIP]:,}" if c[SKIP] else "",
            f"{c[INFO]:,}" if c[INFO] else "",
            ", ".join(f"{k} {n}" for k, n in ordered),
        )
    console.print(grid)


def write_json(results: Sequence[Result], path: Path, meta: Mapping[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(failures(results), key=_order) + [r for r in results if r.status != FAIL]
    document = {**meta, "summary": summary(results), "results": [r.to_dict() for r in ordered]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1, default=str))
    tmp.replace(path)
    return path


def results_frame(results: Sequence[Result], run_id: str, context: str, checked_at: dt.datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": [run_id] * len(results),
            "context": [context] * len(results),
            "checked_at": [checked_at] * len(results),
            "run_date": [checked_at.date()] * len(results),
            "table_name": [r.table for r in results],
            "check_name": [r.check for r in results],
            "feature": [r.feature for r in results],
            "scope": [r.scope for r in results],
            "start_date": [r.start_date for r in results],
            "end_date": [r.end_date for r in results],
            "observed": [r.observed for r in results],
            "threshold": [r.threshold for r in results],
            "status": [r.status for r in results],
            "passed": [r.passed for r in results],
            "severity": [r.severity for r in results],
            "rows_measured": [r.rows for r in results],
            "rows_failing": [r.failing for r in results],
            "related_tables": [",".join(r.related) or None for r in results],
            "details": [r.details for r in results],
        },
        schema=VALIDATION_RESULTS.columns,
    )


def store(warehouse: Warehouse, results: Sequence[Result], run_id: str, context: str, checked_at: dt.datetime | None = None) -> int:
    """Append the results to ``nba_orchestration.validation_results``; returns the rows added."""
    if not results:
        return 0
    checked_at = checked_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    warehouse.ensure_table(VALIDATION_RESULTS)
    frame = results_frame(results, run_id, context, checked_at)
    warehouse.append(VALIDATION_RESULTS.name, frame)
    return frame.height
