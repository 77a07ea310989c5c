"""``task=predict`` and ``task=grade``: the model's predictions in the warehouse, and their grades.

- :func:`predict_dates`: every player with a feature-store row on the dates gets a prediction
  from the model, computed by :func:`pipeline.tables.ml_feature_store.feature_matrix` (the same
  code as training), written to ``nba_predictions.player_points_predictions`` with the model id,
  a fingerprint of the row's feature values, and:

  - ``p10``, ``p90``: its 80 % interval and ``interval_bin``, the calibration bin (minutes tier
    × predicted-points bin) of the model's ``intervals.json`` (:mod:`training.intervals`), with
    which :func:`training.intervals.p_over` gives P(actual > line) at any line. NULL for a model
    trained before intervals existed. An interval assumes the player plays.
  - ``points_line``, ``bookmaker`` from ``nba_raw.pregame_roster``, else from ``nba_raw.prop_lines``
    (lines captured before tip-off only; NULL without a line, or when the warehouse has neither
    table: :func:`training.lines.read_lines`), ``p_over`` = P(actual > points_line) and
    ``edge`` = p_over − 0.5 (:mod:`training.lines`: a probability margin, not money).
  - ``made_before_tipoff``: the date had no row in ``nba_analytics.player_game_summary`` when
    the prediction was made (its box scores were not loaded: a morning prediction).

  A write replaces, per date, the rows of the same model with the same ``made_before_tipoff``:
  a rerun in the morning replaces the morning's rows, and a prediction made after the game
  (from features rebuilt with the box scores) never overwrites the morning's. Rows written
  before ``made_before_tipoff`` existed (NULL there) were made from box-score-era features, and
  count as made after the game: the first write after the upgrade stamps them so.
- :func:`grade_dates`: per (game, player, model) the prediction made before tip-off when there
  is one, else the latest (:func:`chosen_predictions`), whose game is in
  ``nba_analytics.player_game_summary``, gets its actual points and minutes, its error, whether
  the actual fell in [p10, p90] (``in_interval``, NULL when the player did not play) and, with a
  line, the side chosen and whether it won (``side``, ``side_hit``: :mod:`training.lines`), in
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
from training.data import ACTUAL_MINUTES, EVAL_MIN_PRIOR_GAMES, FEATURE_STORE, PLAYER_GAME_SUMMARY, TARGET, read_actuals, read_feature_store
from training.evaluate import tier_expr
from training.intervals import interval_columns
from training.lines import edge_expr, line_scores, no_lines, read_lines, side_expr, side_hit_expr

PREDICTIONS = TableSchema(
    name="nba_predictions.player_points_predictions",
    columns={
        **ID_SCHEMA,
        "model_id": pl.String,
        "predicted_points": pl.Float64,
        "p10": pl.Float64,
        "p90": pl.Float64,
        "interval_bin": pl.String,
        "points_line": pl.Float64,
        "bookmaker": pl.String,
        "p_over": pl.Float64,
        "edge": pl.Float64,
        "made_before_tipoff": pl.Boolean,
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
        "predicted_at": pl.Datetime("us"),
        "made_before_tipoff": pl.Boolean,
        "predicted_points": pl.Float64,
        "p10": pl.Float64,
        "p90": pl.Float64,
        "actual_points": pl.Float64,
        "actual_minutes": pl.Float64,
        "played": pl.Boolean,
        "is_evaluation_row": pl.Boolean,
        "error": pl.Float64,
        "absolute_error": pl.Float64,
        "in_interval": pl.Boolean,
        "points_line": pl.Float64,
        "bookmaker": pl.String,
        "p_over": pl.Float64,
        "side": pl.String,
        "side_hit": pl.Boolean,
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


def prediction_rows(
    features: pl.DataFrame,
    saved: SavedModel,
    predicted_at: dt.datetime | None = None,
    *,
    lines: pl.DataFrame | None = None,
    before_tipoff: Sequence[dt.date] = (),
) -> pl.DataFrame:
    """The model's predictions of feature-store rows, with their interval, line, P(over) and edge
    (no I/O). ``lines``: :func:`training.lines.pick_lines` rows; ``before_tipoff``: the dates
    without box scores yet."""
    check_features(saved)
    values = saved.booster.predict(feature_matrix(features)) if features.height else []
    tiers = features.select(tier_expr()).to_series().to_list() if features.height else []
    base = features.select(
        *ID_COLUMNS,
        pl.lit(saved.model_id).alias("model_id"),
        pl.Series("predicted_points", values, dtype=pl.Float64),
        feature_fingerprints(features) if features.height else pl.lit(None, dtype=pl.String).alias("feature_fingerprint"),
    )
    base = pl.concat([base, interval_columns(saved.intervals, features, values, tiers)], how="horizontal")
    # A left join keeps every prediction; pick_lines left one line per (game_id, player_id).
    out = base.join(lines if lines is not None else no_lines(), on=["game_id", "player_id"], how="left")
    p_over = (
        saved.intervals.p_over_many(out["predicted_points"].to_list(), out["interval_bin"].to_list(), out["points_line"].to_list())
        if saved.intervals is not None and out.height
        else [None] * out.height
    )
    return out.with_columns(
        pl.Series("p_over", p_over, dtype=pl.Float64),
        pl.col("game_date").is_in(list(before_tipoff)).alias("made_before_tipoff"),
        pl.lit(FEATURE_VERSION, dtype=pl.Int16).alias("feature_version"),
        pl.lit(predicted_at or _now(), dtype=pl.Datetime("us")).alias("predicted_at"),
    ).with_columns(edge_expr()).select(list(PREDICTIONS.columns))


def dates_before_tipoff(warehouse: Warehouse, dates: Sequence[dt.date]) -> list[dt.date]:
    """The dates with no row in player_game_summary now: their box scores are not loaded yet."""
    played = set(warehouse.dates_present(PLAYER_GAME_SUMMARY)) if warehouse.exists(PLAYER_GAME_SUMMARY) else set()
    return sorted(d for d in dates if d not in played)


def prediction_writes(
    model_id: str, requested: Sequence[dt.date], before_tipoff: Sequence[dt.date], rows: pl.DataFrame, existing: pl.DataFrame | None = None
) -> list[PartitionWrite]:
    """The writes of one prediction run (no I/O): per ``made_before_tipoff`` value, that model's
    rows with that value on its dates are replaced.

    ``existing``: the model's stored rows on ``requested``, needed only when some have a NULL
    ``made_before_tipoff`` (written before the column existed). Those rows count as made after
    the game; their dates are rewritten whole for the model: the stored rows the new ones do not
    replace (stamped), then the new ones."""
    before = set(before_tipoff)
    flagged = {flag: [d for d in requested if (d in before) == flag] for flag in (True, False)}
    legacy_dates: set[dt.date] = set()
    if existing is not None and existing.height:
        legacy_dates = set(existing.filter(pl.col("made_before_tipoff").is_null())["game_date"].to_list())
    writes = []
    for flag, days in flagged.items():
        days = [d for d in days if d not in legacy_dates]
        if days:
            part = rows.filter(pl.col("game_date").is_in(days) & (pl.col("made_before_tipoff") == flag))
            writes.append(PartitionWrite(PREDICTIONS.name, days, part, where={"model_id": model_id, "made_before_tipoff": flag}))
    if legacy_dates:
        days = sorted(legacy_dates)
        new = rows.filter(pl.col("game_date").is_in(days))
        stored = existing.filter(pl.col("game_date").is_in(days)).with_columns(pl.col("made_before_tipoff").fill_null(False))
        replaced = pl.DataFrame({"game_date": days, "made_before_tipoff": [d in before for d in days]}, schema={"game_date": pl.Date, "made_before_tipoff": pl.Boolean})
        kept = stored.join(replaced, on=["game_date", "made_before_tipoff"], how="anti")
        writes.append(PartitionWrite(PREDICTIONS.name, days, pl.concat([kept.select(new.columns), new]), where={"model_id": model_id}))
    return writes


def predict_dates(
    warehouse: Warehouse,
    saved: SavedModel,
    start: dt.date | None,
    end: dt.date | None,
    dates: Sequence[dt.date] | None = None,
    *,
    bookmaker: str | None = None,
) -> pl.DataFrame:
    """Predict every feature-store row in ``start..end`` (or on ``dates``); write and return them
    (with the feature-store column ``starter`` and ``is_home`` added, for printing). ``bookmaker``
    (``lines.bookmaker``): the prop lines of that bookmaker only, where a slate gives no line."""
    if dates:
        start, end = min(dates), max(dates)
    features = _in_dates(read_feature_store(warehouse, start, end), dates)
    requested = sorted(set(dates)) if dates else sorted(set(features["game_date"].to_list()))
    before = dates_before_tipoff(warehouse, requested)
    lines = read_lines(warehouse, start, end, bookmaker) if requested else no_lines()
    rows = prediction_rows(features, saved, lines=lines, before_tipoff=before)
    warehouse.ensure_table(PREDICTIONS)  # creates it, or adds the columns an older table lacks
    if requested:
        existing = warehouse.read(PREDICTIONS.name, start=requested[0], end=requested[-1], where={"model_id": saved.model_id})
        existing = existing.filter(pl.col("game_date").is_in(requested))
        legacy = existing if existing["made_before_tipoff"].null_count() else None
        warehouse.write(prediction_writes(saved.model_id, requested, before, rows, legacy))
    return rows.join(features.select("game_id", "player_id", "starter", "is_home"), on=["game_id", "player_id"], how="left")


def chosen_predictions(predictions: pl.DataFrame) -> pl.DataFrame:
    """Per (game, player, model): the prediction made before tip-off if there is one, else the
    latest (by ``predicted_at``). A NULL ``made_before_tipoff`` (older rows) counts as after."""
    before = pl.col("made_before_tipoff").fill_null(False)
    return (
        predictions.with_columns(_before=before)
        .sort(["_before", "predicted_at"], descending=True, nulls_last=True)
        .unique(["game_id", "player_id", "model_id"], keep="first", maintain_order=True)
        .drop("_before")
        .sort("game_date", "game_id", "player_id", "model_id")
    )


def grade_rows(predictions: pl.DataFrame, actuals: pl.DataFrame, prior_games: pl.DataFrame, graded_at: dt.datetime | None = None) -> pl.DataFrame:
    """The chosen predictions (:func:`chosen_predictions`) joined with actual points (no I/O).
    Predictions without a box score are left out."""
    for column, dtype in PREDICTIONS.columns.items():  # rows of an older table lack the new columns
        if column not in predictions.columns:
            predictions = predictions.with_columns(pl.lit(None, dtype=dtype).alias(column))
    joined = chosen_predictions(predictions).join(actuals, on=["game_id", "player_id"], how="inner").join(
        prior_games, on=["game_id", "player_id"], how="left"
    )
    played = pl.col(ACTUAL_MINUTES).fill_null(0.0) > 0
    error = pl.col("predicted_points") - pl.col(TARGET)
    inside = (pl.col(TARGET) >= pl.col("p10")) & (pl.col(TARGET) <= pl.col("p90"))
    return (
        joined.select(
            "game_id",
            "game_date",
            "player_id",
            "player_name",
            "team_abbr",
            "model_id",
            "predicted_at",
            "made_before_tipoff",
            "predicted_points",
            "p10",
            "p90",
            pl.col(TARGET).alias("actual_points"),
            pl.col(ACTUAL_MINUTES).alias("actual_minutes"),
            played.alias("played"),
            (played & (pl.col("games_played_season").fill_null(0) >= EVAL_MIN_PRIOR_GAMES)).alias("is_evaluation_row"),
            error.alias("error"),
            error.abs().alias("absolute_error"),
            pl.when(played).then(inside).alias("in_interval"),
            "points_line",
            "bookmaker",
            "p_over",
            side_expr(),
            "feature_fingerprint",
            pl.lit(graded_at or _now(), dtype=pl.Datetime("us")).alias("graded_at"),
        )
        .with_columns(side_hit_expr())
        .select(list(ACCURACY.columns))
    )


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
    """Per date and model: rows graded, rows played, MAE over played rows and over evaluation
    rows; interval coverage (share of played rows with an interval whose actual fell in it);
    rows with a line (played), the hit rate of the side chosen (pushes left out) and the Brier
    score of ``p_over`` over those rows (:func:`training.lines.line_scores`)."""
    over = (pl.col("actual_points") > pl.col("points_line")).cast(pl.Float64)
    lined = pl.col("points_line").is_not_null() & pl.col("p_over").is_not_null() & pl.col("played")
    return (
        graded.group_by("game_date", "model_id")
        .agg(
            rows=pl.len(),
            played=pl.col("played").sum(),
            mae=pl.col("absolute_error").filter(pl.col("played")).mean(),
            evaluation_rows=pl.col("is_evaluation_row").sum(),
            evaluation_mae=pl.col("absolute_error").filter(pl.col("is_evaluation_row")).mean(),
            interval_rows=pl.col("in_interval").is_not_null().sum(),
            interval_coverage=pl.col("in_interval").cast(pl.Float64).mean(),
            lines=lined.sum(),
            side_hit_rate=pl.col("side_hit").cast(pl.Float64).mean(),
            brier=((pl.col("p_over") - over) ** 2).filter(lined).mean(),
        )
        .sort("game_date", "model_id")
    )


def graded_totals(graded: pl.DataFrame) -> dict:
    """Over every graded row: MAE over played rows, interval coverage, and the line scores."""
    played = graded.filter(pl.col("played"))
    with_interval = graded.filter(pl.col("in_interval").is_not_null())
    return {
        "rows": graded.height,
        "dates": graded["game_date"].n_unique(),
        "played": played.height,
        "mae": played["absolute_error"].mean() if played.height else None,
        "interval_rows": with_interval.height,
        "interval_coverage": with_interval["in_interval"].cast(pl.Float64).mean() if with_interval.height else None,
        **line_scores(graded),
    }


def model_dir_for(model_dir: str | None, models_root: str) -> Path:
    from training.artifacts import latest_model_dir

    return Path(model_dir) if model_dir else latest_model_dir(Path(models_root))
