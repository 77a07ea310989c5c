"""What BigQuery accepts as names, filters and labels, checked before any request.

Every project, dataset, table and column name is checked against BigQuery's own rules (narrowed
to what never needs quoting), and values that must become SQL text (a Storage Read filter, the
constant partition filters of a write, a lock token) are written as typed literals, never as
raw input.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Mapping, Sequence

from pipeline.warehouse.base import WarehouseError

# BigQuery's own limits on names (https://cloud.google.com/bigquery/docs/datasets#dataset-naming),
# narrowed to what never needs quoting; a domain-scoped project is "example.com:project".
PROJECT_NAME = re.compile(r"(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{0,61}[a-z0-9]")
DATASET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
PREFIX_NAME = re.compile(r"[A-Za-z0-9_]{0,64}")
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")

# Labels (https://cloud.google.com/bigquery/docs/labels-intro#requirements): keys and values of
# at most 63 characters, lowercase letters, digits, underscores and dashes; a key starts with a
# letter. (BigQuery allows international lowercase letters too; the pipeline makes none.)
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise WarehouseError(f"{what} {value!r} is not a valid BigQuery name (allowed: {pattern.pattern})")
    return value


def label_value(value: object) -> str:
    """Any text as a valid label value: lowercased, every other character (the dot of
    ``nba_raw.schedule``, the ``T`` and ``:`` of a time) as ``-`` or ``_``, cut to 63."""
    text = str(value).lower().replace(".", "-")
    return re.sub(r"[^a-z0-9_-]", "_", text)[:63]


def labels(values: Mapping[str, object]) -> dict[str, str]:
    """Job labels from ``values`` (None values left out); a key that is not a valid label key is
    refused, since keys come from config and code, not from data."""
    found = {}
    for key, value in values.items():
        if value is None:
            continue
        checked(LABEL_KEY, key, "job label key")
        found[key] = label_value(value)
    return found


def dates_text(dates: Sequence[dt.date]) -> str:
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
    clauses += [equals(column, value) for column, value in where.items()]
    return " AND ".join(clauses)


def equals(column: str, value: object) -> str:
    """``column`` equal to ``value`` (in it, for a list; NULL for None) as a constant expression,
    which BigQuery can prune partitions by (a subquery it cannot)."""
    checked(COLUMN_NAME, column, "column")
    if isinstance(value, (list, tuple, set, frozenset)):
        values = sorted(value)
        return f"`{column}` IN ({', '.join(literal(v) for v in values)})" if values else "FALSE"
    return f"`{column}` IS NULL" if value is None else f"`{column}` = {literal(value)}"


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
