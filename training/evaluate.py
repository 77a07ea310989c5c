"""Scores of the model and the baselines on one set of evaluation rows.

Every figure is computed on the same rows for every predictor: the caller passes one frame of
evaluation rows and one prediction column per predictor (``model``, ``rules``, ``last10``,
``season_avg``); a predictor without a value on one of those rows is an error, not a smaller row set.

- ``mae``, ``rmse``, ``bias`` (mean of predicted − actual), ``within_1`` / ``within_3`` /
  ``within_5``: share of rows whose absolute error is at most 1, 3, 5 points.
- Tiers by recent minutes, ``minutes_avg_last_10`` (the player's last 10 played games before
  the date, player_daily_cache): ``bench`` < 15, ``role`` 15–25, ``starter`` 25–32, ``star`` ≥ 32
  minutes. Recent minutes, not tonight's, so the tier is known before tip-off.
- Months: calendar month of the game date.
- Opening weeks (:func:`opening_weeks`): not evaluation rows but the played rows with fewer than
  5 earlier games this season, scored apart, overall and by earlier games (0, 1-2, 3-4); the
  caller fills every predictor's missing values first, so all are scored on the same rows.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import polars as pl

from training.data import TARGET

TIERS: tuple[tuple[str, float, float], ...] = (
    ("bench", float("-inf"), 15.0),
    ("role", 15.0, 25.0),
    ("starter", 25.0, 32.0),
    ("star", 32.0, float("inf")),
)
TIER_COLUMN = "minutes_avg_last_10"
WITHIN = (1, 3, 5)
OPENING_GROUPS: tuple[tuple[str, int, int], ...] = (("0", 0, 0), ("1-2", 1, 2), ("3-4", 3, 4))


def tier_expr() -> pl.Expr:
    minutes = pl.col(TIER_COLUMN)
    expr = pl.when(minutes.is_null()).then(pl.lit("unknown"))
    for name, low, high in TIERS:
        expr = expr.when((minutes >= low) & (minutes < high)).then(pl.lit(name))
    return expr.otherwise(pl.lit("unknown"))


def scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.shape != predicted.shape:
        raise ValueError(f"{predicted.shape[0]} predictions for {actual.shape[0]} rows")
    if np.isnan(predicted).any():
        raise ValueError(f"{int(np.isnan(predicted).sum())} of {predicted.size} predictions are missing")
    error = predicted - actual
    absolute = np.abs(error)
    out = {
        "mae": float(absolute.mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "bias": float(error.mean()),
        "rows": int(actual.size),
    }
    for k in WITHIN:
        out[f"within_{k}"] = float((absolute <= k).mean())
    return out


def scored_frame(rows: pl.DataFrame, predictions: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """The rows' date, tier and actual points with one column per predictor."""
    frame = rows.select(
        "game_date",
        pl.col("game_date").dt.strftime("%Y-%m").alias("month"),
        tier_expr().alias("tier"),
        pl.col(TARGET).cast(pl.Float64).alias("actual"),
    )
    for name, values in predictions.items():
        frame = frame.with_columns(pl.Series(name, np.asarray(values, dtype=np.float64)))
    return frame


def grouped(frame: pl.DataFrame, by: str, predictors: list[str], order: list[str] | None = None) -> list[dict]:
    """Per group: rows and each predictor's MAE (and the first predictor's mean residual).

    Computed with numpy over each group's rows in row order, so the figures are the same to the
    last bit from run to run (a parallel group-by sums in varying order).
    """
    keys = frame[by].to_numpy()
    present = set(keys.tolist())
    groups = [g for g in order if g in present] if order else sorted(present)
    groups += sorted(present - set(groups))
    actual = frame["actual"].to_numpy()
    out = []
    for group in groups:
        mask = keys == group
        row: dict = {by: group, "rows": int(mask.sum())}
        for name in predictors:
            row[name] = float(np.abs(frame[name].to_numpy()[mask] - actual[mask]).mean())
        row["bias"] = float((frame[predictors[0]].to_numpy()[mask] - actual[mask]).mean())
        out.append(row)
    return out


def evaluate(rows: pl.DataFrame, predictions: Mapping[str, np.ndarray]) -> dict:
    """Overall scores per predictor, and MAE by tier and by month, all on the same rows."""
    actual = rows[TARGET].to_numpy().astype(np.float64)
    overall = {name: scores(actual, values) for name, values in predictions.items()}
    frame = scored_frame(rows, predictions)
    names = list(predictions)
    return {
        "overall": overall,
        "by_tier": grouped(frame, "tier", names, order=[t[0] for t in TIERS] + ["unknown"]),
        "by_month": grouped(frame, "month", names),
        "start": rows["game_date"].min().isoformat(),
        "end": rows["game_date"].max().isoformat(),
        "rows": rows.height,
    }


def opening_group_expr() -> pl.Expr:
    games = pl.col("games_played_season").fill_null(0)
    expr = pl.when(games < 0).then(pl.lit("unknown"))
    for name, low, high in OPENING_GROUPS:
        expr = expr.when(games.is_between(low, high)).then(pl.lit(name))
    return expr.otherwise(pl.lit(f">{OPENING_GROUPS[-1][2]}"))


def opening_weeks(rows: pl.DataFrame, predictions: Mapping[str, np.ndarray]) -> dict:
    """MAE per predictor on played rows with fewer than 5 earlier games, overall and by earlier
    games (0, 1-2, 3-4), every predictor on the same rows (a missing value is an error)."""
    actual = rows[TARGET].to_numpy().astype(np.float64)
    overall = {name: scores(actual, values) for name, values in predictions.items()} if rows.height else {}
    frame = scored_frame(rows, predictions).with_columns(rows.select(opening_group_expr().alias("earlier_games")))
    names = list(predictions)
    return {
        "rows": rows.height,
        "overall": {name: {"mae": s["mae"], "bias": s["bias"], "rows": s["rows"]} for name, s in overall.items()},
        "by_earlier_games": grouped(frame, "earlier_games", names, order=[g[0] for g in OPENING_GROUPS]) if rows.height else [],
    }
