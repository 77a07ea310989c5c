"""Fitting LightGBM through Ray Train, with early stopping on validation MAE.

:func:`fit_ray` runs a ``ray.train.lightgbm.LightGBMTrainer`` (Ray Train v2 in Ray 2.60; :mod:`training.ray_trainer` leaves out its placement-group cleaner): each of
``training.num_workers`` workers runs :func:`train_loop` on its share of the training rows (rows
``rank::num_workers``; with 2+ workers LightGBM's data-parallel tree learner joins them through
the network parameters Ray Train sets up) and the whole validation set, so every worker sees the
same validation MAE and stops at the same round. The loop calls ``lightgbm.train`` with an
early-stopping callback and reports to Ray Train **once**, at the end, with the model as the
checkpoint of rank 0: per-iteration reports would make every round a round trip through the
controller.

A refit (``training.refit``) follows in the same run, in the same workers: without validation
rows, exactly the number of rounds the early-stopping fit chose, on the training and validation
rows together (each worker its share of them, as above). One run for both: a Ray Train run costs
several seconds of start-up however short its fit.

``training.num_workers=0`` runs the same loop through Ray Train's local mode (in the driver
process, no worker actors). :func:`fit_plain` runs the same loop without Ray at all: the benchmark's
reference, and with one worker the same model bit for bit.

Determinism: fixed ``seed`` (LightGBM derives its bagging and feature-fraction seeds from it),
``deterministic=True``, ``force_row_wise=True`` (otherwise LightGBM picks row- or column-wise
histograms by timing them) and a fixed ``num_threads``. Same data, same parameters, same number
of workers: the same model.

Speed on one machine (Ray Train's own start-up, about 5 s of actor processes, is most of the
overhead over a plain ``lightgbm.train``): the controller polls its workers every
``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` seconds (default 2) and learns only then that a short fit
has ended, so :func:`fit_ray` sets it to ``training.ray.health_check_interval_s``; and it turns
off the preemption watcher (``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER``, one more actor process per
fit that watches for cloud nodes being drained) unless ``training.ray.preemption_watcher`` is
true. A value already set in the environment wins over both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import lightgbm as lgb
import numpy as np

MODEL_FILE = "model.txt"
REFIT_MODEL_FILE = "refit_model.txt"
VALID_METRIC = "l1"  # LightGBM's name for mean absolute error

# Always set for every fit, whatever the config says (see the module docstring).
FIXED_PARAMS = {"deterministic": True, "force_row_wise": True, "metric": VALID_METRIC, "verbose": -1}


def lightgbm_params(params: Mapping[str, Any], num_threads: int) -> dict[str, Any]:
    out = {k: v for k, v in dict(params).items() if v is not None}
    out.update(FIXED_PARAMS, num_threads=int(num_threads))
    return out


@dataclass
class LoopConfig:
    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int
    feature_names: list[str]


def train_booster(
    config: LoopConfig,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray] | None,
    extra_params: Mapping[str, Any] | None = None,
) -> tuple[lgb.Booster, int]:
    """``lightgbm.train`` with early stopping on the validation MAE; nothing reported per round.
    Without ``valid`` (a refit): exactly ``config.num_boost_round`` rounds, no early stopping.

    Returns the booster (cut at its best iteration) and the number of rounds run."""
    params = {**config.params, **(extra_params or {})}
    train_set = lgb.Dataset(train[0], label=train[1], feature_name=config.feature_names, params={"verbose": -1})
    rounds = [0]

    def count(env: lgb.callback.CallbackEnv) -> None:
        rounds[0] = env.iteration + 1

    callbacks: list = [count]
    validation: dict[str, Any] = {}
    if valid is not None:
        validation = {"valid_sets": [lgb.Dataset(valid[0], label=valid[1], reference=train_set)], "valid_names": ["valid"]}
        callbacks.append(lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False))
    booster = lgb.train(params, train_set, num_boost_round=config.num_boost_round, callbacks=callbacks, **validation)
    return booster, rounds[0]


def validation_mae(booster: lgb.Booster) -> float | None:
    """LightGBM's validation l1 at the best iteration; ``None`` for a fit without validation rows."""
    return float(booster.best_score["valid"][VALID_METRIC]) if "valid" in booster.best_score else None


def best_iteration_of(booster: lgb.Booster) -> int:
    return int(booster.best_iteration or booster.current_iteration())


class Trained(NamedTuple):
    booster: lgb.Booster
    rounds: int  # rounds run
    seconds: float


def fit_then_refit(
    config: LoopConfig,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray] | None,
    refit: tuple[np.ndarray, np.ndarray] | None,
    extra_params: Mapping[str, Any] | None = None,
) -> tuple[Trained, Trained | None]:
    """The loop every backend runs: the early-stopping fit, then, given ``refit`` rows, the same
    settings again on them for exactly the rounds it chose."""
    started = time.perf_counter()
    chosen = Trained(*train_booster(config, train, valid, extra_params), time.perf_counter() - started)
    if refit is None:
        return chosen, None
    started = time.perf_counter()
    refit_config = replace(config, num_boost_round=best_iteration_of(chosen.booster), early_stopping_rounds=0)
    return chosen, Trained(*train_booster(refit_config, refit, None, extra_params), time.perf_counter() - started)


def train_loop(loop_config: dict) -> None:
    """One Ray Train worker: its share of the training rows, all validation rows, then its share of
    the refit rows (if any); one report."""
    import ray
    import ray.train
    from ray.train.lightgbm import get_network_params

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    config: LoopConfig = loop_config["config"]
    train = ray.get(loop_config["train"])
    valid = ray.get(loop_config["valid"]) if loop_config["valid"] is not None else None
    refit = ray.get(loop_config["refit"]) if loop_config["refit"] is not None else None
    extra = {}
    if world > 1:
        train = (train[0][rank::world], train[1][rank::world])
        refit = None if refit is None else (refit[0][rank::world], refit[1][rank::world])
        extra = {**get_network_params(), "tree_learner": "data", "pre_partition": True}
    chosen, refitted = fit_then_refit(config, train, valid, refit, extra)
    booster = chosen.booster
    metrics = {
        "best_iteration": best_iteration_of(booster),
        "rounds": chosen.rounds,
        "valid_mae": validation_mae(booster),
        "worker_seconds": chosen.seconds,
        "refit_rounds": None if refitted is None else refitted.rounds,
        "refit_worker_seconds": None if refitted is None else refitted.seconds,
    }
    tmp = tempfile.mkdtemp(prefix="nba-train-checkpoint-")
    try:
        checkpoint = None
        if rank == 0:
            booster.save_model(os.path.join(tmp, MODEL_FILE), num_iteration=metrics["best_iteration"])
            if refitted is not None:
                refitted.booster.save_model(os.path.join(tmp, REFIT_MODEL_FILE))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)
    finally:
        # Ray Train copies a worker's checkpoint into its storage; in local mode it keeps the
        # directory itself as the checkpoint, and the driver removes it after loading the model.
        if not loop_config.get("local"):
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class FitResult:
    booster: lgb.Booster
    best_iteration: int
    rounds: int
    valid_mae: float | None  # LightGBM's validation l1 at the best iteration; None for a refit (no validation rows)
    seconds: float  # wall time of the fit call (Ray Train start-up, and the refit if any, included)
    worker_seconds: float  # time inside the training loop
    backend: str
    num_workers: int
    refit: "FitResult | None" = None  # the refit made in the same run, if asked for

    @property
    def kept(self) -> "FitResult":
        """The model kept: the refit, or without one this fit itself."""
        return self.refit or self


_ENV_SET_HERE: set[str] = set()


def _set_env(name: str, value: str) -> None:
    """Set a Ray Train environment setting unless the user set it (ours may change per fit)."""
    if name not in os.environ or name in _ENV_SET_HERE:
        os.environ[name] = value
        _ENV_SET_HERE.add(name)


def _ray_env(health_check_interval_s: float | None, preemption_watcher: bool) -> None:
    """Ray Train settings read from the environment (a value the user set there wins)."""
    if health_check_interval_s:
        _set_env("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(health_check_interval_s))
    _set_env("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1" if preemption_watcher else "0")


def fit_ray(
    config: LoopConfig,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray] | None,
    refit: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    num_workers: int = 1,
    cpus_per_worker: float = 1,
    storage_path: str | None = None,
    run_name: str = "v5",
    health_check_interval_s: float | None = 0.2,
    preemption_watcher: bool = False,
) -> FitResult:
    """Fit through ``LightGBMTrainer`` (:class:`training.ray_trainer.Trainer`); Ray must be running (start_ray).
    ``valid=None``: exactly ``config.num_boost_round`` rounds. ``refit``: rows to fit again on,
    in the same run, for the rounds the first fit chose (:func:`fit_then_refit`)."""
    _ray_env(health_check_interval_s, preemption_watcher)
    import ray
    import ray.train

    from training.ray_trainer import Trainer

    started = time.perf_counter()
    own_storage = storage_path is None
    storage = tempfile.mkdtemp(prefix="nba-train-") if own_storage else storage_path
    try:
        trainer = Trainer(
            train_loop,
            train_loop_config={
                "config": config,
                "train": ray.put(train),
                "valid": ray.put(valid) if valid is not None else None,
                "refit": ray.put(refit) if refit is not None else None,
                "local": num_workers == 0,
            },
            scaling_config=ray.train.ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": cpus_per_worker}),
            run_config=ray.train.RunConfig(storage_path=str(Path(storage).resolve()), name=run_name),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError("Ray Train returned no checkpoint: the training loop did not report its model")
        with result.checkpoint.as_directory() as directory:
            booster = lgb.Booster(model_file=os.path.join(directory, MODEL_FILE))
            refitted = lgb.Booster(model_file=os.path.join(directory, REFIT_MODEL_FILE)) if refit is not None else None
        if num_workers == 0:
            shutil.rmtree(result.checkpoint.path, ignore_errors=True)
        metrics = result.metrics
    finally:
        if own_storage:
            shutil.rmtree(storage, ignore_errors=True)
    backend = "ray_train_local" if num_workers == 0 else "ray_train"
    return FitResult(
        booster=booster,
        best_iteration=int(metrics["best_iteration"]),
        rounds=int(metrics["rounds"]),
        valid_mae=None if metrics["valid_mae"] is None else float(metrics["valid_mae"]),
        seconds=time.perf_counter() - started,
        worker_seconds=float(metrics["worker_seconds"]),
        backend=backend,
        num_workers=num_workers,
        refit=None if refitted is None else _refit_result(refitted, int(metrics["refit_rounds"]), float(metrics["refit_worker_seconds"]), backend, num_workers),
    )


def fit_plain(
    config: LoopConfig,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray] | None,
    refit: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """The same fit (and refit) with plain ``lightgbm.train`` calls in this process (the reference)."""
    started = time.perf_counter()
    chosen, refitted = fit_then_refit(config, train, valid, refit)
    best = best_iteration_of(chosen.booster)
    # Keep what the Ray path keeps: the model up to its best iteration.
    model = lgb.Booster(model_str=chosen.booster.model_to_string(num_iteration=best))
    return FitResult(
        booster=model,
        best_iteration=best,
        rounds=chosen.rounds,
        valid_mae=validation_mae(chosen.booster),
        seconds=time.perf_counter() - started,
        worker_seconds=chosen.seconds,
        backend="lightgbm",
        num_workers=0,
        refit=None if refitted is None else _refit_result(*refitted, "lightgbm", 0),
    )


def _refit_result(booster: lgb.Booster, rounds: int, seconds: float, backend: str, num_workers: int) -> FitResult:
    return FitResult(
        booster=booster,
        best_iteration=rounds,
        rounds=rounds,
        valid_mae=None,
        seconds=seconds,
        worker_seconds=seconds,
        backend=backend,
        num_workers=num_workers,
    )
