"""The BigQuery clients and every job a warehouse makes, one place for what all jobs share.

- **Checked.** A job that ended with an error raises, whatever the client made of it: a query
  runs as a job (``jobs.insert``) whose result is awaited and whose ``errorResult`` is read
  again (the emulator answers ``jobs.query`` with rows even when the statement failed, leaving
  the error only on the job).
- **Labelled and capped.** Every job carries the labels ``pipeline``, ``task``, ``run_id`` (and
  ``table`` where one applies, and the operator's own, ``warehouse.labels``), valid label values
  all (:func:`~pipeline.warehouse.bigquery.names.label_value`); every query is capped by
  ``warehouse.maximum_bytes_billed`` and every job by ``warehouse.job_timeout_seconds``, which
  BigQuery enforces on its side and the client waits no longer than.
- **Retried once, here.** Transient errors (429, 500, 502, 503, rate limits, a transaction that
  lost a concurrent update) are retried with backoff and a deadline by the client's own retry
  objects: an API call by ``retry``; a failed query job by ``job_retry``, which runs the statement
  again as a new job. Every statement this package sends is therefore written to be safe to run
  twice (a write replaces partitions; the lock's claim is idempotent). A refusal the pipeline makes
  on purpose (``ERROR()`` in a script) is never transient.
- **Counted.** Transactions, load jobs and other queries are counted per process (``counts``):
  what a run costs is its number of jobs far more than its rows.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import uuid
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import polars as pl

from pipeline.warehouse.base import WarehouseError
from pipeline.warehouse.bigquery.names import labels

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

NO_CREDENTIALS = (
    "no Google credentials: BigQuery takes Application Default Credentials (run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS), or point warehouse.endpoints at an emulator (python -m pipeline.emulator)"
)

# Retrying: the first wait, the longest, and how long one call may keep retrying in all.
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAXIMUM_SECONDS = 20.0
RETRY_DEADLINE_SECONDS = 600.0
PARALLEL_DROPS = 8
# One HTTP request's wait for an answer before it is retried (the emulator answers jobs.insert
# only once the job has run).
API_TIMEOUT_SECONDS = 300.0

# Benchmark only: BigQuery's latency played on the emulator (benchmarks/bigquery.py), as
# "statement=SECONDS,load=SECONDS": every statement of a query job and every load job is held
# that long after it ends. Read when a warehouse opens, so Ray workers started by the same
# process see it too.
LATENCY_ENV = "NBA_PIPELINE_BIGQUERY_LATENCY"

TRANSIENT_REASONS = {
    "rateLimitExceeded", "backendError", "internalError", "badGateway", "jobBackendError", "jobInternalError", "jobRateLimitExceeded",
}  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Worth another try: an overloaded or briefly failing service, or a transaction that lost a
    race with a concurrent one (BigQuery aborts it and says so in the job error)."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.RetryError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, (exceptions.TooManyRequests, exceptions.InternalServerError, exceptions.BadGateway, exceptions.ServiceUnavailable)):
        return True
    text = str(exc).lower()
    if "could not serialize access" in text or "concurrent update" in text:
        return True
    reasons = {e.get("reason") for e in getattr(exc, "errors", None) or [] if isinstance(e, dict)}
    return bool(reasons & TRANSIENT_REASONS)


def retries(deadline_seconds: float = RETRY_DEADLINE_SECONDS):
    """(retry of one API call, retry of a whole query job): the client's own retry objects,
    giving up after ``deadline_seconds``."""
    from google.api_core.retry import Retry
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    call = DEFAULT_RETRY.with_delay(initial=RETRY_INITIAL_SECONDS, maximum=RETRY_MAXIMUM_SECONDS).with_deadline(deadline_seconds)
    job = Retry(predicate=is_transient, initial=RETRY_INITIAL_SECONDS, maximum=RETRY_MAXIMUM_SECONDS, timeout=deadline_seconds)
    return call, job


@dataclass(frozen=True)
class Settings:
    """``warehouse.*`` of ``conf/warehouse/bigquery.yaml``, names already checked."""

    project: str
    location: str = "US"
    prefix: str = ""
    staging_dataset: str = "nba_staging"  # with the prefix
    rest_endpoint: str | None = None
    grpc_endpoint: str | None = None
    maximum_bytes_billed: int | None = None
    job_timeout_seconds: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def emulated(self) -> bool:
        return bool(self.rest_endpoint)


@dataclass(frozen=True)
class QueryResult:
    rows: list[tuple]
    affected: int | None  # rows changed by a DML statement


class Jobs:
    """The REST and Storage Read clients of one warehouse (opened on first use, after every
    name was checked), and the jobs made through them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.retry, self.job_retry = retries()
        self.labels = labels({"pipeline": "nba-pipeline", **settings.labels})
        self.counts: Counter[str] = Counter()
        self._counting = threading.Lock()
        self._client: bigquery.Client | None = None
        self._read_client = None
        self._opening = threading.Lock()
        self._latency = _latency_from_env()

    @property
    def client(self) -> "bigquery.Client":
        with self._opening:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> "bigquery.Client":
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import bigquery

        s = self.settings
        if s.emulated:
            options = ClientOptions(api_endpoint=s.rest_endpoint)
            return bigquery.Client(project=s.project, location=s.location, credentials=AnonymousCredentials(), client_options=options)
        try:
            return bigquery.Client(project=s.project, location=s.location)
        except DefaultCredentialsError:
            raise WarehouseError(NO_CREDENTIALS) from None

    @property
    def read_client(self):
        with self._opening:
            if self._read_client is None:
                from google.cloud import bigquery_storage_v1

                if self.settings.grpc_endpoint:
                    import grpc
                    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

                    # No message size cap, as on the client's own channel to Google (a read's
                    # Arrow batches can pass gRPC's 4 MB default).
                    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
                    channel = grpc.insecure_channel(self.settings.grpc_endpoint, options=unlimited)
                    self._read_client = bigquery_storage_v1.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
                else:
                    from google.auth.exceptions import DefaultCredentialsError

                    try:
                        self._read_client = bigquery_storage_v1.BigQueryReadClient()
                    except DefaultCredentialsError:
                        raise WarehouseError(NO_CREDENTIALS) from None
            return self._read_client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._read_client is not None:
            self._read_client.transport.close()
            self._read_client = None

    def describe(self) -> str:
        s = self.settings
        datasets = f"datasets {s.prefix}nba_*" if s.prefix else "datasets nba_*"
        where = f" on the emulator at {s.rest_endpoint}" if s.emulated else ""
        return f"bigquery:{s.project} ({datasets}, location {s.location}){where}"

    # -- jobs ----------------------------------------------------------------------------------

    def job_labels(self, table: str | None = None) -> dict[str, str]:
        return {**self.labels, **labels({"table": table})}

    def query(
        self,
        sql: str,
        *,
        what: str,
        params: Sequence[object] = (),
        table: str | None = None,
        deadline_seconds: float | None = None,
        dry_run: bool = False,
    ) -> QueryResult:
        """One query job (a script, too), checked, labelled, capped and retried; with
        ``deadline_seconds``, retried for no longer than that in all."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=list(params), labels=self.job_labels(table), dry_run=dry_run)
        if self.settings.maximum_bytes_billed:
            config.maximum_bytes_billed = int(self.settings.maximum_bytes_billed)
        if self.settings.job_timeout_seconds:
            config.job_timeout_ms = int(self.settings.job_timeout_seconds * 1000)
        if deadline_seconds is None:
            retry, job_retry = self.retry, self.job_retry
        else:  # no job retry: the client wraps it around jobs.insert with a 10-minute deadline of its own
            retry, job_retry = retries(deadline_seconds)[0], None
        try:
            job = self.client.query(sql, job_config=config, retry=retry, job_retry=job_retry, timeout=API_TIMEOUT_SECONDS)
            if dry_run:
                return QueryResult([], None)
            rows = [tuple(row.values()) for row in job.result(retry=retry, timeout=self._wait_seconds(deadline_seconds))]
            if job.error_result:  # the emulator may end a failed statement with rows and the error on the job
                raise _job_error(job)
        except Exception as exc:  # noqa: BLE001
            raise self.error(what, exc) from exc
        self._count("transaction" if sql.lstrip().upper().startswith("BEGIN") else "query")
        self._held(self._latency.get("statement", 0.0) * max(1, _statements(sql)))
        return QueryResult(rows, job.num_dml_affected_rows)

    def load(self, table_id: str, rows: pl.DataFrame, config: "bigquery.LoadJobConfig", *, what: str, table: str | None = None) -> None:
        """One load job of ``rows`` as Parquet. Its id is chosen here, so that an upload retried
        after a lost answer finds the job it already made (409) instead of loading the rows twice."""
        from google.api_core.exceptions import Conflict

        config.labels = self.job_labels(table)
        if self.settings.job_timeout_seconds:
            config.job_timeout_ms = int(self.settings.job_timeout_seconds * 1000)
        buffer = io.BytesIO()
        rows.write_parquet(buffer)
        buffer.seek(0)
        job_id = f"nba_pipeline_load_{uuid.uuid4().hex}"
        try:
            try:
                job = self.client.load_table_from_file(buffer, table_id, job_id=job_id, job_config=config, rewind=True)
            except Conflict:
                job = self.client.get_job(job_id, retry=self.retry)
            job.result(retry=self.retry, timeout=self._wait_seconds(None))
            if job.error_result:
                raise _job_error(job)
        except Exception as exc:  # noqa: BLE001
            raise self.error(what, exc) from exc
        self._count("load")
        self._held(self._latency.get("load", 0.0))

    def drop(self, table_ids: Sequence[str]) -> None:
        """Staging tables go once their transaction is done (they would expire in a day anyway)."""

        def drop(table_id: str) -> None:
            try:
                self.client.delete_table(table_id, not_found_ok=True, retry=self.retry)
            except Exception:  # noqa: BLE001 - nothing depends on it; logged for the curious
                log.debug("could not drop staging table %s", table_id, exc_info=True)

        if table_ids:
            with futures.ThreadPoolExecutor(min(PARALLEL_DROPS, len(table_ids)), thread_name_prefix="bigquery-drop") as pool:
                list(pool.map(drop, table_ids))

    def error(self, what: str, exc: BaseException) -> WarehouseError:
        """A failure that retrying did not (or could not) cure, named for the person reading it."""
        from google.api_core import exceptions

        if isinstance(exc, WarehouseError):
            return exc
        if isinstance(exc, exceptions.RetryError) and exc.cause is not None:
            exc = exc.cause
        message = getattr(exc, "message", None) or str(exc)
        return WarehouseError(f"BigQuery failed {what} in {self.describe()}: {type(exc).__name__}: {message}")

    def _wait_seconds(self, deadline_seconds: float | None) -> float:
        """How long the client waits for a job: BigQuery's own timeout of it and a minute more
        (or the caller's deadline), never forever."""
        job_timeout = self.settings.job_timeout_seconds or RETRY_DEADLINE_SECONDS
        return deadline_seconds if deadline_seconds is not None else job_timeout + 60.0

    def _count(self, kind: str) -> None:
        with self._counting:
            self.counts[kind] += 1

    @staticmethod
    def _held(seconds: float) -> None:
        if seconds:
            time.sleep(seconds)


def _job_error(job) -> Exception:
    """The exception the client raises for a job's ``errorResult``."""
    from google.api_core import exceptions

    reason = (job.error_result or {}).get("reason")
    message = (job.error_result or {}).get("message", "the job failed")
    exc = exceptions.from_http_status(400, f"{message} (job {job.job_id})", errors=[job.error_result])
    if reason in TRANSIENT_REASONS:
        exc = exceptions.InternalServerError(f"{message} (job {job.job_id})", errors=[job.error_result])
    return exc


def _statements(sql: str) -> int:
    return sum(1 for part in sql.split(";\n") if part.strip())


def _latency_from_env() -> dict[str, float]:
    spec = os.environ.get(LATENCY_ENV, "").strip()
    found = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, seconds = item.partition("=")
        found[kind] = float(seconds)
    return found
