"""The BigQuery backend as the pipeline sees it: the :class:`~pipeline.warehouse.base.Warehouse`
interface over the package's parts (jobs, catalog, reads, writes, lock), and its preflight."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import polars as pl

from pipeline.warehouse.base import Check, PartitionWrite, TableSchema, Warehouse, WarehouseError, WarehouseLocked
from pipeline.warehouse.bigquery import reads
from pipeline.warehouse.bigquery.catalog import STAGING_EXPIRATION, Catalog
from pipeline.warehouse.bigquery.columns import Column
from pipeline.warehouse.bigquery.jobs import Jobs, Settings
from pipeline.warehouse.bigquery.lock import LOCK_TABLE, RunLock
from pipeline.warehouse.bigquery.names import DATASET_NAME, PREFIX_NAME, PROJECT_NAME, checked
from pipeline.warehouse.bigquery.writes import Writer

# The datasets the pipeline keeps its tables in (behind warehouse.dataset_prefix).
DATASETS = ("nba_raw", "nba_analytics", "nba_precompute", "nba_predictions", "nba_orchestration")


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
        maximum_bytes_billed: int | None = None,
        job_timeout_seconds: float | None = None,
        labels: Mapping[str, object] | None = None,
    ):
        prefix = checked(PREFIX_NAME, dataset_prefix or "", "warehouse.dataset_prefix")
        if bool(rest_endpoint) != bool(grpc_endpoint):
            raise WarehouseError("warehouse.endpoints: set both rest and grpc (an emulator) or neither (Google BigQuery)")
        settings = Settings(
            project=checked(PROJECT_NAME, project, "warehouse.project"),
            location=location,
            prefix=prefix,
            staging_dataset=checked(DATASET_NAME, prefix + staging_dataset, "warehouse.staging_dataset"),
            rest_endpoint=rest_endpoint,
            grpc_endpoint=grpc_endpoint,
            maximum_bytes_billed=maximum_bytes_billed,
            job_timeout_seconds=job_timeout_seconds,
            labels=dict(labels or {}),
        )
        self.read_only = read_only
        self.jobs = Jobs(settings)
        self.catalog = Catalog(self.jobs)
        self.writer = Writer(self.catalog)
        # A table's dates, as this process last listed them: they change only by its own writes
        # while it holds the lock, and each listing is a query job (seconds on BigQuery).
        self._dates: dict[tuple[str, str], list[dt.date]] = {}

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
            maximum_bytes_billed=config.get("maximum_bytes_billed"),
            job_timeout_seconds=config.get("job_timeout_seconds"),
            labels=dict(config.get("labels") or {}),
        )

    # -- what callers and tests look at ------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.jobs.settings

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    @property
    def staging_dataset(self) -> str:
        return self.settings.staging_dataset

    @property
    def location(self) -> str:
        return self.settings.location

    @property
    def client(self):
        return self.jobs.client

    def describe(self) -> str:
        return self.jobs.describe()

    def close(self) -> None:
        self.jobs.close()

    def table_id(self, table: str) -> str:
        return self.catalog.table_id(table)

    def sql_name(self, table: str) -> str:
        return self.catalog.sql_name(table)

    def columns(self, table: str) -> dict[str, Column]:
        return self.catalog.columns(table)

    # -- the interface ---------------------------------------------------------------------

    def exists(self, table: str) -> bool:
        return self.catalog.exists(table)

    def ensure_table(self, schema: TableSchema) -> None:
        self._writable()
        self._forget_dates({schema.name})
        self.catalog.ensure_table(schema)

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
        return reads.read(self.catalog, table, start=start, end=end, columns=columns, where=where, partition_by=partition_by)

    def dates_present(self, table: str, partition_by: str = "game_date") -> list[dt.date]:
        if self.writer.lock is None:  # another run may write meanwhile: ask every time
            return reads.dates_present(self.catalog, table, partition_by)
        if (table, partition_by) not in self._dates:
            self._dates[table, partition_by] = reads.dates_present(self.catalog, table, partition_by)
        return list(self._dates[table, partition_by])

    def write(self, writes: Sequence[PartitionWrite]) -> None:
        self._writable()
        try:
            self.writer.write(writes)
        finally:
            self._forget_dates({w.table for w in writes})

    def _forget_dates(self, tables: set[str]) -> None:
        for key in [k for k in self._dates if k[0] in tables]:
            del self._dates[key]

    def stage(self, table: str, rows: pl.DataFrame) -> str:
        self._writable()
        return self.writer.stage(table, rows)

    def discard(self, staged: Sequence[str]) -> None:
        self.writer.discard(staged)

    def append(self, table: str, rows: pl.DataFrame) -> None:
        self._writable()
        try:
            self.writer.append(table, rows)
        finally:
            self._forget_dates({table})

    @property
    def reachable_from_workers(self) -> bool:
        return True

    def job_counts(self) -> dict[str, int]:
        return dict(self.jobs.counts)

    @property
    def lock_taken_over_from(self) -> Mapping[str, object] | None:
        return self.writer.lock.taken_over_from if self.writer.lock is not None else None

    @contextmanager
    def lock(self, *, holder: Mapping[str, object], wait_seconds: float, stale_seconds: float) -> Iterator[None]:
        # Not _writable(): a read-only run (a backup) holds the lock too, so no run writes under it.
        self.catalog.ensure_dataset(self.catalog.dataset_id(LOCK_TABLE.split(".")[0]))
        claim = RunLock(self.jobs, self.catalog.sql_name(LOCK_TABLE), holder, stale_seconds)
        claim.acquire(wait_seconds)
        self.writer.lock = claim
        try:
            yield
        finally:
            self.writer.lock = None
            self._dates.clear()
            claim.release()

    def _writable(self) -> None:
        if self.read_only:
            raise WarehouseError(f"{self.describe()} is open read-only")

    # -- preflight (task=doctor) -----------------------------------------------------------

    def checks(self) -> Iterator[Check]:
        """Credentials, the datasets (present, in ``warehouse.location``), the staging expiry,
        a dry-run query (BigQuery Job User) and a Storage Read session (BigQuery Read Session
        User); each problem with the role or setting that fixes it."""
        yield self._credentials_check()
        present = []
        for dataset in (*DATASETS, self.staging_dataset[len(self.prefix) :]):
            check = self._dataset_check(dataset)
            present += [dataset] if check.ok else []
            yield check
        yield self._check(
            "a dry-run query",
            lambda: self.jobs.query("SELECT 1", what="a dry-run query", dry_run=True) and "bigquery.jobs.create granted",
            fix="grant the account BigQuery Job User (roles/bigquery.jobUser) on the project",
        )
        yield self._read_session_check()

    def _check(self, name: str, probe, *, fix: str) -> Check:
        try:
            return Check(name, detail=str(probe() or ""))
        except (WarehouseError, Exception) as exc:  # noqa: BLE001 - every failure is reported, none raised
            return Check(name, problem=_first_line(exc), fix=fix)

    def _credentials_check(self) -> Check:
        if self.settings.emulated:
            return Check("credentials", detail=f"anonymous, for the emulator at {self.settings.rest_endpoint}")

        def found() -> str:
            import google.auth

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery"])
            who = getattr(credentials, "service_account_email", None) or type(credentials).__name__
            return f"Application Default Credentials ({who})"  # who, never the key

        return self._check("credentials", found, fix="run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS")

    def _dataset_check(self, dataset: str) -> Check:
        from google.api_core.exceptions import NotFound

        dataset_id = self.catalog.dataset_id(dataset)
        name = f"dataset {dataset_id}"
        staging = dataset_id == self.staging_dataset
        try:
            found = self.client.get_dataset(f"{self.project}.{dataset_id}", retry=self.jobs.retry)
        except NotFound:
            return Check(
                name, problem=f"does not exist in project {self.project}",
                fix=f"the first run creates it in {self.location} if the account may (BigQuery Data Editor, roles/bigquery.dataEditor, "
                f"on the project), or: bq mk --location={self.location} {self.project}:{dataset_id}",
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            return Check(name, problem=_first_line(exc), fix="grant the account BigQuery Data Editor (roles/bigquery.dataEditor)")
        problem = self.catalog.dataset_problem(found, expiration=STAGING_EXPIRATION if staging else None)
        if problem:
            return Check(name, problem=problem[0], fix=problem[1])
        expiry = ", tables expire after a day" if staging else ""
        return Check(name, detail=f"in {found.location}{expiry}")

    def _read_session_check(self) -> Check:
        from pipeline.state import RUN_STATE

        if not self.exists(RUN_STATE.name):
            return Check("a Storage Read session", detail=f"not tried: no {RUN_STATE.name} yet to read")

        def opened() -> str:
            self.read(RUN_STATE.name, start=dt.date(1900, 1, 1), end=dt.date(1900, 1, 1), columns=["table_name"])
            return "bigquery.readsessions.create granted"

        return self._check(
            "a Storage Read session", opened,
            fix="grant the account BigQuery Read Session User (roles/bigquery.readSessionUser) on the project",
        )  # fmt: skip


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


__all__ = ["BigQueryWarehouse", "DATASETS", "WarehouseLocked"]
