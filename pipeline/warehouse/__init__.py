"""The warehouse layer: the only code that reads or writes data."""

from __future__ import annotations

from pipeline.warehouse.base import Check, PartitionWrite, TableSchema, Warehouse, WarehouseError, WarehouseLocked

__all__ = ["Check", "PartitionWrite", "TableSchema", "Warehouse", "WarehouseError", "WarehouseLocked", "open_warehouse"]


def open_warehouse(config, *, read_only: bool = False) -> Warehouse:
    """The backend named by ``warehouse.backend``."""
    if config.backend == "duckdb":
        from pipeline.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(config.path, read_only=read_only, threads=config.get("threads"), memory_limit=config.get("memory_limit"))
    if config.backend == "bigquery":
        from pipeline.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse.from_config(config, read_only=read_only)
    raise WarehouseError(f"unknown warehouse.backend {config.backend!r} (known: duckdb, bigquery)")
