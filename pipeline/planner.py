"""What a run will build: per table, the dates and why, derived from the table declarations,
the calendar and the run state.

- requested tables on the requested dates: every date not ``ok``, plus every date whose input
  fingerprint changed (all of them with ``backfill.resume=false`` or an explicit ``dates.list``);
- their upstream (``with_upstream``): every missing, failed or stale date inside the lookback
  windows of the dates above; without it, missing upstream dates refuse the run instead;
- their dependents (``with_dependents``): every date whose lookback window contains a date being
  rebuilt upstream, wherever it is in the history, as long as the dependent's other inputs are
  complete there (otherwise it is reported as waiting, not built); without it, such dates of the
  requested tables and of the dates they read only, so that nothing requested is built from an
  input the same run replaces;
- tables declared ``built_with`` others (the quarantine): on every date those are built.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping

from pipeline.calendar import Calendar
from pipeline.fingerprint import EMPTY, MISSING, digest, table_signature
from pipeline.state import FAILED, RunState
from pipeline.tables import Table, dag_levels
from pipeline.tables.base import Input

MISSING_REASON = "missing"
FAILED_REASON = "failed"
CHANGED_REASON = "inputs changed"
REQUESTED_REASON = "rebuild requested"
DEPENDENT_REASON = "dependent of a rebuilt table"


class Fingerprinter:
    """Input fingerprints of (table, date) from the current state and the raw source."""

    def __init__(
        self,
        tables: Mapping[str, Table],
        calendar: Calendar,
        state: RunState,
        source_fingerprints: Mapping[str, Mapping[dt.date, str]],
        params: Mapping[str, Mapping[str, object]],
    ):
        self.tables = tables
        self.calendar = calendar
        self.state = state
        self.source = source_fingerprints
        self.signatures = {n: table_signature(t.version, t.schema, params.get(n, {})) for n, t in tables.items()}
        self._season_chains: dict[str, dict[dt.date, str]] = {}

    def invalidate(self, table: str | None = None) -> None:
        """Forget cached windows after ``table`` (or anything) was rewritten."""
        if table is None:
            self._season_chains.clear()
        else:
            self._season_chains.pop(table, None)

    def partition(self, table: str, day: dt.date) -> str:
        if table in self.source:
            return self.source[table].get(day, EMPTY)
        return self.state.output_fingerprint(table, day) or MISSING

    def _season_chain(self, table: str) -> dict[dt.date, str]:
        """Running hash of every partition from the season opener to each date."""
        if table not in self._season_chains:
            chain: dict[dt.date, str] = {}
            previous, season = "", None
            for day in self.calendar.dates:
                if self.calendar.season_of[day] != season or day == self.calendar.opener(day):
                    previous, season = "", self.calendar.season_of[day]
                previous = digest([previous, day.isoformat(), self.partition(table, day)])
                chain[day] = previous
            self._season_chains[table] = chain
        return self._season_chains[table]

    def window(self, inp: Input, day: dt.date) -> str:
        if inp.lookback.season_to_date:
            # The chain at the window's last date of each season it spans (the previous season's
            # last date, with previous_season): one hash of every partition in the window.
            chain = self._season_chain(inp.table)
            last_of_season = {self.calendar.season_of[d]: d for d in self.calendar.window(inp.lookback, day)}
            return "".join(chain[d] for d in last_of_season.values())
        if inp.lookback.days == 0:
            return self.partition(inp.table, day)
        return digest(f"{d}:{self.partition(inp.table, d)}" for d in self.calendar.window(inp.lookback, day))

    def expected(self, table: str, day: dt.date) -> str:
        spec = self.tables[table]
        if self.calendar.in_bootstrap(day, spec.bootstrap_days):
            return digest([self.signatures[table], "bootstrap"])
        return digest([self.signatures[table], *(f"{i.table}={self.window(i, day)}" for i in spec.inputs)])


@dataclass
class TablePlan:
    table: Table
    build: dict[dt.date, str] = field(default_factory=dict)  # date -> reason
    waiting: dict[dt.date, list[str]] = field(default_factory=dict)  # dependent dates held back -> blocking inputs

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for reason in self.build.values():
            counts[reason] += 1
        return dict(counts)

    def why(self) -> str:
        """The reasons as text, the most frequent first: "600 missing, 34 inputs changed"."""
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons().items(), key=lambda kv: -kv[1]))


@dataclass
class Plan:
    levels: list[list[str]]
    tables: dict[str, TablePlan]
    requested_tables: list[str]
    requested_dates: list[dt.date]
    blocking: dict[str, list[dt.date]]  # upstream table -> missing dates (with_upstream=false)

    @property
    def total_dates(self) -> int:
        return sum(len(p.build) for p in self.tables.values())

    @property
    def is_empty(self) -> bool:
        return self.total_dates == 0


def make_plan(
    tables: Mapping[str, Table],
    calendar: Calendar,
    state: RunState,
    fingerprinter: Fingerprinter,
    *,
    requested_tables: list[str],
    requested_dates: list[dt.date],
    rebuild_requested: bool,
    with_upstream: bool,
    with_dependents: bool,
) -> Plan:
    order = list(tables)  # registry order is topological
    plans = {name: TablePlan(tables[name]) for name in order}
    blocking: dict[str, set[dt.date]] = defaultdict(set)

    @functools.cache
    def stale_reason(table: str, day: dt.date) -> str | None:
        row = state.get(table, day)
        if row is None:
            return MISSING_REASON
        if row.status == FAILED:
            return FAILED_REASON
        if row.input_fingerprint != fingerprinter.expected(table, day):
            return CHANGED_REASON
        return None

    def reads(table: str, day: dt.date) -> bool:
        return not calendar.in_bootstrap(day, tables[table].bootstrap_days)

    # Dates each table is checked on: the requested ones, and upstream, every date in their
    # lookback windows. Walk from the most downstream table back so a table's set is final
    # before its inputs are considered.
    considered: dict[str, set[dt.date]] = {name: set() for name in order}
    for name in requested_tables:
        considered[name] |= set(requested_dates)
        for day in requested_dates:
            reason = REQUESTED_REASON if rebuild_requested else stale_reason(name, day)
            if reason:
                plans[name].build[day] = reason
    for name in reversed(order):
        for day in sorted(considered[name] - plans[name].build.keys()):
            reason = stale_reason(name, day)
            if reason is None:
                continue
            if with_upstream or name in requested_tables:
                plans[name].build[day] = reason
            elif reason in (MISSING_REASON, FAILED_REASON):
                blocking[name].add(day)
        for inp in tables[name].inputs:
            if not inp.is_source:
                considered[inp.table] |= calendar.covering(inp.lookback, [d for d in considered[name] if reads(name, d)])

    # Dependents: every date whose window holds a date rebuilt upstream (with_dependents), or at
    # least those the requested tables read, so that nothing requested is built from inputs this
    # run replaces (a slate changed since the morning: its roster, and the schedule and Phase 4
    # rows built from it, again).
    for name in order:
        plan = plans[name]
        added: set[dt.date] = set()
        for inp in tables[name].inputs:
            if inp.is_source:
                continue
            for day in calendar.dependents_of(inp.lookback, set(plans[inp.table].build)):
                if day not in plan.build and (with_dependents or day in considered[name]):
                    added.add(day)
        for day in sorted(added):
            gaps = [
                inp.table
                for inp in tables[name].inputs
                if not inp.is_source
                and reads(name, day)
                and any(
                    d not in plans[inp.table].build and not state.is_done(inp.table, d)
                    for d in calendar.window(inp.lookback, day)
                )
            ]
            if gaps:
                plan.waiting[day] = gaps
            else:
                plan.build[day] = DEPENDENT_REASON

    # A table built with others (the quarantine of bad raw rows) follows them date for date.
    for name in order:
        for companion in tables[name].built_with:
            for day, companion_reason in plans[companion].build.items():
                if day not in plans[name].build:
                    reason = REQUESTED_REASON if companion_reason == REQUESTED_REASON else stale_reason(name, day)
                    if reason:
                        plans[name].build[day] = reason

    for plan in plans.values():
        plan.build = dict(sorted(plan.build.items()))
    return Plan(
        levels=dag_levels(dict(tables)),
        tables=plans,
        requested_tables=requested_tables,
        requested_dates=requested_dates,
        blocking={t: sorted(d) for t, d in blocking.items()},
    )
