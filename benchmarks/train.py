"""Wall time of `task=train` on the bundled data, the overhead of Ray Train over a plain
`lightgbm.train` on the same data and parameters, and how training scales with the data. Prints
the figures, the ratios last.

The full warehouse (Phase 2-4 and the feature store) is built first, untimed (or pass
`warehouse.path=...` of one already built). Then:

1. `task=train` as a user runs it, in a fresh process: interpreter, imports, Ray start, reading
   the feature store in blocks, the fit through Ray Train, scoring, report and plots.
2. In this process, with Ray already up: the same fit (same rows, same parameters, early stopping
   on validation MAE, then the refit on training + validation rows for the rounds it chose, as
   `task=train` does them) through one Ray Train run (`training.num_workers`, default 1) and with
   plain `lightgbm.train` calls. The first Ray Train run of a process is the one `task=train`
   pays; a second one is shown too. Both, and the model `task=train` wrote, must be the same model.
3. The scale curve (`--scales`, default 1,4,16; `--scales ""` skips it) on each of `--backends`
   (default duckdb,bigquery): the bundled seasons copied N times with shifted ids
   (benchmarks/scale.py, which builds Phase 2-4 from them on DuckDB, untimed; for bigquery the
   tables training reads are then copied into a fresh BigQuery emulator, untimed), then
   `task=train` in a fresh process on each: rows read, wall time and time per feature-store row,
   the fit's rounds and time, and the driver's memory: its peak RSS (VmHWM, which also counts the
   pages of Ray's object store it wrote: with DuckDB the driver reads every block and hands it
   over) and its largest private (anonymous) RSS. Targets: driver peak at 16x under 2 x its 1x
   figure, time per row at 16x at most its 1x figure.

    python benchmarks/train.py [--scales 1,4,16] [--backends duckdb,bigquery] [--no-compare] [extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import ray
from _harness import PROJECT_ROOT, build, config, start_ray_timed
from scale import RAW_DIR, scale_up, watched

from pipeline.backup.manifest import owned_tables
from pipeline.emulator import EmulatorProcess, copy_tables
from pipeline.warehouse import open_warehouse
from training.data import FEATURE_STORE, build_dataset, load_rows, make_split
from training.train import TABLES_READ, TrainSettings, fit


def compare(extra: list[str]) -> None:
    """Parts 1 and 2 of the module docstring."""
    with tempfile.TemporaryDirectory() as tmp:
        given = [o.split("=", 1)[1] for o in extra if o.startswith("warehouse.path=")]
        warehouse = Path(given[0]) if given else Path(tmp) / "warehouse.duckdb"
        extra = [o for o in extra if not o.startswith("warehouse.path=")]
        overrides = [f"warehouse.path={warehouse}", f"logs.dir={Path(tmp) / 'logs'}", *extra]
        cfg = config(*overrides)
        if not warehouse.exists():
            print(f"ray start: {start_ray_timed(cfg):.2f}s (for the untimed build)")
            built = build(cfg)
            print(f"full warehouse build (untimed below): {built.seconds:.2f}s")
            ray.shutdown()  # task=train below starts its own, as a user's command does

        command = [sys.executable, "-m", "pipeline", "task=train", *overrides, f"training.output_dir={Path(tmp) / 'model'}"]
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        task_seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"task=train failed:\n{proc.stdout}{proc.stderr}")
        for line in proc.stderr.splitlines():
            if line.startswith(("v5 model", "  baselines", "  validation")):
                print(line)
        print(f"task=train wall time: {task_seconds:.1f}s (python -m pipeline task=train, fresh process)")

        print(f"ray start: {start_ray_timed(cfg):.2f}s (not counted below)")
        settings = TrainSettings.from_config(cfg)
        with open_warehouse(cfg.warehouse, read_only=True) as wh:
            rows = load_rows(wh)
        dataset = build_dataset(rows, make_split(rows["game_date"].unique().to_list(), settings.split), min_prior_games=settings.min_prior_games)
        print(f"fit data: {dataset.train.height:,} training rows, {dataset.valid.height:,} validation rows, {len(settings.lightgbm())} parameters")

        plain = fit(settings, dataset, cfg, run_name="bench-plain", backend="plain")
        print(
            f"plain lightgbm.train: {plain.seconds:.2f}s ({plain.rounds} rounds, best {plain.best_iteration}, valid MAE {plain.valid_mae:.4f}"
            f"{f'; refit {plain.refit.rounds} rounds in {plain.refit.seconds:.2f}s' if plain.refit else ''})"
        )
        ray_first = fit(settings, dataset, cfg, run_name="bench-ray-1")
        print(
            f"Ray Train ({settings.num_workers} worker(s)), first run of the process: {ray_first.seconds:.2f}s "
            f"(in the worker {ray_first.worker_seconds:.2f}s{f' + refit {ray_first.refit.worker_seconds:.2f}s' if ray_first.refit else ''}; "
            f"valid MAE {ray_first.valid_mae:.4f})"
        )
        ray_again = fit(settings, dataset, cfg, run_name="bench-ray-2")
        print(f"Ray Train, second run: {ray_again.seconds:.2f}s (in the worker {ray_again.worker_seconds:.2f}s)")
        same = all(
            through_ray.booster.model_to_string() == reference.booster.model_to_string()
            for through_ray, reference in ((ray_first, plain), (ray_first.kept, plain.kept))
        )
        print(f"same models (early-stopping fit and model kept) from Ray Train and plain lightgbm.train: {same}")
        written = (Path(tmp) / "model" / "model.txt").read_text()
        plain.kept.booster.save_model(str(Path(tmp) / "plain.txt"))
        print(f"task=train's model (rows read in blocks, Ray Datasets) is plain lightgbm.train's, to the last bit: {written == (Path(tmp) / 'plain.txt').read_text()}")
        ray.shutdown()
        budget = 1.5 * plain.seconds + 10
        print(
            f"targets: task=train under 60 s ({task_seconds:.1f}s); Ray Train under 1.5 x plain + 10 s = {budget:.1f}s "
            f"({ray_first.seconds:.1f}s); overhead {ray_first.seconds - plain.seconds:+.1f}s"
        )
        print(f"Ray Train / plain lightgbm.train wall time: {ray_first.seconds / plain.seconds:.2f}x")


def scale_curve(scales: list[int], backends: list[str], extra: list[str]) -> None:
    """Part 3 of the module docstring: each scale built once (Phase 2-4 on DuckDB, untimed), then
    ``task=train`` on each of ``backends``: ``duckdb``, where the driver reads each block (and runs
    the check before training), or ``bigquery`` (the emulator, filled with the tables training reads
    from the DuckDB build: untimed), where the Ray tasks read the blocks and run the check themselves."""
    print(f"scale curve of task=train on {', '.join(backends)}:", flush=True)
    results: dict[str, dict[int, dict]] = {backend: {} for backend in backends}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in scales:
            raw, warehouse = Path(tmp) / f"raw{factor}", Path(tmp) / f"w{factor}.duckdb"
            scale_up(RAW_DIR, factor, raw)
            built = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("scale.py")), "--build-once", str(raw), str(warehouse), *extra],
                cwd=tmp, capture_output=True, text=True,
            )  # fmt: skip
            if built.returncode != 0:
                raise SystemExit(f"the {factor}x build failed:\n{built.stdout}{built.stderr}")
            with duckdb.connect(str(warehouse), read_only=True) as con:
                rows = con.execute(f"SELECT count(*) FROM {FEATURE_STORE}").fetchone()[0]
            for backend in backends:
                model = Path(tmp) / f"model{factor}-{backend}"
                run = train_once(backend, factor, warehouse, [f"data.raw_dir={raw}", f"logs.dir={Path(tmp) / 'logs'}", f"training.output_dir={model}", *extra])
                results[backend][factor] = {"rows": rows, "run": run}
                print_scale(backend, factor, rows, run, json.loads((model / "metrics.json").read_text()))
            shutil.rmtree(raw)  # a scale is done with: 16x is gigabytes
            warehouse.unlink()
    for backend, curve in results.items():
        if len(curve) > 1:
            low, high = curve[scales[0]], curve[scales[-1]]
            ratio = f"{backend} {scales[-1]}x / {scales[0]}x"
            print(f"driver private peak {ratio}: {high['run'].driver_private_peak / low['run'].driver_private_peak:.2f}")
            print(f"driver peak {ratio}: {high['run'].driver_peak / low['run'].driver_peak:.2f} (target under 2)")
            per_row = (high["run"].seconds / high["rows"]) / (low["run"].seconds / low["rows"])
            print(f"time per row {ratio}: {per_row:.2f} (target at most 1.0)", flush=True)


def train_once(backend: str, factor: int, warehouse: Path, overrides: list[str]):
    """``task=train`` in a fresh process, watched (benchmarks/scale.py), on the DuckDB build or on a
    fresh BigQuery emulator filled with the tables training reads from it."""
    with contextlib.ExitStack() as stack:
        if backend == "bigquery":
            emulator = stack.enter_context(EmulatorProcess.start())
            target = [*emulator.overrides(), f"warehouse.dataset_prefix=scale{factor}_"]
            with open_warehouse(config(f"warehouse.path={warehouse}").warehouse, read_only=True) as source:
                with open_warehouse(config(*target).warehouse) as copy:
                    copy_tables(source, copy, [owned_tables()[name] for name in TABLES_READ])
        else:
            target = [f"warehouse.path={warehouse}"]
        return watched([sys.executable, "-m", "pipeline", "task=train", *target, *overrides], PROJECT_ROOT)


def print_scale(backend: str, factor: int, rows: int, run, metrics: dict) -> None:
    timings, fitted, data = metrics["timings"], metrics["fit"], metrics["data"]
    print(
        f"{backend} {factor:>3}x: {rows:,} feature-store rows ({data['read_bytes'] / 2**20:,.0f} MB read in {data['blocks']} blocks by the "
        f"{data['read_by']}; the driver moved {data['driver_bytes'] / 2**20:,.2f} MB), task=train {run.seconds:.1f}s, "
        f"{run.seconds / rows * 1e6:.1f} us a row (fit {timings['fit']:.1f}s: best iteration {fitted['best_iteration']} of "
        f"{fitted['rounds']} rounds; read {timings['load']:.1f}s, check {timings['validate']:.1f}s, scores {timings['evaluate']:.1f}s); "
        f"test MAE {metrics['test']['mae']:.3f}; driver peak {run.driver_peak / 2**20:,.0f} MB (private "
        f"{run.driver_private_peak / 2**20:,.0f} MB, object store pages {run.driver_object_store_peak / 2**20:,.0f} MB), "
        f"largest worker {run.worker_peak / 2**20:,.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,4,16", help="scale-ups of the bundled data for the scale curve; empty: none")
    parser.add_argument("--backends", default="duckdb,bigquery", help="the warehouses of the scale curve: duckdb, bigquery (the emulator)")
    parser.add_argument("--no-compare", action="store_true", help="only the scale curve")
    args, extra = parser.parse_known_args()
    if not args.no_compare:
        compare(extra)
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if scales and backends:
        scale_curve(scales, backends, [o for o in extra if not o.startswith("warehouse.path=")])


if __name__ == "__main__":
    main()
