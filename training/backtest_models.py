"""The models of a backtest's blocks: fitted on the rows before each block, or one given model
that must have learned nothing of the range (:mod:`training.backtest`).

- :func:`cut_blocks`: the range's game dates by calendar month, ISO week or N dates.
- :func:`fit_block_model`: a block's model from rows dated before it only (the caller hands it
  nothing else, and :func:`block_dataset` refuses a row on or after the block's first date):
  training and validation dates in ``training.split``'s proportions, early stopping, the refit,
  intervals calibrated on the validation rows; saved with ``intervals.json``.
- :func:`given_model`: ``backtest.model_dir`` for every block, refused (:class:`ModelRefused`)
  when its training or validation rows (``metrics.json``) reach the range's first date.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import polars as pl
from omegaconf import DictConfig

from pipeline.command import UsageError
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, ID_COLUMNS, feature_matrix
from training import artifacts, intervals
from training.artifacts import SavedModel, load_model
from training.data import (
    ACTUAL_MINUTES,
    TARGET,
    DataError,
    Dataset,
    Split,
    assign_split,
    data_fingerprint,
    evaluation_rows,
    training_rows,
)
from training.evaluate import tier_expr
from training.train import TrainSettings, fit

BLOCK_KINDS = ("month", "week")


class ModelRefused(UsageError):
    """``backtest.model_dir`` names a model that cannot be backtested on the range."""


# -- blocks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    number: int
    dates: tuple[dt.date, ...]

    @property
    def start(self) -> dt.date:
        return self.dates[0]

    @property
    def end(self) -> dt.date:
        return self.dates[-1]

    @property
    def label(self) -> str:
        return f"{self.number:02d}_{self.start}_{self.end}"


def cut_blocks(dates: list[dt.date], block: str) -> list[Block]:
    """The game dates in order, cut by calendar month, ISO week, or every N dates (``block``)."""
    days = sorted(set(dates))
    if block == "month":
        key: Callable[[tuple[int, dt.date]], object] = lambda item: (item[1].year, item[1].month)  # noqa: E731
    elif block == "week":
        key = lambda item: item[1].isocalendar()[:2]  # noqa: E731
    else:
        size = int(block)
        key = lambda item: item[0] // size  # noqa: E731
    groups = itertools.groupby(enumerate(days), key=key)
    return [Block(number, tuple(d for _, d in group)) for number, (_, group) in enumerate(groups, start=1)]


# -- the model of a block ------------------------------------------------------------------------


@dataclass
class BlockModel:
    saved: SavedModel
    last_date: dt.date  # the last date of a row the model trained or stopped early on
    trained_on: dict  # the windows, rows and fingerprint of what it learned from (block.json)
    given: bool = False


def block_split(days: list[dt.date], split_settings: Mapping[str, object], block: Block) -> Split:
    """Training and validation dates among ``days`` (every one before the block) in the
    proportions of ``training.split``'s fractions; the block is the split's test window."""
    train_fraction = float(split_settings.get("train_fraction") or 0.70)
    valid_fraction = float(split_settings.get("valid_fraction") or 0.15)
    n = len(days)
    i_valid = min(max(1, round(n * train_fraction / (train_fraction + valid_fraction))), n - 1)
    return Split(days[0], days[i_valid], block.start, block.end)


def block_dataset(before: pl.DataFrame, split: Split, min_prior_games: int) -> Dataset:
    """The training, validation and refit rows (selected as :func:`training.data.build_dataset`
    selects them) of rows dated before the block; there is no test split: the block's rows are
    not among these rows at all."""
    if before.filter(pl.col("game_date") >= split.test_start).height:
        raise ValueError(f"rows on or after {split.test_start} handed to the model of the block starting then")
    labelled = assign_split(before, split).filter(pl.col("split").is_not_null())
    train = labelled.filter((pl.col("split") == "train") & training_rows(min_prior_games))
    valid = labelled.filter((pl.col("split") == "valid") & evaluation_rows())
    refit = labelled.filter(pl.col("split").is_in(["train", "valid"]) & training_rows(min_prior_games))
    for name, part in (("training", train), ("validation", valid)):
        if part.is_empty():
            raise DataError(f"no {name} rows before {split.test_start} ({split.as_dict()}): the block has no history to fit a model on")
    used = refit.vstack(valid).unique(subset=["game_id", "player_id"], keep="first", maintain_order=True)
    used = used.select(*ID_COLUMNS, *FEATURE_COLUMNS, TARGET, ACTUAL_MINUTES, "split")
    return Dataset(labelled, split, train, valid, valid.clear(), refit, data_fingerprint(used))


def _window(frame: pl.DataFrame) -> dict:
    return {"start": str(frame["game_date"].min()), "end": str(frame["game_date"].max()), "rows": frame.height}


def fit_block_model(
    before: pl.DataFrame, block: Block, settings: TrainSettings, cfg: DictConfig | None, directory: Path, backend: str = "ray"
) -> BlockModel:
    """The block's model from ``before`` (feature-store rows with actuals, all dated before the
    block), saved in ``directory`` with its intervals and ``block.json``."""
    days = sorted(set(before["game_date"].to_list()))
    if len(days) < 2:
        raise DataError(f"block {block.start}..{block.end}: {len(days)} game date(s) with feature-store rows before it; a model needs more history")
    dataset = block_dataset(before, block_split(days, settings.split, block), settings.min_prior_games)
    fitted = fit(settings, dataset, cfg, run_name=f"backtest-{block.label}", backend=backend)
    kept = fitted.kept
    calibration = calibrate(dataset, fitted.booster)
    created = dt.datetime.now(dt.timezone.utc)
    model_id = artifacts.model_id_of(kept.booster, created)
    saved = SavedModel(directory, kept.booster, artifacts.model_meta(model_id, kept.booster, settings.record(), created), calibration)
    trained_on = {
        "train": _window(dataset.train),
        "valid": _window(dataset.valid),
        "refit": _window(dataset.refit) if fitted.refit is not None else None,
        "best_iteration": fitted.best_iteration,
        "rounds_kept": kept.rounds,
        "data_fingerprint": dataset.fingerprint,
        "backend": fitted.backend,
    }
    artifacts.save_model(directory, kept.booster, saved.meta)
    calibration.save(directory)
    return BlockModel(saved, max(dataset.refit["game_date"].max(), dataset.valid["game_date"].max()), trained_on)


def calibrate(dataset: Dataset, early_stopping_booster) -> intervals.Calibration:
    """Intervals as ``task=train`` calibrates them: the early-stopping fit's residuals on the
    validation rows (which it did not learn from), widened out of time."""
    valid = dataset.valid
    predicted = early_stopping_booster.predict(feature_matrix(valid))
    actual = valid[TARGET].to_numpy()
    tiers = valid.select(tier_expr()).to_series().to_list()
    levels, _ = intervals.out_of_time_levels(predicted, actual, tiers, valid["game_date"].to_list())
    return intervals.calibrate(predicted, actual, tiers, calibrated_on={"split": "valid", **_window(valid)}, levels=levels)


def trained_through(metrics: Mapping) -> dt.date:
    """The last date of a row a trained model learned from or stopped early on (metrics.json)."""
    ends = [metrics["train"]["end"], metrics["valid"]["end"]]
    refit = (metrics.get("fit") or {}).get("refit")
    if refit:
        ends.append(refit["end"])
    return max(dt.date.fromisoformat(str(e)) for e in ends)


def given_model(directory: str | Path, start: dt.date, end: dt.date) -> BlockModel:
    """``backtest.model_dir``, for every block: refused unless every date it trained or validated
    on is before ``start``, and unless it has intervals (P(over) needs them)."""
    directory = Path(directory)
    saved = load_model(directory)
    metrics_path = directory / artifacts.METRICS_FILE
    if not metrics_path.exists():
        raise ModelRefused(
            f"model {saved.model_id} ({directory}) has no {artifacts.METRICS_FILE}: the dates it was trained on are unknown, "
            "so it cannot be backtested; leave backtest.model_dir unset to fit a model per block"
        )
    metrics = json.loads(metrics_path.read_text())
    last = trained_through(metrics)
    if last >= start:
        raise ModelRefused(
            f"model {saved.model_id} ({directory}) trained or validated on rows up to {last} (training {metrics['train']['start']}.."
            f"{metrics['train']['end']}, validation {metrics['valid']['start']}..{metrics['valid']['end']}), which reaches into the "
            f"backtest's range {start}..{end}: a backtest takes only a model fitted on dates before it; fit one with "
            f"training.split.test_start={start} (and valid_start before it), or leave backtest.model_dir unset to fit one per block"
        )
    if saved.intervals is None:
        raise ModelRefused(f"model {saved.model_id} ({directory}) has no intervals.json, so no P(over): retrain it")
    windows = {"train": metrics["train"], "valid": {k: metrics["valid"][k] for k in ("start", "end", "rows")}, "refit": (metrics.get("fit") or {}).get("refit")}
    return BlockModel(saved, last, {**windows, "model_dir": str(directory)}, given=True)
