"""Runs a plan: level by level, each table's dates cut into shards, one Ray task per shard.

The driver reads each shard's inputs (the shard's dates plus the lookback its table declares),
a Ray task runs the table's Polars function once for the whole shard, and the driver writes the
rows and the shard's run-state rows in one transaction. A failing shard marks its dates failed
with the full error and does not stop the others; transient errors are retried with backoff,
permanent ones are not; bad raw input fails its whole shard. After each level its validation
gate runs; a failed gate marks the dates it checked ``failed`` and blocks the dependents of the
failing table.
"""

from __future__ import annotations

import datetime as dt
import heapq
from concurrent import futures
import math
import logging
import os
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import polars as pl
import pyarrow as pa
import ray

from pipeline.calendar import Calendar, date_runs, runs_text
from pipeline.fingerprint import partition_fingerprints
from pipeline.planner import Fingerprinter, Plan
from pipeline.progress import RunSummary, run_progress
from pipeline.state import FAILED, OK, RUN_STATE, SKIPPED_BOOTSTRAP, RunState, state_rows, state_write, utcnow
from pipeline.tables import Table, registry
from pipeline.tables._raw import RawDataError
from pipeline.warehouse.base import PartitionWrite, Warehouse
from pipeline.warehouse.source import RawSource

log = logging.getLogger(__name__)

# Test-only fault injection: "table@YYYY-MM-DD:action[,...]" with action fail, sleep=SECONDS or
# transient=N (raise a transient error on the first N attempts).
FAULTS_ENV = "NBA_PIPELINE_FAULTS"


class TransientError(RuntimeError):
    """An error worth retrying: the same work may succeed a moment later."""


TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        return isinstance(cause, TRANSIENT_TYPES) and not isinstance(cause, ray.exceptions.RayTaskError)
    return isinstance(exc, TRANSIENT_TYPES)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_text(exc: BaseException) -> str:
    """The full error with its traceback; for a Ray task, the traceback from the worker."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        return "Traceback (from the Ray task):\n" + _ANSI.sub("", str(exc)).strip()
    return "".join(traceback.format_exception(exc)).strip()


def is_bad_input(exc: BaseException) -> bool:
    """Bad raw data (a file or row the source checks refuse), raised here or in a Ray task."""
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
    return isinstance(cause, RawDataError)


def driver_node() -> str:
    return ray.util.get_node_ip_address() if ray.is_initialized() else socket.gethostname()


def failed_on(exc: BaseException) -> str:
    """The node a failure happened on: the Ray task's, or this driver's (reading inputs, writing)."""
    if isinstance(exc, ray.exceptions.RayTaskError) and getattr(exc, "ip", None):
        return str(exc.ip)
    return driver_node()


def error_message(exc: BaseException) -> str:
    """The exception's type and full message, without the traceback."""
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Fault:
    table: str
    day: dt.date
    action: str

    def apply(self, attempt: int) -> None:
        kind, _, arg = self.action.partition("=")
        if kind == "fail":
            raise RuntimeError(f"injected failure for {self.table} on {self.day} ({FAULTS_ENV})")
        if kind == "sleep":
            time.sleep(float(arg))
        elif kind == "transient" and attempt <= int(arg or 1):
            raise TransientError(f"injected transient failure for {self.table} on {self.day}, attempt {attempt}")


def faults_from_env() -> list[Fault]:
    spec = os.environ.get(FAULTS_ENV, "").strip()
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        where, _, action = item.partition(":")
        table_name, _, day = where.partition("@")
        faults.append(Fault(table_name, dt.date.fromisoformat(day), action or "fail"))
    return faults


@dataclass
class ShardResult:
    rows: pa.Table  # Arrow: back through the object store without a copy
    fingerprints: dict[dt.date, str]
    counts: dict[dt.date, int]
    node: str
    seconds: float


@ray.remote(max_retries=0)
def build_shard(
    table_name: str,
    dates: list[dt.date],
    frames: dict[str, pa.Table],
    params: dict[str, object],
    faults: list[Fault],
    attempt: int,
) -> ShardResult:
    """One Ray task: the table's function over a whole shard, checked and fingerprinted."""
    started = time.perf_counter()
    for fault in faults:
        fault.apply(attempt)
    spec = registry()[table_name]
    rows = spec.run(dates, {name: pl.from_arrow(frame) for name, frame in frames.items()}, params)
    return finish_shard(spec, dates, rows, started)


def finish_shard(spec: Table, dates: list[dt.date], rows: pl.DataFrame, started: float) -> ShardResult:
    outside = set(rows["game_date"].unique()) - set(dates)
    if outside:
        raise ValueError(f"{spec.name}: build returned rows for dates outside its shard: {sorted(outside)[:5]}")
    duplicated = rows.filter(rows.select(spec.key).is_duplicated())
    if duplicated.height:
        raise ValueError(
            f"{spec.name}: duplicate natural key {spec.key} in the built rows, e.g. "
            f"{duplicated.select(spec.key).head(3).to_dicts()}"
        )
    counts = dict(rows.group_by("game_date").len().iter_rows()) if rows.height else {}
    return ShardResult(
        rows=rows.to_arrow(),
        fingerprints=partition_fingerprints(rows),
        counts=counts,
        node=ray.util.get_node_ip_address(),
        seconds=time.perf_counter() - started,
    )


def cut_shards(dates: Sequence[dt.date], shard_days: int) -> list[list[dt.date]]:
    """Contiguous runs of at most ``shard_days`` game dates."""
    ordered = sorted(dates)
    return [ordered[i : i + shard_days] for i in range(0, len(ordered), max(1, shard_days))]


# With shard.days unset, a table's dates are cut into this many shards per CPU of the Ray
# cluster: one keeps every CPU busy, and per-shard costs (a Ray task, a transaction, re-reading
# a lookback window) are paid least often. Measured on the bundled data with 2 CPUs: Phase 3 at
# 1 shard per CPU ran 1.35x as fast as at 2, the full backfill 1.1x.
SHARDS_PER_CPU = 1


# How often the driver looks at the writer thread while Ray tasks are still running.
COMMIT_POLL_SECONDS = 0.005


def auto_shard_days(n_dates: int, cpus: int) -> int:
    return max(1, math.ceil(n_dates / (SHARDS_PER_CPU * max(1, cpus))))


@dataclass(order=True)
class _Pending:
    ready_at: float
    table: str = field(compare=False)
    dates: list[dt.date] = field(compare=False)
    attempt: int = field(compare=False)


@dataclass
class _Shard:
    """A submitted shard: the job, when it started, the input fingerprints it was read with,
    and once it is back, its result and the run-state rows it will be committed with."""

    job: _Pending
    started: dt.datetime
    fingerprints: dict[dt.date, str]
    result: ShardResult | None = None
    state: pl.DataFrame | None = None


@dataclass
class RunSettings:
    run_id: str
    shard_days: int | None  # None: auto_shard_days for the cluster's CPUs
    max_attempts: int
    retry_backoff_seconds: float
    force: bool  # run even where upstream is incomplete (reproducing failures only)
    params: Mapping[str, Mapping[str, object]]
    gate_enforced: bool = True  # false: a failed gate is reported loudly but blocks nothing


# A gate gets (table names of a finished level, {table: dates built}) and returns the tables
# whose critical checks failed, each with the failed checks as text: their dependents must not run.
Gate = Callable[[list[str], dict[str, list[dt.date]]], dict[str, str]]


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
        # Every warehouse write goes through this one thread, in order: the driver reads and
        # submits the next shards while finished ones are committed.
        self._writer = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-writer")

    def _write_now(self, writes: list[PartitionWrite]) -> None:
        self._writer.submit(self.warehouse.write, writes).result()

    # -- plan execution ------------------------------------------------------------------------

    def execute(self, plan: Plan, gate: Gate | None = None) -> RunSummary:
        try:
            return self._execute(plan, gate)
        finally:
            self._writer.shutdown(wait=True)

    def _execute(self, plan: Plan, gate: Gate | None) -> RunSummary:
        work = {name: p.build for name, p in plan.tables.items() if p.build}
        if not work:
            return self.summary
        for name in self.tables:
            ensure_table(self.warehouse, self.tables[name])
        self.warehouse.ensure_table(RUN_STATE)
        for name in work:
            self.summary.outcome(name)  # the summary lists tables in DAG order
        all_dates = sorted({d for dates in work.values() for d in dates})
        if all_dates:
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
                label = f"level {number}: " + (self.tables[runnable[0]].short_name if len(runnable) == 1 else f"{len(runnable)} tables")
                task = progress.add_task(label, total=sum(len(work[n]) for n in runnable), rows=0)
                log.info(
                    "level %d: %s", number, ", ".join(f"{self.tables[n].short_name} ({len(work[n])} dates)" for n in runnable)
                )
                built = self._run_level(runnable, work, progress, task, overall)
                if gate is not None:
                    failing = gate(runnable, built)
                    if self.settings.gate_enforced:
                        gated_off |= set(failing)
                        self.summary.gate_failures.extend(failing)
                        for name, why in failing.items():
                            self._mark_gate_failed(name, built.get(name, []), why)
                    else:
                        self.summary.gate_overridden.extend(failing)
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

    def _run_level(self, names: list[str], work: dict[str, dict[dt.date, str]], progress, task, overall) -> dict[str, list[dt.date]]:
        built: dict[str, list[dt.date]] = {n: [] for n in names}
        pending: list[_Pending] = []
        now = time.monotonic()
        for name in names:
            spec = self.tables[name]
            dates = list(work[name])
            bootstrap = [d for d in dates if self.calendar.in_bootstrap(d, spec.bootstrap_days)]
            if bootstrap:
                self._mark_bootstrap(spec, bootstrap)
                progress.advance(task, len(bootstrap))
                progress.advance(overall, len(bootstrap))
            ready, blocked = self._split_ready(spec, [d for d in dates if d not in set(bootstrap)])
            if blocked:
                self.summary.outcome(name).blocked.update(blocked)
                progress.advance(task, len(blocked))
                progress.advance(overall, len(blocked))
                log.warning("%s: %d date(s) not run, upstream incomplete: %s", name, len(blocked), runs_text(date_runs(blocked, self.calendar.dates)))
            shard_days = self.settings.shard_days or auto_shard_days(len(ready), int(ray.cluster_resources().get("CPU", 1)))
            for shard in cut_shards(ready, shard_days):
                heapq.heappush(pending, _Pending(now, name, shard, 1 + max(self.state.attempts_before(name, d) for d in shard)))
        in_flight: dict[ray.ObjectRef, _Shard] = {}
        committing: dict[futures.Future, list[_Shard]] = {}

        def failed(shard: _Shard, exc: BaseException) -> None:
            followups = self._fail(shard.job, exc, shard.started, shard.fingerprints)
            for followup in followups:
                heapq.heappush(pending, followup)
            if not followups:
                progress.advance(task, len(shard.job.dates))
                progress.advance(overall, len(shard.job.dates))

        def settle_commits(timeout: float | None) -> None:
            done, _ = futures.wait(committing, timeout=timeout, return_when=futures.FIRST_COMPLETED)
            for future in done:
                committing.pop(future)
                for shard, exc in future.result():
                    if exc is not None:
                        failed(shard, exc)
                        continue
                    self._record(shard)
                    built[shard.job.table].extend(shard.job.dates)
                    for bar in (task, overall):
                        progress.update(bar, rows=progress.tasks[bar].fields["rows"] + shard.result.rows.num_rows)
                        progress.advance(bar, len(shard.job.dates))

        while pending or in_flight or committing:
            # One shard at a time, so that shards finishing meanwhile go to the writer early.
            if pending and pending[0].ready_at <= time.monotonic():
                job = heapq.heappop(pending)
                shard = _Shard(job, utcnow(), {d: self.fingerprinter.expected(job.table, d) for d in job.dates})
                try:
                    in_flight[self._submit(job)] = shard
                except Exception as exc:  # noqa: BLE001 - a bad input fails this shard, not the run
                    failed(shard, exc)
            due = bool(pending) and pending[0].ready_at <= time.monotonic()
            next_retry = 0.0 if due else (max(0.0, pending[0].ready_at - time.monotonic()) if pending else None)
            if committing:
                settle_commits(timeout=0 if in_flight or due else next_retry)
            if not in_flight:
                if pending and not committing and not due:
                    time.sleep(next_retry)
                continue
            # While the writer commits, come back often to record what it has finished.
            timeout = min(next_retry if next_retry is not None else COMMIT_POLL_SECONDS, COMMIT_POLL_SECONDS) if committing else next_retry
            done, waiting = ray.wait(list(in_flight), num_returns=1, timeout=timeout)
            if done and waiting:  # everything else already finished goes into the same transaction
                done += ray.wait(waiting, num_returns=len(waiting), timeout=0)[0]
            finished: list[_Shard] = []
            for ref in done:
                shard = in_flight.pop(ref)
                try:
                    shard.result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure is recorded per date
                    failed(shard, exc)
                else:
                    finished.append(shard)
            if finished:
                committing[self._writer.submit(self._commit, finished)] = finished
        return built

    def _split_ready(self, spec: Table, dates: list[dt.date]) -> tuple[list[dt.date], list[dt.date]]:
        upstream = [inp for inp in spec.inputs if not inp.is_source]
        if self.settings.force or all(
            self.state.is_done(inp.table, d) for inp in upstream for d in self.calendar.covering(inp.lookback, dates)
        ):
            return dates, []  # the usual case: every window complete, checked once over their union
        ready, blocked = [], []
        for day in dates:
            complete = all(
                self.state.is_done(inp.table, d)
                for inp in upstream
                for d in self.calendar.window(inp.lookback, day)
            )
            (ready if complete else blocked).append(day)
        return ready, blocked

    # -- one shard -----------------------------------------------------------------------------

    def _submit(self, job: _Pending) -> ray.ObjectRef:
        spec = self.tables[job.table]
        frames = self.read_inputs(spec, job.dates)
        faults = [f for f in self.faults if f.table == job.table and f.day in job.dates]
        params = dict(self.settings.params.get(job.table, {}))
        # As Arrow, the frames travel through Ray's object store without a copy.
        arrow = {name: frame.to_arrow() for name, frame in frames.items()}
        return build_shard.remote(job.table, job.dates, arrow, params, faults, job.attempt)

    def read_inputs(self, spec: Table, dates: list[dt.date]) -> dict[str, pl.DataFrame]:
        """Each input over the union of the dates' lookback windows (and nothing else: a shard
        may skip dates whose upstream failed)."""
        frames = {}
        for inp in spec.inputs:
            window = sorted({d for day in dates for d in self.calendar.window(inp.lookback, day)})
            if inp.is_source:
                frame = self.source.read(inp.table, window[0], window[-1])
                frame = frame.select(inp.columns) if inp.columns else frame
            else:
                frame = self.warehouse.read(inp.table, start=window[0], end=window[-1], columns=inp.columns)
            if len(window) < (window[-1] - window[0]).days + 1 and "game_date" in frame.columns:
                frame = frame.filter(pl.col("game_date").is_in(window))
            frames[inp.table] = frame
        return frames

    def _commit(self, shards: list[_Shard]) -> list[tuple[_Shard, BaseException | None]]:
        """On the writer thread: write finished shards, each with its run-state rows, in one
        transaction; if that fails, shard by shard, so that one bad shard does not hold back the
        others. The driver records the outcome (:meth:`_record`) on its own thread."""
        try:
            self.warehouse.write([w for shard in shards for w in self._writes(shard)])
        except Exception as exc:  # noqa: BLE001 - the transaction rolled back; nothing was written
            if len(shards) == 1:
                return [(shards[0], exc)]
            return [outcome for shard in shards for outcome in self._commit([shard])]
        return [(shard, None) for shard in shards]

    def _writes(self, shard: _Shard) -> list[PartitionWrite]:
        job, result = shard.job, shard.result
        shard.state = state_rows(
            job.table,
            job.dates,
            status=OK,
            attempts={d: job.attempt for d in job.dates},
            input_fingerprints=shard.fingerprints,
            output_fingerprints={d: result.fingerprints.get(d, "empty") for d in job.dates},
            rows_written=result.counts,
            started_at=shard.started,
            finished_at=utcnow(),
            node=result.node,
            run_id=self.settings.run_id,
        )
        return [PartitionWrite(job.table, job.dates, pl.from_arrow(result.rows)), state_write(job.table, shard.state)]

    def _record(self, shard: _Shard) -> None:
        """After a commit: the in-memory state, the fingerprints and the summary catch up."""
        job, result = shard.job, shard.result
        self.state.update(job.table, shard.state)
        self.fingerprinter.invalidate(job.table)
        outcome = self.summary.outcome(job.table)
        outcome.built += len(job.dates)
        outcome.rows += result.rows.num_rows
        outcome.seconds += result.seconds
        if job.table == "nba_raw.quarantine":
            self.summary.quarantined += result.rows.num_rows
        log.debug("%s %s..%s: %d rows on %s in %.2fs", job.table, job.dates[0], job.dates[-1], result.rows.num_rows, result.node, result.seconds)

    def _fail(self, job: _Pending, exc: BaseException, started: dt.datetime, fingerprints: dict[dt.date, str]) -> list[_Pending]:
        """Retry a transient error with backoff; split a failed multi-date shard so one bad date
        does not fail its neighbours, unless the error is bad raw input, which fails its whole
        shard (nothing of it is written until the file is fixed); otherwise record the dates
        failed. Returns the follow-ups."""
        text = error_text(exc)
        message = error_message(exc)
        where = f"{job.table} {job.dates[0]}..{job.dates[-1]}"
        attempts_this_run = job.attempt - max(self.state.attempts_before(job.table, d) for d in job.dates)
        if is_transient(exc) and attempts_this_run < self.settings.max_attempts:
            delay = self.settings.retry_backoff_seconds * 2 ** (attempts_this_run - 1)
            log.warning("%s: transient error, attempt %d in %.1fs: %s", where, job.attempt + 1, delay, message)
            return [_Pending(time.monotonic() + delay, job.table, job.dates, job.attempt + 1)]
        if len(job.dates) > 1 and not is_bad_input(exc):
            half = len(job.dates) // 2
            log.debug("%s: failed, splitting the shard to find the failing date(s): %s", where, message)
            # Isolating the failing date is part of the same attempt, not a retry.
            return [_Pending(time.monotonic(), job.table, part, job.attempt) for part in (job.dates[:half], job.dates[half:])]
        log.error("%s failed: %s", where, message)
        log.debug("%s failed (attempt %d):\n%s", where, job.attempt, text)
        rows = state_rows(
            job.table,
            job.dates,
            status=FAILED,
            attempts={d: job.attempt for d in job.dates},
            input_fingerprints=fingerprints,
            error=text,
            started_at=started,
            finished_at=utcnow(),
            node=failed_on(exc),
            run_id=self.settings.run_id,
        )
        self._write_now([state_write(job.table, rows)])
        self.state.update(job.table, rows)
        self.fingerprinter.invalidate(job.table)
        outcome = self.summary.outcome(job.table)
        for day in job.dates:
            outcome.failed[day] = message
        return []

    def _mark_gate_failed(self, name: str, dates: list[dt.date], why: str) -> None:
        """Dates whose rows failed the gate are ``failed`` in the run state (their rows stay, for
        inspection): a later run rebuilds and re-checks them before any dependent reads them."""
        if not dates:
            return
        now = utcnow()
        kept = {d: self.state.get(name, d) for d in dates}
        rows = state_rows(
            name,
            dates,
            status=FAILED,
            attempts={d: kept[d].attempts for d in dates},
            input_fingerprints={d: kept[d].input_fingerprint for d in dates},
            output_fingerprints={d: kept[d].output_fingerprint for d in dates},
            rows_written={d: kept[d].rows_written for d in dates},
            error=f"validation gate failed: {why}",
            started_at=now,
            finished_at=now,
            node=driver_node(),
            run_id=self.settings.run_id,
        )
        self._write_now([state_write(name, rows)])
        self.state.update(name, rows)
        self.fingerprinter.invalidate(name)
        self.summary.outcome(name).gate_failed.update(dates)

    def _mark_bootstrap(self, spec: Table, dates: list[dt.date]) -> None:
        now = utcnow()
        rows = state_rows(
            spec.name,
            dates,
            status=SKIPPED_BOOTSTRAP,
            attempts={d: 1 for d in dates},
            input_fingerprints={d: self.fingerprinter.expected(spec.name, d) for d in dates},
            output_fingerprints={d: "empty" for d in dates},
            started_at=now,
            finished_at=now,
            node=None,
            run_id=self.settings.run_id,
        )
        empty = pl.DataFrame(schema=spec.schema)
        self._write_now([PartitionWrite(spec.name, dates, empty), state_write(spec.name, rows)])
        self.state.update(spec.name, rows)
        self.fingerprinter.invalidate(spec.name)
        self.summary.outcome(spec.name).bootstrap += len(dates)


def ensure_table(warehouse: Warehouse, spec: Table) -> None:
    warehouse.ensure_table(spec.warehouse_schema)
