"""Runs a plan: level by level, each table's dates cut into shards, one Ray task per shard.

Where to look:

- :mod:`pipeline.runner.shards`: cutting a table's dates into shards and units (by CPUs the run
  can reach, input rows, or teams);
- :mod:`pipeline.runner.worker`: what runs on a Ray worker (reading a shard's inputs, building
  it, staging its rows);
- :mod:`pipeline.runner.commits`: committing finished units with their run-state rows, in
  batches, on one writer thread;
- :mod:`pipeline.runner.levels`: the level loop (:class:`Runner`): submitting, retrying,
  splitting failed units, the validation gate after each level;
- :mod:`pipeline.runner.errors` and :mod:`pipeline.runner.faults`: what a failure is, and the
  test-only faults.

**Reading and writing.** With DuckDB the driver reads each shard's inputs and writes its rows
(the file lives with the driver). With a warehouse the workers can reach themselves (BigQuery),
a shard task reads its own inputs, stages its own rows and returns only a handle and the rows'
hashes: the driver sends table names, dates and teams, and commits. Either way a unit's rows
and its run-state rows are written in one transaction, so a killed run leaves every date
either old or new. Rows of a unit built in several pieces are staged as they arrive and written
together (the driver never holds a whole season).
"""

from pipeline.runner.errors import TransientError, is_transient
from pipeline.runner.faults import FAULTS_ENV, Fault, faults_from_env
from pipeline.runner.levels import Gate, Runner, RunSettings
from pipeline.runner.shards import DEFAULT_MAX_ROWS, Shard, ShardCutter, Unit
from pipeline.runner.worker import ShardResult, WorkerIO, build_shard, read_inputs, worker_warehouse

__all__ = [
    "DEFAULT_MAX_ROWS", "FAULTS_ENV", "Fault", "Gate", "Runner", "RunSettings", "Shard", "ShardCutter", "ShardResult",
    "TransientError", "Unit", "WorkerIO", "build_shard", "faults_from_env", "is_transient", "read_inputs", "worker_warehouse",
]  # fmt: skip
