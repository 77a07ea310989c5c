"""Column types: BigQuery has one integer and one float type, so each column's Polars type is
kept in its description (``polars:Int16``) and every read returns the types the table declared,
as DuckDB does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from pipeline.warehouse.base import WarehouseError
from pipeline.warehouse.bigquery.names import COLUMN_NAME, checked

if TYPE_CHECKING:
    from google.cloud import bigquery

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




def conformed(declared: dict[str, Column], table: str, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with every column of ``table`` (``declared``), in its order (NULL where ``rows`` has none)."""
    unknown = [c for c in rows.columns if c not in declared]
    if unknown:
        raise WarehouseError(f"rows for {table} carry column(s) {unknown} the table does not have")
    return rows.select(pl.col(c) if c in rows.columns else pl.lit(None, dtype=col.dtype).alias(c) for c, col in declared.items())


def as_declared(column: pl.Expr, got: pl.DataType, wanted: pl.DataType) -> pl.Expr:
    """A read column in its declared Polars type (BigQuery's TIMESTAMP arrives as UTC)."""
    if isinstance(got, pl.Datetime) and got.time_zone is not None:
        column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return column.cast(wanted)
