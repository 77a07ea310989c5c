"""``task=predict`` and ``task=grade``: the model's predictions in the warehouse, and their grades.

- :func:`predict_dates`: every player with a feature-store row on the dates gets a prediction
  from the model, computed by :func:`pipeline.tables.ml_feature_store.feature_matrix` (the same
  code as training) and written to ``nba_predictions.player_points_predictions`` with the model
  id and a fingerprint of the row's feature values. The write replaces, per date, that model's
  rows (other models' predictions on the date stay), so a rerun gives the same rows.
- :func:`grade_dates`: every prediction on the dates whose game is in
  ``nba_analytics.player_game_summary`` gets its actual points and minutes and its error, in
  ``nba_predictions.prediction_accuracy`` (date partitions replaced whole). MAE per date and model
  counts the rows where the player played; ``is_evaluation_row`` marks the training report's
  evaluation rows (played, at least 5 earlier games this season).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Sequence

import polars as pl

from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURE_VERSION, ID_COLUMNS, ID_SCHEMA, feature_matrix
from pipeline.warehouse import PartitionWrite, TableSchema, Warehouse
from training.artifacts import SavedModel, check_features
from training.data import ACTUAL_MINUTES, EVAL_MIN_PRIOR_GAMES, FEATURE_STORE, TARGET, read_actuals, read_feature_store

PREDICTIONS = TableSchema(
    name="nba_predictions.player_points_predictions",
    columns={
        **ID_SCHEMA,
        "model_id": pl.String,
        "predicted_points": pl.Float64,
        "feature_fingerprint": pl.String,
        "feature_version": pl.Int16,
        "predicted_at": pl.Datetime("us"),
    },
    cluster_by=("model_id", "player_id"),
)

ACCURACY = TableSchema(
    name="nba_predictions.prediction_accuracy",
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "player_id": pl.Int32,
        "player_name": pl.String,
        "team_abbr": pl.String,
        "model_id": pl.String,
        "predicted_points": pl.Float64,
        "actual_points": pl.Float64,
        "actual_minutes": pl.Float64,
        "played": pl.Boolean,
        "is_evaluation_row": pl.Boolean,
        "error": pl.Float64,
        "absolute_error": pl.Float64,
        "feature_fingerprint": pl.String,
        "graded_at": pl.Datetime("us"),
    },
    cluster_by=("model_id", "player_id"),
)


FINGERPRINT_SEED = 20221018


def feature_fingerprints(frame: pl.DataFrame) -> pl.Series:
    """Per row: a hash of its feature values (FEATURE_COLUMNS in order)."""
    hashes = frame.select(FEATURE_COLUMNS).hash_rows(seed=FINGERPRINT_SEED)
    return hashes.map_elements(lambda h: f"{h:016x}", return_dtype=pl.String).alias("feature_fingerprint")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _in_dates(frame: pl.DataFrame, dates: Sequence[dt.date] | None) -> pl.DataFrame:
    return frame if dates is None else frame.filter(pl.col("game_date").is_in(list(dates)))


def prediction_rows(features: pl.DataFrame, saved: SavedModel, predicted_at: dt.datetime | None = None) -> pl.DataFrame:
    """The model's predictions of feature-store rows (no I/O)."""
    check_features(saved)
    values = saved.booster.predict(feature_matrix(features)) if features.height else []
    return features.select(
        *ID_COLUMNS,
        pl.lit(saved.model_id).alias("model_id"),
        pl.Series("predicted_points", values, dtype=pl.Float64),
        feature_fingerprints(features) if features.height else pl.lit(None, dtype=pl.String).alias("feature_fingerprint"),
        pl.lit(FEATURE_VERSION, dtype=pl.Int16).alias("feature_version"),
        pl.lit(predicted_at or _now(), dtype=pl.Datetime("us")).alias("predicted_at"),
    ).select(list(PREDICTIONS.columns))


def predict_dates(
    warehouse: Warehouse, saved: SavedModel, start: dt.date | None, end: dt.date | None, dates: Sequence[dt.date] | None = None
) -> pl.DataFrame:
    """Predict every feature-store row in ``start..end`` (or on ``dates``); write and return them."""
    if dates:
        start, end = min(dates), max(dates)
    features = _in_dates(read_feature_store(warehouse, start, end), dates)
    rows = prediction_rows(features, saved)
    requested = sorted(set(dates)) if dates else sorted(set(features["game_date"].to_list()))
    warehouse.ensure_table(PREDICTIONS)
    if requested:
        warehouse.write([PartitionWrite(PREDICTIONS.name, requested, rows, where={"model_id": saved.model_id})])
    return rows


def grade_rows(predictions: pl.DataFrame, actuals: pl.DataFrame, prior_games: pl.DataFrame, graded_at: dt.datetime | None = None) -> pl.DataFrame:
    """Predictions joined with actual points (no I/O). Predictions without a box score are left out."""
    joined = predictions.join(actuals, on=["game_id", "player_id"], how="inner").join(
        prior_games, on=["game_id", "player_id"], how="left"
    )
    played = pl.col(ACTUAL_MINUTES).fill_null(0.0) > 0
    error = pl.col("predicted_points") - pl.col(TARGET)
    return joined.select(
        "game_id",
        "game_date",
        "player_id",
        "player_name",
        "team_abbr",
        "model_id",
        "predicted_points",
        pl.col(TARGET).alias("actual_points"),
        pl.col(ACTUAL_MINUTES).alias("actual_minutes"),
        played.alias("played"),
        (played & (pl.col("games_played_season").fill_null(0) >= EVAL_MIN_PRIOR_GAMES)).alias("is_evaluation_row"),
        error.alias("error"),
        error.abs().alias("absolute_error"),
        "feature_fingerprint",
        pl.lit(graded_at or _now(), dtype=pl.Datetime("us")).alias("graded_at"),
    ).select(list(ACCURACY.columns))


def grade_dates(
    warehouse: Warehouse, start: dt.date | None, end: dt.date | None, dates: Sequence[dt.date] | None = None
) -> pl.DataFrame:
    """Grade every stored prediction in ``start..end`` (or on ``dates``); write and return the rows."""
    if not warehouse.exists(PREDICTIONS.name):
        raise FileNotFoundError(f"{PREDICTIONS.name} does not exist in {warehouse.describe()}: run task=predict first")
    if dates:
        start, end = min(dates), max(dates)
    predictions = _in_dates(warehouse.read(PREDICTIONS.name, start=start, end=end), dates)
    if predictions.is_empty():
        return pl.DataFrame(schema=ACCURACY.columns)
    first, last = predictions["game_date"].min(), predictions["game_date"].max()
    actuals = read_actuals(warehouse, first, last)
    prior = warehouse.read(FEATURE_STORE, start=first, end=last, columns=["game_id", "player_id", "games_played_season"])
    rows = grade_rows(predictions, actuals, prior)
    graded = sorted(set(rows["game_date"].to_list()))
    warehouse.ensure_table(ACCURACY)
    if graded:
        warehouse.write([PartitionWrite(ACCURACY.name, graded, rows)])
    return rows


def mae_per_date(graded: pl.DataFrame) -> pl.DataFrame:
    """Per date and model: rows graded, rows played, MAE over played rows and over evaluation rows."""
    return (
        graded.group_by("game_date", "model_id")
        .agg(
            rows=pl.len(),
            played=pl.col("played").sum(),
            mae=pl.col("absolute_error").filter(pl.col("played")).mean(),
            evaluation_rows=pl.col("is_evaluation_row").sum(),
            evaluation_mae=pl.col("absolute_error").filter(pl.col("is_evaluation_row")).mean(),
        )
        .sort("game_date", "model_id")
    )


def model_dir_for(model_dir: str | None, models_root: str) -> Path:
    from training.artifacts import latest_model_dir

    return Path(model_dir) if model_dir else latest_model_dir(Path(models_root))
