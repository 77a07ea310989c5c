"""Shared by the benchmarks: compose the Hydra config, start Ray once, time a real run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import pipeline.__main__  # noqa: F401 - registers the ${project_root:} resolver
from pipeline.progress import RunSummary
from pipeline.ray_runtime import start_ray
from pipeline.runner import Runner, RunSettings
from pipeline.tasks import Context, table_params
from pipeline.warehouse import open_warehouse

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def start_ray_timed(cfg: DictConfig) -> float:
    started = time.perf_counter()
    start_ray(cfg.ray)
    return time.perf_counter() - started


@dataclass
class Timed:
    seconds: float
    summary: RunSummary


def build(cfg: DictConfig) -> Timed:
    """One backfill end to end, as `python -m pipeline` runs it once Ray is up: load the raw
    files, plan, run every level, write every shard."""
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    started = time.perf_counter()
    with open_warehouse(cfg.warehouse) as warehouse:
        ctx = Context.open(cfg, warehouse)
        plan = ctx.plan()
        settings = RunSettings(
            run_id="benchmark",
            shard_days=cfg.shard.days,
            max_attempts=cfg.backfill.max_attempts,
            retry_backoff_seconds=cfg.backfill.retry_backoff_seconds,
            force=False,
            params=table_params(cfg, ctx.tables),
        )
        summary = Runner(warehouse, ctx.source, ctx.calendar, ctx.state, ctx.fingerprinter, settings, ctx.tables).execute(plan)
    elapsed = time.perf_counter() - started
    if not summary.ok:
        raise SystemExit(f"benchmark run failed: {summary.failed_dates}")
    return Timed(elapsed, summary)
