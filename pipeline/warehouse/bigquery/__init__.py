"""Google BigQuery: the tables' production home, with the guarantees the DuckDB file keeps, by
BigQuery's documented rules rather than by what an emulator lets pass.

Where to look:

- :mod:`.jobs`: the clients and every job (checked for errors, labelled, capped by
  ``maximum_bytes_billed`` and a timeout, retried once by the client's own retry objects, counted);
- :mod:`.names`: names, labels and the literals of filters, checked before any request;
- :mod:`.columns`: column types (each column's Polars type kept in its description);
- :mod:`.catalog`: datasets (location and staging expiry checked) and tables (created, columns
  brought in line);
- :mod:`.reads`: the Storage Read API, columns and filters pushed down;
- :mod:`.writes`: partition replacements in one fenced transaction per call, with constant
  partition filters, one load job per table at most;
- :mod:`.lock`: the run lock (one permanent row, claimed and released by ``UPDATE``) and the
  fence every commit carries;
- :mod:`.warehouse`: :class:`BigQueryWarehouse`, the interface over them, and its preflight
  (``task=doctor``).

Credentials are Application Default Credentials in production and anonymous only when
``endpoints`` point at an emulator; they never appear in :meth:`describe`, logs or errors.
"""

from pipeline.warehouse.bigquery.columns import Column
from pipeline.warehouse.bigquery.lock import LOCK_TABLE
from pipeline.warehouse.bigquery.names import literal, row_restriction
from pipeline.warehouse.bigquery.warehouse import DATASETS, BigQueryWarehouse

__all__ = ["DATASETS", "LOCK_TABLE", "BigQueryWarehouse", "Column", "literal", "row_restriction"]
