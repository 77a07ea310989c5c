"""``task=backtest``: the model against the market on the same player-games, walked forward in blocks.

How the walk stays honest (``tests/test_backtest.py`` checks each):

- **Blocks.** The range's game dates with feature-store rows, cut by calendar month
  (``backtest.block``: ``month``, ``week``, or a number of game dates), walked in order.
- **A model per block, fitted before it.** :func:`fit_block_model` is handed only the feature-store
  rows dated before the block's first date (with their actual points): the last
  ``valid_fraction / (train_fraction + valid_fraction)`` of those dates (15 / 85 by default, as
  ``task=train`` splits) validate and stop early, the earlier ones train; with ``training.refit``
  the model kept is fitted again on both; its 80 % intervals and P(over) come from the same
  validation rows (:mod:`training.intervals`), as ``task=train`` calibrates them. Production
  retrains like this. Or one model for every block, ``backtest.model_dir``: refused
  (:class:`ModelRefused`) unless every date it trained or validated on is before the range.
- **Predictions as ``task=predict`` makes them.** :func:`training.predict.prediction_rows` of the
  block's feature-store rows (features from games strictly before each date, plus the date's
  pre-game facts), with the line of :func:`training.lines.read_lines` (a slate's, else the
  prop lines captured before tip-off).
- **The blend.** ``w · model + (1 − w) · line`` where a line exists, its P(over) from the block
  model's residual quantiles (the model prediction's bin) centred on the blend. ``w`` for a block
  is fitted (:func:`fit_blend_weight`) on the scored rows of the blocks before it only; the first
  block, with none before it, uses ``backtest.initial_weight`` (0.5), and the report says so.
- **Scored rows.** A line, a prediction, and the player played (actual minutes > 0): the model,
  the line and the blend are scored on exactly these rows (:mod:`training.backtest_scores`).

Bets at real prices (:func:`priced_lines`): each bookmaker's own line for a player-game, at that
book's prices, only for books named in ``lines.real_price_books`` or lines a file flags
``real_prices``; a book with several lines for a player-game and no capture times is left out
(which one was on offer is not known).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
from omegaconf import DictConfig

from pipeline.command import UsageError
from pipeline.validation.gate import check_before_training
from pipeline.warehouse import Warehouse
from training import artifacts
from training.artifacts import SavedModel
from training.backtest_models import BLOCK_KINDS, Block, BlockModel, ModelRefused, cut_blocks, fit_block_model, given_model
from training.data import ACTUAL_MINUTES, TARGET, DataError, load_rows
from training.evaluate import tier_expr
from training.lines import USED, no_lines, read_lines, read_prop_lines
from training.predict import prediction_rows
from training.train import TrainSettings

log = logging.getLogger("pipeline.training")

BLOCK_FILE = "block.json"
ROWS_FILE = "rows.parquet"
BETS_FILE = "bets.parquet"
WEIGHT_GRID = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class BacktestSettings:
    """``backtest.*`` and ``lines.*`` of the Hydra config (conf/config.yaml)."""

    block: str
    model_dir: str | None
    initial_weight: float
    top_picks: int
    edge_points: float
    output_dir: str | None
    root: str
    bookmaker: str | None
    real_price_books: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "BacktestSettings":
        b, lines = cfg.get("backtest") or {}, cfg.get("lines") or {}
        block = str(b.get("block", "month")).strip().lower()
        if block not in BLOCK_KINDS and not (block.isdigit() and int(block) > 0):
            raise UsageError(f"backtest.block must be month, week or a number of game dates, not {b.get('block')!r}")
        weight = float(b.get("initial_weight", 0.5))
        if not 0.0 <= weight <= 1.0:
            raise UsageError(f"backtest.initial_weight must be within 0..1, not {weight}")
        top = int(b.get("top_picks", 300))
        if top < 1:
            raise UsageError(f"backtest.top_picks must be at least 1, not {top}")
        return cls(
            block=block,
            model_dir=b.get("model_dir") or None,
            initial_weight=weight,
            top_picks=top,
            edge_points=float(b.get("edge_points", 1.5)),
            output_dir=b.get("output_dir") or None,
            root=str(b.get("root", "var/backtests")),
            bookmaker=lines.get("bookmaker") or None,
            real_price_books=tuple(str(name) for name in (lines.get("real_price_books") or ())),
        )


# -- the walk ------------------------------------------------------------------------------------


def fit_blend_weight(model: np.ndarray, line: np.ndarray, actual: np.ndarray) -> float:
    """The ``w`` of ``w · model + (1 − w) · line`` with the least MAE on these rows, on a grid of
    0, 0.01, ..., 1 (the first of equal ones)."""
    model, line, actual = (np.asarray(a, dtype=np.float64) for a in (model, line, actual))
    blends = WEIGHT_GRID[:, None] * model[None, :] + (1.0 - WEIGHT_GRID[:, None]) * line[None, :]
    mae = np.abs(blends - actual[None, :]).mean(axis=1)
    return float(WEIGHT_GRID[int(np.argmin(mae))])


def priced_lines(prop_lines: pl.DataFrame | None, real_price_books: tuple[str, ...]) -> pl.DataFrame:
    """Per player-game and bookmaker with real prices: its line, ``over_price``, ``under_price``
    (used rows of books in ``real_price_books`` or flagged ``real_prices``; one line per book and
    player-game, books with several left out)."""
    schema = {"game_id": pl.String, "player_id": pl.Int32, "bookmaker": pl.String, "book_line": pl.Float64, "over_price": pl.Float64, "under_price": pl.Float64}
    if prop_lines is None or prop_lines.is_empty():
        return pl.DataFrame(schema=schema)
    real = pl.col("bookmaker").is_in(list(real_price_books)) | pl.col("real_prices").fill_null(False)
    lines = (
        prop_lines.filter(pl.col("status") == USED)
        .group_by("game_id", "player_id", "bookmaker", "points_line", "captured_at")
        .agg(pl.col("over_price").drop_nulls().first(), pl.col("under_price").drop_nulls().first(), real.any().alias("real"))
        .filter(pl.col("real"))
    )
    single = lines.filter(pl.len().over("game_id", "player_id", "bookmaker") == 1)
    return single.select("game_id", "player_id", "bookmaker", pl.col("points_line").alias("book_line"), "over_price", "under_price").cast(schema)


@dataclass
class BlockResult:
    block: Block
    model: BlockModel
    weight: float
    weight_from: dict | None  # the earlier blocks' scored rows it was fitted on (None: the initial weight)
    rows: int
    scored: int
    bets: int = 0


def predict_block(rows: pl.DataFrame, saved: SavedModel, lines: pl.DataFrame, weight: float) -> pl.DataFrame:
    """The block's rows as ``task=predict`` predicts them, with the line, the blend and what scores
    them: tier, actual points and minutes, ``played``, ``scored`` (a line, a P(over), played)."""
    predicted = prediction_rows(rows, saved, lines=lines)
    outcome = rows.select("game_id", "player_id", tier_expr().alias("tier"), TARGET, ACTUAL_MINUTES)
    out = predicted.join(outcome, on=["game_id", "player_id"], how="left", maintain_order="left")
    blend = pl.when(pl.col("points_line").is_not_null()).then(weight * pl.col("predicted_points") + (1.0 - weight) * pl.col("points_line"))
    out = out.with_columns(pl.lit(weight).alias("blend_weight"), blend.alias("blend_points"))
    blend_p_over = saved.intervals.p_over_many(out["blend_points"].to_list(), out["interval_bin"].to_list(), out["points_line"].to_list()) if out.height else []
    played = pl.col(ACTUAL_MINUTES).fill_null(0.0) > 0
    return out.with_columns(pl.Series("blend_p_over", blend_p_over, dtype=pl.Float64), played.alias("played")).with_columns(
        (pl.col("points_line").is_not_null() & pl.col("p_over").is_not_null() & pl.col("played")).alias("scored")
    )


def bets_of(block_rows: pl.DataFrame, priced: pl.DataFrame, saved: SavedModel) -> pl.DataFrame:
    """Each real-price book line of the block's played rows, with the model's P(over) at that
    book's own line, and the blend's (the blend with that line)."""
    joined = (
        block_rows.filter(pl.col("played"))
        .select("game_date", "game_id", "player_id", "predicted_points", "blend_weight", "interval_bin", TARGET)
        .join(priced, on=["game_id", "player_id"], how="inner")
        .with_columns(blend_points=pl.col("blend_weight") * pl.col("predicted_points") + (1.0 - pl.col("blend_weight")) * pl.col("book_line"))
    )
    bins, book_line = joined["interval_bin"].to_list(), joined["book_line"].to_list()
    return joined.with_columns(
        pl.Series("p_over", saved.intervals.p_over_many(joined["predicted_points"].to_list(), bins, book_line), dtype=pl.Float64),
        pl.Series("blend_p_over", saved.intervals.p_over_many(joined["blend_points"].to_list(), bins, book_line), dtype=pl.Float64),
    )


@dataclass
class Walk:
    rows: pl.DataFrame  # every feature-store row of the range, predicted (predict_block)
    bets: pl.DataFrame  # real-price book lines (bets_of)
    blocks: list[BlockResult] = field(default_factory=list)


def walk(
    rows: pl.DataFrame,
    blocks: list[Block],
    model_for: Callable[[Block, pl.DataFrame], BlockModel],
    *,
    lines: pl.DataFrame | None = None,
    priced: pl.DataFrame | None = None,
    initial_weight: float = 0.5,
) -> Walk:
    """Walk ``blocks`` in order over ``rows`` (feature-store rows with actuals): each block's
    model from ``model_for(block, rows dated before the block)``, its blend weight from the scored
    rows of the blocks before it (``initial_weight`` for the first)."""
    lines = no_lines() if lines is None else lines
    priced = priced_lines(None, ()) if priced is None else priced
    parts, bet_parts, results = [], [], []
    earlier: pl.DataFrame | None = None
    for block in blocks:
        model = model_for(block, rows.filter(pl.col("game_date") < block.start))
        if model.last_date >= block.start:
            raise ModelRefused(f"the model of block {block.start}..{block.end} learned from rows up to {model.last_date}")
        if earlier is None or earlier.is_empty():
            weight, weight_from = initial_weight, None
        else:
            weight = fit_blend_weight(earlier["predicted_points"].to_numpy(), earlier["points_line"].to_numpy(), earlier[TARGET].to_numpy())
            weight_from = {"start": str(earlier["game_date"].min()), "end": str(earlier["game_date"].max()), "rows": earlier.height}
        predicted = predict_block(rows.filter(pl.col("game_date").is_in(block.dates)), model.saved, lines, weight).with_columns(
            pl.lit(block.number).alias("block")
        )
        scored = predicted.filter(pl.col("scored"))
        earlier = scored if earlier is None else pl.concat([earlier, scored])
        bets = bets_of(predicted, priced, model.saved)
        parts.append(predicted)
        bet_parts.append(bets)
        results.append(BlockResult(block, model, weight, weight_from, predicted.height, scored.height, bets.height))
        log.info("block %s..%s: %d rows, %d scored, blend weight %.2f", block.start, block.end, predicted.height, scored.height, weight)
    return Walk(pl.concat(parts) if parts else pl.DataFrame(), pl.concat(bet_parts) if bet_parts else pl.DataFrame(), results)


def block_record(result: BlockResult) -> dict:
    """What ``block.json`` and the report say of a block: its dates, model, what each learned from."""
    model = result.model
    return {
        "block": result.block.number,
        "start": str(result.block.start),
        "end": str(result.block.end),
        "dates": len(result.block.dates),
        "model_id": model.saved.model_id,
        "model_given": model.given,
        "model_trained_through": str(model.last_date),
        "model_trained_on": model.trained_on,
        "blend_weight": result.weight,
        "blend_weight_fitted_on": result.weight_from,
        "rows": result.rows,
        "scored": result.scored,
        "bets": result.bets,
    }


def write_block_record(directory: Path, result: BlockResult) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(directory / BLOCK_FILE, block_record(result))


# -- the task ------------------------------------------------------------------------------------


@dataclass
class BacktestRun:
    directory: Path
    walk: Walk
    prop_lines: pl.DataFrame | None  # nba_raw.prop_lines rows of the range (None: no such table)
    settings: BacktestSettings
    start: dt.date
    end: dt.date


def line_range(warehouse: Warehouse) -> tuple[dt.date, dt.date]:
    """The first and last date with a used prop line: the default range of a backtest."""
    rows = read_prop_lines(warehouse, None, None)
    used = rows.filter(pl.col("status") == USED) if rows is not None else None
    if used is None or used.is_empty():
        raise UsageError("nba_raw.prop_lines has no used line to backtest against: give dates.start and dates.end, or lines in data.lines_dir")
    return used["game_date"].min(), used["game_date"].max()


def output_dir(settings: BacktestSettings, run_id: str) -> Path:
    return Path(settings.output_dir) if settings.output_dir else Path(settings.root) / run_id


def run_backtest(
    cfg: DictConfig, warehouse: Warehouse, run_id: str, start: dt.date, end: dt.date, *, backend: str = "ray"
) -> BacktestRun:
    """Walk ``start..end`` (the feature store and prop lines already built) and write each block's
    model and ``block.json``, every predicted row (``rows.parquet``) and the bets at real prices
    (``bets.parquet``) in the output directory; the report is :mod:`training.backtest_report`'s."""
    settings = BacktestSettings.from_config(cfg)
    train_settings = TrainSettings.from_config(cfg)
    given = given_model(settings.model_dir, start, end) if settings.model_dir else None
    rows = load_rows(warehouse, end=end)
    in_range = rows.filter(pl.col("game_date").is_between(start, end))
    if in_range.is_empty():
        raise DataError(f"no feature-store rows in {start}..{end}: nothing to backtest")
    history = sorted(set(rows.filter(pl.col("game_date") < end)["game_date"].to_list()))
    if given is None and history:
        critical = check_before_training(cfg, warehouse, history)
        if critical:
            raise DataError(
                f"the feature store fails {len(critical)} critical check(s) ({'; '.join(r.label for r in critical[:5])}): fix and rebuild it, "
                "or backtest on it anyway with validation.gate=false"
            )
    directory = output_dir(settings, run_id)
    prop = read_prop_lines(warehouse, start, end)

    def model_for(block: Block, before: pl.DataFrame) -> BlockModel:
        if given is not None:
            return given
        log.info("block %s..%s: fitting on %d rows dated %s..%s", block.start, block.end, before.height, before["game_date"].min(), before["game_date"].max())
        return fit_block_model(before, block, train_settings, cfg, directory / "models" / block.label, backend)

    result = walk(
        rows.filter(pl.col("game_date") <= end),
        cut_blocks(in_range["game_date"].to_list(), settings.block),
        model_for,
        lines=read_lines(warehouse, start, end, settings.bookmaker),
        priced=priced_lines(prop, settings.real_price_books),
        initial_weight=settings.initial_weight,
    )
    directory.mkdir(parents=True, exist_ok=True)
    for block in result.blocks:
        write_block_record(directory / "models" / block.block.label, block)
    result.rows.write_parquet(directory / ROWS_FILE)
    result.bets.write_parquet(directory / BETS_FILE)
    return BacktestRun(directory, result, prop, settings, start, end)


__all__ = ["BLOCK_KINDS", "BacktestRun", "BacktestSettings", "ModelRefused", "run_backtest", "walk", "fit_blend_weight", "line_range"]
