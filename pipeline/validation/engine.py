"""Runs the checks for a set of tables and dates: reads what each check needs through the
Warehouse interface (only the columns it needs) and hands the frames to :mod:`checks`.

Used both by ``task=validate`` (every requested table over the requested history) and by the
runner's gates (the tables of a level over the dates just built).
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Callable, Iterable, Mapping, Sequence

import polars as pl

from pipeline.calendar import Calendar
from pipeline.profile import TABLE_PROFILE
from pipeline.state import OK, SKIPPED_BOOTSTRAP, RunState
from pipeline.tables import Table
from pipeline.validation import checks
from pipeline.validation.checks import Scope
from pipeline.validation.config import CrossCheck, Settings
from pipeline.validation.config_values import WARNING
from pipeline.validation.drift import drift_results
from pipeline.validation.results import ERROR, FAIL, SKIP, TABLE, Result
from pipeline.warehouse.base import Warehouse

log = logging.getLogger(__name__)


class Validator:
    """``drift_severity``: what a drift is here: a warning unless ``task=validate`` passes the
    configured ``validation.drift.severity`` (a run's gates never let drift block anything)."""

    def __init__(
        self, settings: Settings, warehouse: Warehouse, calendar: Calendar, state: RunState, tables: Mapping[str, Table],
        drift_severity: str = WARNING,
    ):  # fmt: skip
        self.settings = settings
        self.drift_severity = drift_severity
        self.warehouse = warehouse
        self.calendar = calendar
        self.state = state
        self.tables = dict(tables)
        self._exists: dict[str, bool] = {}

    # -- what a table should hold --------------------------------------------------------------

    def exists(self, table: str) -> bool:
        if table not in self._exists:
            self._exists[table] = self.warehouse.exists(table)
        return self._exists[table]

    def in_bootstrap(self, table: str, day: dt.date) -> bool:
        spec = self.tables[table]
        if self.state.status(table, day) == SKIPPED_BOOTSTRAP:
            return True
        return day in self.calendar.season_of and self.calendar.in_bootstrap(day, spec.bootstrap_days)

    def expected(self, table: str, dates: Iterable[dt.date]) -> list[dt.date]:
        """The game dates among ``dates`` the table should have rows for: outside its bootstrap
        window, and, for a table of box-score results, played."""
        spec = self.tables[table]
        return sorted(d for d in dates if not self.in_bootstrap(table, d) and not self.calendar.awaits_box_scores(spec, d))

    def covered(self, table: str, dates: Iterable[dt.date], request: Mapping[str, Sequence[dt.date]]) -> set[dt.date]:
        """The dates among ``dates`` the table is being checked on or was built on: a date a table
        was never asked to build (a predict run builds only what its dates read), or failed to
        build, is ``task=status``'s missing or failed date, not a disagreement between tables."""
        asked = set(request.get(table, ()))
        return {d for d in dates if d in asked or self.state.status(table, d) in (OK, SKIPPED_BOOTSTRAP)}

    def has_state(self, table: str) -> bool:
        return any(t == table for t, _ in self.state.rows)

    def preceding(self, table: str, scope: Scope) -> Scope | None:
        """The same number of game dates right before ``scope`` (outside the bootstrap window)."""
        if not scope.dates:
            return None
        before = [d for d in self.calendar.dates if d < scope.start and not self.in_bootstrap(table, d)]
        n = len(scope.dates)
        if len(before) < n:
            return None
        return Scope(f"{scope.label} (preceding)", tuple(before[-n:]))

    def scopes(self, dates: Sequence[dt.date]) -> list[Scope]:
        """The whole set, each season, each month, each configured range."""
        dates = sorted(dates)
        out = [Scope("all", tuple(dates))]
        seasons: dict[str, list[dt.date]] = {}
        months: dict[str, list[dt.date]] = {}
        for d in dates:
            seasons.setdefault(self.calendar.season_of.get(d, str(d.year)), []).append(d)
            months.setdefault(d.strftime("%Y-%m"), []).append(d)
        out += [Scope(f"season {s}", tuple(v)) for s, v in seasons.items()]
        out += [Scope(f"month {m}", tuple(v)) for m, v in months.items()]
        for start, end in self.settings.ranges:
            inside = tuple(d for d in dates if start <= d <= end)
            if inside:
                out.append(Scope(f"range {start}..{end}", inside))
        return out

    # -- running -------------------------------------------------------------------------------

    def run(
        self,
        request: Mapping[str, Sequence[dt.date]],
        *,
        unsettled: Mapping[str, set[dt.date]] | None = None,
    ) -> list[Result]:
        """Check each requested table on its dates, then the cross-layer and same-dates checks
        that involve them. ``unsettled``: dates a table will still be rebuilt on later in this
        run (the gate's view); comparisons with those are left for later."""
        unsettled = unsettled or {}
        results: list[Result] = []
        for table in [t for t in self.tables if t in request]:
            dates = sorted(set(request[table]))
            if dates:
                results += self._guard(table, "table checks", lambda: self.check_table(table, dates))
        for check in self.settings.cross:
            if set(check.tables) & set(request):
                results += self._guard(check.left, f"cross_layer {check.name}", lambda c=check: self.check_cross(c, request, unsettled), related=(check.right,))
        for phase in self.settings.same_dates_phases:
            results += self._guard(f"phase {phase}", f"same_dates phase {phase}", lambda p=phase: self.check_same_dates(p, request, unsettled))
        return results

    def _guard(self, table: str, what: str, fn: Callable[[], list[Result]], related: tuple[str, ...] = ()) -> list[Result]:
        """A check that raises is a failed critical result, not a crashed run."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            log.debug("validation check %s on %s raised", what, table, exc_info=True)
            return [
                Result(
                    table=table, check=ERROR, feature=what, scope="all", start_date=None, end_date=None, observed=None,
                    threshold=None, status=FAIL, severity="critical", related=related,
                    details=f"{type(exc).__name__}: {exc}".strip() + " | " + traceback.format_exc(limit=2).splitlines()[-1],
                )
            ]  # fmt: skip

    def _skip(self, table: str, dates: Sequence[dt.date], why: str, check: str = TABLE, related: tuple[str, ...] = ()) -> Result:
        return Result(
            table=table, check=check, feature="", scope="all", start_date=min(dates) if dates else None,
            end_date=max(dates) if dates else None, observed=None, threshold=None, status=SKIP, severity="critical",
            details=why, related=related,
        )  # fmt: skip

    def _read(self, table: str, dates: Sequence[dt.date], columns: Iterable[str]) -> pl.DataFrame:
        wanted = [c for c in dict.fromkeys(["game_date", *columns]) if c in self.tables[table].schema]
        frame = self.warehouse.read(table, start=min(dates), end=max(dates), columns=wanted)
        if len(set(dates)) < (max(dates) - min(dates)).days + 1:
            frame = frame.filter(pl.col("game_date").is_in(sorted(set(dates))))
        return frame

    def check_table(self, table: str, dates: list[dt.date]) -> list[Result]:
        spec = self.tables[table]
        if not self.exists(table):
            return [self._skip(table, dates, f"not in the warehouse ({self.warehouse.describe()}): not built yet")]
        settings = self.settings
        thresholds = dict(settings.thresholds.get(table, {}))
        expected = self.expected(table, dates)
        scopes = self.scopes(expected or dates)  # a bootstrap window is no part of any coverage scope
        pairs = []
        for scope in scopes:
            if scope.label.startswith(("month ", "range ")) or scope.label == "all":
                previous = self.preceding(table, scope)
                if previous is not None:
                    pairs.append((scope, previous))
        schema_cols = set(spec.schema)
        bound_rules = [r for r in settings.bounds if any(r.applies(table, c) for c in schema_cols)]
        identity_rules = [
            r for r in settings.identities if r.identity.columns <= schema_cols and (r.tables is None or table in r.tables)
        ]
        columns = set(spec.key)
        for t in thresholds.values():
            columns |= {t.feature} | t.population.columns
        for rule in bound_rules:
            columns |= {c for c in schema_cols if rule.applies(table, c)} | rule.population.columns
        for rule in identity_rules:
            columns |= rule.identity.columns
        read_dates = sorted(set(dates) | {d for _, prev in pairs for d in prev.dates})
        frame = self._read(table, read_dates, columns)
        in_scope = frame.filter(pl.col("game_date").is_in(dates)) if len(read_dates) > len(dates) else frame
        if in_scope.is_empty() and not self.has_state(table):
            return [self._skip(table, dates, "no rows and no run state: not built yet")]

        everything = Scope("all", tuple(dates))
        reference = self.calendar.dates
        results: list[Result] = []
        if table not in settings.may_be_empty:
            present = set(in_scope["game_date"].unique().to_list())
            state_of = {d: self.state.status(table, d) for d in expected if d not in present}
            results += checks.gap_results(table, expected, present, reference, settings.gap_severity, everything, state_of)
        if thresholds:
            daily = checks.coverage_by_date(frame, thresholds)
            results += checks.coverage_results(table, daily, thresholds, scopes, reference)
            results += checks.regression_results(table, daily, thresholds, pairs, settings.regression_max_drop)
        results += checks.duplicate_results(table, in_scope, spec.key, everything, settings.examples)
        results += checks.bounds_results(table, in_scope, bound_rules, spec.key, everything, settings.examples)
        results += checks.identity_results(table, in_scope, identity_rules, spec.key, everything, settings.examples)
        results += self.check_drift(table, dates)
        return results

    def check_drift(self, table: str, dates: list[dt.date]) -> list[Result]:
        """The table's watched features on ``dates`` against their windows, from the profile."""
        drift = self.settings.drift
        watched = drift.watched(table, list(self.tables[table].schema))
        if not watched or not self.exists(TABLE_PROFILE.name):
            return []
        first = min(self.calendar.opener_of.get(self.calendar.season_of.get(d, ""), d) for d in dates)
        profile = self.warehouse.read(
            TABLE_PROFILE.name, start=min(first, min(dates)), end=max(dates), where={"table_name": table},
            columns=["game_date", "column_name", "row_count", "null_fraction", "mean_value"],
        )  # fmt: skip
        return drift_results(table, profile, dates, self.calendar.season_of, watched, drift, self.drift_severity)

    def _built(self, table: str) -> bool:
        return self.exists(table) and (self.has_state(table) or bool(self.warehouse.dates_present(table)))

    def check_cross(self, check: CrossCheck, request: Mapping[str, Sequence[dt.date]], unsettled: Mapping[str, set[dt.date]]) -> list[Result]:
        dates = set().union(*(set(request[t]) for t in check.tables if t in request))
        for t in check.tables:
            dates -= unsettled.get(t, set())
            dates &= set(self.expected(t, self.covered(t, dates, request)))
        if not dates:
            return []
        not_built = [t for t in check.tables if not self._built(t)]
        if not_built:
            return [self._skip(check.left, sorted(dates), f"cross_layer {check.name}: {', '.join(not_built)} not built yet", related=(check.right,))]
        ordered = sorted(dates)
        scope = Scope("all", tuple(ordered))
        left_cols = [left for left, _ in check.on] + [d for d, _ in check.columns]
        right_cols = [r for _, r in check.on] + [t for _, t in check.columns]
        left = self._read(check.left, ordered, left_cols)
        right = self._read(check.right, ordered, right_cols)
        excused = None
        if check.excused_by and self.exists(check.excused_by):
            excused = self._read(check.excused_by, ordered, [left for left, _ in check.on])
        if check.kind == "sums_match":
            return checks.sums_match_results(check, left, right, scope, self.settings.examples, excused)
        return checks.keys_match_results(check, left, right, scope, self.settings.examples, excused)

    def check_same_dates(self, phase: int, request: Mapping[str, Sequence[dt.date]], unsettled: Mapping[str, set[dt.date]]) -> list[Result]:
        group = [
            t for t, spec in self.tables.items() if spec.phase == phase and t not in self.settings.may_be_empty and self._built(t)
        ]
        if len(group) < 2 or not set(group) & set(request):
            return []
        dates = set().union(*(set(request[t]) for t in group if t in request))
        present, expected = {}, {}
        for t in group:
            hold = unsettled.get(t, set())
            present[t] = (set(self.warehouse.dates_present(t)) & dates) - hold
            expected[t] = set(self.expected(t, self.covered(t, dates, request))) - hold
        scope = Scope("all", tuple(sorted(dates)))
        return checks.same_dates_results(phase, present, expected, self.calendar.dates, self.settings.same_dates_severity, scope)
