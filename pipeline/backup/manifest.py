"""What a backup is, and every check a restore makes of it before it writes anything.

A backup is one folder named by the UTC time it started (``20250301T020000Z``), holding one
folder of Parquet files per table (``nba_raw.player_boxscores/2023-24.parquet``: one file per
season of the table's partition date, July to June) and, written last, ``manifest.json``::

    {"format": "nba-pipeline-backup", "format_version": 1,
     "started_at": "...Z", "finished_at": "...Z",
     "source": "<Warehouse.describe() of the warehouse it was read from>",
     "pipeline": {"version": "0.1.0", "git_commit": "<commit>[-dirty]"},
     "tables": {"<dataset.table>": {"partition_by": "game_date", "columns": {"<name>": "<Polars type>"},
                                    "rows": N, "first_date": "YYYY-MM-DD" | null, "last_date": ...,
                                    "files": [{"path": "<table>/<season>.parquet", "rows": N, "bytes": N,
                                               "sha256": "<hex>", "first_date": ..., "last_date": ...}]}}}

Guarantees this module gives (pure functions: no I/O here):

- A folder without a manifest is incomplete (killed, or still being written): it is never
  restored and never counted as a backup.
- Every path a manifest names is relative and made of plain names (:func:`relative_path`), so
  no manifest can make a restore read outside its backup folder (``../``, ``/etc``, ``gs://other``).
- A manifest restores only into the pipeline whose declarations it matches: the same tables,
  each with the same columns, types and partition column (:func:`manifest_problems`); a file
  only if its size, SHA-256, Parquet schema and row count are the manifest's (:func:`file_problems`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
from typing import Mapping

import polars as pl
import pyarrow.parquet as pq

from pipeline.profile import TABLE_PROFILE
from pipeline.state import RUN_STATE
from pipeline.tables import registry
from pipeline.validation.report import VALIDATION_RESULTS
from pipeline.warehouse.base import TableSchema

MANIFEST = "manifest.json"
FORMAT = "nba-pipeline-backup"
FORMAT_VERSION = 1

# A backup folder's name is the UTC second it started; anything else under backup.target is not a backup.
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_PATTERN = re.compile(r"\d{8}T\d{6}Z")

# One path segment below a folder: a plain name, never "." or ".." (it cannot start with a dot).
SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=-]*")

# A season's file holds July to June: every NBA season (and its playoffs) falls in one.
SEASON_START_MONTH = 7


class BackupError(RuntimeError):
    """A backup cannot be made, listed or restored as asked; the message names the backup, file
    or table and the problem. Nothing was written to the warehouse."""


# -- the tables a backup holds ----------------------------------------------------------------


def owned_tables() -> dict[str, TableSchema]:
    """Every table the pipeline owns, as the warehouse creates it: Phase 2 to 4 (the registry, in
    dependency order), the run state, validation results, the tables' profiles, the run history,
    and Phase 5's predictions and grades. Derived from their declarations; nothing here lists a
    table by name."""
    # training.predict declares the Phase 5 tables.
    from pipeline.history import RUN_HISTORY
    from training.predict import ACCURACY, PREDICTIONS

    tables = {name: spec.warehouse_schema for name, spec in registry().items()}
    for schema in (RUN_STATE, VALIDATION_RESULTS, TABLE_PROFILE, RUN_HISTORY, PREDICTIONS, ACCURACY):
        tables[schema.name] = schema
    return tables


def run_state_tables() -> set[str]:
    """The tables whose dates have run-state rows (``nba_orchestration.run_state.table_name``)."""
    return set(registry())


# -- names and paths ---------------------------------------------------------------------------


def backup_name(started_at: dt.datetime) -> str:
    """The folder name of a backup started at ``started_at`` (naive UTC)."""
    return started_at.strftime(NAME_FORMAT)


def backup_time(name: str) -> dt.datetime | None:
    """When the backup named ``name`` started (naive UTC), or None if it is not a backup's name."""
    if not NAME_PATTERN.fullmatch(name):
        return None
    try:
        return dt.datetime.strptime(name, NAME_FORMAT)
    except ValueError:
        return None


def relative_path(path: object, what: str) -> str:
    """``path`` if it names something below a folder: ``/``-separated plain names (letters,
    digits, ``_ . = -``, not starting with a dot). Refuses ``..``, absolute paths, URLs of
    another bucket or scheme, backslashes and empty parts."""
    if not isinstance(path, str) or not path:
        raise BackupError(f"{what} {path!r} is not a path")
    if not all(SAFE_SEGMENT.fullmatch(part) for part in path.split("/")):
        raise BackupError(f"{what} {path!r} would read or write outside the backup folder: only plain relative names are allowed")
    return path


def season_of(day: dt.date) -> str:
    """``2023-24`` for every date from 2023-07-01 to 2024-06-30."""
    first = day.year if day.month >= SEASON_START_MONTH else day.year - 1
    return f"{first}-{(first + 1) % 100:02d}"


def by_season(dates: list[dt.date]) -> dict[str, list[dt.date]]:
    """Ascending dates grouped into seasons (:func:`season_of`), in order: one backup file each."""
    seasons: dict[str, list[dt.date]] = {}
    for day in sorted(dates):
        seasons.setdefault(season_of(day), []).append(day)
    return seasons


def type_name(dtype: pl.DataType) -> str:
    """A column type as the manifest writes it: Polars' own name (``Int16``, ``List(Float64)``)."""
    return str(dtype)


def column_types(columns: Mapping[str, pl.DataType]) -> dict[str, str]:
    return {name: type_name(dtype) for name, dtype in columns.items()}


# -- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the backup folder
    rows: int
    bytes: int
    sha256: str
    first_date: dt.date | None
    last_date: dt.date | None


@dataclass(frozen=True)
class TableEntry:
    partition_by: str
    columns: dict[str, str]  # name -> type_name, in order
    rows: int
    first_date: dt.date | None
    last_date: dt.date | None
    files: tuple[FileEntry, ...]

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


@dataclass(frozen=True)
class Manifest:
    started_at: dt.datetime
    finished_at: dt.datetime
    source: str
    pipeline_version: str
    git_commit: str
    tables: dict[str, TableEntry]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    def to_json(self) -> bytes:
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "started_at": _time_text(self.started_at),
            "finished_at": _time_text(self.finished_at),
            "source": self.source,
            "pipeline": {"version": self.pipeline_version, "git_commit": self.git_commit},
            "tables": {
                name: {
                    "partition_by": t.partition_by,
                    "columns": t.columns,
                    "rows": t.rows,
                    "first_date": t.first_date,
                    "last_date": t.last_date,
                    "files": [asdict(f) for f in t.files],
                }
                for name, t in self.tables.items()
            },
        }
        return (json.dumps(payload, indent=2, default=str) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "Manifest":
        """The manifest in ``data``; :class:`BackupError` naming ``where`` and the first field
        that is missing or of the wrong kind."""
        try:
            payload = json.loads(data)
            if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
                raise BackupError(
                    f"{where} is not a manifest this pipeline reads (format {payload.get('format')!r} "
                    f"version {payload.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION})"
                )
            tables = {}
            for name, t in _field(payload, "tables", dict).items():
                files = tuple(
                    FileEntry(
                        path=_field(f, "path", str),
                        rows=_field(f, "rows", int),
                        bytes=_field(f, "bytes", int),
                        sha256=_field(f, "sha256", str),
                        first_date=_date(f.get("first_date")),
                        last_date=_date(f.get("last_date")),
                    )
                    for f in _field(t, "files", list)
                )
                tables[name] = TableEntry(
                    partition_by=_field(t, "partition_by", str),
                    columns={str(c): str(v) for c, v in _field(t, "columns", dict).items()},
                    rows=_field(t, "rows", int),
                    first_date=_date(t.get("first_date")),
                    last_date=_date(t.get("last_date")),
                    files=files,
                )
            pipeline = _field(payload, "pipeline", dict)
            return cls(
                started_at=_time(_field(payload, "started_at", str)),
                finished_at=_time(_field(payload, "finished_at", str)),
                source=_field(payload, "source", str),
                pipeline_version=str(pipeline.get("version")),
                git_commit=str(pipeline.get("git_commit")),
                tables=tables,
            )
        except BackupError:
            raise
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise BackupError(f"{where} is not a readable manifest: {exc}") from None


def _field(record: object, key: str, kind: type):
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"no {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key!r} is {value!r}, not {kind.__name__}")
    return value


def _date(value: object) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(str(value))


def _time_text(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.removesuffix("Z"))


# -- checks ------------------------------------------------------------------------------------


def manifest_problems(manifest: Manifest, declared: Mapping[str, TableSchema]) -> list[str]:
    """Everything in ``manifest`` that a restore into this pipeline refuses, one line each,
    naming the table or file: a table this pipeline does not declare (or a name that is not a
    plain one), a declared table missing, columns, types or partition column that differ from
    the declaration, row counts that do not add up, a file path outside the backup folder or
    named twice."""
    problems = []
    for name in manifest.tables:
        try:
            relative_path(name, "table name")
        except BackupError as exc:
            problems.append(str(exc))
            continue
        if name not in declared:
            problems.append(f"table {name}: this pipeline declares no such table")
    for name, schema in declared.items():
        entry = manifest.tables.get(name)
        if entry is None:
            problems.append(f"table {name}: not in the backup, and this pipeline declares it")
            continue
        wanted = column_types(schema.columns)
        if entry.columns != wanted:
            problems.append(f"table {name}: the backup's columns differ from this pipeline's declaration ({_difference(entry.columns, wanted)})")
        if entry.partition_by != schema.partition_by:
            problems.append(f"table {name}: partitioned by {entry.partition_by} in the backup, by {schema.partition_by} here")
        if sum(f.rows for f in entry.files) != entry.rows:
            problems.append(f"table {name}: {entry.rows:,} rows in the manifest, but its files add up to {sum(f.rows for f in entry.files):,}")
    seen: set[str] = set()
    for name, entry in manifest.tables.items():
        for f in entry.files:
            try:
                relative_path(f.path, f"file of {name}")
            except BackupError as exc:
                problems.append(str(exc))
                continue
            if f.path == MANIFEST or f.path in seen:
                problems.append(f"{f.path}: named twice in the manifest")
            seen.add(f.path)
    return problems


def _difference(got: Mapping[str, str], wanted: Mapping[str, str]) -> str:
    parts = []
    missing = [c for c in wanted if c not in got]
    extra = [c for c in got if c not in wanted]
    retyped = [f"{c} {got[c]} instead of {wanted[c]}" for c in wanted if c in got and got[c] != wanted[c]]
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"not declared {', '.join(extra)}")
    if retyped:
        parts.append("; ".join(retyped))
    if not parts:
        parts.append("same columns in another order")
    return "; ".join(parts)


def file_problems(entry: FileEntry, data: bytes, columns: Mapping[str, str]) -> list[str]:
    """What is wrong with the bytes read for ``entry``, one line each naming the file: size,
    SHA-256, not Parquet, Parquet schema or row count other than the manifest's."""
    if len(data) != entry.bytes:
        return [f"{entry.path}: {len(data):,} bytes, the manifest says {entry.bytes:,} (truncated or replaced)"]
    if sha256(data) != entry.sha256:
        return [f"{entry.path}: SHA-256 {sha256(data)[:12]}... differs from the manifest's {entry.sha256[:12]}... (the file changed or is corrupt)"]
    try:
        schema = pl.read_parquet_schema(io.BytesIO(data))
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows  # from the footer, as written
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file is not usable Parquet
        return [f"{entry.path}: not a readable Parquet file ({type(exc).__name__}: {exc})"]
    problems = []
    found = column_types(schema)
    if found != dict(columns):
        problems.append(f"{entry.path}: its Parquet schema differs from the manifest's ({_difference(found, columns)})")
    if rows != entry.rows:
        problems.append(f"{entry.path}: {rows:,} rows in the file, the manifest says {entry.rows:,}")
    return problems


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
