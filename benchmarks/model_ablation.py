"""What each feature group moves: validation MAE of the v5 model with groups added or dropped.

The groups are ``pipeline.tables.ml_feature_store.FEATURE_GROUPS``. For each window of
``benchmarks/model_windows.py`` (the default split and the seed's window), the model is fitted
once per seed (``training.params.seed``, +1, +2, ...) on:

- ``all``: every feature;
- ``before``: the groups the model had before issue 15 (``--new`` names the groups added since);
- ``before + <group>``: ``before`` and one new group;
- ``all - <group>``: every feature but one group (``--drop-all``: every group, not just the new ones).

It prints validation MAE (the mean over the seeds: what model choices are made on) and, for
information only, test MAE (of the early-stopping fit: no ``training.refit``, which does not move
validation MAE), each with its change against ``before``. The fit is the training
loop of ``task=train`` without Ray (``training.fit.fit_plain``: with one worker, the same model
bit for bit), on the columns of the groups kept. The warehouse is built first when missing, as
in ``model_windows.py``.

    python benchmarks/model_ablation.py [--warehouse PATH] [--seeds N] [--windows default,seed] [--drop-all]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from model_windows import WINDOWS, ensure_warehouse

from _harness import PROJECT_ROOT, config
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURE_GROUPS
from pipeline.warehouse import open_warehouse
from training.data import build_dataset, load_rows, make_split
from training.fit import LoopConfig, fit_plain
from training.train import TrainSettings

# The groups added by issue 15 (the opening weeks and the model): everything else was there before.
NEW_GROUPS = ("previous season",)


def variants(new: list[str], drop_all: bool) -> dict[str, list[str]]:
    """Variant name -> the feature groups it keeps."""
    groups = list(FEATURE_GROUPS)
    before = [g for g in groups if g not in new]
    out = {"before": before, "all": groups}
    if len(new) > 1:  # with one new group, "before + it" is "all" and "all - it" is "before"
        out.update({f"before + {g}": [*before, g] for g in new})
        out.update({f"all - {g}": [x for x in groups if x != g] for g in new})
    if drop_all:
        out.update({f"all - {g}": [x for x in groups if x != g] for g in groups if g not in new})
    return out


def columns_of(groups: list[str]) -> list[int]:
    kept = {name for g in groups for name in FEATURE_GROUPS[g]}
    return [i for i, name in enumerate(FEATURE_COLUMNS) if name in kept]


Matrices = dict[str, tuple[np.ndarray, np.ndarray]]


def fit_scores(settings: TrainSettings, matrices: Matrices, columns: list[int], seed: int) -> tuple[float, float, int]:
    """(validation MAE, test MAE, best iteration) of one fit on ``columns`` of the feature
    matrices (``Dataset.matrices`` of each split, built once per window)."""
    params = {**settings.lightgbm(), "seed": seed}
    loop = LoopConfig(params, settings.num_boost_round, settings.early_stopping_rounds, [FEATURE_COLUMNS[i] for i in columns])
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = (matrices[part] for part in ("train", "valid", "test"))
    result = fit_plain(loop, (x_train[:, columns], y_train), (x_valid[:, columns], y_valid))
    test_mae = float(np.mean(np.abs(result.booster.predict(x_test[:, columns]) - y_test)))
    return result.valid_mae, test_mae, result.best_iteration


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, default=PROJECT_ROOT / "var" / "warehouse.duckdb")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--windows", default="default,seed")
    parser.add_argument("--new", default=",".join(g for g in NEW_GROUPS if g in FEATURE_GROUPS), help="the groups added since 'before'")
    parser.add_argument("--drop-all", action="store_true", help="also drop each older group from 'all'")
    args, extra = parser.parse_known_args(argv)
    new = [g for g in args.new.split(",") if g]
    unknown = [g for g in new if g not in FEATURE_GROUPS]
    if unknown or args.seeds < 1:
        parser.error(f"unknown group(s) {unknown}; the groups are {list(FEATURE_GROUPS)}" if unknown else "--seeds must be at least 1")
    path = args.warehouse.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        ensure_warehouse(path, Path(tmp) / "logs", extra)
        with open_warehouse(config(f"warehouse.path={path}", *extra).warehouse, read_only=True) as warehouse:
            rows = load_rows(warehouse)
    dates = rows["game_date"].unique().to_list()
    print(f"warehouse {path}: {rows.height:,} feature-store rows; groups {', '.join(f'{g} ({len(FEATURE_GROUPS[g])})' for g in FEATURE_GROUPS)}")
    for window in args.windows.split(","):
        overrides = [f"training.split.{key}={value}" for key, value in WINDOWS[window].items()]
        settings = TrainSettings.from_config(config(f"warehouse.path={path}", *overrides, *extra))
        dataset = build_dataset(rows, make_split(dates, settings.split), min_prior_games=settings.min_prior_games)
        matrices = {part: dataset.matrices(part) for part in ("train", "valid", "test")}
        seeds = [int(settings.params["seed"]) + i for i in range(args.seeds)]
        print(
            f"\n[{window}] {' '.join(overrides) or '(default split)'}: {dataset.train.height:,} training rows, "
            f"{dataset.valid.height:,} validation rows, {dataset.test.height:,} test rows; seeds {seeds}"
        )
        print(f"  {'variant':<32} {'features':>8} {'valid MAE':>10} {'vs before':>10} {'test MAE':>9} {'vs before':>10}  iterations  seconds")
        reference: tuple[float, float] | None = None
        for name, groups in variants(new, args.drop_all).items():
            started = time.perf_counter()
            columns = columns_of(groups)
            fits = [fit_scores(settings, matrices, columns, seed) for seed in seeds]
            valid = statistics.fmean(f[0] for f in fits)
            test = statistics.fmean(f[1] for f in fits)
            reference = reference or (valid, test)
            print(
                f"  {name:<32} {len(columns):>8} {valid:>10.4f} {valid - reference[0]:>+10.4f} {test:>9.4f} {test - reference[1]:>+10.4f}"
                f"  {'/'.join(str(f[2]) for f in fits):>10}  {time.perf_counter() - started:>7.1f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
