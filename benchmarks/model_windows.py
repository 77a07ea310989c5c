"""The v5 model against the best baseline on two test windows, over several seeds. Prints each
window's figures, the ratio last.

Windows (``training.split.*``):

- ``default``: the feature store's game dates 70 / 15 / 15 (train / validation / test);
- ``seed``: the seed's own target window, 2024-02-04..2024-04-14 (where the old rules model's
  historical 4.27 was measured, on another system's rows), training only on earlier games:
  ``valid_start=2023-12-15 test_start=2024-02-04 test_end=2024-04-14``;
- ``default_14d``: the default split's cut dates as they were while Phase 4 skipped the first 14
  days of each season (``valid_start=2024-11-29 test_start=2025-03-05``): the opening weeks now
  add dates, which moves the default cuts earlier, so this window compares with figures measured
  before on the same test dates;
- ``opening``: the first month of 2024-25 (2024-10-22..2024-11-21), training on every earlier
  season and validating on the end of 2023-24 (``valid_start=2024-03-01``): every player's first
  games of a season, where the opening-weeks figures (rows with fewer than 5 earlier games this
  season, against ``prior_season_avg`` and the other baselines) are the point.

For each window the model is fitted and scored once per seed (``training.params.seed``: the
configured seed, then +1, +2, ...; the first is the model ``task=train`` fits), on the window's
evaluation rows, against every baseline of ``training/baselines.py`` on the same rows (the
baselines do not depend on the seed). The fits are those of ``task=train``: early stopping on the
validation split, then (``training.refit``, on by default) the refit on training + validation
rows that is the model kept. Each fit is the training loop of ``task=train``: a plain
``lightgbm.train`` with one Ray Train worker's settings (the same model bit for bit as Ray Train
with ``training.num_workers=1``, see benchmarks/train.py), through Ray Train with more workers.
No validation gate is run: check the warehouse with ``task=validate`` if it is not the bundled
build.

The warehouse: ``--warehouse PATH`` (default ``var/warehouse.duckdb``); when missing it is built
first with ``python -m pipeline`` (every table, no model).

    python benchmarks/model_windows.py [--warehouse PATH] [--seeds N] [extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import PROJECT_ROOT, config

from pipeline.warehouse import open_warehouse
from training.data import build_dataset, load_rows, make_split
from training.baselines import SHORT_LABELS, best_baseline_of
from training.train import TrainSettings, fit, score, score_opening_weeks

WINDOWS: dict[str, dict[str, str | None]] = {
    "default": {},
    "seed": {"valid_start": "2023-12-15", "test_start": "2024-02-04", "test_end": "2024-04-14"},
    "default_14d": {"valid_start": "2024-11-29", "test_start": "2025-03-05", "test_end": "2025-06-22"},
    "opening": {"valid_start": "2024-03-01", "test_start": "2024-10-22", "test_end": "2024-11-21"},
}


def ensure_warehouse(path: Path, logs: Path, extra: list[str]) -> None:
    if path.exists():
        return
    print(f"{path} is missing: building it (python -m pipeline training.after_run=false)")
    started = time.perf_counter()
    command = [sys.executable, "-m", "pipeline", f"warehouse.path={path}", f"logs.dir={logs}", "training.after_run=false", *extra]
    proc = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode != 0:
        raise SystemExit(f"building {path} failed:\n{proc.stdout}{proc.stderr}")
    print(f"built in {time.perf_counter() - started:.1f}s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, default=PROJECT_ROOT / "var" / "warehouse.duckdb")
    parser.add_argument("--seeds", type=int, default=3)
    args, extra = parser.parse_known_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    path = args.warehouse.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        ensure_warehouse(path, Path(tmp) / "logs", extra)
        base_cfg = config(f"warehouse.path={path}", f"logs.dir={Path(tmp) / 'logs'}", *extra)
        with open_warehouse(base_cfg.warehouse, read_only=True) as warehouse:
            rows = load_rows(warehouse)
        print(f"warehouse {path}: {rows.height:,} feature-store rows, {rows['game_date'].min()}..{rows['game_date'].max()}")
        dates = rows["game_date"].unique().to_list()

        for window, cuts in WINDOWS.items():
            overrides = [f"training.split.{key}={value}" for key, value in cuts.items()]
            settings = TrainSettings.from_config(config(f"warehouse.path={path}", *overrides, *extra))
            dataset = build_dataset(rows, make_split(dates, settings.split), min_prior_games=settings.min_prior_games)
            split = dataset.split
            backend = "plain" if settings.num_workers <= 1 else "ray"
            first_seed = int(settings.params["seed"])
            print(
                f"\n[{window}] {' '.join(overrides) or '(default split)'}: train {split.train_start} up to {split.valid_start}, "
                f"valid up to {split.test_start}, test {split.test_start}..{split.test_end}; "
                f"{dataset.train.height:,} training rows, {dataset.valid.height:,} validation rows, {dataset.test.height:,} test rows"
            )
            maes: list[float] = []
            opening_maes: list[float] = []
            opening: dict | None = None
            baselines: dict[str, dict] | None = None
            for i in range(args.seeds):
                seed = first_seed + i
                seeded = TrainSettings.from_config(config(f"warehouse.path={path}", *overrides, *extra, f"training.params.seed={seed}"))
                started = time.perf_counter()
                chosen = fit(seeded, dataset, base_cfg, run_name=f"bench-windows-{window}-{seed}", backend=backend)
                result = chosen.kept
                _, test_eval, _ = score(dataset, chosen, result)
                overall = test_eval["overall"]
                maes.append(overall["model"]["mae"])
                opening = score_opening_weeks(dataset, result.booster)
                opening_maes.append(opening["overall"]["model"]["mae"])
                current = {name: s for name, s in overall.items() if name != "model"}
                assert baselines is None or {n: s["mae"] for n, s in current.items()} == {n: s["mae"] for n, s in baselines.items()}
                baselines = current
                print(
                    f"  seed {seed}: model test MAE {overall['model']['mae']:.3f} on {overall['model']['rows']:,} rows "
                    f"(best iteration {chosen.best_iteration}{', refitted' if result is not chosen else ''}, {time.perf_counter() - started:.1f}s)"
                )
            print("  baselines on the same rows: " + ", ".join(f"{SHORT_LABELS.get(n, n)} {s['mae']:.3f}" for n, s in sorted(baselines.items(), key=lambda kv: kv[1]["mae"])))
            mean = statistics.fmean(maes)
            best = best_baseline_of(mean, baselines)
            spread = f" (sd {statistics.stdev(maes):.3f}, range {min(maes):.3f}..{max(maes):.3f})" if len(maes) > 1 else ""
            print(f"  rows: {dataset.test.height:,} test evaluation rows ({test_eval['start']}..{test_eval['end']})")
            print(f"  model test MAE, mean over {len(maes)} seed(s): {mean:.3f}{spread}")
            print(f"  best baseline: {SHORT_LABELS.get(best['name'], best['name'])} {best['mae']:.3f}; old rules model {baselines['rules']['mae']:.3f}")
            opening_baselines = {n: v for n, v in opening["overall"].items() if n != "model"}
            opening_best = best_baseline_of(statistics.fmean(opening_maes), opening_baselines)
            print(
                f"  opening weeks ({opening['rows']:,} test rows with < 5 earlier games this season): model {statistics.fmean(opening_maes):.3f}, "
                f"best baseline {SHORT_LABELS.get(opening_best['name'], opening_best['name'])} {opening_best['mae']:.3f} "
                f"({opening_best['ratio']:.3f}x), prior-season avg {opening_baselines['prior_season_avg']['mae']:.3f}"
            )
            print(f"  [{window}] model / best baseline ({SHORT_LABELS.get(best['name'], best['name'])}): {best['ratio']:.3f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
