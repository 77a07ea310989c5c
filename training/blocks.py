"""The training rows as Ray Datasets: read in blocks of game dates by Ray tasks, never gathered
on the driver.

Blocks. The feature store's game dates (``Warehouse.dates_present``) are split
(:func:`training.data.make_split`) and each split's dates are cut into blocks of contiguous dates
(:func:`cut_blocks`): at most ``training.data.block_rows`` feature-store rows each (rows per date
from the run state, which records them with every date it writes; a date it does not know counts
as the mean of those it knows), the rows balanced between the blocks of a split, and the train and
validation splits in a multiple of ``training.num_workers`` blocks, so that every worker gets as
many.

Reading. Where a block is read follows the run's shards (``shard.worker_io``): with a warehouse the
workers can reach themselves (BigQuery, ``Warehouse.reachable_from_workers``) the block's Ray task
opens the warehouse from its config (:func:`pipeline.runner.worker_warehouse`) and reads the block's
dates of the feature store and of the actual points itself (Storage Read API), so the rows never
pass through the driver; otherwise (DuckDB, whose file lives with the driver) the driver reads each
block and hands it to its task, one block at a time.

Each task (:func:`read_block`) sorts and joins the rows as :func:`training.data.load_rows` does and
cuts them with :func:`training.data.block_parts` into training, evaluation and opening-weeks rows,
which stay in Ray's object store as Arrow tables; it returns to the driver only a
:class:`BlockSummary` (rows and dates of each part, the per-date fingerprints of the rows used, the
size of what it read). The driver keeps summaries: its memory grows with the dates, not the rows.

:meth:`TrainingRows.datasets` gives Ray Train its Ray Datasets (``ray.data.from_arrow_refs``):
``train`` (training rows of the train split), ``valid`` (evaluation rows of the validation split)
and ``refit`` (training rows of both). With one worker their blocks come in date order, so the rows
reach it in the order :func:`training.data.build_dataset` gives them and the model is the same to
the last bit; with N workers each gets every N-th block (:class:`training.shards.BlockShards`), so
each row reaches exactly one worker. The evaluation reads the ``valid`` and ``test`` rows and the
opening weeks' where they are (:mod:`training.scoring`).
"""

from __future__ import annotations

import datetime as dt
import math
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import polars as pl

from pipeline.state import RunState
from pipeline.warehouse import Warehouse, WarehouseError
from training.data import (
    FEATURE_STORE,
    PLAYER_GAME_SUMMARY,
    SPLITS,
    BlockParts,
    DataError,
    Split,
    block_parts,
    fingerprint_of,
    make_split,
    read_actuals,
    read_feature_store,
    with_actuals,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import ray
    import ray.data

PARTS = ("fit", "evaluation", "opening")
# Each set of rows training reads: a part of the blocks of some splits.
SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("fit", ("train",)),
    "refit": ("fit", ("train", "valid")),
    "valid": ("evaluation", ("valid",)),
    "test": ("evaluation", ("test",)),
    "opening_train": ("opening", ("train",)),
    "opening_test": ("opening", ("test",)),
}
DEFAULT_BLOCK_ROWS = 100_000


@dataclass(frozen=True)
class Block:
    """Contiguous game dates of one split, read and cut by one Ray task."""

    split: str
    dates: tuple[dt.date, ...]

    @property
    def start(self) -> dt.date:
        return self.dates[0]

    @property
    def end(self) -> dt.date:
        return self.dates[-1]


def cut_blocks(
    dates: Sequence[dt.date], rows_per_date: Mapping[dt.date, int], split: Split, *, block_rows: int, multiple_of: int = 1
) -> list[Block]:
    """Each split's dates in blocks of contiguous dates, in date order: at most ``block_rows`` rows
    a block where a date allows (a date is never cut), the rows balanced between a split's blocks,
    and the train and validation splits (the ones shared out between workers) in a multiple of
    ``multiple_of`` blocks. A date missing from ``rows_per_date`` counts as the mean of the others."""
    days = sorted(set(dates))
    known = [rows_per_date[d] for d in days if rows_per_date.get(d)]
    fill = sum(known) / len(known) if known else 1.0
    blocks: list[Block] = []
    for name in SPLITS:
        in_split = [d for d in days if split.label(d) == name]
        if not in_split:
            continue
        weights = [float(rows_per_date.get(d) or fill) for d in in_split]
        count = math.ceil(sum(weights) / max(1, block_rows))
        if name != "test":
            count = math.ceil(count / multiple_of) * multiple_of
            if len(in_split) < multiple_of:
                raise DataError(
                    f"the {name} split ({in_split[0]}..{in_split[-1]}) has {len(in_split)} game date(s), fewer than the "
                    f"{multiple_of} Ray Train workers asked for (training.num_workers): a date is never cut, and every worker needs rows"
                )
        count = max(1, min(count, len(in_split)))
        blocks += [Block(name, tuple(group)) for group in balanced(in_split, weights, count)]
    return blocks


def balanced(days: Sequence[dt.date], weights: Sequence[float], count: int) -> list[list[dt.date]]:
    """``days`` in ``count`` contiguous groups (``count`` <= len(days)), none empty: a group ends
    once the groups so far hold their share of the weight, or when each later day must start one."""
    total = sum(weights)
    groups: list[list[dt.date]] = [[]]
    held = 0.0
    for i, (day, weight) in enumerate(zip(days, weights)):
        later_groups = count - len(groups)
        if groups[-1] and later_groups > 0 and (held >= total * len(groups) / count or len(days) - i == later_groups):
            groups.append([])
        groups[-1].append(day)
        held += weight
    return groups


# -- one block ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSummary:
    """What the driver learns of a block: no rows."""

    block: Block
    rows: dict[str, int]  # per part (PARTS)
    dates: dict[str, tuple[dt.date, ...]]  # the dates each part has rows on
    fingerprints: dict[dt.date, str]  # of the rows used, per date (training.data.date_fingerprints)
    read_bytes: int  # the size of the rows read: feature-store rows and their actuals


def read_block_rows(warehouse: Warehouse, block: Block) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The block's feature-store rows (sorted as training reads them) and their actual points."""
    return read_feature_store(warehouse, block.start, block.end), read_actuals(warehouse, block.start, block.end)


def prepare(block: Block, features: pl.DataFrame, actuals: pl.DataFrame, split: Split, min_prior_games: int) -> tuple[BlockParts, BlockSummary]:
    """A block's parts (training, evaluation, opening-weeks rows) and its summary, from its
    feature-store rows (sorted) and their actual points."""
    parts = block_parts(with_actuals(features, actuals), split, min_prior_games=min_prior_games)
    frames = {name: getattr(parts, name) for name in PARTS}
    summary = BlockSummary(
        block=block,
        rows={name: frame.height for name, frame in frames.items()},
        dates={name: tuple(sorted(set(frame["game_date"].to_list()))) for name, frame in frames.items()},
        fingerprints=parts.fingerprints,
        read_bytes=int(features.estimated_size() + actuals.estimated_size()),
    )
    return parts, summary


def read_block(
    block: Block,
    given: tuple[pa.Table, pa.Table] | None,
    warehouse_config: Mapping[str, object] | None,
    split: Split,
    min_prior_games: int,
) -> tuple[pa.Table, pa.Table, pa.Table, BlockSummary]:
    """One block's training, evaluation and opening-weeks rows (Arrow, for the object store) and
    its summary (for the driver). ``given``: the rows the driver read; ``None``: read them here,
    from the warehouse ``warehouse_config`` describes (names and endpoints: a worker brings its
    own credentials)."""
    if given is None:
        from pipeline.runner import worker_warehouse

        features, actuals = read_block_rows(worker_warehouse(warehouse_config), block)
    else:
        features, actuals = (pl.from_arrow(table) for table in given)
    parts, summary = prepare(block, features, actuals, split, min_prior_games)
    return parts.fit.to_arrow(), parts.evaluation.to_arrow(), parts.opening.to_arrow(), summary


def gathered(refs):
    """``ray.get``, with the error a task raised about the data (a missing table, rows without
    their target) re-raised as itself rather than wrapped in Ray's task error."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (DataError, WarehouseError)):
            raise exc.cause from None
        raise


# -- all blocks --------------------------------------------------------------------------------


@dataclass
class TrainingRows:
    """The rows of one training run, read in blocks: the driver's summaries of them, and (once
    read to be trained on) the Ray objects holding each block's parts."""

    split: Split
    summaries: list[BlockSummary]  # in date order
    refs: list[dict[str, ray.ObjectRef]] | None  # per block: part -> its rows; None when read for the fingerprint only
    workers_read: bool  # the Ray tasks read their blocks from the warehouse themselves
    driver_bytes: int  # table data that passed through the driver: what it read, and the summaries

    @property
    def fingerprint(self) -> str:
        return fingerprint_of({day: fp for s in self.summaries for day, fp in s.fingerprints.items()})

    @property
    def read_bytes(self) -> int:
        return sum(s.read_bytes for s in self.summaries)

    def _blocks_of(self, name: str) -> tuple[str, list[int]]:
        part, splits = SETS[name]
        return part, [i for i, s in enumerate(self.summaries) if s.block.split in splits]

    def rows_in(self, name: str) -> int:
        """Rows of a set (``train``, ``valid``, ``test``, ``refit``, ``opening_train``, ``opening_test``)."""
        part, indices = self._blocks_of(name)
        return sum(self.summaries[i].rows[part] for i in indices)

    def dates_of(self, name: str) -> list[dt.date]:
        part, indices = self._blocks_of(name)
        return sorted({d for i in indices for d in self.summaries[i].dates[part]})

    def window(self, name: str) -> dict[str, str]:
        days = self.dates_of(name)
        return {"start": days[0].isoformat(), "end": days[-1].isoformat()}

    @property
    def used_dates(self) -> list[dt.date]:
        """The dates the fit and the scores read rows of (the training, validation and test rows)."""
        return sorted(set().union(*(self.dates_of(name) for name in ("train", "valid", "test"))))

    def refs_of(self, name: str) -> list[ray.ObjectRef]:
        """The Ray objects holding a set's rows, one Arrow table per block, in date order."""
        if self.refs is None:
            raise RuntimeError("these training rows were read for their fingerprint only: read them again to train")
        part, indices = self._blocks_of(name)
        return [self.refs[i][part] for i in indices]

    def frame(self, name: str) -> pl.DataFrame:
        """A set's rows gathered in this process (the plain backend, tests): not at scale."""
        frames = [pl.from_arrow(table) for table in gathered(self.refs_of(name))]
        self.driver_bytes += sum(int(f.estimated_size()) for f in frames)
        return pl.concat(frames)

    def datasets(self, num_workers: int, refit: bool) -> dict[str, ray.data.Dataset]:
        """Ray Train's datasets: ``train`` and ``refit`` shared out by blocks between
        ``num_workers`` workers (:class:`training.shards.BlockShards`), ``valid`` whole to each."""
        out = {"train": arrow_dataset(self.refs_of("train"), num_workers), "valid": arrow_dataset(self.refs_of("valid"), 1)}
        if refit:
            out["refit"] = arrow_dataset(self.refs_of("refit"), num_workers)
        return out

    def check(self) -> None:
        for name in ("train", "valid", "test"):
            if not self.rows_in(name):
                raise DataError(f"no {name} rows in {self.split.as_dict()}")

    def record(self) -> dict[str, object]:
        """How the rows were read, for metrics.json and the summary."""
        return {
            "blocks": len(self.summaries),
            "read_by": "workers" if self.workers_read else "driver",
            "read_bytes": self.read_bytes,
            "driver_bytes": self.driver_bytes,
        }


def arrow_dataset(refs: Sequence[ray.ObjectRef], workers: int) -> ray.data.Dataset:
    """A Ray Dataset of Arrow tables, its blocks ordered for :class:`training.shards.BlockShards`:
    cut into ``workers`` contiguous groups, group r holds blocks r, r + N, r + 2N... in date order
    (one worker: every block in date order)."""
    import ray.data

    workers = max(1, workers)
    dataset = ray.data.from_arrow_refs([ref for rank in range(workers) for ref in refs[rank::workers]])
    dataset.context.execution_options.preserve_order = True
    dataset.context.enable_progress_bars = False
    return dataset


def read_training_rows(
    warehouse: Warehouse,
    split_settings: Mapping[str, object] | None = None,
    *,
    min_prior_games: int = 0,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    workers: int = 1,
    worker_warehouse_config: Mapping[str, object] | None = None,
    keep: bool = True,
) -> TrainingRows:
    """The training rows of the feature store in ``warehouse``, split as ``split_settings``
    (``training.split``) say, read in blocks (module docstring). ``worker_warehouse_config``: the
    warehouse's config when the Ray tasks may read it themselves; else the driver reads.
    ``keep=False`` with the driver reading: only the summaries (the fingerprint), in this
    process, without Ray; the workers' reads always keep their rows. Ray must be running to keep
    them (pipeline.ray_runtime.start_ray)."""
    if not warehouse.exists(FEATURE_STORE):
        raise DataError(f"{FEATURE_STORE} does not exist in {warehouse.describe()}: build it first (python -m pipeline)")
    if not warehouse.exists(PLAYER_GAME_SUMMARY):
        raise DataError(f"{PLAYER_GAME_SUMMARY} does not exist in {warehouse.describe()}")
    dates = warehouse.dates_present(FEATURE_STORE)
    if not dates:
        raise DataError(f"{FEATURE_STORE} in {warehouse.describe()} is empty: build it first (python -m pipeline)")
    split = make_split(dates, split_settings)
    state = RunState.load(warehouse)
    rows_per_date = {d: state.rows_written(FEATURE_STORE, d) for d in dates}
    blocks = cut_blocks(dates, rows_per_date, split, block_rows=block_rows, multiple_of=max(1, workers))
    driver_bytes = 0
    refs: list[dict[str, ray.ObjectRef]] | None = [] if keep or worker_warehouse_config is not None else None
    summaries: list[BlockSummary] | list[ray.ObjectRef] = []
    if refs is not None:
        import ray

        reader = ray.remote(num_returns=4, max_retries=0)(read_block)
    for block in blocks:
        given = None
        if worker_warehouse_config is None:
            features, actuals = read_block_rows(warehouse, block)
            driver_bytes += int(features.estimated_size() + actuals.estimated_size())
            if refs is None:
                summaries.append(prepare(block, features, actuals, split, min_prior_games)[1])
                continue
            given = (features.to_arrow(), actuals.to_arrow())
            del features, actuals
        *parts, summary = reader.remote(block, given, worker_warehouse_config, split, min_prior_games)
        refs.append(dict(zip(PARTS, parts)))
        summaries.append(summary)
    if refs is not None:
        summaries = gathered(summaries)
    driver_bytes += sum(len(pickle.dumps(s)) for s in summaries)
    rows = TrainingRows(split, list(summaries), refs, worker_warehouse_config is not None, driver_bytes)
    rows.check()
    return rows
