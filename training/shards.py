"""How the training rows reach the Ray Train workers: :class:`BlockShards` shares the datasets out,
:func:`shard_rows` turns a worker's shard into LightGBM's matrices. Imported where Ray Train runs
(:func:`training.fit.fit_ray`, :func:`training.fit.train_loop`), so that nothing else pays for
importing Ray Train."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import polars as pl
import ray.train

from pipeline.tables.ml_feature_store import feature_matrix
from training.data import TARGET

SPLIT_DATASETS = ("train", "refit")  # shared out between the workers; "valid" goes whole to each


class BlockShards(ray.train.DataConfig):
    """How Ray Train hands the datasets to its workers: each dataset of :data:`SPLIT_DATASETS` is
    cut into as many contiguous groups of whole blocks as there are workers (``Dataset.split``
    without locality hints, which neither drops, moves nor repeats a row, and groups the same way
    every run), group r to worker r; every other dataset whole to every worker. Rows keep their
    order (:func:`training.blocks.arrow_dataset` orders the blocks so that a group is every N-th
    block in date order). Ray's default instead splits at run time, where the blocks happen to be,
    into groups of equal rows, dropping the rows that do not divide evenly."""

    def __init__(self) -> None:
        from ray.data import ExecutionOptions

        super().__init__(datasets_to_split=list(SPLIT_DATASETS), execution_options=ExecutionOptions(preserve_order=True))

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):  # noqa: ANN001 - Ray's signature
        output: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, dataset in datasets.items():
            shards = dataset.split(world_size) if name in self._datasets_to_split else [dataset] * world_size
            for rank, shard in enumerate(shards):
                shard = shard.copy(shard)
                shard.context.execution_options = self._resolve_execution_options(name)
                output[rank][name] = shard.iterator()
        return output


def shard_rows(name: str, feature_names: Sequence[str]) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, int]]:
    """This worker's rows of dataset ``name``: (features, target), and its rows per date
    (``{"rows": n}`` for rows without dates). The matrix is filled block by block, so that the
    worker holds it and one block, not every block twice."""
    shard = ray.train.get_dataset_shard(name)
    blocks = list(shard.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))
    height = sum(block.num_rows for block in blocks)
    if not height:
        raise ValueError(f"Ray Train worker {ray.train.get_context().get_world_rank()} got no {name} rows")
    features, target = np.empty((height, len(feature_names))), np.empty(height)
    counts: dict[str, int] = {}
    start = 0
    for block in blocks:
        frame = pl.from_arrow(block)
        end = start + frame.height
        features[start:end], target[start:end] = feature_matrix(frame, feature_names), frame[TARGET].cast(pl.Float64).to_numpy()
        start = end
        if "game_date" in frame.columns:
            counts.update((day.isoformat(), n) for day, n in frame.group_by("game_date").len().iter_rows())
    return (features, target), dict(sorted(counts.items())) or {"rows": height}
