"""Runs a plan: level by level, each table's dates cut into shards, one Ray task per shard.

**Shards.** A table's dates are cut so that every Ray CPU has work and no shard reads much more
than ``shard.max_rows`` input rows (its dates plus the lookback its table declares), so a task's
memory does not grow with the data. A table whose inputs reach back to the season's opener
cannot be cut by dates without every later shard re-reading the season before it; a table
declared ``split_by_team`` is cut by teams instead: a shard builds some teams' rows on all of
the season's dates, from the history of the players listed for those teams. The shards of one
date range (its teams) form a *unit*, committed together.

**Reading and writing.** With DuckDB the driver reads each shard's inputs and writes its rows
(the file lives with the driver). With a warehouse the workers can reach themselves (BigQuery),
a shard task reads its own inputs, stages its own rows and returns only a handle and the rows'
hashes: the driver sends table names, dates and teams, and commits. Either way a unit's rows
and its run-state rows are written in one transaction, so a killed run leaves every date
either old or new. Rows of a unit built in several pieces are staged as they arrive and written
together (the driver never holds a whole season).

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
import json
import logging
import math
import os
import re
import socket
import time
import traceback
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import polars as pl
import pyarrow as pa
import ray

from pipeline.calendar import Calendar, date_runs, runs_text
from pipeline.fingerprint import fingerprints_of, row_hashes
from pipeline.planner import Fingerprinter, Plan
from pipeline.progress import RunSummary, run_progress
from pipeline.state import FAILED, OK, RUN_STATE, SKIPPED_BOOTSTRAP, RunState, state_rows, state_write, utcnow
from pipeline.tables import Input, Table, registry
from pipeline.tables._raw import RawDataError
from pipeline.warehouse import Warehouse, open_warehouse
from pipeline.warehouse.base import PartitionWrite
from pipeline.warehouse.source import SOURCES, RawFiles, RawSource

log = logging.getLogger(__name__)

# Test-only fault injection: "table@YYYY-MM-DD:action[,...]" with action fail, sleep=SECONDS,
# transient=N (raise a transient error on the first N attempts) or wait_for=PATH (hold the shard
# until PATH exists, having created PATH.waiting: a test decides when the run goes on, instead of
# guessing a sleep).
WAIT_FOR_LIMIT_SECONDS = 600
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


def error_message(exc: BaseException) -> str:
    """The exception's type and full message, without the traceback."""
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Node:
    """Where work ran: the Ray node's ID (unique on any cluster) and its IP address beside it."""

    id: str | None
    ip: str

    @classmethod
    def here(cls) -> "Node":
        if ray.is_initialized():
            return cls(ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())
        return cls(None, socket.gethostname())

    @classmethod
    def of_failure(cls, exc: BaseException) -> "Node":
        """The node a failure happened on: the Ray task's (named in the error by the task
        itself), or this driver's (reading inputs, writing)."""
        cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
        for note in getattr(cause, "__notes__", ()):
            if note.startswith(NODE_NOTE):
                found = json.loads(note[len(NODE_NOTE) :])
                return cls(found["id"], found["ip"])
        return cls.here()

    @staticmethod
    def joined(nodes: Sequence["Node"]) -> "Node":
        """The nodes a date range was built on (several, for a unit built in pieces)."""
        ids = sorted({n.id for n in nodes if n.id})
        return Node(",".join(ids) or None, ",".join(sorted({n.ip for n in nodes})))


NODE_NOTE = "ran on Ray node "


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
        elif kind == "wait_for":
            Path(f"{arg}.waiting").touch()  # tells the test this shard, inside the run's lock, is parked
            deadline = time.monotonic() + WAIT_FOR_LIMIT_SECONDS
            while not Path(arg).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"injected wait for {self.table} on {self.day}: {arg} did not appear in {WAIT_FOR_LIMIT_SECONDS}s")
                time.sleep(0.1)
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


# -- one shard ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One Ray task: a table's rows on ``dates`` (of the teams in ``teams``; None: all teams)."""

    table: str
    dates: tuple[dt.date, ...]
    teams: tuple[str, ...] | None = None


@dataclass
class ShardResult:
    rows: pa.Table | None  # the rows, when the driver writes them (Arrow: no copy through the object store)
    staged: str | None  # or the handle of the rows the task staged itself
    counts: dict[dt.date, int]  # rows per date
    # The dates' fingerprints; for a shard of some teams, the hashes of its rows instead, which
    # make the fingerprints together with the other teams' (pipeline.fingerprint).
    fingerprints: dict[dt.date, str] | None
    hashes: pa.Table | None
    nbytes: int  # the rows' size
    node: Node
    seconds: float

    @property
    def rows_built(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class WorkerIO:
    """What a task needs to read its inputs and stage its rows itself: the warehouse's config
    (names and endpoints, never credentials: a worker has its own) and the raw files."""

    warehouse: Mapping[str, object]
    raw: RawFiles


_worker_warehouses: dict[str, Warehouse] = {}


def worker_warehouse(config: Mapping[str, object]) -> Warehouse:
    """This worker process's connection to the warehouse, opened once and kept for its tasks."""
    from omegaconf import OmegaConf

    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _worker_warehouses:
        _worker_warehouses[key] = open_warehouse(OmegaConf.create(dict(config)))
    return _worker_warehouses[key]


@ray.remote(max_retries=0)
def build_shard(
    shard: Shard,
    inputs: dict[str, pa.Table] | None,
    io: WorkerIO | None,
    calendar: Calendar,
    params: dict[str, object],
    faults: list[Fault],
    attempt: int,
) -> ShardResult:
    """The table's function over a whole shard, checked, hashed, and staged or returned."""
    started = time.perf_counter()
    node = Node.here()
    try:
        for fault in faults:
            fault.apply(attempt)
        spec = registry()[shard.table]
        if inputs is None:
            warehouse = worker_warehouse(io.warehouse)
            frames = read_inputs(warehouse, io.raw, calendar, spec, shard.dates, shard.teams)
        else:
            frames = {name: pl.from_arrow(frame) for name, frame in inputs.items()}
        rows = spec.run(list(shard.dates), frames, params)
        if shard.teams is not None:
            rows = rows.filter(pl.col("team_abbr").is_in(shard.teams))
        check_rows(spec, shard, rows)
        staged = worker_warehouse(io.warehouse).stage(spec.name, rows) if inputs is None else None
    except Exception as exc:
        exc.add_note(NODE_NOTE + json.dumps({"id": node.id, "ip": node.ip}))
        raise
    hashes = row_hashes(rows)
    return ShardResult(
        rows=None if staged else rows.to_arrow(),
        staged=staged,
        counts=dict(rows.group_by("game_date").len().iter_rows()),
        fingerprints=fingerprints_of(hashes) if shard.teams is None else None,
        hashes=hashes.to_arrow() if shard.teams is not None else None,
        nbytes=int(rows.estimated_size()),
        node=node,
        seconds=time.perf_counter() - started,
    )


def check_rows(spec: Table, shard: Shard, rows: pl.DataFrame) -> None:
    outside = set(rows["game_date"].unique()) - set(shard.dates)
    if outside:
        raise ValueError(f"{spec.name}: build returned rows for dates outside its shard: {sorted(outside)[:5]}")
    duplicated = rows.filter(rows.select(spec.key).is_duplicated())
    if duplicated.height:
        raise ValueError(
            f"{spec.name}: duplicate natural key {spec.key} in the built rows, e.g. {duplicated.select(spec.key).head(3).to_dicts()}"
        )


def read_inputs(
    warehouse: Warehouse, raw: RawFiles, calendar: Calendar, spec: Table, dates: Sequence[dt.date], teams: Sequence[str] | None = None
) -> dict[str, pl.DataFrame]:
    """Each input over the union of the dates' lookback windows (and nothing else: a shard may
    skip dates whose upstream failed). For a shard of some teams (``Table.split_by_team``), only
    the rows of the players listed for one of them in any input's window (the date's roster
    included), wherever those players played."""
    windows = {inp.table: sorted({d for day in dates for d in calendar.window(inp.lookback, day)}) for inp in spec.inputs}
    players = None
    if teams is not None:
        listed: set[int] = set()
        for inp in spec.inputs:
            if windows[inp.table]:
                window = windows[inp.table]
                found = warehouse.read(inp.table, start=window[0], end=window[-1], columns=["player_id"], where={"team_abbr": list(teams)})
                listed.update(found["player_id"].to_list())
        players = sorted(listed)
    frames = {}
    for inp in spec.inputs:
        window = windows[inp.table]
        if not window:  # a window before the date, on the season's first date: nothing earlier
            frame = pl.DataFrame(schema=_input_schema(inp))
        elif inp.is_source:
            frame = raw.read(inp.table, window[0], window[-1])
            frame = frame.select(inp.columns) if inp.columns else frame
        else:
            where = {} if players is None else {"player_id": players}
            frame = warehouse.read(inp.table, start=window[0], end=window[-1], columns=inp.columns, where=where)
        if window and len(window) < (window[-1] - window[0]).days + 1 and "game_date" in frame.columns:
            frame = frame.filter(pl.col("game_date").is_in(window))
        frames[inp.table] = frame
    return frames


def _input_schema(inp: Input) -> dict[str, pl.DataType]:
    """The columns an input delivers, as declared by the table (or source) it reads."""
    declared = SOURCES[inp.table].all_columns if inp.is_source else registry()[inp.table].schema
    return {c: declared[c] for c in (inp.columns or declared)}


# -- cutting a table's dates ---------------------------------------------------------------------


# shard.max_rows unset: see conf/config.yaml for how this was chosen.
DEFAULT_MAX_ROWS = 250_000


@dataclass(frozen=True)
class Unit:
    """A table's dates committed together, and the shards that build them (one per team group)."""

    table: str
    dates: tuple[dt.date, ...]
    shards: tuple[Shard, ...]


class ShardCutter:
    """Cuts a table's dates into units: at least one shard per CPU where there are dates enough,
    and at most about ``max_rows`` input rows per shard (counted from the rows each input date
    holds: the run state's row counts, the raw files' for raw inputs)."""

    def __init__(self, calendar: Calendar, state: RunState, source: RawSource, *, cpus: int, max_rows: int, shard_days: int | None):
        self.calendar = calendar
        self.state = state
        self.source = source
        self.cpus = max(1, cpus)
        self.max_rows = max(1, max_rows)
        self.shard_days = shard_days

    def rows(self, spec: Table, dates: Sequence[dt.date]) -> int:
        """Input rows a shard of ``dates`` reads: every input over its lookback windows."""
        return sum(self._input_rows(spec, inp.table, self.calendar.covering(inp.lookback, list(dates))) for inp in spec.inputs)

    def cut(self, spec: Table, dates: Sequence[dt.date]) -> list[Unit]:
        ordered = sorted(dates)
        if not ordered:
            return []
        if self.shard_days:  # asked for: exactly this many dates per shard
            return [self._unit(spec, chunk) for chunk in _chunks(ordered, self.shard_days)]
        if not any(inp.lookback.season_to_date for inp in spec.inputs):
            return [self._unit(spec, chunk) for chunk in self._by_rows(spec, ordered, max(1, math.ceil(len(ordered) / self.cpus)))]
        seasons = [list(group) for _, group in itertools.groupby(ordered, key=self.calendar.season_of.__getitem__)]
        units = []
        for season_dates in seasons:
            if spec.split_by_team:
                units.append(self._by_team(spec, season_dates, wanted=math.ceil(self.cpus / len(seasons))))
            else:
                # Each later shard of a season re-reads the season before it: cut by dates only
                # as far as CPUs or its own dates' rows ask for.
                per_chunk = max(1, math.ceil(len(season_dates) / math.ceil(self.cpus / len(seasons))))
                units += [self._unit(spec, chunk) for chunk in self._by_rows(spec, season_dates, per_chunk, own_dates_only=True)]
        return units

    def _by_rows(self, spec: Table, dates: list[dt.date], most_dates: int, own_dates_only: bool = False) -> list[list[dt.date]]:
        """Contiguous chunks of at most ``most_dates`` dates and about ``max_rows`` input rows
        (with ``own_dates_only``, rows of the chunk's own dates: a season-to-date window's
        earlier part is read by every chunk of the season whatever the cut)."""
        chunks: list[list[dt.date]] = []
        covered: dict[str, set[dt.date]] = {}
        rows = 0
        for day in dates:
            windows = {inp.table: {day} if own_dates_only else set(self.calendar.window(inp.lookback, day)) for inp in spec.inputs}
            added = sum(self._input_rows(spec, table, days - covered.get(table, set())) for table, days in windows.items())
            if not chunks or len(chunks[-1]) >= most_dates or (rows + added > self.max_rows and chunks[-1]):
                chunks.append([])
                covered, rows = {}, 0
                added = sum(self._input_rows(spec, table, days) for table, days in windows.items())
            chunks[-1].append(day)
            for table, days in windows.items():
                covered.setdefault(table, set()).update(days)
            rows += added
        return chunks

    def _input_rows(self, spec: Table, table: str, days: set[dt.date]) -> int:
        if table in self.source.rows_per_date:
            per_date = self.source.rows_per_date[table]
            return sum(per_date.get(d, 0) for d in days)
        return sum(self.state.rows_written(table, d) for d in days)

    def _by_team(self, spec: Table, dates: list[dt.date], wanted: int) -> Unit:
        """One unit for the season's dates, its teams in as many groups as the rows or the CPUs want."""
        teams = self.calendar.teams_of[self.calendar.season_of[dates[0]]]
        groups = min(len(teams), max(wanted, math.ceil(self.rows(spec, dates) / self.max_rows)))
        if groups <= 1:
            return self._unit(spec, dates)
        # Exactly `groups` runs of teams whose sizes differ by one at most (30 teams in 9 groups:
        # 3 or 4 each, where runs of ceil(30 / 9) = 4 would make only 8).
        bounds = [round(i * len(teams) / groups) for i in range(groups + 1)]
        shards = tuple(Shard(spec.name, tuple(dates), tuple(teams[a:b])) for a, b in itertools.pairwise(bounds))
        return Unit(spec.name, tuple(dates), shards)

    @staticmethod
    def _unit(spec: Table, dates: Sequence[dt.date]) -> Unit:
        return Unit(spec.name, tuple(dates), (Shard(spec.name, tuple(dates)),))


def _chunks(dates: list[dt.date], size: int) -> list[list[dt.date]]:
    return [dates[i : i + size] for i in range(0, len(dates), max(1, size))]


# -- the run -----------------------------------------------------------------------------------


# How often the driver looks at the writer thread while Ray tasks are still running.
COMMIT_POLL_SECONDS = 0.005


@dataclass
class RunSettings:
    run_id: str
    shard_days: int | None  # None: cut by rows and CPUs (ShardCutter)
    max_attempts: int
    retry_backoff_seconds: float
    force: bool  # run even where upstream is incomplete (reproducing failures only)
    params: Mapping[str, Mapping[str, object]]
    gate_enforced: bool = True  # false: a failed gate is reported loudly but blocks nothing
    max_rows: int = DEFAULT_MAX_ROWS
    # The warehouse config a worker opens itself, when the warehouse is reachable from workers.
    warehouse_config: Mapping[str, object] | None = None


# A gate gets (table names of a finished level, {table: dates built}) and returns the tables
# whose critical checks failed, each with the failed checks as text: their dependents must not run.
Gate = Callable[[list[str], dict[str, list[dt.date]]], dict[str, str]]


@dataclass(order=True)
class _Pending:
    ready_at: float
    unit: int = field(compare=False)
    index: int = field(compare=False)  # the shard's place in its unit


@dataclass
class _Unit:
    """A unit being built: its attempt, when it started, the input fingerprints it was planned
    with, and what its shards returned (rows or handles of staged rows)."""

    unit: Unit
    attempt: int
    started: dt.datetime
    fingerprints: dict[dt.date, str]
    attempts: dict[int, int] = field(default_factory=dict)  # shard index -> attempt
    results: dict[int, ShardResult] = field(default_factory=dict)
    staged: dict[int, str] = field(default_factory=dict)  # shard index -> handle
    failed: bool = False
    state: pl.DataFrame | None = None

    @property
    def table(self) -> str:
        return self.unit.table

    @property
    def dates(self) -> list[dt.date]:
        return list(self.unit.dates)

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.unit.shards)


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
        self._units: dict[int, _Unit] = {}
        self._next_unit = itertools.count()
        self._calendar_ref = None
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

    def cutter(self) -> ShardCutter:
        cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
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
                self._mark_bootstrap(spec, bootstrap)
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
        committing: dict[futures.Future, list[int]] = {}

        def failed(unit_id: int, exc: BaseException) -> None:
            """A unit failed for good (its shards still out are dropped as they come back)."""
            self._units[unit_id].failed = True
            followups = self._fail(unit_id, exc)
            for followup in followups:
                heapq.heappush(pending, followup)
            if not followups:
                progress.advance(len(self._units[unit_id].dates))

        def settle_commits(timeout: float | None) -> None:
            done, _ = futures.wait(committing, timeout=timeout, return_when=futures.FIRST_COMPLETED)
            for future in done:
                committing.pop(future)
                for unit_id, exc in future.result():
                    if exc is not None:
                        failed(unit_id, exc)
                        continue
                    unit = self._units.pop(unit_id)
                    self._record(unit)
                    built[unit.table].extend(unit.dates)
                    progress.advance(len(unit.dates), rows=sum(r.rows_built for r in unit.results.values()))

        # Shards out at once: enough to keep every CPU busy with the next one queued, and no more,
        # so that the inputs the driver reads (and the rows coming back) do not pile up.
        most_in_flight = cutter.cpus + 1
        while pending or in_flight or committing:
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
            finished: list[int] = []
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
                    self._discard(unit)
                elif unit.complete:
                    finished.append(unit_id)
            if finished:
                committing[self._writer.submit(self._commit, finished)] = finished
        return built

    def _start(self, unit: Unit, attempt: int) -> list[_Pending]:
        unit_id = next(self._next_unit)
        fingerprints = {d: self.fingerprinter.expected(unit.table, d) for d in unit.dates}
        self._units[unit_id] = _Unit(unit, attempt, utcnow(), fingerprints, {i: attempt for i in range(len(unit.shards))})
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

    def _received(self, unit: _Unit, index: int, result: ShardResult) -> None:
        """A shard's result is in: its rows go to the staging area at once if its unit is built
        in pieces, so that the driver holds no more than one piece."""
        unit.results[index] = result
        self.summary.driver_bytes += sum(t.nbytes for t in (result.hashes, result.rows) if t is not None)
        self.summary.rows_bytes += result.nbytes
        if result.staged is not None:
            unit.staged[index] = result.staged
        elif len(unit.unit.shards) > 1 and not unit.failed:
            rows = pl.from_arrow(result.rows)
            result.rows = None
            unit.staged[index] = self._writer.submit(self.warehouse.stage, unit.table, rows).result()

    def _discard(self, unit: _Unit) -> None:
        if unit.staged:
            handles = list(unit.staged.values())
            unit.staged.clear()
            self._writer.submit(self.warehouse.discard, handles).result()

    def _commit(self, unit_ids: list[int]) -> list[tuple[int, BaseException | None]]:
        """On the writer thread: write finished units, each with its run-state rows, in one
        transaction; if that fails, unit by unit, so that one bad unit does not hold back the
        others. The driver records the outcome (:meth:`_record`) on its own thread."""
        try:
            self.warehouse.write([w for unit_id in unit_ids for w in self._writes(self._units[unit_id])])
        except Exception as exc:  # noqa: BLE001 - the transaction rolled back; nothing was written
            if len(unit_ids) == 1:
                self._discard_now(self._units[unit_ids[0]])
                return [(unit_ids[0], exc)]
            return [outcome for unit_id in unit_ids for outcome in self._commit([unit_id])]
        return [(unit_id, None) for unit_id in unit_ids]

    def _discard_now(self, unit: _Unit) -> None:
        """(On the writer thread.) A unit whose commit failed gives up its staged rows."""
        if unit.staged:
            self.warehouse.discard(list(unit.staged.values()))
            unit.staged.clear()

    def _writes(self, unit: _Unit) -> list[PartitionWrite]:
        results = list(unit.results.values())
        if len(results) == 1:
            fingerprints = results[0].fingerprints
        else:
            fingerprints = fingerprints_of(pl.concat([pl.from_arrow(r.hashes) for r in results]))
        counts = {d: sum(r.counts.get(d, 0) for r in results) for d in unit.dates}
        node = Node.joined([r.node for r in results])
        unit.state = state_rows(
            unit.table,
            unit.dates,
            status=OK,
            attempts={d: unit.attempt for d in unit.dates},
            input_fingerprints=unit.fingerprints,
            output_fingerprints={d: fingerprints.get(d, "empty") for d in unit.dates},
            rows_written=counts,
            started_at=unit.started,
            finished_at=utcnow(),
            node=node.id,
            node_ip=node.ip,
            run_id=self.settings.run_id,
        )
        rows = next((pl.from_arrow(r.rows) for r in results if r.rows is not None), None)
        write = PartitionWrite(unit.table, unit.dates, rows, staged=tuple(unit.staged.values()))
        return [write, state_write(unit.table, unit.state)]

    def _record(self, unit: _Unit) -> None:
        """After a commit: the in-memory state, the fingerprints and the summary catch up."""
        self.state.update(unit.table, unit.state)
        self.fingerprinter.invalidate(unit.table)
        outcome = self.summary.outcome(unit.table)
        rows = sum(r.rows_built for r in unit.results.values())
        outcome.built += len(unit.dates)
        outcome.rows += rows
        outcome.seconds += sum(r.seconds for r in unit.results.values())
        if unit.table == "nba_raw.quarantine":
            self.summary.quarantined += rows
        nodes = Node.joined([r.node for r in unit.results.values()])
        log.debug(
            "%s %s..%s: %d rows in %d shard(s) on %s",
            unit.table, unit.dates[0], unit.dates[-1], rows, len(unit.results), nodes.ip,
        )  # fmt: skip

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
        self._discard(unit)
        unit.results.clear()
        text, message = error_text(exc), error_message(exc)
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
        log.error("%s failed: %s", where, message)
        log.debug("%s failed (attempt %d):\n%s", where, unit.attempt, text)
        node = Node.of_failure(exc)
        rows = state_rows(
            unit.table,
            unit.dates,
            status=FAILED,
            attempts={d: unit.attempt for d in unit.dates},
            input_fingerprints=unit.fingerprints,
            error=text,
            started_at=unit.started,
            finished_at=utcnow(),
            node=node.id,
            node_ip=node.ip,
            run_id=self.settings.run_id,
        )
        self._write_now([state_write(unit.table, rows)])
        self.state.update(unit.table, rows)
        self.fingerprinter.invalidate(unit.table)
        outcome = self.summary.outcome(unit.table)
        for day in unit.dates:
            outcome.failed[day] = message
        return []

    def _mark_gate_failed(self, name: str, dates: list[dt.date], why: str) -> None:
        """Dates whose rows failed the gate are ``failed`` in the run state (their rows stay, for
        inspection): a later run rebuilds and re-checks them before any dependent reads them."""
        if not dates:
            return
        now = utcnow()
        kept = {d: self.state.get(name, d) for d in dates}
        node = Node.here()
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
            node=node.id,
            node_ip=node.ip,
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
            node_ip=None,
            run_id=self.settings.run_id,
        )
        empty = pl.DataFrame(schema=spec.schema)
        self._write_now([PartitionWrite(spec.name, dates, empty), state_write(spec.name, rows)])
        self.state.update(spec.name, rows)
        self.fingerprinter.invalidate(spec.name)
        self.summary.outcome(spec.name).bootstrap += len(dates)


def ensure_table(warehouse: Warehouse, spec: Table) -> None:
    warehouse.ensure_table(spec.warehouse_schema)


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
