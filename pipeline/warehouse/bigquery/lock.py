"""The run lock: one permanent row per warehouse in ``nba_orchestration.run_lock``, claimed and
released only by ``UPDATE``, and fenced into every commit.

Why this shape, by BigQuery's documented rules (DML statement conflicts:
https://cloud.google.com/bigquery/docs/data-manipulation-language#dml_statement_conflicts;
transactions: https://cloud.google.com/bigquery/docs/transactions):

- *An INSERT, or a MERGE that only inserts, does not conflict with other concurrent DML.* A
  lock claimed by inserting its row (as older versions did) lets two runs claim it at once and
  leaves two rows. Here the row exists before any claim and is never deleted: the table is made
  together with its one row by ``CREATE TABLE IF NOT EXISTS … AS SELECT`` (a table is created
  once; of two such statements the second finds it and does nothing).
- *Mutating statements (UPDATE, DELETE, MERGE) that change the same partition of a table
  concurrently conflict: one fails, and is run again (by BigQuery, then by the client's job
  retry) against the committed data.* The lock table is not partitioned, so two claims at once
  conflict: the one that commits first takes the free row, the other, run again, finds it held
  (0 rows changed) and is refused.
- *A job the client retries after a lost answer runs again.* A claim matches the row when it is
  free, stale, or already this run's, and keeps ``acquired_at`` and ``taken_over_from`` when it
  is this run's: run twice, it changes the same row the same way and reports 1 row. Release and
  heartbeat change only the row holding this run's token.
- A claim or release that changes more than one row means the table is damaged; it is an error,
  and nothing this run does not hold is released.

**Fencing.** A run can lose its lock without knowing it: its heartbeat could not get through for
``stale_seconds`` (a stalled machine, a network cut), and another run took over. Every write
transaction therefore starts with :meth:`RunLock.fence`: an ``UPDATE`` of the lock row that only
this run's token matches (refreshing the heartbeat), then ``ERROR()`` unless exactly one row
holds the token. The ``UPDATE`` makes a commit conflict with a takeover running at the same time
(one of them fails and is run again, as above); the check makes a commit after a takeover fail
with nothing written, as a refusal (:class:`WarehouseLocked`), never retried. The heartbeat is
itself an ``UPDATE`` of the row, so it never runs while this run commits (the two would conflict
with each other: :attr:`RunLock.row`), and it stops retrying after a third of
``stale_seconds``, so a heartbeat stuck in retries cannot outlive the lock it keeps.

Values in the fence are literals (a checked dataset prefix, a hex token): the emulator the tests
use does not take query parameters inside scripts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from typing import Mapping

from pipeline.warehouse.base import WarehouseError, WarehouseLocked, holder_text
from pipeline.warehouse.bigquery.jobs import Jobs
from pipeline.warehouse.bigquery.names import literal

log = logging.getLogger(__name__)

LOCK_TABLE = "nba_orchestration.run_lock"
LOCK_COLUMNS = {
    "lock_key": "STRING",
    "token": "STRING",  # NULL: free
    "holder": "STRING",
    "acquired_at": "TIMESTAMP",
    "heartbeat_at": "TIMESTAMP",
    "released_at": "TIMESTAMP",
    "taken_over_from": "STRING",
}
LOCK_POLL_SECONDS = 1.0
# The text of the fence's refusal, by which a failed commit is known as one.
FENCE_REFUSAL = "this run no longer holds the warehouse lock"
TOKEN = re.compile(r"[0-9a-f]{32}")


class RunLock:
    """One run's claim on the lock row of ``table`` (its SQL name, in a dataset that exists).
    Needs only a way to run statements."""

    def __init__(self, jobs: Jobs, table: str, holder: Mapping[str, object], stale_seconds: float):
        from google.cloud import bigquery

        self.jobs = jobs
        self.describe = self.jobs.describe
        self.table = table
        self.key = jobs.settings.prefix
        self.token = uuid.uuid4().hex
        self.holder = json.dumps(dict(holder), default=str)
        self.stale_seconds = stale_seconds
        self.params = [
            bigquery.ScalarQueryParameter("lock_key", "STRING", self.key),
            bigquery.ScalarQueryParameter("token", "STRING", self.token),
        ]
        self.heartbeat_seconds = max(0.2, min(60.0, stale_seconds / 5))
        # Held by a commit, and by the heartbeat while it renews: the two never run together.
        self.row = threading.Lock()
        self.lost: str | None = None
        self.taken_over_from: dict[str, object] | None = None  # the holder of a run presumed dead, once claimed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewed = time.monotonic()

    # -- the row -------------------------------------------------------------------------------

    def ensure_row(self) -> None:
        """The lock table with this warehouse's row, created together if missing."""
        columns = ", ".join(
            "@lock_key AS lock_key" if name == "lock_key" else f"CAST(NULL AS {kind}) AS {name}" for name, kind in LOCK_COLUMNS.items()
        )
        self.jobs.query(f"CREATE TABLE IF NOT EXISTS {self.table} AS SELECT {columns}", what="creating the warehouse lock", params=self.params[:1])
        every_column = ", ".join(LOCK_COLUMNS)
        try:  # a table of another layout (an older version's) has not every column
            rows = self.jobs.query(
                f"SELECT COUNT(*) FROM (SELECT {every_column} FROM {self.table} WHERE lock_key = @lock_key)",
                what="reading the warehouse lock", params=self.params[:1],
            ).rows[0][0]  # fmt: skip
        except WarehouseError:
            rows = "no usable"
        if rows != 1:
            raise WarehouseError(
                f"the lock table {LOCK_TABLE} in {self.describe()} holds {rows} rows for this warehouse, not 1 "
                f"(a table left by an older version of the pipeline, or rows changed by hand). With no run going, "
                f"drop the table (bq rm -f -t {self.table.strip('`').replace('.', ':', 1)}); the next run creates it again."
            )

    # -- claim and release ---------------------------------------------------------------------

    def acquire(self, wait_seconds: float) -> None:
        self.ensure_row()
        started = time.monotonic()
        told = False
        while not self._claim():
            current = self.current()
            if time.monotonic() - started >= wait_seconds:
                waited = f" after waiting {wait_seconds:.0f}s" if wait_seconds else ""
                raise WarehouseLocked(
                    f"warehouse {self.describe()} is in use by another run ({current}){waited}. "
                    f"Let it finish, or pass lock.wait_seconds=N to wait for it; a run that died is taken over once "
                    f"its heartbeat is older than lock.stale_seconds={self.stale_seconds:g}."
                )
            if not told:
                told = True
                log.warning("waiting up to %.0fs for the warehouse: %s", wait_seconds, current)
            time.sleep(LOCK_POLL_SECONDS)
        if told:
            log.info("warehouse lock acquired after waiting %.1fs", time.monotonic() - started)
        taken_from = self.jobs.query(
            f"SELECT taken_over_from FROM {self.table} WHERE lock_key = @lock_key AND token = @token",
            what="reading the lock just claimed",
            params=self.params,
        ).rows
        self.taken_over_from = json.loads(taken_from[0][0]) if taken_from and taken_from[0][0] else None
        if self.taken_over_from:
            log.warning(
                "TOOK OVER the warehouse lock from a run presumed dead (%s): its heartbeat was older than "
                "lock.stale_seconds=%g. If that run is in fact alive, it can no longer commit anything.",
                holder_text(self.taken_over_from), self.stale_seconds,
            )  # fmt: skip
        self._last_renewed = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="warehouse-lock-heartbeat", daemon=True)
        self._thread.start()

    def _claim(self) -> bool:
        from google.cloud import bigquery

        params = [
            *self.params,
            bigquery.ScalarQueryParameter("holder", "STRING", self.holder),
            bigquery.ScalarQueryParameter("stale_ms", "INT64", int(self.stale_seconds * 1000)),
        ]
        # Every right-hand side reads the row as it was before this statement.
        claimed = self.jobs.query(
            f"""UPDATE {self.table} SET
              taken_over_from = IF(token = @token, taken_over_from, IF(token IS NULL, NULL, holder)),
              acquired_at = IF(token = @token, acquired_at, CURRENT_TIMESTAMP()),
              token = @token, holder = @holder, heartbeat_at = CURRENT_TIMESTAMP(), released_at = NULL
            WHERE lock_key = @lock_key
              AND (token IS NULL OR token = @token OR heartbeat_at < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @stale_ms MILLISECOND))""",
            what="claiming the warehouse lock",
            params=params,
        ).affected
        if claimed not in (0, 1):
            raise WarehouseError(f"claiming the warehouse lock changed {claimed} rows of {LOCK_TABLE}, not 0 or 1: the table is damaged")
        return claimed == 1

    def current(self) -> str:
        """Who holds the lock and how fresh their heartbeat is."""
        rows = self.jobs.query(
            f"SELECT holder, TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), heartbeat_at, MILLISECOND) FROM {self.table} "
            "WHERE lock_key = @lock_key AND token IS NOT NULL",
            what="reading the warehouse lock",
            params=self.params[:1],
        ).rows
        if not rows:
            return "since released"
        holder, age_ms = rows[0]
        return f"{holder_text(json.loads(holder))}; last heartbeat {age_ms / 1000:.0f}s ago"

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is not None:
            return
        released = self.jobs.query(
            f"UPDATE {self.table} SET token = NULL, holder = NULL, released_at = CURRENT_TIMESTAMP() "
            "WHERE lock_key = @lock_key AND token = @token",
            what="releasing the warehouse lock",
            params=self.params,
        ).affected
        if released == 0:  # taken over since the last heartbeat (or released by this call run twice)
            log.warning("the warehouse lock was no longer this run's to release (%s)", self.current())

    # -- the fence and the heartbeat -------------------------------------------------------------

    def fence(self) -> list[str]:
        """The statements that open a write transaction: only this run's token renews the row,
        and the transaction fails unless exactly one row holds it (module docstring)."""
        if not TOKEN.fullmatch(self.token):
            raise WarehouseError("a lock token must be 32 hex digits")
        if self.lost is not None:
            raise WarehouseLocked(f"{self.lost}; nothing more is written by this run")
        key, token = literal(self.key), literal(self.token)
        refusal = literal(f"{FENCE_REFUSAL}: another run took it over")
        return [
            f"UPDATE {self.table} SET heartbeat_at = CURRENT_TIMESTAMP() WHERE lock_key = {key} AND token = {token};",
            f"SELECT ERROR({refusal}) FROM (SELECT COUNT(*) AS mine FROM {self.table} WHERE lock_key = {key} AND token = {token}) "
            "WHERE mine != 1;",
        ]

    def refused(self, exc: BaseException) -> WarehouseLocked | None:
        """A commit that failed because the fence refused it, as the run should report it."""
        if FENCE_REFUSAL not in str(exc):
            return None
        self.lost = f"this run lost the warehouse lock to another run ({self.current()})"
        log.error("%s: its commit was refused, nothing of it written", self.lost)
        return WarehouseLocked(
            f"{self.lost}: the commit was refused and nothing of it was written. The other run carries on; "
            "run again once it is done, and this run's unfinished dates are built then."
        )

    def renewed(self) -> None:
        """A commit renewed the heartbeat (its fence did)."""
        self._last_renewed = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            if not self.row.acquire(blocking=False):
                continue  # a commit is running, and renews the heartbeat itself
            try:
                renewed = self.jobs.query(
                    f"UPDATE {self.table} SET heartbeat_at = CURRENT_TIMESTAMP() WHERE lock_key = @lock_key AND token = @token",
                    what="renewing the warehouse lock",
                    params=self.params,
                    deadline_seconds=self.stale_seconds / 3,
                ).affected
            except WarehouseError as exc:
                silent = time.monotonic() - self._last_renewed
                level = logging.ERROR if silent > self.stale_seconds else logging.WARNING
                log.log(level, "heartbeat on the warehouse lock failed (%.0fs since the last one; commits stay fenced): %s", silent, exc)
                continue
            finally:
                self.row.release()
            if renewed != 1:
                self.lost = f"another run took the warehouse lock over ({self.current()})"
                log.error("%s: this run stops writing", self.lost)
                return
            self._last_renewed = time.monotonic()
