"""Wall time of the full Phase 4 history: sharded (default ``shard.days``) against per-date.

    .venv/bin/python benchmarks/phase4.py [--cpus 2] [--per-date-sample START..END]

1. Builds Phase 2/3 over the bundled history once, untimed, with ``python -m pipeline`` into a
   scratch DuckDB file.
2. Starts Ray once in this process (``--cpus`` CPUs, 2 by default: the target machine),
   warms its workers up and does one small Phase 4 run on a week (untimed).
3. For each mode, copies that warehouse, plans the Phase 4 tables over the whole history
   (the planner and the runner of ``python -m pipeline``: ``pipeline.tasks.Context`` and
   ``pipeline.runner.Runner``) and times ``Runner.execute`` alone: the reads, the Ray tasks,
   the writes and the run-state rows, bootstrap dates included; not the validation gates.
   Sharded: ``shard.days`` from conf/config.yaml. Per-date: ``shard.days=1``.

Per-date is slow by design (that is the point of sharding); ``--per-date-sample`` times it on a
range only and extrapolates by table-dates, saying so in the output. The default times the
whole history both ways. The last line printed is the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipeline.__main__  # noqa: E402,F401 - registers the ${project_root:} resolver
from hydra import compose, initialize_config_dir  # noqa: E402

PHASE3_TABLES = "[player_game_summary,team_defense_game_summary,schedule,quarantine]"


def phase4_tables() -> list[str]:
    from pipeline.tables import registry

    return [t.short_name for t in registry().values() if t.phase == 4]


def build_phase3(workdir: Path, cpus: int) -> Path:
    path = workdir / "phase3.duckdb"
    args = [
        sys.executable, "-m", "pipeline", f"warehouse.path={path}", f"logs.dir={workdir / 'logs'}",
        f"ray.num_cpus={cpus}", f"tables={PHASE3_TABLES}", "backfill.with_dependents=false",
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"building Phase 2/3 failed:\n{proc.stdout}\n{proc.stderr}")
    return path


def timed_run(base: Path, workdir: Path, label: str, overrides: list[str]) -> tuple[float, int]:
    """Seconds of ``Runner.execute`` for the Phase 4 plan, and the table-dates it covered."""
    from pipeline.runner import Runner, RunSettings
    from pipeline.tasks import Context, table_params
    from pipeline.warehouse import open_warehouse

    path = workdir / f"{label}.duckdb"
    shutil.copy(base, path)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"warehouse.path={path}", f"logs.dir={workdir / 'logs'}", f"tables=[{','.join(phase4_tables())}]", *overrides],
        )
    with open_warehouse(cfg.warehouse) as warehouse:
        ctx = Context.open(cfg, warehouse)
        plan = ctx.plan()
        settings = RunSettings(
            run_id=f"benchmark-{label}",
            shard_days=cfg.shard.days,
            max_attempts=cfg.backfill.max_attempts,
            retry_backoff_seconds=cfg.backfill.retry_backoff_seconds,
            force=cfg.backfill.force,
            params=table_params(cfg, ctx.tables),
        )
        runner = Runner(warehouse, ctx.source, ctx.calendar, ctx.state, ctx.fingerprinter, settings, ctx.tables)
        started = time.perf_counter()
        summary = runner.execute(plan)
        seconds = time.perf_counter() - started
    if not summary.ok:
        sys.exit(f"{label}: the Phase 4 run failed")
    return seconds, plan.total_dates


def warm_up_workers(cpus: int) -> None:
    """Start the Ray workers and import the pipeline in them before any timing, so neither mode
    pays for worker start-up (the first mode timed would otherwise pay it alone)."""
    import ray

    @ray.remote
    def warm() -> int:
        from pipeline.runner import build_shard  # noqa: F401 - the import is the point
        from pipeline.tables import registry

        return len(registry())

    ray.get([warm.remote() for _ in range(4 * cpus)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs for Ray (default 2)")
    parser.add_argument(
        "--per-date-sample",
        metavar="START..END",
        help="time per-date on this date range only and extrapolate to the full history by table-dates",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray

    with tempfile.TemporaryDirectory(prefix="phase4-bench-") as tmp:
        workdir = Path(tmp)
        print(f"building Phase 2/3 over the bundled history (untimed) in {workdir} ...", flush=True)
        base = build_phase3(workdir, args.cpus)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            warm_up_workers(args.cpus)
            # One small untimed run first, so that neither timed mode pays for the driver's
            # first imports and first DuckDB / Ray round trips.
            timed_run(base, workdir, "warm-up", ["dates.start=2023-01-02", "dates.end=2023-01-08"])
            sharded, sharded_dates = timed_run(base, workdir, "sharded", [])
            with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                default_shard = compose("config").shard.days
            print(f"sharded (shard.days={default_shard}): {sharded:.1f} s for {sharded_dates:,} table-dates (full Phase 4 history)", flush=True)
            if args.per_date_sample:
                start, end = args.per_date_sample.split("..")
                sample, sample_dates = timed_run(base, workdir, "per-date", ["shard.days=1", f"dates.start={start}", f"dates.end={end}"])
                per_date = sample / sample_dates * sharded_dates
                print(
                    f"per-date (shard.days=1): {sample:.1f} s for {sample_dates:,} table-dates ({start}..{end}), "
                    f"extrapolated to {sharded_dates:,} table-dates: {per_date:.1f} s",
                    flush=True,
                )
            else:
                per_date, per_date_dates = timed_run(base, workdir, "per-date", ["shard.days=1"])
                print(f"per-date (shard.days=1): {per_date:.1f} s for {per_date_dates:,} table-dates (full Phase 4 history)", flush=True)
        finally:
            ray.shutdown()
    print(f"cpus: {args.cpus}; target: sharded under 60 s, at least 20x faster than per-date")
    print(f"per-date / sharded: {per_date / sharded:.1f}x")


if __name__ == "__main__":
    main()
