"""The model in production, graded: its graded predictions (``nba_predictions.prediction_accuracy``)
against the baselines (:mod:`training.baselines`) on exactly the same player-games.

Used by the ``model_worse`` alert (``task=grade``, ``task=watch``) and by the docs' model page.
A baseline's prediction comes from the feature-store row of the player-game, as in training,
so it knows only what the model knew before tip-off. The rows compared: graded player-games
where the player played and every baseline has a value (at least one earlier game this season).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.warehouse import Warehouse
from training.baselines import BASELINE_INPUTS, BASELINES, SHORT_LABELS, baseline_predictions, best_baseline_of
from training.data import FEATURE_STORE
from training.predict import ACCURACY


def graded_with_baselines(warehouse: Warehouse, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
    """Graded rows of players who played, each with every baseline's prediction of the same
    player-game (columns named as in ``training.baselines.BASELINES``); rows where a baseline
    has no value are left out. Empty when nothing is graded."""
    if not warehouse.exists(ACCURACY.name) or not warehouse.exists(FEATURE_STORE):
        return pl.DataFrame()
    graded = warehouse.read(ACCURACY.name, start=start, end=end).filter(pl.col("played"))
    if graded.is_empty():
        return pl.DataFrame()
    features = warehouse.read(
        FEATURE_STORE, start=graded["game_date"].min(), end=graded["game_date"].max(), columns=["game_id", "player_id", *BASELINE_INPUTS]
    )
    joined = graded.join(features, on=["game_id", "player_id"], how="inner")
    baselines = baseline_predictions(joined)
    return pl.concat([joined.select(list(ACCURACY.columns)), baselines], how="horizontal").drop_nulls(list(baselines.columns))


def graded_against_baselines(warehouse: Warehouse, window_dates: int) -> dict | None:
    """The newest graded model over its last ``window_dates`` graded dates: its MAE, every
    baseline's and the best one's on the same rows; None when nothing is graded."""
    if not warehouse.exists(ACCURACY.name):
        return None
    days = warehouse.dates_present(ACCURACY.name)
    if not days:
        return None
    window = days[-window_dates:]
    rows = graded_with_baselines(warehouse, window[0], window[-1])
    if rows.is_empty():
        return None
    newest = rows.sort("game_date", "predicted_at").row(-1, named=True)["model_id"]
    rows = rows.filter(pl.col("model_id") == newest)
    errors = {name: (pl.col(name) - pl.col("actual_points")).abs().mean() for name in BASELINES}
    maes = rows.select(model=pl.col("absolute_error").mean(), **errors).row(0, named=True)
    baselines = {name: {"mae": mae} for name, mae in maes.items() if name != "model"}
    best = best_baseline_of(maes["model"], baselines)
    return {
        "model_id": newest,
        "model_mae": maes["model"],
        "best_baseline": SHORT_LABELS[best["name"]],
        "best_baseline_mae": best["mae"],
        "baseline_maes": {SHORT_LABELS[name]: v["mae"] for name, v in baselines.items()},
        "rows": rows.height,
        "dates": rows["game_date"].n_unique(),
        "first_date": rows["game_date"].min(),
        "last_date": rows["game_date"].max(),
    }
