"""Train the v5 model from an open warehouse, score it against the baselines, write its report.

:func:`train_and_report` is the whole of ``task=train`` after the warehouse is open, and what
``task=run`` calls at its end: the feature-store rows and their targets read in blocks of game dates
by Ray tasks into Ray's object store (:mod:`training.blocks`; the driver keeps only their
summaries), the date split, a LightGBM fit through Ray Train on those blocks as Ray Datasets with
early stopping on validation MAE, the same fit again on training and validation rows for the rounds
early stopping chose (``training.refit``: the model kept), the model and every baseline scored on
the same evaluation rows where they are (:mod:`training.scoring`; the headline: the model against
the best of them; validation rows with the early-stopping fit, which never learnt from them), the
opening weeks (test rows with fewer than 5 earlier games) scored apart, 80 % prediction intervals
calibrated on the validation rows (the early-stopping fit's residuals) and scored on the test rows
(:mod:`training.intervals`), and the output directory (``model.txt``, ``model.json``,
``intervals.json``, ``metrics.json``, ``report.md``, PNG plots).

:func:`dataset_for`, :func:`fit` and :func:`training.scoring.score` do the same on rows held in
this process (:class:`training.data.Dataset`): for benchmarks and studies of the model, not at scale.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, feature_matrix
from pipeline.validation.gate import check_before_training, pre_training_failures
from pipeline.warehouse import Warehouse
from training import artifacts, intervals
from training.blocks import TrainingRows, read_training_rows
from training.data import TARGET, Dataset, DataError, build_dataset, load_rows, make_split
from training.fit import FitResult, LoopConfig, fit_plain, fit_ray
from training.report import write_report
from training.results import TrainResult, build_metrics, importance_shares, load_result
from training.scoring import Evaluation, evaluate_rows
from training.settings import TrainSettings

# Their home before training.settings, training.results and training.scoring: imported from here.
from training.results import VOLATILE_KEYS  # noqa: E402, F401
from training.scoring import calibrate_intervals, score, score_opening_weeks  # noqa: E402, F401
from training.settings import ConfigError, training_config  # noqa: E402, F401

log = logging.getLogger("pipeline.training")

# Every table task=train reads: the feature store and the actual points, and for the check before
# training (pipeline.validation.gate) the schedule and the run state.
TABLES_READ = ("nba_predictions.ml_feature_store", "nba_analytics.player_game_summary", "nba_raw.schedule", "nba_orchestration.run_state")


def dataset_for(settings: TrainSettings, warehouse: Warehouse) -> Dataset:
    """The feature-store rows with their targets, split and selected as ``settings`` say, held in
    this process (:func:`training_rows_for` reads them in blocks, where they are trained on)."""
    rows = load_rows(warehouse)
    if rows.is_empty():
        raise DataError(f"nba_predictions.ml_feature_store in {warehouse.describe()} is empty: build it first (python -m pipeline)")
    split = make_split(rows["game_date"].unique().to_list(), settings.split)
    return build_dataset(rows, split, min_prior_games=settings.min_prior_games)


def worker_warehouse_config(cfg: DictConfig, warehouse: Warehouse) -> dict[str, Any] | None:
    """The warehouse's config for Ray tasks to read it themselves, as a run's shards do
    (``shard.worker_io`` and a warehouse the workers can reach); ``None``: the driver reads."""
    if not cfg.shard.get("worker_io", True) or not warehouse.reachable_from_workers:
        return None
    return OmegaConf.to_container(cfg.warehouse, resolve=True)  # names and endpoints: a worker brings its own credentials


def training_rows_for(settings: TrainSettings, cfg: DictConfig, warehouse: Warehouse, *, keep: bool = True) -> TrainingRows:
    """The training rows in blocks (:func:`training.blocks.read_training_rows`), read by Ray tasks
    where the warehouse lets them. ``keep=False``: for the fingerprint only (without Ray when the
    driver reads)."""
    config = worker_warehouse_config(cfg, warehouse)
    if keep or config is not None:
        from pipeline.ray_runtime import start_ray

        start_ray(cfg.ray)
    return read_training_rows(
        warehouse,
        settings.split,
        min_prior_games=settings.min_prior_games,
        block_rows=settings.block_rows,
        workers=settings.num_workers,
        worker_warehouse_config=config,
        keep=keep,
    )


def existing_model_for(settings: TrainSettings, dataset: Dataset | TrainingRows) -> TrainResult | None:
    """The newest model under ``training.models_root`` (or in ``training.output_dir``) fitted on
    exactly these rows (data fingerprint) and split, with the same settings; ``None`` when
    training would make a new one."""
    fingerprint = dataset.fingerprint
    wanted = json.loads(json.dumps({"params": settings.record(), "split": dataset.split.as_dict()}, default=str))
    candidates = list(Path(settings.models_root).glob(f"*/{artifacts.METRICS_FILE}"))
    if settings.output_dir:
        candidates.append(Path(settings.output_dir) / artifacts.METRICS_FILE)
    matches = []
    for path in filter(Path.exists, candidates):
        metrics = json.loads(path.read_text())
        same = metrics.get("data_fingerprint") == fingerprint and all(metrics.get(key) == value for key, value in wanted.items())
        # A model from before prediction intervals (or the best-baseline headline and the opening
        # weeks) existed is trained again, once, to get them.
        current = all(key in metrics for key in ("best_baseline", "opening_weeks"))
        if same and current and (path.parent / artifacts.MODEL_FILE).exists() and (path.parent / intervals.INTERVALS_FILE).exists():
            matches.append((metrics.get("created_at", ""), path.parent.name, path.parent))
    return load_result(max(matches)[2]) if matches else None


def resolve_output_dir(settings: TrainSettings, run_id: str, explicit: str | Path | None = None) -> Path:
    """Explicit argument, else ``training.output_dir``, else the Hydra multirun job's directory,
    else ``<training.models_root>/<run id>``. In a multirun an explicit directory gets the job
    number appended, so jobs never share one."""
    job_dir, job_num = _multirun_job()
    chosen = explicit or settings.output_dir
    if chosen:
        path = Path(chosen)
        return path / str(job_num) if job_num is not None else path
    if job_dir is not None:
        return Path(job_dir)
    return Path(settings.models_root) / run_id


def _multirun_job() -> tuple[str | None, int | None]:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None, None
        hc = HydraConfig.get()
        return hc.runtime.output_dir, int(hc.job.num)
    except Exception:  # noqa: BLE001 - outside a Hydra app: a single run
        return None, None


def check_rows(cfg: DictConfig, warehouse: Warehouse, rows: TrainingRows) -> list:
    """The feature store's checks on every date training reads (pipeline.validation.gate), run
    where its rows were read: on a Ray worker when the workers read them, so that the driver does
    not read the table for its checks either; the driver reports the outcome."""
    checked = None
    if rows.workers_read:
        import ray

        from training.blocks import gathered

        remote = ray.remote(max_retries=0)(pre_training_failures_on_worker)
        checked = gathered(remote.remote(OmegaConf.to_container(cfg, resolve=True), worker_warehouse_config(cfg, warehouse), rows.used_dates))
    return check_before_training(cfg, warehouse, rows.used_dates, checked=checked)


def pre_training_failures_on_worker(cfg: dict, warehouse_config: dict, dates: list[dt.date]):
    """:func:`pipeline.validation.gate.pre_training_failures` in a Ray task, on the worker's own
    connection to the warehouse."""
    from pipeline.runner import worker_warehouse

    return pre_training_failures(OmegaConf.create(cfg), worker_warehouse(warehouse_config), dates)


def fit(settings: TrainSettings, dataset: Dataset, cfg: DictConfig | None, run_name: str, backend: str = "ray") -> FitResult:
    """The early-stopping fit: training rows, stopped on the validation rows' MAE. It chooses the
    number of rounds, and its validation predictions are the model's validation scores.

    Then, in the same run (``training.refit``), the model kept (``FitResult.kept``): the same
    settings fitted again on the training and validation rows together (``Dataset.refit``) for
    exactly the rounds the first fit stopped at. The validation split is the months just before the
    test dates; the refit learns from them too, where the early-stopping fit only measured on them.

    Rows held in this process (:class:`training.data.Dataset`); :func:`fit_rows` fits the rows read
    in blocks."""
    refit = dataset.matrices("refit") if settings.refit else None
    return _run_fit(settings, dataset.matrices("train"), dataset.matrices("valid"), refit, cfg, run_name, backend)


def fit_rows(settings: TrainSettings, rows: TrainingRows, cfg: DictConfig | None, run_name: str, backend: str = "ray") -> FitResult:
    """:func:`fit` on rows read in blocks: through Ray Train, each worker reads its share of the
    blocks where they are; ``backend="plain"`` gathers them into this process first."""
    if backend == "plain":
        def matrices(name: str) -> tuple[np.ndarray, np.ndarray]:
            frame = rows.frame(name)
            return feature_matrix(frame), frame[TARGET].to_numpy().astype(np.float64)

        return _run_fit(settings, matrices("train"), matrices("valid"), matrices("refit") if settings.refit else None, cfg, run_name, backend)
    datasets = rows.datasets(settings.num_workers, settings.refit)
    return _run_fit(settings, datasets["train"], datasets["valid"], datasets.get("refit"), cfg, run_name, backend)


def _run_fit(settings: TrainSettings, train, valid, refit, cfg: DictConfig | None, run_name: str, backend: str) -> FitResult:
    loop = LoopConfig(settings.lightgbm(), settings.num_boost_round, settings.early_stopping_rounds, list(FEATURE_COLUMNS))
    if backend == "plain":
        return fit_plain(loop, train, valid, refit)
    from pipeline.ray_runtime import start_ray

    if cfg is not None:
        start_ray(cfg.ray)
    return fit_ray(
        loop,
        train,
        valid,
        refit,
        num_workers=settings.num_workers,
        cpus_per_worker=settings.cpus_per_worker,
        storage_path=settings.storage_path,
        run_name=run_name,
        health_check_interval_s=settings.health_check_interval_s,
        preemption_watcher=settings.preemption_watcher,
    )


def train_and_report(
    cfg: DictConfig,
    warehouse: Warehouse,
    *,
    run_id: str | None = None,
    output_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    backend: str = "ray",
    print_summary: bool = True,
    dataset: TrainingRows | None = None,
) -> TrainResult:
    """Train from an open warehouse; write the model, metrics.json, report.md and plots.

    ``backend="plain"`` fits with a plain ``lightgbm.train`` call in this process instead of Ray
    Train (the benchmark's reference; the rows are gathered here for it); everything else is the
    same. ``dataset``: the rows already read (:func:`training_rows_for` with the same settings, kept),
    so they are not read again.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    settings = TrainSettings.from_config(cfg)
    created = dt.datetime.now(dt.timezone.utc)
    run_id = run_id or created.strftime("%Y%m%dT%H%M%S")
    out = resolve_output_dir(settings, run_id, output_dir)

    rows = dataset or training_rows_for(settings, cfg, warehouse)
    timings["load"] = time.perf_counter() - started
    mark = time.perf_counter()
    critical = check_rows(cfg, warehouse, rows)
    if critical:
        raise DataError(
            f"the feature store fails {len(critical)} critical check(s) ({'; '.join(r.label for r in critical[:5])}): fix and rebuild it, "
            "or train on it anyway with validation.gate=false"
        )
    timings["validate"] = time.perf_counter() - mark
    log.info(
        "training on %d rows (%s..%s), validating on %d (%s..%s), testing on %d (%s..%s)",
        *(value for name in ("train", "valid", "test") for value in (rows.rows_in(name), *rows.window(name).values())),
    )  # fmt: skip

    mark = time.perf_counter()
    fit_result = fit_rows(settings, rows, cfg, run_name=f"v5-{run_id}", backend=backend)
    timings["fit"] = time.perf_counter() - mark  # the refit included: one run for both
    timings["fit_in_worker"] = fit_result.worker_seconds
    model_fit = fit_result.kept
    if fit_result.refit is not None:
        timings["refit_in_worker"] = fit_result.refit.worker_seconds
    booster = model_fit.booster

    mark = time.perf_counter()
    evaluation: Evaluation = evaluate_rows(rows, fit_result.booster, booster)
    model_id = artifacts.model_id_of(booster, created)
    metrics = build_metrics(
        model_id=model_id,
        created=created,
        settings=settings,
        dataset=rows,
        fit_result=fit_result,
        model_fit=model_fit,
        valid_eval=evaluation.valid,
        test_eval=evaluation.test,
        output_dir=out,
        overrides=overrides or [],
        interval_metrics=evaluation.intervals,
        opening_metrics=evaluation.opening_weeks,
    )
    timings["evaluate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    artifacts.save_model(out, booster, artifacts.model_meta(model_id, booster, metrics["params"], created))
    evaluation.calibration.save(out)
    report_path = write_report(out, metrics, row_plots=evaluation.plots, importance=importance_shares(booster))
    timings["report"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    metrics["timings"] = timings
    artifacts.write_json(out / artifacts.METRICS_FILE, metrics)
    result = TrainResult(metrics, out, report_path, model_id)
    if print_summary:
        result.print_summary()
    return result

