"""The model and the baselines scored on the evaluation rows, the intervals calibrated, the opening
weeks scored: the figures ``metrics.json`` and ``report.md`` give.

Two steps, so that the rows need not meet on the driver:

1. :func:`scored` (per block of rows): each row's date, recent minutes (its tier), earlier games,
   actual points, and every predictor's prediction: the model's and each baseline's (NULL where a
   baseline has no value). A handful of numbers a row instead of the ~100 features.
2. :func:`evaluation_of` (all scored rows, in date order): the scores of :mod:`training.evaluate`
   on the validation and test rows, the 80 % intervals (:mod:`training.intervals`, calibrated on
   the validation rows), the opening weeks, and the report's two plots of the rows themselves
   (predicted against actual, residuals by month), rendered as PNG.

:func:`evaluate_rows` runs step 1 as one Ray task per block where the blocks are
(:class:`training.blocks.TrainingRows`) and step 2 as one more Ray task, so the driver receives
figures, the calibration and two images, never rows. :func:`score`, :func:`score_opening_weeks` and
:func:`calibrate_intervals` run both steps in this process on rows held in memory
(:class:`training.data.Dataset`). Either way the rows are scored in the same order, so the figures
are the same to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import polars as pl

from pipeline.tables.ml_feature_store import feature_matrix
from training import intervals
from training.baselines import BASELINES, baseline_predictions, fill_missing, opening_fallback_points
from training.data import EVAL_MIN_PRIOR_GAMES, TARGET, Dataset
from training.evaluate import TIER_COLUMN, evaluate, opening_weeks, tier_expr

if TYPE_CHECKING:
    import lightgbm as lgb

    from training.blocks import TrainingRows

PREDICTORS = ("model", *BASELINES)  # the baselines by name
SCORED_COLUMNS = ("game_date", TIER_COLUMN, "games_played_season", TARGET)


def scored(rows: pl.DataFrame, booster: lgb.Booster) -> pl.DataFrame:
    """Feature-store rows with their target, narrowed to what the scores read (SCORED_COLUMNS) and
    each predictor's prediction (PREDICTORS), in the rows' order."""
    predicted = booster.predict(feature_matrix(rows)) if rows.height else np.zeros(0)
    return pl.concat(
        [rows.select(SCORED_COLUMNS), pl.DataFrame({"model": predicted}, schema={"model": pl.Float64}), baseline_predictions(rows)],
        how="horizontal",
    )


def predictions_of(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in PREDICTORS}


def opening_weeks_of(test_opening: pl.DataFrame, train_opening: pl.DataFrame) -> dict:
    """The model and every baseline on the test split's played rows with fewer than 5 earlier
    games this season (scored); a baseline without a value on a row (no played game this season
    yet, and for prior_season_avg no season before either) predicts the training split's mean
    points of a player's first game of a season (:func:`training.baselines.opening_fallback_points`)."""
    fallback, fallback_rows = opening_fallback_points(train_opening)
    raw = test_opening.select(list(BASELINES))
    filled = fill_missing(raw, fallback)
    out = opening_weeks(test_opening, {"model": test_opening["model"].to_numpy(), **{name: filled[name].to_numpy() for name in filled.columns}})
    out["fallback"] = {
        "points": fallback,
        "rows": fallback_rows,
        "from": "mean points of the training split's played rows with 0 earlier games this season",
        "used_on": {name: int(raw[name].null_count()) for name in raw.columns},
    }
    out["selection"] = f"test split, minutes > 0 and games_played_season < {EVAL_MIN_PRIOR_GAMES}"
    return out


def window_of(frame: pl.DataFrame) -> dict[str, str]:
    return {"start": frame["game_date"].min().isoformat(), "end": frame["game_date"].max().isoformat()}


def interval_calibration(valid: pl.DataFrame, test: pl.DataFrame, predictions: Mapping[str, np.ndarray]) -> tuple[intervals.Calibration, dict]:
    """Interval calibration from the validation rows' residuals; its coverage on the validation rows
    (in sample) and on the test rows (out of sample: what the report quotes). ``valid`` / ``test``:
    rows with their date, recent minutes and target; ``predictions``: the model's, per split."""
    rows = {"valid": valid, "test": test}
    tiers = {part: frame.select(tier_expr()).to_series().to_list() for part, frame in rows.items()}
    actual = valid[TARGET].to_numpy()
    levels, out_of_time = intervals.out_of_time_levels(predictions["valid"], actual, tiers["valid"], valid["game_date"].to_list())
    calibration = intervals.calibrate(
        predictions["valid"],
        actual,
        tiers["valid"],
        calibrated_on={"split": "valid", **window_of(valid), "rows": valid.height},
        levels=levels,
    )
    covered = {}
    for part, frame in rows.items():
        bins = calibration.assign(predictions[part], tiers[part])
        p10, p90 = calibration.bounds(predictions[part], bins)
        covered[part] = intervals.coverage(frame[TARGET].to_numpy(), p10, p90, tiers[part])
    summary = {
        "interval": list(levels),
        "out_of_time": out_of_time,
        **covered["test"],
        "valid": {k: covered["valid"][k] for k in ("rows", "coverage", "mean_width")},
        "method": "residual quantiles (linear interpolation) per minutes tier x predicted-points bin, calibrated on the validation rows, "
        "at 10 / 90 % widened until they cover 80 % out of time on the validation split (first half calibrates, second half scores)",
        "bins": {name: len(group) for name, group in calibration.groups.items()},
    }
    return calibration, summary


@dataclass
class Evaluation:
    """Every figure of one model's evaluation (:func:`evaluation_of`)."""

    valid: dict  # training.evaluate.evaluate of the validation rows (the early-stopping fit's predictions)
    test: dict  # the same of the test rows (the model kept)
    calibration: intervals.Calibration
    intervals: dict  # the calibration's summary and coverage
    opening_weeks: dict
    plots: dict[str, bytes]  # the report's plots of the rows (training.report.render_row_plots)


def evaluation_of(valid: pl.DataFrame, test: pl.DataFrame, test_opening: pl.DataFrame, train_opening: pl.DataFrame) -> Evaluation:
    """Step 2: ``valid`` / ``test`` / ``test_opening``: :func:`scored` rows (the validation rows by
    the early-stopping fit, the others by the model kept); ``train_opening``: the training split's
    opening-weeks rows (their target and earlier games)."""
    from training.report import render_row_plots  # matplotlib: only where the figures are made
    predictions = {"valid": valid["model"].to_numpy(), "test": test["model"].to_numpy()}
    calibration, interval_metrics = interval_calibration(valid, test, predictions)
    residuals = pl.concat(
        [
            frame.select(pl.col("game_date").dt.strftime("%Y-%m").alias("month"), pl.lit(part).alias("split"), pl.col(TARGET), residual=pl.col("model") - pl.col(TARGET))
            for part, frame in (("valid", valid), ("test", test))
        ]
    )
    return Evaluation(
        valid=evaluate(valid, predictions_of(valid)),
        test=evaluate(test, predictions_of(test)),
        calibration=calibration,
        intervals=interval_metrics,
        opening_weeks=opening_weeks_of(test_opening, train_opening),
        plots=render_row_plots(test[TARGET].to_numpy().astype(np.float64), predictions["test"], residuals),
    )


# -- where the rows are: Ray tasks -------------------------------------------------------------


def score_block(rows, model: str) -> pl.DataFrame:
    """Step 1 on one block (a Ray task): ``rows`` an Arrow table of a block's rows, ``model`` the
    LightGBM model as text."""
    import lightgbm as lgb

    return scored(pl.from_arrow(rows), lgb.Booster(model_str=model))


def evaluate_blocks(valid: list, test: list, test_opening: list, train_opening: list) -> Evaluation:
    """Step 2 over every block (a Ray task): each argument the Ray objects of one set's blocks,
    in date order."""
    from training.blocks import gathered

    def rows_of(refs: list) -> pl.DataFrame:
        return pl.concat([frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame) for frame in gathered(refs)])

    return evaluation_of(rows_of(valid), rows_of(test), rows_of(test_opening), rows_of(train_opening))


def evaluate_rows(rows: TrainingRows, chosen: lgb.Booster, model: lgb.Booster) -> Evaluation:
    """Score the validation rows with ``chosen`` (the early-stopping fit, which did not learn from
    them), the test rows and the opening weeks with ``model`` (the model kept), block by block in
    Ray tasks, and combine them in one more: the driver receives the :class:`Evaluation` only."""
    import ray

    from training.blocks import gathered

    score_task = ray.remote(max_retries=0)(score_block)
    by_model = {"chosen": ray.put(chosen.model_to_string()), "kept": ray.put(model.model_to_string())}
    sets = {name: [score_task.remote(ref, by_model[which]) for ref in rows.refs_of(name)] for name, which in (("valid", "chosen"), ("test", "kept"), ("opening_test", "kept"))}
    combine = ray.remote(max_retries=0)(evaluate_blocks)
    return gathered(combine.remote(sets["valid"], sets["test"], sets["opening_test"], rows.refs_of("opening_train")))


# -- in this process: rows held in memory ------------------------------------------------------


def score(dataset: Dataset, chosen, model=None) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """Evaluations of model + baselines on the validation and test evaluation rows.

    ``chosen`` / ``model``: :class:`training.fit.FitResult`. ``model``: the model kept
    (``FitResult.kept``; default ``chosen``). The validation rows are scored with ``chosen``, the
    early-stopping fit, which did not learn from them; a refit did, so its validation scores would
    flatter it. The test rows are scored with the model kept."""
    model = model or chosen
    frames = {"valid": scored(dataset.valid, chosen.booster), "test": scored(dataset.test, model.booster)}
    return (
        evaluate(frames["valid"], predictions_of(frames["valid"])),
        evaluate(frames["test"], predictions_of(frames["test"])),
        {part: frame["model"].to_numpy() for part, frame in frames.items()},
    )


def score_opening_weeks(dataset: Dataset, booster) -> dict:
    """:func:`opening_weeks_of` the test split's opening-weeks rows, scored with ``booster``."""
    return opening_weeks_of(scored(dataset.opening("test"), booster), dataset.opening("train"))


def calibrate_intervals(dataset: Dataset, predictions: dict[str, np.ndarray]) -> tuple[intervals.Calibration, dict]:
    """:func:`interval_calibration` of the dataset's validation and test rows."""
    return interval_calibration(dataset.valid, dataset.test, predictions)
