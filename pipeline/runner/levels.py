"""The level loop: a plan's levels in order, each level's tables cut into shards, the shards run
as Ray tasks, retried or split when they fail, committed when they finish, and the level's
validation gate run before the next level starts.

**Failures.** A failing shard marks its unit's dates failed with the full error and does not
stop the others; transient errors are retried with backoff (a warehouse retries its own transient
errors inside, once); a failed unit of several dates is split to isolate the failing date, unless
the error is bad raw input, which fails the whole unit. After each level its validation gate
runs; a failed gate marks the dates it checked ``failed`` and blocks the failing table's
dependents.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import polars as pl
import ray

from pipeline.calendar import Calendar, date_runs, runs_text
from pipeline.planner import Fingerprinter, Plan
from pipeline.profile import TABLE_PROFILE
from pipeline.progress import RunSummary, run_progress
from pipeline.runner.commits import Committer, UnitBuild
from pipeline.runner.errors import Node, error_message, error_text, is_bad_input, is_transient
from pipeline.runner.faults import faults_from_env
from pipeline.runner.shards import DEFAULT_MAX_ROWS, Shard, ShardCutter, Unit
from pipeline.runner.worker import ShardResult, WorkerIO, build_shard, read_inputs
from pipeline.state import RUN_STATE, RunState, utcnow
from pipeline.tables import Table, registry
from pipeline.warehouse import Warehouse
from pipeline.warehouse.source import RawSource

log = logging.getLogger(__name__)

# How often the driver looks at the writer thread while Ray tasks are still running.
COMMIT_POLL_SECONDS = 0.005


@dataclass
class RunSettings:
    run_id: str
    shard_days: int | None  # None: cut by rows and parallelism (ShardCutter)
    max_attempts: int
    retry_backoff_seconds: float
    force: bool  # run even where upstream is incomplete (reproducing failures only)
    params: Mapping[str, Mapping[str, object]]
    gate_enforced: bool = True  # false: a failed gate is reported loudly but blocks nothing
    max_rows: int = DEFAULT_MAX_ROWS
    # The warehouse config a worker opens itself, when the warehouse is reachable from workers.
    warehouse_config: Mapping[str, object] | None = None
    # Finished units wait at most this long to be committed together (Committer).
    commit_interval_seconds: float = 0.0
    # The CPUs the cluster can reach once grown (ray.reachable_cpus); None: those alive now.
    reachable_cpus: int | None = None


# A gate gets (table names of a finished level, {table: dates built}) and returns the tables
# whose critical checks failed, each with the failed checks as text: their dependents must not run.
Gate = Callable[[list[str], dict[str, list[dt.date]]], dict[str, str]]


@dataclass(order=True)
class _Pending:
    ready_at: float
    unit: int = field(compare=False)
    index: int = field(compare=False)  # the shard's place in its unit


class Runner:
    def __init__(
        self,
        warehouse: Warehouse,
        source: RawSource,
        calendar: Calendar,
        state: RunState,
        fingerprinter: Fingerprinter,
        settings: RunSettings,
        tables: Mapping[str, Table] | None = None,
    ):
        self.warehouse = warehouse
        self.source = source
        self.calendar = calendar
        self.state = state
        self.fingerprinter = fingerprinter
        self.settings = settings
        self.tables = dict(tables or registry())
        self.faults = faults_from_env()
        self.summary = RunSummary(settings.run_id)
        self.io = (
            WorkerIO(dict(settings.warehouse_config), source.files)
            if settings.warehouse_config is not None and warehouse.reachable_from_workers
            else None
        )
        self.committer = Committer(warehouse, state, fingerprinter, self.summary, settings.run_id, settings.commit_interval_seconds)
        self._units: dict[int, UnitBuild] = {}
        self._next_unit = itertools.count()
        self._calendar_ref = None
        self._requested_cpus = False

    # -- plan execution ------------------------------------------------------------------------

    def execute(self, plan: Plan, gate: Gate | None = None) -> RunSummary:
        jobs_before = self.warehouse.job_counts()
        try:
            return self._execute(plan, gate)
        finally:
            self.committer.close()
            after = self.warehouse.job_counts()
            self.summary.jobs = {kind: n - jobs_before.get(kind, 0) for kind, n in after.items() if n > jobs_before.get(kind, 0)}
            if self._requested_cpus:  # let the cluster shrink again once idle
                from ray.autoscaler.sdk import request_resources

                request_resources(num_cpus=0)

    def _execute(self, plan: Plan, gate: Gate | None) -> RunSummary:
        work = {name: p.build for name, p in plan.tables.items() if p.build}
        if not work:
            return self.summary
        for name in self.tables:
            self.warehouse.ensure_table(self.tables[name].warehouse_schema)
        self.warehouse.ensure_table(RUN_STATE)
        self.warehouse.ensure_table(TABLE_PROFILE)
        self.summary.worker_io = self.io is not None
        self._calendar_ref = ray.put(self.calendar)
        for name in work:
            self.summary.outcome(name)  # the summary lists tables in DAG order
        all_dates = sorted({d for dates in work.values() for d in dates})
        self.summary.first_date, self.summary.last_date = all_dates[0], all_dates[-1]
        gated_off: set[str] = set()
        with run_progress() as progress:
            overall = progress.add_task("run", total=plan.total_dates, rows=0)
            for number, level in enumerate(plan.levels):
                names = [n for n in level if n in work]
                if not names:
                    continue
                blocked_by_gate = {n for n in names if gated_off & set(self._all_upstream(n))}
                for name in blocked_by_gate:
                    self.summary.outcome(name).blocked.update(work[name])
                    progress.advance(overall, len(work[name]))
                runnable = [n for n in names if n not in blocked_by_gate]
                if not runnable:
                    continue
                level_started = time.monotonic()
                label = f"level {number}: " + (self.tables[runnable[0]].short_name if len(runnable) == 1 else f"{len(runnable)} tables")
                task = progress.add_task(label, total=sum(len(work[n]) for n in runnable), rows=0)
                log.info("level %d: %s", number, ", ".join(f"{self.tables[n].short_name} ({len(work[n])} dates)" for n in runnable))
                built = self._run_level(runnable, work, _Progress(progress, task, overall))
                if gate is not None:
                    failing = gate(runnable, built)
                    if self.settings.gate_enforced:
                        gated_off |= set(failing)
                        self.summary.gate_failures.extend(failing)
                        for name, why in failing.items():
                            if built.get(name):
                                self.committer.mark_gate_failed(name, built[name], why)
                    else:
                        self.summary.gate_overridden.extend(failing)
                self.summary.levels.append({"level": number, "tables": runnable, "seconds": round(time.monotonic() - level_started, 3)})
        return self.summary

    def _all_upstream(self, name: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.tables[name].upstream_tables)
        while stack:
            up = stack.pop()
            if up not in seen:
                seen.add(up)
                stack.extend(self.tables[up].upstream_tables)
        return seen

    def cutter(self) -> ShardCutter:
        """Cuts for the CPUs the run can reach: the Ray runtime's now, or, on an autoscaling
        cluster, those it reaches once grown (``ray.reachable_cpus``; a fresh cluster may have
        none alive yet). Those are asked of the autoscaler too, so that it starts nodes for the
        shards waiting instead of seeing one shard at a time."""
        alive = int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else 1
        reachable = self.settings.reachable_cpus or 0
        if reachable > alive:
            from ray.autoscaler.sdk import request_resources

            request_resources(num_cpus=reachable)
            self._requested_cpus = True
        cpus = max(1, alive, reachable)
        return ShardCutter(self.calendar, self.state, self.source, cpus=cpus, max_rows=self.settings.max_rows, shard_days=self.settings.shard_days)

    def _run_level(self, names: list[str], work: dict[str, dict[dt.date, str]], progress: "_Progress") -> dict[str, list[dt.date]]:
        built: dict[str, list[dt.date]] = {n: [] for n in names}
        pending: list[_Pending] = []
        cutter = self.cutter()
        for name in names:
            spec = self.tables[name]
            dates = list(work[name])
            bootstrap = [d for d in dates if self.calendar.in_bootstrap(d, spec.bootstrap_days)]
            if bootstrap:
                self.committer.mark_bootstrap(spec, bootstrap)
                progress.advance(len(bootstrap))
            ready, blocked = self._split_ready(spec, [d for d in dates if d not in set(bootstrap)])
            if blocked:
                self.summary.outcome(name).blocked.update(blocked)
                progress.advance(len(blocked))
                log.warning("%s: %d date(s) not run, upstream incomplete: %s", name, len(blocked), runs_text(date_runs(blocked, self.calendar.dates)))
            for unit in cutter.cut(spec, ready):
                pending += self._start(unit, 1 + max(self.state.attempts_before(name, d) for d in unit.dates))
        heapq.heapify(pending)
        in_flight: dict[ray.ObjectRef, tuple[int, int]] = {}
        self.committer.start_level()

        def failed(unit_id: int, exc: BaseException) -> None:
            """A unit failed for good (its shards still out are dropped as they come back)."""
            self._units[unit_id].failed = True
            followups = self._fail(unit_id, exc)
            for followup in followups:
                heapq.heappush(pending, followup)
            if not followups:
                progress.advance(len(self._units[unit_id].dates))

        def settled(outcomes: list[tuple[UnitBuild, BaseException | None]]) -> None:
            for unit, exc in outcomes:
                if exc is not None:
                    failed(unit.id, exc)
                    continue
                self._units.pop(unit.id)
                built[unit.table].extend(unit.dates)
                progress.advance(len(unit.dates), rows=sum(r.rows_built for r in unit.results.values()))

        # Shards out at once: enough to keep every CPU the cluster can reach busy with the next
        # one queued, and no more, so that the inputs the driver reads (and the rows coming back)
        # do not pile up.
        most_in_flight = cutter.cpus + 1
        while pending or in_flight or self.committer.busy:
            # One shard at a time, so that shards finishing meanwhile go to the writer early.
            if len(in_flight) < most_in_flight and pending and pending[0].ready_at <= time.monotonic():
                job = heapq.heappop(pending)
                if not self._units[job.unit].failed:
                    try:
                        in_flight[self._submit(job)] = (job.unit, job.index)
                    except Exception as exc:  # noqa: BLE001 - a bad input fails this unit, not the run
                        failed(job.unit, exc)
            room = len(in_flight) < most_in_flight
            due = room and bool(pending) and pending[0].ready_at <= time.monotonic()
            next_retry = 0.0 if due else (max(0.0, pending[0].ready_at - time.monotonic()) if pending and room else None)
            self.committer.flush(last=not pending and not in_flight)
            if not in_flight:
                if self.committer.committing:
                    settled(self.committer.settle(timeout=next_retry))
                elif not due and (wait := _soonest(next_retry, self.committer.due_in())):
                    time.sleep(wait)
                continue
            settled(self.committer.settle(timeout=0))
            # While the writer commits, come back often to record what it has finished.
            wake = COMMIT_POLL_SECONDS if self.committer.committing else self.committer.due_in()
            done, waiting = ray.wait(list(in_flight), num_returns=1, timeout=_soonest(next_retry, wake))
            if done and waiting:  # everything else already finished goes into the same transaction
                done += ray.wait(waiting, num_returns=len(waiting), timeout=0)[0]
            for ref in done:
                unit_id, index = in_flight.pop(ref)
                unit = self._units[unit_id]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure is recorded per date
                    retry = self._retry(unit_id, index, exc)
                    if retry is not None:
                        heapq.heappush(pending, retry)
                    elif not unit.failed:
                        failed(unit_id, exc)
                    continue
                self._received(unit, index, result)
                if unit.failed:
                    self.committer.discard(unit)
                elif unit.complete:
                    self.committer.add(unit)
        return built

    def _start(self, unit: Unit, attempt: int) -> list[_Pending]:
        unit_id = next(self._next_unit)
        fingerprints = {d: self.fingerprinter.expected(unit.table, d) for d in unit.dates}
        self._units[unit_id] = UnitBuild(unit_id, unit, attempt, utcnow(), fingerprints, {i: attempt for i in range(len(unit.shards))})
        now = time.monotonic()
        return [_Pending(now, unit_id, i) for i in range(len(unit.shards))]

    def _split_ready(self, spec: Table, dates: list[dt.date]) -> tuple[list[dt.date], list[dt.date]]:
        upstream = [inp for inp in spec.inputs if not inp.is_source]
        if self.settings.force or all(
            self.state.is_done(inp.table, d) for inp in upstream for d in self.calendar.covering(inp.lookback, dates)
        ):
            return dates, []  # the usual case: every window complete, checked once over their union
        ready, blocked = [], []
        for day in dates:
            complete = all(self.state.is_done(inp.table, d) for inp in upstream for d in self.calendar.window(inp.lookback, day))
            (ready if complete else blocked).append(day)
        return ready, blocked

    # -- one shard -----------------------------------------------------------------------------

    def _submit(self, job: _Pending) -> ray.ObjectRef:
        unit = self._units[job.unit]
        shard = unit.unit.shards[job.index]
        spec = self.tables[shard.table]
        faults = [f for f in self.faults if f.table == shard.table and f.day in shard.dates]
        params = dict(self.settings.params.get(shard.table, {}))
        inputs = None
        if self.io is None:  # the driver reads; as Arrow the frames travel through Ray's object store without a copy
            frames = read_inputs(self.warehouse, self.source.files, self.calendar, spec, shard.dates, shard.teams)
            inputs = {name: frame.to_arrow() for name, frame in frames.items()}
            self.summary.driver_bytes += sum(t.nbytes for t in inputs.values())
        attempt = unit.attempts[job.index]
        return build_shard.remote(shard, inputs, self.io, self._calendar_ref, params, faults, attempt)

    def _received(self, unit: UnitBuild, index: int, result: ShardResult) -> None:
        """A shard's result is in: its rows go to the staging area at once if its unit is built
        in pieces, so that the driver holds no more than one piece."""
        unit.results[index] = result
        self.summary.driver_bytes += sum(t.nbytes for t in (result.hashes, result.rows) if t is not None)
        # The profile is a summary the driver commits (table_profile), not the table's rows: counted apart.
        self.summary.profile_bytes += result.profile.nbytes if result.profile is not None else 0
        self.summary.rows_bytes += result.nbytes
        if result.staged is not None:
            unit.staged[index] = result.staged
            self.summary.worker_loads += 1
        elif len(unit.unit.shards) > 1 and not unit.failed:
            rows = pl.from_arrow(result.rows)
            result.rows = None
            unit.staged[index] = self.committer.stage(unit.table, rows)

    def _retry(self, unit_id: int, index: int, exc: BaseException) -> _Pending | None:
        """A transient error: the same shard again, after a backoff, while attempts remain."""
        unit = self._units[unit_id]
        attempt = unit.attempts[index]
        attempts_this_run = attempt - max(self.state.attempts_before(unit.table, d) for d in unit.dates)
        if unit.failed or not is_transient(exc) or attempts_this_run >= self.settings.max_attempts:
            return None
        delay = self.settings.retry_backoff_seconds * 2 ** (attempts_this_run - 1)
        shard = unit.unit.shards[index]
        log.warning("%s %s..%s: transient error, attempt %d in %.1fs: %s", unit.table, shard.dates[0], shard.dates[-1], attempt + 1, delay, error_message(exc))
        unit.attempts[index] = attempt + 1
        unit.attempt = max(unit.attempt, attempt + 1)
        return _Pending(time.monotonic() + delay, unit_id, index)

    def _fail(self, unit_id: int, exc: BaseException) -> list[_Pending]:
        """A unit failed: split it so one bad date does not fail its neighbours, unless the error
        is bad raw input, which fails the whole unit (nothing of it is written until the file is
        fixed); otherwise record the dates failed. Returns the follow-ups."""
        unit = self._units[unit_id]
        self.committer.discard(unit)
        unit.results.clear()
        message = error_message(exc)
        where = f"{unit.table} {unit.dates[0]}..{unit.dates[-1]}"
        if len(unit.dates) > 1 and not is_bad_input(exc):
            log.debug("%s: failed, splitting to find the failing date(s): %s", where, message)
            half = len(unit.dates) // 2
            followups = []
            for part in (unit.dates[:half], unit.dates[half:]):
                teams = [s.teams for s in unit.unit.shards]
                shards = tuple(Shard(unit.table, tuple(part), t) for t in teams)
                # Isolating the failing date is part of the same attempt, not a retry.
                followups += self._start(Unit(unit.table, tuple(part), shards), unit.attempt)
            return followups
        text = error_text(exc)
        log.error("%s failed: %s", where, message)
        log.debug("%s failed (attempt %d):\n%s", where, unit.attempt, text)
        self.committer.mark_failed(unit, text, Node.of_failure(exc))
        outcome = self.summary.outcome(unit.table)
        for day in unit.dates:
            outcome.failed[day] = message
        return []


def _soonest(*waits: float | None) -> float | None:
    """The shortest of the waits given (None: no limit)."""
    given = [w for w in waits if w is not None]
    return min(given) if given else None


@dataclass
class _Progress:
    """A level's bar and the run's, advanced together."""

    progress: object
    level: object
    overall: object

    def advance(self, dates: int, rows: int = 0) -> None:
        for bar in (self.level, self.overall):
            if rows:
                self.progress.update(bar, rows=self.progress.tasks[bar].fields["rows"] + rows)
            self.progress.advance(bar, dates)
