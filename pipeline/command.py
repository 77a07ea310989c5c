"""What every task shares: usage errors, exit codes, the dates and tables a command asks for, and
who holds the warehouse lock.

It sits below ``pipeline/tasks.py``, ``pipeline/validation/`` and ``training/`` and imports none
of them, so the task layer's dependencies point one way.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from rich.markup import escape

from pipeline.progress import console
from pipeline.state import utcnow

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from pipeline.calendar import Calendar
    from pipeline.history import RunRecord
    from pipeline.tables import Table
    from pipeline.warehouse import Warehouse

EXIT_OK, EXIT_FAILED, EXIT_WARNINGS = 0, 1, 2


class UsageError(ValueError):
    """The command line asks for something that cannot be done; nothing was run."""


def fail(message: str) -> int:
    """Print ``message`` as the command's error; return the failed exit code."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    return EXIT_FAILED


# -- what a command asks for -------------------------------------------------------------------


def resolve_tables(names: list[str], tables: dict[str, Table]) -> list[str]:
    if not names:
        return list(tables)
    by_short = {t.short_name: t.name for t in tables.values()}
    resolved = []
    for name in names:
        full = name if name in tables else by_short.get(name)
        if full is None:
            raise UsageError(f"unknown table {name!r}; known: {', '.join(sorted(by_short))}")
        resolved.append(full)
    return [n for n in tables if n in resolved]


def parse_date(value: object, what: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise UsageError(f"{what}={value!r} is not a date (YYYY-MM-DD)") from None


def resolve_dates(cfg: DictConfig, calendar: Calendar) -> list[dt.date]:
    if cfg.dates.list:
        days = sorted({parse_date(v, "dates.list") for v in cfg.dates.list})
        unknown = [d for d in days if d not in calendar.season_of]
        if unknown:
            raise UsageError(f"no games in the box scores or slates on {', '.join(map(str, unknown))} (dates.list)")
        return days
    start = parse_date(cfg.dates.start, "dates.start") if cfg.dates.start else None
    end = parse_date(cfg.dates.end, "dates.end") if cfg.dates.end else None
    if start and end and start > end:
        raise UsageError(f"dates.start {start} is after dates.end {end}")
    days = calendar.between(start, end)
    if not days:
        raise UsageError(f"no game dates in {start or calendar.first}..{end or calendar.last}; the box scores and slates cover {calendar.first}..{calendar.last}")
    return days


# -- the warehouse lock ------------------------------------------------------------------------


def holder_info(run_id: str, command: str) -> dict[str, object]:
    """Who holds the warehouse lock, written beside it for a refused run to name."""
    return {"run": run_id, "pid": os.getpid(), "host": socket.gethostname(), "since": utcnow().isoformat(timespec="seconds"), "command": command}


@contextmanager
def hold_lock(warehouse: Warehouse, cfg: DictConfig, run_id: str, overrides: list[str], *, record_at_start: bool = True) -> Iterator[RunRecord]:
    """The warehouse lock for this run (``lock.wait_seconds``, ``lock.stale_seconds``), naming
    the run and its command line as the holder; yields the run's record (:mod:`pipeline.history`),
    whose row in ``run_history`` is written once the lock is held (or, with ``record_at_start``
    false, when the task calls ``record.opened(warehouse)``: a task that must change nothing
    when it refuses) and completed, with the alerts sent, before it is let go. A task that knows
    its exit code inside the lock says so with ``record.ended(code)``; otherwise it is 1 if the
    task raised or a build of it failed, else 0."""
    from pipeline.history import RunRecord, record_of

    command = "python -m pipeline " + " ".join(overrides)
    with warehouse.lock(holder=holder_info(run_id, command), wait_seconds=cfg.lock.wait_seconds, stale_seconds=cfg.lock.stale_seconds):
        record = record_of(run_id) or RunRecord(cfg, run_id, str(cfg.get("task", "run")), overrides)
        if record_at_start:
            record.opened(warehouse)
        try:
            yield record
        except BaseException as exc:
            record.finish(warehouse, error=exc)
            raise
        record.finish(warehouse)
