"""Committing: every warehouse write of a run, on one writer thread, in order.

A unit's rows, its run-state rows and its profile (``nba_orchestration.table_profile``: the
pieces' profiles merged, :mod:`pipeline.profile`) are written in one transaction, so a killed run leaves
every date either old or new. Finished units wait here and are committed together: as soon as
the writer is free when ``commit_interval_seconds`` is 0 (DuckDB, where a commit costs
milliseconds), or at most once per interval otherwise (BigQuery, where every transaction costs
a load job and a script of a second or more each): the number of transactions then follows the
run's length, not its number of shards, and a killed run loses at most an interval of work. The
last units of a level are committed at once, since the level's gate reads them: a level shorter
than the interval is one transaction.

If a transaction fails, its units are committed again one by one, so that one bad unit does not
hold back the others, unless this run lost the warehouse lock (:class:`WarehouseLocked`): then
nothing more may be written, and the run stops.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent import futures
from dataclasses import dataclass, field

import polars as pl

from pipeline.fingerprint import fingerprints_of
from pipeline.planner import Fingerprinter
from pipeline.profile import column_profile, merged_profile, profile_write
from pipeline.progress import RunSummary
from pipeline.runner.errors import Node
from pipeline.runner.shards import Unit
from pipeline.runner.worker import ShardResult
from pipeline.state import FAILED, OK, SKIPPED_BOOTSTRAP, RunState, state_rows, state_write, utcnow
from pipeline.tables import Table
from pipeline.warehouse import Warehouse, WarehouseLocked
from pipeline.warehouse.base import PartitionWrite

log = logging.getLogger(__name__)


@dataclass
class UnitBuild:
    """A unit being built: its attempt, when it started, the input fingerprints it was planned
    with, and what its shards returned (rows or handles of staged rows)."""

    id: int
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


class Committer:
    """Writes finished units in batches, and the run state of dates that did not build; keeps
    the in-memory run state, the fingerprints and the summary in step with what is committed."""

    def __init__(
        self,
        warehouse: Warehouse,
        state: RunState,
        fingerprinter: Fingerprinter,
        summary: RunSummary,
        run_id: str,
        interval_seconds: float = 0.0,
    ):
        self.warehouse = warehouse
        self.state = state
        self.fingerprinter = fingerprinter
        self.summary = summary
        self.run_id = run_id
        self.interval_seconds = max(0.0, interval_seconds)
        self._writer = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse-writer")
        self._waiting: list[UnitBuild] = []
        self._committing: dict[futures.Future, list[UnitBuild]] = {}
        self._last_started = -float("inf")

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    # -- batches of finished units -------------------------------------------------------------

    def start_level(self) -> None:
        """A level starts: its first units wait the interval too, so that a level shorter than
        the interval is one transaction."""
        self._last_started = time.monotonic()

    def add(self, unit: UnitBuild) -> None:
        self._waiting.append(unit)

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._committing)

    @property
    def committing(self) -> bool:
        return bool(self._committing)

    def due_in(self) -> float | None:
        """Seconds until the waiting units may be committed (None: nothing waits, or a commit is
        running, whose end the caller waits for instead)."""
        if not self._waiting or self._committing:
            return None
        return max(0.0, self._last_started + self.interval_seconds - time.monotonic())

    def flush(self, *, last: bool) -> None:
        """Start committing the waiting units if the writer is free and the interval has passed
        (``last``: nothing more is coming this level, so commit now)."""
        if self._waiting and not self._committing and (last or self.due_in() == 0.0):
            batch, self._waiting = self._waiting, []
            self._last_started = time.monotonic()
            self._committing[self._writer.submit(self._commit, batch)] = batch

    def settle(self, timeout: float | None) -> list[tuple[UnitBuild, BaseException | None]]:
        """Outcomes of the commits that ended within ``timeout`` (None: wait for one); the units
        committed are recorded (:meth:`_record`) on the caller's thread before they are returned."""
        if not self._committing:
            return []
        done, _ = futures.wait(self._committing, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        outcomes = []
        for future in done:
            self._committing.pop(future)
            for unit, exc in future.result():  # a lost lock raises here and stops the run
                if exc is None:
                    self._record(unit)
                outcomes.append((unit, exc))
        return outcomes

    def _commit(self, units: list[UnitBuild]) -> list[tuple[UnitBuild, BaseException | None]]:
        """(On the writer thread.) The units in one transaction, or one by one if that fails."""
        try:
            self.warehouse.write([w for unit in units for w in self._writes(unit)])
        except WarehouseLocked:
            raise
        except Exception as exc:  # noqa: BLE001 - the transaction rolled back; nothing was written
            if len(units) == 1:
                self._drop_staged(units[0])
                return [(units[0], exc)]
            return [outcome for unit in units for outcome in self._commit([unit])]
        return [(unit, None) for unit in units]

    def _writes(self, unit: UnitBuild) -> list[PartitionWrite]:
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
            run_id=self.run_id,
        )
        rows = next((pl.from_arrow(r.rows) for r in results if r.rows is not None), None)
        write = PartitionWrite(unit.table, unit.dates, rows, staged=tuple(unit.staged.values()))
        profile = merged_profile([pl.from_arrow(r.profile) for r in results])
        return [write, state_write(unit.table, unit.state), profile_write(unit.table, unit.dates, profile, self.run_id)]

    def _record(self, unit: UnitBuild) -> None:
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
        self.summary.nodes.update({r.node.id or r.node.ip: r.node.ip for r in unit.results.values()})
        log.debug(
            "%s %s..%s: %d rows in %d shard(s) on %s",
            unit.table, unit.dates[0], unit.dates[-1], rows, len(unit.results), nodes.ip,
        )  # fmt: skip

    # -- staged rows ---------------------------------------------------------------------------

    def stage(self, table: str, rows: pl.DataFrame) -> str:
        """Put a piece of a unit's rows aside (behind any commit in progress)."""
        return self._writer.submit(self.warehouse.stage, table, rows).result()

    def discard(self, unit: UnitBuild) -> None:
        """A failed unit gives up the rows its shards staged."""
        self._writer.submit(self._drop_staged, unit).result()

    def _drop_staged(self, unit: UnitBuild) -> None:
        if unit.staged:
            handles = list(unit.staged.values())
            unit.staged.clear()
            self.warehouse.discard(handles)

    # -- run state of dates that did not build ---------------------------------------------------

    def mark_failed(self, unit: UnitBuild, error: str, node: Node) -> None:
        """The unit's dates failed with ``error`` (the full text, traceback included)."""
        attempts = {d: unit.attempt for d in unit.dates}
        rows = self._state(unit.table, unit.dates, FAILED, attempts, unit.fingerprints, error=error, node=node, started=unit.started)
        self._write_state(unit.table, rows)

    def mark_gate_failed(self, name: str, dates: list[dt.date], why: str) -> None:
        """Dates whose rows failed the gate are ``failed`` (their rows stay, for inspection): a
        later run rebuilds and re-checks them before any dependent reads them."""
        kept = {d: self.state.get(name, d) for d in dates}
        rows = self._state(
            name, dates, FAILED, {d: kept[d].attempts for d in dates}, {d: kept[d].input_fingerprint for d in dates},
            outputs={d: kept[d].output_fingerprint for d in dates}, counts={d: kept[d].rows_written for d in dates},
            error=f"validation gate failed: {why}", node=Node.here(),
        )  # fmt: skip
        self._write_state(name, rows)
        self.summary.outcome(name).gate_failed.update(dates)

    def mark_bootstrap(self, spec: Table, dates: list[dt.date]) -> None:
        """Dates inside the bootstrap window after an opener: no rows, by rule."""
        inputs = {d: self.fingerprinter.expected(spec.name, d) for d in dates}
        rows = self._state(spec.name, dates, SKIPPED_BOOTSTRAP, dict.fromkeys(dates, 1), inputs, outputs=dict.fromkeys(dates, "empty"))
        empty = pl.DataFrame(schema=spec.schema)
        profile = profile_write(spec.name, dates, column_profile(empty, dates), self.run_id)
        self._write_state(spec.name, rows, [PartitionWrite(spec.name, dates, empty), profile])
        self.summary.outcome(spec.name).bootstrap += len(dates)

    def _state(self, table, dates, status, attempts, inputs, *, outputs=None, counts=None, error=None, node=None, started=None) -> pl.DataFrame:
        now = utcnow()
        return state_rows(
            table, dates, status=status, attempts=attempts, input_fingerprints=inputs, output_fingerprints=outputs,
            rows_written=counts, error=error, started_at=started or now, finished_at=now,
            node=node.id if node else None, node_ip=node.ip if node else None, run_id=self.run_id,
        )  # fmt: skip

    def _write_state(self, table: str, rows: pl.DataFrame, writes: list[PartitionWrite] = ()) -> None:
        """Write now (behind any commit in progress), then catch the in-memory state up."""
        self._writer.submit(self.warehouse.write, [*writes, state_write(table, rows)]).result()
        self.state.update(table, rows)
        self.fingerprinter.invalidate(table)
