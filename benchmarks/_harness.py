"""Shared by the benchmarks: compose the Hydra config, start Ray once, time real runs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import pipeline.__main__  # noqa: F401 - registers the ${project_root:} resolver
from pipeline.progress import RunSummary
from pipeline.ray_runtime import start_ray
from pipeline.runner import Runner
from pipeline.tables import registry
from pipeline.build import Context, run_settings
from pipeline.warehouse import open_warehouse

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def tables_of_phase(*phases: int) -> str:
    """A ``tables=[...]`` override for every table of the given phases."""
    return "tables=[" + ",".join(t.short_name for t in registry().values() if t.phase in phases) + "]"


@ray.remote
def _import_pipeline() -> int:
    from pipeline.runner import build_shard  # noqa: F401 - importing is the point

    return len(registry())


def start_ray_timed(cfg: DictConfig) -> float:
    """Start Ray and have every worker import the pipeline, so that no timed run pays for it."""
    started = time.perf_counter()
    start_ray(cfg.ray)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    ray.get([_import_pipeline.remote() for _ in range(4 * cpus)])
    return time.perf_counter() - started


@dataclass
class Timed:
    seconds: float
    summary: RunSummary
    table_dates: int


def build(cfg: DictConfig) -> Timed:
    """One run end to end as `python -m pipeline` does it once Ray is up: load the raw files,
    plan, run every level and write every shard. Validation gates are left out."""
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    started = time.perf_counter()
    with open_warehouse(cfg.warehouse) as warehouse:
        ctx = Context.open(cfg, warehouse)
        plan = ctx.plan()
        runner = Runner(warehouse, ctx.source, ctx.calendar, ctx.state, ctx.fingerprinter, run_settings(cfg, "benchmark", ctx.tables), ctx.tables)
        summary = runner.execute(plan)
    elapsed = time.perf_counter() - started
    if not summary.ok:
        raise SystemExit(f"benchmark run failed: {summary.failed_dates}")
    return Timed(elapsed, summary, plan.total_dates)
