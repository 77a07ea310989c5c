"""Reads go through the Storage Read API in Arrow, with the columns (``selected_fields``) and the
date range and ``where`` (``row_restriction``) pushed down, several streams in parallel; every
column comes back in the Polars type its table declared. (The Storage Read API needs the
``bigquery.readsessions.create`` permission, BigQuery Read Session User, besides reading the data.)"""

from __future__ import annotations

import datetime as dt
from concurrent import futures
from typing import Mapping, Sequence

import polars as pl
import pyarrow as pa

from pipeline.warehouse.base import WarehouseError
from pipeline.warehouse.bigquery.catalog import Catalog
from pipeline.warehouse.bigquery.columns import as_declared
from pipeline.warehouse.bigquery.names import COLUMN_NAME, checked, row_restriction

# Parallel Storage Read streams per read.
READ_STREAMS = 4


def read(
    catalog: Catalog,
    table: str,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    columns: Sequence[str] | None = None,
    where: Mapping[str, object] | None = None,
    partition_by: str = "game_date",
) -> pl.DataFrame:
    from google.cloud.bigquery_storage_v1 import types

    jobs = catalog.jobs
    declared = catalog.columns(table)
    selected = list(columns) if columns else list(declared)
    unknown = [c for c in selected if c not in declared]
    if unknown:
        raise WarehouseError(f"{table} has no column(s) {unknown} in {jobs.describe()}")
    restriction = row_restriction(start, end, where or {}, partition_by)
    project = catalog.settings.project
    dataset, name = catalog.table_id(table).split(".")[1:]
    session = types.ReadSession(
        table=f"projects/{project}/datasets/{dataset}/tables/{name}",
        data_format=types.DataFormat.ARROW,
        read_options=types.ReadSession.TableReadOptions(selected_fields=selected, row_restriction=restriction),
    )
    try:
        session = jobs.read_client.create_read_session(parent=f"projects/{project}", read_session=session, max_stream_count=READ_STREAMS)
        if session.streams:
            arrow_schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))

            def read_stream(stream) -> list[pa.RecordBatch]:
                # The client's stream resumes at its offset after a transient error.
                responses = jobs.read_client.read_rows(stream.name)
                return [pa.ipc.read_record_batch(pa.py_buffer(r.arrow_record_batch.serialized_record_batch), arrow_schema) for r in responses]

            with futures.ThreadPoolExecutor(len(session.streams), thread_name_prefix="bigquery-read") as pool:
                batches = [batch for part in pool.map(read_stream, session.streams) for batch in part]
    except Exception as exc:  # noqa: BLE001
        raise jobs.error(f"reading {table} ({restriction or 'every row'})", exc) from exc
    schema = {c: declared[c].dtype for c in selected}
    if not session.streams or not any(b.num_rows for b in batches):
        return pl.DataFrame(schema=schema)
    frame = pl.from_arrow(pa.Table.from_batches(batches, schema=arrow_schema))
    return frame.select(as_declared(pl.col(c), frame.schema[c], t) for c, t in schema.items())


def dates_present(catalog: Catalog, table: str, partition_by: str = "game_date") -> list[dt.date]:
    if not catalog.exists(table):
        return []
    column = checked(COLUMN_NAME, partition_by, f"{table} column")
    sql = f"SELECT DISTINCT `{column}` FROM {catalog.sql_name(table)} ORDER BY 1"
    return [row[0] for row in catalog.jobs.query(sql, what=f"listing the dates of {table}", table=table).rows]
