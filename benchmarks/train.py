"""Wall time of `task=train` on the bundled data, and the overhead of Ray Train over a plain
`lightgbm.train` on the same data and parameters. Prints the figures, the ratio last.

The full warehouse (Phase 2-4 and the feature store) is built first, untimed (or pass
`warehouse.path=...` of one already built). Then:

1. `task=train` as a user runs it, in a fresh process: interpreter, imports, Ray start, reading
   the feature store, the fit through Ray Train, scoring, report and plots.
2. In this process, with Ray already up: the same fit (same rows, same parameters, early stopping
   on validation MAE, then the refit on training + validation rows for the rounds it chose, as
   `task=train` does them) through one Ray Train run (`training.num_workers`, default 1) and with
   plain `lightgbm.train` calls. The first Ray Train run of a process is the one `task=train`
   pays; a second one is shown too.

    python benchmarks/train.py [extra Hydra overrides, e.g. ray.num_cpus=2 warehouse.path=...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
from _harness import PROJECT_ROOT, build, config, start_ray_timed

from pipeline.warehouse import open_warehouse
from training.data import build_dataset, load_rows, make_split
from training.train import TrainSettings, fit


def main(extra: list[str]) -> None:
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
        budget = 1.5 * plain.seconds + 10
        print(
            f"targets: task=train under 60 s ({task_seconds:.1f}s); Ray Train under 1.5 x plain + 10 s = {budget:.1f}s "
            f"({ray_first.seconds:.1f}s); overhead {ray_first.seconds - plain.seconds:+.1f}s"
        )
        print(f"Ray Train / plain lightgbm.train wall time: {ray_first.seconds / plain.seconds:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
