"""Content fingerprints of date partitions, and of the inputs a (table, date) reads.

A partition's fingerprint is order-independent: the sorted row hashes of that date, hashed
again. The input fingerprint of (table, date) combines the table's version, its schema, its
parameters and the fingerprints of every upstream partition in each input's lookback window, so
a changed upstream day, a changed formula or a changed setting each make exactly the affected
dates stale.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Iterable, Mapping

import polars as pl

# Fingerprint of a partition that holds no rows (a bootstrap date, an empty quarantine day).
EMPTY = "empty"
# Stands in for an upstream partition that has not been built; never equal to a real one.
MISSING = "missing"

_SEED = 20221018  # any constant: row hashes only need to be stable between runs


def digest(parts: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()


ROW_HASH = "row_hash"


def partition_fingerprints(frame: pl.DataFrame, date_column: str = "game_date") -> dict[dt.date, str]:
    """{date: fingerprint} for every date present in ``frame``."""
    return fingerprints_of(row_hashes(frame, date_column), date_column)


def row_hashes(frame: pl.DataFrame, date_column: str = "game_date") -> pl.DataFrame:
    """(date, hash of the row's other values) per row: what a fingerprint is made of. Pieces of
    a partition built apart (one file, one group of teams) give their hashes, and
    :func:`fingerprints_of` of them all together is the fingerprint of the whole partition."""
    return frame.select(date_column, frame.drop(date_column).hash_rows(seed=_SEED).alias(ROW_HASH))


def fingerprints_of(hashes: pl.DataFrame, date_column: str = "game_date") -> dict[dt.date, str]:
    """{date: fingerprint} from the row hashes of every row of each date, in any order."""
    if hashes.is_empty():
        return {}
    per_date = hashes.group_by(date_column).agg(pl.col(ROW_HASH).sort()).select(date_column, pl.col(ROW_HASH).hash(seed=_SEED))
    return {day: f"{fp:016x}" for day, fp in per_date.iter_rows()}


def table_signature(version: int, schema: Mapping[str, pl.DataType], params: Mapping[str, object]) -> str:
    """What about a table's definition, apart from its inputs, changes its rows."""
    return digest(
        [f"v{version}", json.dumps({c: str(t) for c, t in schema.items()}), json.dumps(params, sort_keys=True, default=str)]
    )
