"""Google BigQuery: the tables' production home, with the guarantees the DuckDB file keeps.

- **Names.** Datasets are the production names (``nba_raw``, ``nba_analytics``, ...) behind
  ``dataset_prefix`` (``dev_`` gives ``dev_nba_raw``), so a team can keep a copy in the same
  project. Every project, dataset and table name is checked before any request, and rows,
  dates and values never become SQL text: a write stages them as data (below); the lock's
  statements take query parameters.
- **Tables** are partitioned by day on ``game_date`` (or the schema's ``partition_by``) and
  clustered on the schema's ``cluster_by``. BigQuery has one integer and one float type, so each
  column's Polars type is kept in its description (``polars:Int16``) and every read returns the
  types the table declared, as DuckDB does. A new column is added in place; a column whose type
  changed is dropped and added again empty, loudly, and the planner rebuilds the table's dates
  (the schema is part of every date's fingerprint).
- **Reads** go through the Storage Read API in Arrow, with the columns (``selected_fields``) and
  the date range and ``where`` (``row_restriction``) pushed down, several streams in parallel.
- **Writes** replace whole partitions, all of one call or nothing: each write's rows are loaded
  as Parquet into a staging table of ``staging_dataset`` (tables there expire after a day), the
  partitions to replace (dates, and the ``where`` values) into one more, then one multi-statement
  transaction deletes those partitions and inserts the staged rows for every table of the call,
  run state included. A run killed at any moment leaves each date old or new: before the
  ``COMMIT`` nothing of the call is visible. (The keys are staged rather than passed as query
  parameters because the emulator the tests use ignores parameters in multi-statement scripts.)
- **The lock** is one row of ``nba_orchestration.run_lock``, claimed with a single ``MERGE``
  whose affected-row count says who won, kept alive by a heartbeat, taken over when the
  heartbeat is older than ``lock.stale_seconds``.
- **Transient errors** (429, 500, 502, 503, rate limits, a transaction that lost a concurrent
  update) are retried with backoff and a deadline by the client's own retry objects, here and
  nowhere else: they surface to the runner as :class:`WarehouseError`, which it does not retry.
- **Credentials** are Application Default Credentials in production and anonymous only when
  ``endpoints`` point at an emulator; they never appear in :meth:`describe`, logs or errors.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import threading
import time
import uuid
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import polars as pl
import pyarrow as pa

from pipeline.warehouse.base import PartitionWrite, TableSchema, Warehouse, WarehouseError, WarehouseLocked, holder_text

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

LOCK_TABLE = "nba_orchestration.run_lock"
STAGING_EXPIRATION = dt.timedelta(days=1)

# BigQuery's own limits on names (https://cloud.google.com/bigquery/docs/datasets#dataset-naming),
# narrowed to what never needs quoting; a domain-scoped project is "example.com:project".
PROJECT_NAME = re.compile(r"(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{0,61}[a-z0-9]")
DATASET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
PREFIX_NAME = re.compile(r"[A-Za-z0-9_]{0,64}")
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")

NO_CREDENTIALS = (
    "no Google credentials: BigQuery takes Application Default Credentials (run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS), or point warehouse.endpoints at an emulator (python -m pipeline.emulator)"
)

# Parallel Storage Read streams per read, and parallel load jobs per write.
READ_STREAMS = 4
PARALLEL_LOADS = 8

# Retrying: the first wait, the longest, and how long one call may keep retrying in all.
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAXIMUM_SECONDS = 20.0
RETRY_DEADLINE_SECONDS = 600.0

_POLARS_TYPES: dict[str, pl.DataType] = {
    "String": pl.String(),
    "Boolean": pl.Boolean(),
    "Int8": pl.Int8(),
    "Int16": pl.Int16(),
    "Int32": pl.Int32(),
    "Int64": pl.Int64(),
    "Float32": pl.Float32(),
    "Float64": pl.Float64(),
    "Date": pl.Date(),
    "Datetime(us)": pl.Datetime("us"),
}
_BIGQUERY_TYPES = {
    "String": "STRING",
    "Boolean": "BOOL",
    "Int8": "INT64",
    "Int16": "INT64",
    "Int32": "INT64",
    "Int64": "INT64",
    "Float32": "FLOAT64",
    "Float64": "FLOAT64",
    "Date": "DATE",
    "Datetime(us)": "TIMESTAMP",  # the pipeline's timestamps are naive UTC
}
# What a column without our description reads as (a table made by other tooling).
_DEFAULT_POLARS = {"STRING": "String", "BOOL": "Boolean", "INT64": "Int64", "FLOAT64": "Float64", "DATE": "Date", "TIMESTAMP": "Datetime(us)"}
# BigQuery's REST API answers with the legacy names of some types.
_LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
DESCRIPTION_PREFIX = "polars:"


def polars_type_name(dtype: pl.DataType) -> str:
    """``Int16``, ``Datetime(us)``, ``List(Float64)``: the name kept in a column's description."""
    if isinstance(dtype, pl.List):
        return f"List({polars_type_name(dtype.inner)})"
    name = "Datetime(us)" if isinstance(dtype, pl.Datetime) else dtype.base_type().__name__
    if name not in _POLARS_TYPES:
        raise WarehouseError(f"no BigQuery type for Polars {dtype}")
    return name


def polars_type(name: str) -> pl.DataType:
    if name.startswith("List(") and name.endswith(")"):
        return pl.List(polars_type(name[5:-1]))
    try:
        return _POLARS_TYPES[name]
    except KeyError:
        raise WarehouseError(f"unknown column type {name!r} in a BigQuery column description") from None


@dataclass(frozen=True)
class Column:
    """One column as BigQuery holds it, and the Polars type it reads back as."""

    name: str
    bigquery_type: str
    repeated: bool
    polars: str  # polars_type_name

    @classmethod
    def declared(cls, name: str, dtype: pl.DataType) -> "Column":
        checked(COLUMN_NAME, name, "column")
        type_name = polars_type_name(dtype)
        inner = type_name[5:-1] if type_name.startswith("List(") else type_name
        if inner.startswith("List("):
            raise WarehouseError(f"column {name}: BigQuery has no list of lists")
        return cls(name, _BIGQUERY_TYPES[inner], inner != type_name, type_name)

    @classmethod
    def of(cls, field: "bigquery.SchemaField") -> "Column":
        description = field.description or ""
        repeated = field.mode == "REPEATED"
        bigquery_type = _LEGACY_TYPES.get(field.field_type, field.field_type)
        if description.startswith(DESCRIPTION_PREFIX):
            type_name = description[len(DESCRIPTION_PREFIX) :]
        else:
            inner = _DEFAULT_POLARS.get(bigquery_type, "String")
            type_name = f"List({inner})" if repeated else inner
        return cls(field.name, bigquery_type, repeated, type_name)

    def field(self) -> "bigquery.SchemaField":
        from google.cloud import bigquery

        return bigquery.SchemaField(
            self.name, self.bigquery_type, mode="REPEATED" if self.repeated else "NULLABLE", description=DESCRIPTION_PREFIX + self.polars
        )

    @property
    def ddl_type(self) -> str:
        return f"ARRAY<{self.bigquery_type}>" if self.repeated else self.bigquery_type

    @property
    def dtype(self) -> pl.DataType:
        return polars_type(self.polars)

    def same_storage(self, other: "Column") -> bool:
        return (self.bigquery_type, self.repeated) == (other.bigquery_type, other.repeated)


def checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise WarehouseError(f"{what} {value!r} is not a valid BigQuery name (allowed: {pattern.pattern})")
    return value


def _is_transient(exc: BaseException) -> bool:
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
    return bool(reasons & {"rateLimitExceeded", "backendError", "internalError", "badGateway", "jobBackendError",
                           "jobInternalError", "jobRateLimitExceeded"})  # fmt: skip


def _retries():
    """(retry of one API call, retry of a whole query job): the client's own retry objects."""
    from google.api_core.retry import Retry
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    call = DEFAULT_RETRY.with_delay(initial=RETRY_INITIAL_SECONDS, maximum=RETRY_MAXIMUM_SECONDS).with_deadline(RETRY_DEADLINE_SECONDS)
    job = Retry(predicate=_is_transient, initial=RETRY_INITIAL_SECONDS, maximum=RETRY_MAXIMUM_SECONDS, timeout=RETRY_DEADLINE_SECONDS)
    return call, job


class BigQueryWarehouse(Warehouse):
    def __init__(
        self,
        project: str,
        *,
        location: str = "US",
        dataset_prefix: str = "",
        staging_dataset: str = "nba_staging",
        rest_endpoint: str | None = None,
        grpc_endpoint: str | None = None,
        read_only: bool = False,
    ):
        self.project = checked(PROJECT_NAME, project, "warehouse.project")
        self.prefix = checked(PREFIX_NAME, dataset_prefix or "", "warehouse.dataset_prefix")
        self.staging_dataset = checked(DATASET_NAME, self.prefix + staging_dataset, "warehouse.staging_dataset")
        if bool(rest_endpoint) != bool(grpc_endpoint):
            raise WarehouseError("warehouse.endpoints: set both rest and grpc (an emulator) or neither (Google BigQuery)")
        self.location = location
        self.rest_endpoint = rest_endpoint
        self.grpc_endpoint = grpc_endpoint
        self.read_only = read_only
        self.retry, self.job_retry = _retries()
        self._client: bigquery.Client | None = None
        self._read_client = None
        self._opening = threading.Lock()
        self._tables: dict[str, bigquery.Table | None] = {}  # metadata, by "dataset.table"
        self._datasets: set[str] = set()
        self._lock_lost: str | None = None

    @classmethod
    def from_config(cls, config: Mapping, *, read_only: bool = False) -> "BigQueryWarehouse":
        from omegaconf import OmegaConf

        if OmegaConf.is_config(config) and OmegaConf.is_missing(config, "project") or not config.get("project"):
            raise WarehouseError(
                "warehouse.project is required with warehouse=bigquery: the Google Cloud project that holds the "
                "datasets (warehouse.project=my-project)"
            )
        endpoints = config.get("endpoints") or {}
        return cls(
            str(config["project"]),
            location=config.get("location") or "US",
            dataset_prefix=config.get("dataset_prefix") or "",
            staging_dataset=config.get("staging_dataset") or "nba_staging",
            rest_endpoint=endpoints.get("rest"),
            grpc_endpoint=endpoints.get("grpc"),
            read_only=read_only,
        )

    # -- clients (opened on first use, after every name was checked) ------------------------

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

        if self.rest_endpoint:
            return bigquery.Client(
                project=self.project,
                location=self.location,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=self.rest_endpoint),
            )
        try:
            return bigquery.Client(project=self.project, location=self.location)
        except DefaultCredentialsError:
            raise WarehouseError(NO_CREDENTIALS) from None

    @property
    def read_client(self):
        with self._opening:
            if self._read_client is None:
                from google.cloud import bigquery_storage_v1

                if self.grpc_endpoint:
                    import grpc
                    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

                    # No message size cap, as on the client's own channel to Google (a read's
                    # Arrow batches can pass gRPC's 4 MB default).
                    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
                    channel = grpc.insecure_channel(self.grpc_endpoint, options=unlimited)
                    self._read_client = bigquery_storage_v1.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
                else:
                    from google.auth.exceptions import DefaultCredentialsError

                    try:
                        self._read_client = bigquery_storage_v1.BigQueryReadClient()
                    except DefaultCredentialsError:
                        raise WarehouseError(NO_CREDENTIALS) from None
            return self._read_client

    def describe(self) -> str:
        datasets = f"datasets {self.prefix}nba_*" if self.prefix else "datasets nba_*"
        where = f" on the emulator at {self.rest_endpoint}" if self.rest_endpoint else ""
        return f"bigquery:{self.project} ({datasets}, location {self.location}){where}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._read_client is not None:
            self._read_client.transport.close()
            self._read_client = None

    # -- names -------------------------------------------------------------------------------

    def dataset_id(self, dataset: str) -> str:
        return checked(DATASET_NAME, self.prefix + dataset, "dataset")

    def table_id(self, table: str) -> str:
        """``project.prefixed_dataset.table``, every part checked."""
        dataset, _, name = table.partition(".")
        if not name:
            raise WarehouseError(f"table {table!r} is not named dataset.table")
        return f"{self.project}.{self.dataset_id(dataset)}.{checked(DATASET_NAME, name, 'table')}"

    def sql_name(self, table: str) -> str:
        return f"`{self.table_id(table)}`"

    # -- metadata ----------------------------------------------------------------------------

    def _table(self, table: str) -> "bigquery.Table | None":
        """The table's metadata (cached for the run), or None if it does not exist."""
        from google.api_core.exceptions import NotFound

        table_id = self.table_id(table)
        if table not in self._tables:
            try:
                self._tables[table] = self.client.get_table(table_id, retry=self.retry)
            except NotFound:
                self._tables[table] = None
            except Exception as exc:  # noqa: BLE001 - named, then raised as the warehouse's error
                raise self._error(f"reading the schema of {table}", exc) from exc
        return self._tables[table]

    def columns(self, table: str) -> dict[str, Column]:
        found = self._table(table)
        if found is None:
            raise WarehouseError(f"table {table} does not exist in {self.describe()}")
        return {f.name: Column.of(f) for f in found.schema}

    def exists(self, table: str) -> bool:
        return self._table(table) is not None

    def _ensure_dataset(self, dataset_id: str, *, expiration: dt.timedelta | None = None) -> None:
        from google.cloud import bigquery

        if dataset_id in self._datasets:
            return
        dataset = bigquery.Dataset(f"{self.project}.{dataset_id}")
        dataset.location = self.location
        if expiration is not None:
            dataset.default_table_expiration_ms = int(expiration.total_seconds() * 1000)
        try:
            self.client.create_dataset(dataset, exists_ok=True, retry=self.retry)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"creating dataset {dataset_id}", exc) from exc
        self._datasets.add(dataset_id)

    def ensure_table(self, schema: TableSchema) -> None:
        from google.cloud import bigquery

        self._writable()
        wanted = {name: Column.declared(name, dtype) for name, dtype in schema.columns.items()}
        current = self._table(schema.name)
        if current is None:
            self._ensure_dataset(self.dataset_id(schema.name.split(".", 1)[0]))
            table = bigquery.Table(self.table_id(schema.name), schema=[c.field() for c in wanted.values()])
            if schema.partition_by:
                table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=schema.partition_by)
            if schema.cluster_by:
                table.clustering_fields = list(schema.cluster_by[:4])  # BigQuery clusters on at most four
            self._tables.pop(schema.name, None)
            try:
                self.client.create_table(table, exists_ok=True, retry=self.retry)
            except Exception as exc:  # noqa: BLE001
                raise self._error(f"creating {schema.name}", exc) from exc
            return
        have = {f.name: Column.of(f) for f in current.schema}
        if have == wanted:
            return
        self._tables.pop(schema.name, None)
        changed = [n for n, c in have.items() if n in wanted and not wanted[n].same_storage(c)]
        removed = [n for n in have if n not in wanted]
        for name in changed:
            log.warning(
                "%s: column %s changes type (%s -> %s): its values are dropped, and every date of the table is rebuilt",
                schema.name, name, have[name].ddl_type, wanted[name].ddl_type,
            )  # fmt: skip
        for name in removed:
            log.warning("%s: column %s is no longer declared: dropped", schema.name, name)
        statements = [f"ALTER TABLE {self.sql_name(schema.name)} DROP COLUMN IF EXISTS `{n}`" for n in (*removed, *changed)]
        added = [n for n in wanted if n not in have or n in changed]
        statements += [f"ALTER TABLE {self.sql_name(schema.name)} ADD COLUMN IF NOT EXISTS `{n}` {wanted[n].ddl_type}" for n in added]
        for statement in statements:
            self._query(statement, what=f"changing the columns of {schema.name}")
        # The columns as DDL left them, each described with its Polars type.
        kept = [n for n in have if n in wanted and n not in changed]
        try:
            table = self.client.get_table(self.table_id(schema.name), retry=self.retry)
            table.schema = [wanted[n].field() for n in (*kept, *added)]
            self.client.update_table(table, ["schema"], retry=self.retry)
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"describing the columns of {schema.name}", exc) from exc
        self._tables.pop(schema.name, None)

    # -- reads -------------------------------------------------------------------------------

    def read(
        self,
        table: str,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, object] | None = None,
        partition_by: str = "game_date",
    ) -> pl.DataFrame:
        from google.cloud.bigquery_storage_v1 import types

        declared = self.columns(table)
        selected = list(columns) if columns else list(declared)
        unknown = [c for c in selected if c not in declared]
        if unknown:
            raise WarehouseError(f"{table} has no column(s) {unknown} in {self.describe()}")
        restriction = row_restriction(start, end, where or {}, partition_by)
        dataset, name = self.table_id(table).split(".")[1:]
        session = types.ReadSession(
            table=f"projects/{self.project}/datasets/{dataset}/tables/{name}",
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(selected_fields=selected, row_restriction=restriction),
        )
        try:
            session = self.read_client.create_read_session(parent=f"projects/{self.project}", read_session=session, max_stream_count=READ_STREAMS)
            if session.streams:
                arrow_schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))

                def read_stream(stream) -> list[pa.RecordBatch]:
                    # The client's stream resumes at its offset after a transient error.
                    responses = self.read_client.read_rows(stream.name)
                    return [pa.ipc.read_record_batch(pa.py_buffer(r.arrow_record_batch.serialized_record_batch), arrow_schema) for r in responses]

                with futures.ThreadPoolExecutor(len(session.streams), thread_name_prefix="bigquery-read") as pool:
                    batches = [batch for part in pool.map(read_stream, session.streams) for batch in part]
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"reading {table} ({restriction or 'every row'})", exc) from exc
        schema = {c: declared[c].dtype for c in selected}
        if not session.streams or not any(b.num_rows for b in batches):
            return pl.DataFrame(schema=schema)
        frame = pl.from_arrow(pa.Table.from_batches(batches, schema=arrow_schema))
        return frame.select(_as(pl.col(c), frame.schema[c], t) for c, t in schema.items())

    def dates_present(self, table: str, partition_by: str = "game_date") -> list[dt.date]:
        if not self.exists(table):
            return []
        column = checked(COLUMN_NAME, partition_by, f"{table} column")
        rows = self._query(f"SELECT DISTINCT `{column}` FROM {self.sql_name(table)} ORDER BY 1", what=f"listing the dates of {table}")
        return [row[0] for row in rows.rows]

    # -- writes ------------------------------------------------------------------------------

    def write(self, writes: Sequence[PartitionWrite]) -> None:
        self._writable()
        if not writes:
            return
        what = "; ".join(f"{w.table} on {_dates_text(w.dates)}" for w in writes)
        self._ensure_dataset(self.staging_dataset, expiration=STAGING_EXPIRATION)
        token = uuid.uuid4().hex[:16]
        keys_table = f"{self.project}.{self.staging_dataset}.keys_{token}"
        # Each write's rows: those staged before (by a worker, say) and its own, staged now.
        staged: dict[int, list[str]] = {i: [self._checked_handle(h) for h in w.staged] for i, w in enumerate(writes)}
        loads = {keys_table: (None, self._keys(writes))}
        for i, w in enumerate(writes):
            if w.rows is not None and w.rows.height:
                staged[i].append(f"{self.project}.{self.staging_dataset}.rows_{token}_{i}")
                loads[staged[i][-1]] = (w.table, w.rows)
        committed = False
        try:
            started = time.perf_counter()
            with futures.ThreadPoolExecutor(min(PARALLEL_LOADS, len(loads)), thread_name_prefix="bigquery-load") as pool:
                list(pool.map(lambda item: self._stage(item[0], *item[1]), loads.items()))
            staged_at = time.perf_counter()
            script = ["BEGIN TRANSACTION;"]
            for i, w in enumerate(writes):
                keys = f"`{keys_table}`"
                clauses = [f"`{w.partition_by}` IN (SELECT partition_date FROM {keys} WHERE write_index = {i})"]
                clauses += [
                    f"`{c}` IS NULL" if value is None else f"`{c}` IN (SELECT `{c}` FROM {keys} WHERE write_index = {i})"
                    for c, value in w.where.items()
                ]
                script.append(f"DELETE FROM {self.sql_name(w.table)} WHERE {' AND '.join(clauses)};")
                names = ", ".join(f"`{c}`" for c in self.columns(w.table))  # a staged table has them all
                script += [f"INSERT INTO {self.sql_name(w.table)} ({names}) SELECT {names} FROM `{table_id}`;" for table_id in staged[i]]
            script.append("COMMIT TRANSACTION;")
            self._check_lock()
            self._query("\n".join(script), what=f"replacing {what}")
            committed = True
            log.debug("replaced %s: staged in %.2fs, committed in %.2fs", what, staged_at - started, time.perf_counter() - staged_at)
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(f"replacing {what}", exc) from exc
        finally:
            # Rows staged before the call are consumed by a commit; after a failure they stay,
            # for the caller to discard (as on DuckDB, whose rollback keeps them).
            self._drop([*loads, *(h for w in writes for h in w.staged if committed)])

    def stage(self, table: str, rows: pl.DataFrame) -> str:
        """A table of ``staging_dataset`` (they expire in a day, so what a killed run left goes)."""
        self._writable()
        self._ensure_dataset(self.staging_dataset, expiration=STAGING_EXPIRATION)
        handle = f"{self.project}.{self.staging_dataset}.rows_{uuid.uuid4().hex}"
        self._stage(handle, table, rows)
        return handle

    def discard(self, staged: Sequence[str]) -> None:
        self._drop([self._checked_handle(h) for h in staged])

    @property
    def reachable_from_workers(self) -> bool:
        return True

    def _checked_handle(self, handle: str) -> str:
        """A staged table of this warehouse's staging dataset, and nothing else, may be consumed."""
        prefix = f"{self.project}.{self.staging_dataset}.rows_"
        if not (handle.startswith(prefix) and re.fullmatch(r"[0-9a-f_]+", handle[len(prefix) :])):
            raise WarehouseError(f"{handle!r} is not a handle of rows staged in {self.describe()}")
        return handle

    def _keys(self, writes: Sequence[PartitionWrite]) -> pl.DataFrame:
        """The partitions each write replaces: (write_index, partition_date, the ``where`` values)."""
        where_types: dict[str, pl.DataType] = {}
        for w in writes:
            declared = self.columns(w.table)
            checked(COLUMN_NAME, w.partition_by, f"{w.table} column")
            if w.partition_by not in declared:
                raise WarehouseError(f"{w.table} has no column {w.partition_by} to replace partitions by")
            for column in w.where:
                checked(COLUMN_NAME, column, f"{w.table} column")
                if column not in declared:
                    raise WarehouseError(f"{w.table} has no column {column} to replace partitions by")
                where_types.setdefault(column, declared[column].dtype)
        frames = [
            pl.DataFrame(
                {"write_index": [i] * len(w.dates), "partition_date": list(w.dates), **{c: [w.where.get(c)] * len(w.dates) for c in where_types}},
                schema={"write_index": pl.Int64, "partition_date": pl.Date, **where_types},
            )
            for i, w in enumerate(writes)
        ]
        return pl.concat(frames)

    def _stage(self, table_id: str, target: str | None, rows: pl.DataFrame) -> None:
        """Load ``rows`` as Parquet into a new staging table typed like ``target``'s columns."""
        from google.cloud import bigquery

        if target is None:
            columns = [Column.declared(c, t) for c, t in rows.schema.items()]
        else:
            rows = self._conformed(target, rows)
            columns = list(self.columns(target).values())
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=[c.field() for c in columns],
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,  # a retried load cannot double the rows
        )
        self._load(table_id, rows, config, what=f"staging rows for {target or 'the partitions to replace'}")

    def append(self, table: str, rows: pl.DataFrame) -> None:
        from google.cloud import bigquery

        self._writable()
        self._check_lock()
        declared = self.columns(table)
        rows = self._conformed(table, rows)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=[col.field() for col in declared.values()],
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        self._load(self.table_id(table), rows, config, what=f"appending {rows.height:,} rows to {table}")

    def _conformed(self, table: str, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` with every column of ``table``, in its order (NULL where ``rows`` has none)."""
        declared = self.columns(table)
        unknown = [c for c in rows.columns if c not in declared]
        if unknown:
            raise WarehouseError(f"rows for {table} carry column(s) {unknown} the table does not have")
        return rows.select(pl.col(c) if c in rows.columns else pl.lit(None, dtype=col.dtype).alias(c) for c, col in declared.items())

    def _load(self, table_id: str, rows: pl.DataFrame, config: "bigquery.LoadJobConfig", *, what: str) -> None:
        """One load job. Its id is chosen here, so that an upload retried after a lost answer
        finds the job it already made (409) instead of loading the rows twice."""
        from google.api_core.exceptions import Conflict

        buffer = io.BytesIO()
        rows.write_parquet(buffer)
        buffer.seek(0)
        job_id = f"nba_pipeline_load_{uuid.uuid4().hex}"
        try:
            try:
                job = self.client.load_table_from_file(buffer, table_id, job_id=job_id, job_config=config, rewind=True)
            except Conflict:
                job = self.client.get_job(job_id, retry=self.retry)
            job.result(retry=self.retry)
        except Exception as exc:  # noqa: BLE001
            raise self._error(what, exc) from exc

    def _drop(self, table_ids: Sequence[str]) -> None:
        """Staging tables go once the transaction is done (they would expire in a day anyway)."""

        def drop(table_id: str) -> None:
            try:
                self.client.delete_table(table_id, not_found_ok=True, retry=self.retry)
            except Exception:  # noqa: BLE001 - nothing depends on it; logged for the curious
                log.debug("could not drop staging table %s", table_id, exc_info=True)

        if table_ids:
            with futures.ThreadPoolExecutor(min(PARALLEL_LOADS, len(table_ids)), thread_name_prefix="bigquery-drop") as pool:
                list(pool.map(drop, table_ids))

    def _query(self, sql: str, *, what: str, params: Sequence[object] = ()) -> "QueryResult":
        """One query job (a script, too) with the client's retries."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=list(params))
        try:
            result = self.client.query_and_wait(sql, job_config=config, retry=self.retry, job_retry=self.job_retry)
            return QueryResult([tuple(row.values()) for row in result], result.num_dml_affected_rows)
        except Exception as exc:  # noqa: BLE001
            raise self._error(what, exc) from exc

    def _writable(self) -> None:
        if self.read_only:
            raise WarehouseError(f"{self.describe()} is open read-only")

    def _check_lock(self) -> None:
        """A run whose lock another run took over (its heartbeat went stale) writes nothing more."""
        if self._lock_lost is not None:
            raise WarehouseLocked(f"{self._lock_lost}; nothing more is written by this run")

    def _error(self, what: str, exc: BaseException) -> WarehouseError:
        """A failure that retrying did not (or could not) cure, named for the person reading it."""
        from google.api_core import exceptions

        if isinstance(exc, exceptions.RetryError) and exc.cause is not None:
            exc = exc.cause
        message = getattr(exc, "message", None) or str(exc)
        return WarehouseError(f"BigQuery failed {what} in {self.describe()}: {type(exc).__name__}: {message}")

    # -- lock --------------------------------------------------------------------------------

    @contextmanager
    def lock(self, *, holder: Mapping[str, object], wait_seconds: float, stale_seconds: float) -> Iterator[None]:
        from google.cloud import bigquery

        if self._table(LOCK_TABLE) is None:
            self._ensure_dataset(self.dataset_id(LOCK_TABLE.split(".")[0]))
            fields = [bigquery.SchemaField(n, t) for n, t in LOCK_COLUMNS.items()]
            self._tables.pop(LOCK_TABLE, None)
            self.client.create_table(bigquery.Table(self.table_id(LOCK_TABLE), schema=fields), exists_ok=True, retry=self.retry)
        token = uuid.uuid4().hex
        claim = _RunLock(self, token, json.dumps(dict(holder), default=str), stale_seconds)
        claim.acquire(wait_seconds)
        try:
            yield
        finally:
            claim.release()


@dataclass(frozen=True)
class QueryResult:
    rows: list[tuple]
    affected: int | None  # rows changed by a DML statement


LOCK_COLUMNS = {
    "lock_key": "STRING",
    "token": "STRING",
    "holder": "STRING",
    "acquired_at": "TIMESTAMP",
    "heartbeat_at": "TIMESTAMP",
    "taken_over_from": "STRING",
}
LOCK_POLL_SECONDS = 1.0


class _RunLock:
    """One run's claim on ``nba_orchestration.run_lock``.

    The claim is a single ``MERGE``: it inserts the row if there is none, or takes it over if its
    heartbeat is older than ``stale_seconds`` (keeping the old holder in ``taken_over_from``);
    otherwise it changes nothing. One affected row means this run holds the lock; zero, that
    another does. BigQuery runs concurrent DML on one table one at a time (or aborts one, which
    the job retry runs again), so two runs can never both see one affected row. The heartbeat
    thread refreshes ``heartbeat_at`` while the run lives; a run that finds its row taken by
    another stops writing (:meth:`BigQueryWarehouse._check_lock`).
    """

    def __init__(self, warehouse: BigQueryWarehouse, token: str, holder: str, stale_seconds: float):
        from google.cloud import bigquery

        self.warehouse = warehouse
        self.token = token
        self.holder = holder
        self.stale_seconds = stale_seconds
        self.table = warehouse.sql_name(LOCK_TABLE)
        self.params = [
            bigquery.ScalarQueryParameter("lock_key", "STRING", warehouse.prefix),
            bigquery.ScalarQueryParameter("token", "STRING", token),
        ]
        self.heartbeat_seconds = max(0.2, min(60.0, stale_seconds / 5))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, wait_seconds: float) -> None:
        started = time.monotonic()
        told = False
        while not self._claim():
            current = self._current()
            if current is None:
                continue  # released between the claim and the look: claim again
            if time.monotonic() - started >= wait_seconds:
                waited = f" after waiting {wait_seconds:.0f}s" if wait_seconds else ""
                raise WarehouseLocked(
                    f"warehouse {self.warehouse.describe()} is in use by another run ({current}){waited}. "
                    f"Let it finish, or pass lock.wait_seconds=N to wait for it; a run that died is taken over once "
                    f"its heartbeat is older than lock.stale_seconds={self.stale_seconds:g}."
                )
            if not told:
                told = True
                log.warning("waiting up to %.0fs for the warehouse: %s", wait_seconds, current)
            time.sleep(LOCK_POLL_SECONDS)
        if told:
            log.info("warehouse lock acquired after waiting %.1fs", time.monotonic() - started)
        taken_from = self.warehouse._query(
            f"SELECT taken_over_from FROM {self.table} WHERE lock_key = @lock_key AND token = @token",
            what="reading the lock just claimed",
            params=self.params,
        ).rows
        if taken_from and taken_from[0][0]:
            log.warning(
                "TOOK OVER the warehouse lock from a run presumed dead (%s): its heartbeat was older than "
                "lock.stale_seconds=%g. If that run is in fact alive, stop it now: two runs are writing.",
                holder_text(json.loads(taken_from[0][0])), self.stale_seconds,
            )  # fmt: skip
        self._thread = threading.Thread(target=self._beat, name="warehouse-lock-heartbeat", daemon=True)
        self._thread.start()

    def _claim(self) -> bool:
        from google.cloud import bigquery

        params = [
            *self.params,
            bigquery.ScalarQueryParameter("holder", "STRING", self.holder),
            bigquery.ScalarQueryParameter("stale_ms", "INT64", int(self.stale_seconds * 1000)),
        ]
        claimed = self.warehouse._query(
            f"""MERGE {self.table} AS held USING (SELECT @lock_key AS lock_key) AS wanted ON held.lock_key = wanted.lock_key
            WHEN MATCHED AND held.heartbeat_at < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @stale_ms MILLISECOND) THEN
              UPDATE SET token = @token, holder = @holder, acquired_at = CURRENT_TIMESTAMP(), heartbeat_at = CURRENT_TIMESTAMP(),
                         taken_over_from = held.holder
            WHEN NOT MATCHED THEN
              INSERT (lock_key, token, holder, acquired_at, heartbeat_at, taken_over_from)
              VALUES (@lock_key, @token, @holder, CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP(), NULL)""",
            what="claiming the warehouse lock",
            params=params,
        )
        return claimed.affected == 1

    def _current(self) -> str | None:
        """Who holds the lock and how fresh their heartbeat is; None if nobody does."""
        rows = self.warehouse._query(
            f"SELECT holder, TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), heartbeat_at, MILLISECOND) FROM {self.table} WHERE lock_key = @lock_key",
            what="reading the warehouse lock",
            params=self.params[:1],
        ).rows
        if not rows:
            return None
        holder, age_ms = rows[0]
        return f"{holder_text(json.loads(holder))}; last heartbeat {age_ms / 1000:.0f}s ago"

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                renewed = self.warehouse._query(
                    f"UPDATE {self.table} SET heartbeat_at = CURRENT_TIMESTAMP() WHERE lock_key = @lock_key AND token = @token",
                    what="renewing the warehouse lock",
                    params=self.params,
                )
                if renewed.affected == 0:
                    self.warehouse._lock_lost = f"another run took the warehouse lock over ({self._current() or 'since released'})"
                    log.error("%s: this run stops writing", self.warehouse._lock_lost)
                    return
            except WarehouseError as exc:
                log.warning("heartbeat on the warehouse lock failed (retrying): %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.warehouse._lock_lost is None:
            self.warehouse._query(
                f"DELETE FROM {self.table} WHERE lock_key = @lock_key AND token = @token", what="releasing the warehouse lock", params=self.params
            )


def _as(column: pl.Expr, got: pl.DataType, wanted: pl.DataType) -> pl.Expr:
    """A read column in its declared Polars type (BigQuery's TIMESTAMP arrives as UTC)."""
    if isinstance(got, pl.Datetime) and got.time_zone is not None:
        column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return column.cast(wanted)


def _dates_text(dates: Sequence[dt.date]) -> str:
    if not dates:
        return "no dates"
    ordered = sorted(dates)
    return str(ordered[0]) if len(ordered) == 1 else f"{ordered[0]}..{ordered[-1]} ({len(ordered)} dates)"


def row_restriction(start: dt.date | None, end: dt.date | None, where: Mapping[str, object], partition_by: str = "game_date") -> str:
    """The Storage Read API's filter: its only form is text, so values are written as typed
    literals (``DATE '2024-01-05'``, escaped strings, integers), never as raw input."""
    clauses = []
    column = checked(COLUMN_NAME, partition_by, "column")  # a checked name needs no quoting
    if start is not None:
        clauses.append(f"{column} >= {literal(start)}")
    if end is not None:
        clauses.append(f"{column} <= {literal(end)}")
    for column, value in where.items():
        checked(COLUMN_NAME, column, "column")
        if isinstance(value, (list, tuple, set, frozenset)):
            values = sorted(value)
            clauses.append(f"`{column}` IN ({', '.join(literal(v) for v in values)})" if values else "FALSE")
        else:
            clauses.append(f"`{column}` IS NULL" if value is None else f"`{column}` = {literal(value)}")
    return " AND ".join(clauses)


def literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        raise WarehouseError(f"no timestamp filters in reads: {value!r}")
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        return f"'{escaped}'"
    raise WarehouseError(f"cannot filter a read on {value!r} ({type(value).__name__})")
