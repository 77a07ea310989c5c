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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.progress import console
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURE_VERSION, feature_matrix
from pipeline.validation.gate import check_before_training, pre_training_failures
from pipeline.warehouse import Warehouse
from training import artifacts, intervals
from training.baselines import SHORT_LABELS, best_baseline_of
from training.blocks import DEFAULT_BLOCK_ROWS, TrainingRows, read_training_rows
from training.data import EVAL_MIN_PRIOR_GAMES, TARGET, Dataset, DataError, build_dataset, load_rows, make_split
from training.fit import FitResult, LoopConfig, fit_plain, fit_ray, lightgbm_params
from training.report import HISTORICAL_RULES_MAE, HISTORICAL_RULES_ROWS, write_report
from training.scoring import Evaluation, calibrate_intervals, evaluate_rows, score, score_opening_weeks  # noqa: F401 - score*, calibrate_intervals: here before training.scoring

log = logging.getLogger("pipeline.training")

# Keys of metrics.json that change from one run to the next even with the same data and seed.
# Every table task=train reads: the feature store and the actual points, and for the check before
# training (pipeline.validation.gate) the schedule and the run state.
TABLES_READ = ("nba_predictions.ml_feature_store", "nba_analytics.player_game_summary", "nba_raw.schedule", "nba_orchestration.run_state")

# "data": how the rows were read (where, and what passed through the driver), not what they hold.
VOLATILE_KEYS = ("model_id", "created_at", "output_dir", "timings", "git_commit", "overrides", "data")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TrainSettings:
    """``training.*`` of the Hydra config (conf/training/v5.yaml)."""

    split: dict[str, Any]
    min_prior_games: int
    refit: bool
    num_workers: int
    cpus_per_worker: float
    params: dict[str, Any]
    num_threads: int
    num_boost_round: int
    early_stopping_rounds: int
    output_dir: str | None
    models_root: str
    storage_path: str | None
    health_check_interval_s: float | None
    preemption_watcher: bool
    block_rows: int = DEFAULT_BLOCK_ROWS

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "TrainSettings":
        t = training_config(cfg)
        params = OmegaConf.to_container(t.params, resolve=True)
        block_rows = t.get("data", {}).get("block_rows", DEFAULT_BLOCK_ROWS)
        if not isinstance(block_rows, int) or block_rows < 1:
            raise ConfigError(f"training.data.block_rows must be a positive number of rows, not {block_rows!r}")
        return cls(
            split=OmegaConf.to_container(t.split, resolve=True),
            min_prior_games=int(t.train_rows.min_prior_games or 0),
            refit=bool(t.refit),
            num_workers=int(t.num_workers),
            cpus_per_worker=float(t.cpus_per_worker),
            params=params,
            num_threads=int(t.num_threads),
            num_boost_round=int(t.num_boost_round),
            early_stopping_rounds=int(t.early_stopping_rounds),
            output_dir=t.output_dir,
            models_root=str(t.models_root),
            storage_path=t.ray.storage_path,
            health_check_interval_s=t.ray.health_check_interval_s,
            preemption_watcher=bool(t.ray.get("preemption_watcher", False)),
            block_rows=block_rows,
        )

    def lightgbm(self) -> dict[str, Any]:
        return lightgbm_params(self.params, self.num_threads)

    def record(self) -> dict[str, Any]:
        """What of these settings shapes the model: ``params`` in metrics.json."""
        return {
            "lightgbm": self.lightgbm(),
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "num_workers": self.num_workers,
            "min_prior_games": self.min_prior_games,
            "refit": self.refit,
        }


def training_config(cfg: DictConfig) -> DictConfig:
    t = cfg.get("training")
    if t is None:
        raise ConfigError("no training config: add `+training=v5` to the command (or `- training: v5` to conf/config.yaml defaults)")
    return t


@dataclass
class TrainResult:
    metrics: dict
    output_dir: Path
    report_path: Path
    model_id: str

    def summary_lines(self) -> list[str]:
        m = self.metrics
        test, base = m["test"], m["baselines"]
        best = m.get("best_baseline") or best_baseline_of(test["mae"], base)  # older models: computed here
        others = [name for name in sorted(base, key=lambda n: base[n]["mae"]) if name not in (best["name"], "rules")]
        return [
            f"v5 model {m['model_id']}: test MAE {test['mae']:.3f} on {test['rows']:,} player-games ({test['start']}..{test['end']}): "
            f"{best['ratio']:.3f} x the best baseline, {SHORT_LABELS.get(best['name'], best['name'])} {best['mae']:.3f}",
            "  baselines on the same rows: "
            + ", ".join(f"{SHORT_LABELS.get(name, name)} {base[name]['mae']:.3f}" for name in [best["name"], *others])
            + (f"; old rules model {base['rules']['mae']:.3f} (reference; model / old rules = {test['mae'] / base['rules']['mae']:.3f})" if "rules" in base and best["name"] != "rules" else ""),
            f"  validation MAE {m['valid']['mae']:.3f} (early stopping, best iteration {m['fit']['best_iteration']}"
            + (f"; the model kept refitted on training + validation rows, {m['fit']['refit']['rows']:,}" if m["fit"].get("refit") else "")
            + "); "
            f"historical {HISTORICAL_RULES_MAE} was measured on another system's rows (2024-02-04..2024-04-14)",
            *self._opening_lines(),
            *self._interval_lines(),
            *self._data_lines(),
            f"  report: {self.report_path}",
        ]

    def _data_lines(self) -> list[str]:
        data = self.metrics.get("data")  # None for a model trained before the rows were read in blocks
        if not data:
            return []
        where = "the workers read them from the warehouse" if data["read_by"] == "workers" else "the driver read them from the warehouse"
        return [
            f"  rows read in {data['blocks']} block(s), {_size(data['read_bytes'])}: {where}; the driver moved "
            f"{_size(data['driver_bytes'])} of table data ({data['driver_bytes'] / max(1, data['read_bytes']):.2%})"
        ]

    def _opening_lines(self) -> list[str]:
        ow = self.metrics.get("opening_weeks")  # None for a model trained before the section existed
        if not ow or not ow["rows"]:
            return []
        overall = ow["overall"]
        best = min((name for name in overall if name != "model"), key=lambda n: overall[n]["mae"])
        return [
            f"  opening weeks (test rows with < 5 earlier games, {ow['rows']:,}): model MAE {overall['model']['mae']:.3f}, "
            f"best baseline {SHORT_LABELS.get(best, best)} {overall[best]['mae']:.3f}"
        ]

    def _interval_lines(self) -> list[str]:
        iv = self.metrics.get("intervals")  # None for a model trained before intervals existed
        if not iv:
            return []
        tiers = ", ".join(f"{t['tier']} {t['coverage']:.1%}" for t in iv["by_tier"])
        return [f"  80% interval (p10-p90): test coverage {iv['coverage']:.1%} ({tiers}), mean width {iv['mean_width']:.1f} points"]

    def print_summary(self) -> None:
        for line in self.summary_lines():
            console.print(line, highlight=False, soft_wrap=True)


def load_result(directory: Path) -> TrainResult:
    """A finished training run read back from its output directory."""
    metrics = json.loads((directory / artifacts.METRICS_FILE).read_text())
    return TrainResult(metrics, directory, directory / artifacts.REPORT_FILE, metrics["model_id"])


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


def importance_shares(booster) -> list[tuple[str, float]]:
    gain = booster.feature_importance(importance_type="gain").astype(np.float64)
    total = gain.sum() or 1.0
    return sorted(((name, float(g / total)) for name, g in zip(booster.feature_name(), gain)), key=lambda kv: -kv[1])


def build_metrics(
    *,
    model_id: str,
    created: dt.datetime,
    settings: TrainSettings,
    dataset: Dataset | TrainingRows,
    fit_result: FitResult,
    model_fit: FitResult,
    valid_eval: dict,
    test_eval: dict,
    output_dir: Path,
    overrides: list[str],
    interval_metrics: dict | None = None,
    opening_metrics: dict | None = None,
) -> dict:
    test_overall, valid_overall = test_eval["overall"], valid_eval["overall"]
    baselines = {name: s for name, s in test_overall.items() if name != "model"}
    valid_baselines = {name: s for name, s in valid_overall.items() if name != "model"}
    rules_mae = baselines["rules"]["mae"]
    best = best_baseline_of(test_overall["model"]["mae"], baselines)
    return {
        "model_id": model_id,
        "created_at": created.isoformat(timespec="seconds"),
        "test": {**test_overall["model"], "start": test_eval["start"], "end": test_eval["end"]},
        "valid": {
            **valid_overall["model"],
            "start": valid_eval["start"],
            "end": valid_eval["end"],
            "lightgbm_l1": fit_result.valid_mae,
            "baselines": valid_baselines,
            "best_baseline": best_baseline_of(valid_overall["model"]["mae"], valid_baselines),
        },
        "train": {
            "rows": dataset.rows_in("train"),
            **dataset.window("train"),
            "selection": "played (minutes > 0)"
            + (f", at least {settings.min_prior_games} earlier games this season" if settings.min_prior_games else ""),
        },
        "baselines": baselines,
        "best_baseline": best,
        "ratios": {
            "test_mae_vs_rules": test_overall["model"]["mae"] / rules_mae,
            "test_mae_vs_best_baseline": best["ratio"],
            "valid_mae_vs_rules": valid_overall["model"]["mae"] / valid_overall["rules"]["mae"],
        },
        "by_tier": test_eval["by_tier"],
        "by_month": test_eval["by_month"],
        "intervals": interval_metrics,
        "opening_weeks": opening_metrics,
        "evaluation_rows": f"minutes > 0 and games_played_season >= {EVAL_MIN_PRIOR_GAMES}",
        "reference": {"historical_rules_mae": HISTORICAL_RULES_MAE, "measured_on": HISTORICAL_RULES_ROWS},
        "features": list(FEATURE_COLUMNS),
        "feature_version": FEATURE_VERSION,
        "params": settings.record(),
        "fit": {
            "backend": fit_result.backend,
            "num_workers": fit_result.num_workers,
            "best_iteration": fit_result.best_iteration,
            "rounds": fit_result.rounds,
            # The model kept: fitted again on training + validation rows, or the early-stopping fit itself.
            "refit": {"rows": dataset.rows_in("refit"), **dataset.window("refit"), "rounds": model_fit.rounds} if model_fit is not fit_result else None,
            "rows_per_worker": fit_result.rows_per_worker(),
        },
        "data": dataset.record() if isinstance(dataset, TrainingRows) else None,
        "split": dataset.split.as_dict(),
        "data_fingerprint": dataset.fingerprint,
        "git_commit": artifacts.git_commit(),
        "output_dir": str(output_dir),
        "overrides": list(overrides),
    }


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


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:,.1f} KB"
