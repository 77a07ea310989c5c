"""What runs on a Ray worker: one shard's inputs read, the table's function run once over the
whole shard, its rows checked, hashed and profiled (``nba_orchestration.table_profile``), then staged in the warehouse (when the worker can reach
it) or handed back to the driver as Arrow.

With DuckDB the driver reads each shard's inputs and sends them along (the file lives with the
driver). With a warehouse the workers reach themselves (BigQuery), the task reads its own inputs
and stages its own rows, and returns only a handle and the rows' hashes: the driver's traffic
does not grow with the data.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import polars as pl
import pyarrow as pa
import ray

from pipeline.calendar import Calendar
from pipeline.fingerprint import fingerprints_of, row_hashes
from pipeline.profile import column_profile
from pipeline.runner.errors import NODE_NOTE, Node
from pipeline.runner.faults import Fault
from pipeline.runner.shards import Shard
from pipeline.tables import Input, Table, registry
from pipeline.warehouse import Warehouse, open_warehouse
from pipeline.warehouse.source import SOURCES, RawFiles


@dataclass
class ShardResult:
    rows: pa.Table | None  # the rows, when the driver writes them (Arrow: no copy through the object store)
    staged: str | None  # or the handle of the rows the task staged itself
    counts: dict[dt.date, int]  # rows per date
    # The dates' fingerprints; for a shard of some teams, the hashes of its rows instead, which
    # make the fingerprints together with the other teams' (pipeline.fingerprint).
    fingerprints: dict[dt.date, str] | None
    hashes: pa.Table | None
    # The rows' profile per date and column (pipeline.profile: small, whatever the rows' size);
    # for a shard of some teams, the profile of its piece, merged with the other teams'.
    profile: pa.Table
    nbytes: int  # the rows' size
    node: Node
    seconds: float

    @property
    def rows_built(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class WorkerIO:
    """What a task needs to read its inputs and stage its rows itself: the warehouse's config
    (names and endpoints, never credentials: a worker has its own) and the raw files."""

    warehouse: Mapping[str, object]
    raw: RawFiles


_worker_warehouses: dict[str, Warehouse] = {}


def worker_warehouse(config: Mapping[str, object]) -> Warehouse:
    """This worker process's connection to the warehouse, opened once and kept for its tasks."""
    from omegaconf import OmegaConf

    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _worker_warehouses:
        _worker_warehouses[key] = open_warehouse(OmegaConf.create(dict(config)))
    return _worker_warehouses[key]


@ray.remote(max_retries=0)
def build_shard(
    shard: Shard,
    inputs: dict[str, pa.Table] | None,
    io: WorkerIO | None,
    calendar: Calendar,
    params: dict[str, object],
    faults: list[Fault],
    attempt: int,
) -> ShardResult:
    """The table's function over a whole shard, checked, hashed, and staged or returned."""
    started = time.perf_counter()
    node = Node.here()
    try:
        for fault in faults:
            fault.apply(attempt)
        spec = registry()[shard.table]
        if inputs is None:
            warehouse = worker_warehouse(io.warehouse)
            frames = read_inputs(warehouse, io.raw, calendar, spec, shard.dates, shard.teams)
        else:
            frames = {name: pl.from_arrow(frame) for name, frame in inputs.items()}
        rows = spec.run(list(shard.dates), frames, params)
        if shard.teams is not None:
            rows = rows.filter(pl.col("team_abbr").is_in(shard.teams))
        check_rows(spec, shard, rows)
        staged = worker_warehouse(io.warehouse).stage(spec.name, rows) if inputs is None else None
    except Exception as exc:
        exc.add_note(NODE_NOTE + json.dumps({"id": node.id, "ip": node.ip}))
        raise
    hashes = row_hashes(rows)
    return ShardResult(
        rows=None if staged else rows.to_arrow(),
        staged=staged,
        counts=dict(rows.group_by("game_date").len().iter_rows()),
        fingerprints=fingerprints_of(hashes) if shard.teams is None else None,
        hashes=hashes.to_arrow() if shard.teams is not None else None,
        profile=column_profile(rows, shard.dates).to_arrow(),
        nbytes=int(rows.estimated_size()),
        node=node,
        seconds=time.perf_counter() - started,
    )


def check_rows(spec: Table, shard: Shard, rows: pl.DataFrame) -> None:
    outside = set(rows["game_date"].unique()) - set(shard.dates)
    if outside:
        raise ValueError(f"{spec.name}: build returned rows for dates outside its shard: {sorted(outside)[:5]}")
    duplicated = rows.filter(rows.select(spec.key).is_duplicated())
    if duplicated.height:
        raise ValueError(
            f"{spec.name}: duplicate natural key {spec.key} in the built rows, e.g. {duplicated.select(spec.key).head(3).to_dicts()}"
        )


def read_inputs(
    warehouse: Warehouse, raw: RawFiles, calendar: Calendar, spec: Table, dates: Sequence[dt.date], teams: Sequence[str] | None = None
) -> dict[str, pl.DataFrame]:
    """Each input over the union of the dates' lookback windows (and nothing else: a shard may
    skip dates whose upstream failed). For a shard of some teams (``Table.split_by_team``), only
    the rows of the players listed for one of them in any input's window (the date's roster
    included), wherever those players played."""
    windows = {inp.table: sorted({d for day in dates for d in calendar.window(inp.lookback, day)}) for inp in spec.inputs}
    players = None
    if teams is not None:
        listed: set[int] = set()
        for inp in spec.inputs:
            if windows[inp.table]:
                window = windows[inp.table]
                found = warehouse.read(inp.table, start=window[0], end=window[-1], columns=["player_id"], where={"team_abbr": list(teams)})
                listed.update(found["player_id"].to_list())
        players = sorted(listed)
    frames = {}
    for inp in spec.inputs:
        window = windows[inp.table]
        if not window:  # a window before the date, on the season's first date: nothing earlier
            frame = pl.DataFrame(schema=_input_schema(inp))
        elif inp.is_source:
            frame = raw.read(inp.table, window[0], window[-1])
            frame = frame.select(inp.columns) if inp.columns else frame
        else:
            where = {} if players is None else {"player_id": players}
            frame = warehouse.read(inp.table, start=window[0], end=window[-1], columns=inp.columns, where=where)
        if window and len(window) < (window[-1] - window[0]).days + 1 and "game_date" in frame.columns:
            frame = frame.filter(pl.col("game_date").is_in(window))
        frames[inp.table] = frame
    return frames


def _input_schema(inp: Input) -> dict[str, pl.DataType]:
    """The columns an input delivers, as declared by the table (or source) it reads."""
    declared = SOURCES[inp.table].all_columns if inp.is_source else registry()[inp.table].schema
    return {c: declared[c] for c in (inp.columns or declared)}

