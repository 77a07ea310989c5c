"""Datasets and tables: their names, their metadata, and bringing them in line with the code.

- **Names.** Datasets are the production names (``nba_raw``, ``nba_analytics``, ...) behind
  ``dataset_prefix`` (``dev_`` gives ``dev_nba_raw``), so a team can keep a copy in the same
  project; every part of a name is checked before any request.
- **Datasets are checked, not trusted.** A dataset that exists must be in
  ``warehouse.location`` (a job runs in one location and cannot read across: a dataset made
  elsewhere by hand would fail every job later, far from the cause); the staging dataset's
  tables must expire (after a day), and an existing staging dataset without that expiry gets it.
- **Tables** are partitioned by day on ``game_date`` (or the schema's ``partition_by``) and
  clustered on the schema's ``cluster_by``. A new column is added in place; a column whose type
  changed is dropped and added again empty, loudly, and the planner rebuilds the table's dates
  (the schema is part of every date's fingerprint).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from pipeline.warehouse.base import TableSchema, WarehouseError
from pipeline.warehouse.bigquery.columns import Column
from pipeline.warehouse.bigquery.jobs import Jobs
from pipeline.warehouse.bigquery.names import DATASET_NAME, checked

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

STAGING_EXPIRATION = dt.timedelta(days=1)


class Catalog:
    """Names and metadata of one warehouse's datasets and tables (cached for the run)."""

    def __init__(self, jobs: Jobs):
        self.jobs = jobs
        self.settings = jobs.settings
        self._tables: dict[str, bigquery.Table | None] = {}  # by "dataset.table"
        self._datasets: set[str] = set()

    # -- names ---------------------------------------------------------------------------------

    def dataset_id(self, dataset: str) -> str:
        return checked(DATASET_NAME, self.settings.prefix + dataset, "dataset")

    def table_id(self, table: str) -> str:
        """``project.prefixed_dataset.table``, every part checked."""
        dataset, _, name = table.partition(".")
        if not name:
            raise WarehouseError(f"table {table!r} is not named dataset.table")
        return f"{self.settings.project}.{self.dataset_id(dataset)}.{checked(DATASET_NAME, name, 'table')}"

    def sql_name(self, table: str) -> str:
        return f"`{self.table_id(table)}`"

    def staging_id(self, name: str) -> str:
        return f"{self.settings.project}.{self.settings.staging_dataset}.{name}"

    # -- metadata ------------------------------------------------------------------------------

    def table(self, table: str) -> "bigquery.Table | None":
        """The table's metadata (cached for the run), or None if it does not exist."""
        from google.api_core.exceptions import NotFound

        table_id = self.table_id(table)
        if table not in self._tables:
            try:
                self._tables[table] = self.jobs.client.get_table(table_id, retry=self.jobs.retry)
            except NotFound:
                self._tables[table] = None
            except Exception as exc:  # noqa: BLE001 - named, then raised as the warehouse's error
                raise self.jobs.error(f"reading the schema of {table}", exc) from exc
        return self._tables[table]

    def forget(self, table: str) -> None:
        self._tables.pop(table, None)

    def columns(self, table: str) -> dict[str, Column]:
        found = self.table(table)
        if found is None:
            raise WarehouseError(f"table {table} does not exist in {self.jobs.describe()}")
        return {f.name: Column.of(f) for f in found.schema}

    def exists(self, table: str) -> bool:
        return self.table(table) is not None

    # -- datasets ------------------------------------------------------------------------------

    def ensure_dataset(self, dataset_id: str, *, expiration: dt.timedelta | None = None) -> None:
        """The dataset, created in ``warehouse.location`` if missing; an existing one is checked
        (its location) and given ``expiration`` if it has another."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        if dataset_id in self._datasets:
            return
        client, retry = self.jobs.client, self.jobs.retry
        try:
            try:
                dataset = client.get_dataset(f"{self.settings.project}.{dataset_id}", retry=retry)
            except NotFound:
                wanted = bigquery.Dataset(f"{self.settings.project}.{dataset_id}")
                wanted.location = self.settings.location
                if expiration is not None:
                    wanted.default_table_expiration_ms = int(expiration.total_seconds() * 1000)
                dataset = client.create_dataset(wanted, exists_ok=True, retry=retry)  # another run may create it meanwhile
            problem = self.dataset_problem(dataset, expiration=None)
            if problem:
                raise WarehouseError(f"{problem[0]}: BigQuery runs each job in one location. {problem[1]}")
            if expiration is not None and dataset.default_table_expiration_ms != int(expiration.total_seconds() * 1000):
                log.info("dataset %s: its tables now expire after %s (it had %s)", dataset_id, expiration, dataset.default_table_expiration_ms)
                dataset.default_table_expiration_ms = int(expiration.total_seconds() * 1000)
                client.update_dataset(dataset, ["default_table_expiration_ms"], retry=retry)
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self.jobs.error(f"creating dataset {dataset_id}", exc) from exc
        self._datasets.add(dataset_id)

    def dataset_problem(self, dataset: "bigquery.Dataset", *, expiration: dt.timedelta | None) -> tuple[str, str] | None:
        """What is wrong with an existing dataset, and what fixes it (None: nothing)."""
        where = (dataset.location or "").upper()
        if where and where != self.settings.location.upper():
            return (
                f"dataset {dataset.dataset_id} is in location {dataset.location}, not {self.settings.location} (warehouse.location)",
                f"Set warehouse.location={dataset.location}, or another warehouse.dataset_prefix for a copy in {self.settings.location}",
            )
        if expiration is not None and dataset.default_table_expiration_ms != int(expiration.total_seconds() * 1000):
            return (
                f"dataset {dataset.dataset_id}: its tables do not expire after {expiration} (rows a killed run staged would stay)",
                "the next run sets it",
            )
        return None

    # -- tables --------------------------------------------------------------------------------

    def ensure_table(self, schema: TableSchema) -> None:
        from google.cloud import bigquery

        wanted = {name: Column.declared(name, dtype) for name, dtype in schema.columns.items()}
        current = self.table(schema.name)
        client, retry = self.jobs.client, self.jobs.retry
        if current is None:
            self.ensure_dataset(self.dataset_id(schema.name.split(".", 1)[0]))
            table = bigquery.Table(self.table_id(schema.name), schema=[c.field() for c in wanted.values()])
            if schema.partition_by:
                table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=schema.partition_by)
            if schema.cluster_by:
                table.clustering_fields = list(schema.cluster_by[:4])  # BigQuery clusters on at most four
            self.forget(schema.name)
            try:
                client.create_table(table, exists_ok=True, retry=retry)
            except Exception as exc:  # noqa: BLE001
                raise self.jobs.error(f"creating {schema.name}", exc) from exc
            return
        have = {f.name: Column.of(f) for f in current.schema}
        if have == wanted:
            return
        self.forget(schema.name)
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
            self.jobs.query(statement, what=f"changing the columns of {schema.name}", table=schema.name)
        # The columns as DDL left them, each described with its Polars type.
        kept = [n for n in have if n in wanted and n not in changed]
        try:
            table = client.get_table(self.table_id(schema.name), retry=retry)
            table.schema = [wanted[n].field() for n in (*kept, *added)]
            client.update_table(table, ["schema"], retry=retry)
        except Exception as exc:  # noqa: BLE001
            raise self.jobs.error(f"describing the columns of {schema.name}", exc) from exc
        self.forget(schema.name)
