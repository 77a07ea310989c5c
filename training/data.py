"""What the model learns from and is scored on: feature-store rows, their targets, the split.

- Inputs: rows of ``nba_predictions.ml_feature_store`` only. The model matrix is
  :func:`pipeline.tables.ml_feature_store.feature_matrix` of those rows (FEATURE_COLUMNS, in
  order); prediction uses the same function, so training and serving cannot diverge.
- Target: the player's actual points, joined from ``nba_analytics.player_game_summary`` on
  ``(game_id, player_id)``, with his actual minutes (``actual_points``, ``actual_minutes``).
  Nothing else is taken from that table.
- Split: by game date, never by row, so no date is in two splits. Default: the feature store's
  game dates in order, the first 70 % for training, the next 15 % for validation (early stopping,
  model choice), the last 15 % for test (reported, never used to choose anything).
  ``training.split.valid_start`` / ``test_start`` / ``test_end`` set explicit cut dates; dates
  after ``test_end`` are not used.
- Evaluation rows (validation and test): the player played (actual minutes > 0) and had at least
  5 earlier played games this season (``games_played_season`` of player_daily_cache counts the
  played games of the same season strictly before the date). The model and every baseline are
  scored on exactly these rows.
- Training rows: the player played (actual minutes > 0), optionally with the same minimum of
  earlier games (``training.train_rows.min_prior_games``). A dressed player who did not play has
  no points to learn from; whether he plays is not known before tip-off, so prediction still
  covers him.
- Refit rows (``training.refit``): the training rows of the train and validation splits together
  (the same selection on both), for the model fitted again once early stopping has chosen its
  number of rounds. Never a test date.
- Fingerprint: of every row a fit or a score reads (:func:`used_rows`), date by date
  (:func:`date_fingerprints`), so that rows read in blocks of dates give the same fingerprint as
  rows read at once (:func:`fingerprint_of`).

Two ways to hold the rows: :func:`build_dataset` splits rows held in memory (:class:`Dataset`);
:func:`block_parts` cuts the rows of one block of dates into the same selections, for training
rows read in blocks by Ray tasks (:mod:`training.blocks`). Both use the selections below.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from pipeline.command import UsageError, parse_date
from pipeline.fingerprint import digest, partition_fingerprints
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, ID_COLUMNS, feature_matrix
from pipeline.warehouse import Warehouse

FEATURE_STORE = "nba_predictions.ml_feature_store"
PLAYER_GAME_SUMMARY = "nba_analytics.player_game_summary"
TARGET = "actual_points"
ACTUAL_MINUTES = "actual_minutes"
EVAL_MIN_PRIOR_GAMES = 5
SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """The warehouse cannot give what training needs (missing table, empty split, bad dates)."""


def read_feature_store(warehouse: Warehouse, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
    if not warehouse.exists(FEATURE_STORE):
        raise DataError(f"{FEATURE_STORE} does not exist in {warehouse.describe()}: build it first (python -m pipeline)")
    frame = warehouse.read(FEATURE_STORE, start=start, end=end)
    missing = [c for c in (*ID_COLUMNS, *FEATURE_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(f"{FEATURE_STORE} lacks column(s) {', '.join(missing)}: rebuild it")
    return frame.sort("game_date", "game_id", "player_id")


def read_actuals(warehouse: Warehouse, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
    """``(game_id, player_id)`` -> actual points and minutes (NULL minutes: did not play)."""
    if not warehouse.exists(PLAYER_GAME_SUMMARY):
        raise DataError(f"{PLAYER_GAME_SUMMARY} does not exist in {warehouse.describe()}")
    frame = warehouse.read(PLAYER_GAME_SUMMARY, start=start, end=end, columns=["game_id", "player_id", "did_not_play", "minutes", "pts"])
    return frame.select(
        "game_id",
        "player_id",
        pl.col("pts").cast(pl.Float64).alias(TARGET),
        pl.when(~pl.col("did_not_play")).then(pl.col("minutes")).cast(pl.Float64).alias(ACTUAL_MINUTES),
    )


def with_actuals(features: pl.DataFrame, actuals: pl.DataFrame) -> pl.DataFrame:
    """Feature-store rows with their target joined on (game_id, player_id); row set unchanged."""
    out = features.join(actuals, on=["game_id", "player_id"], how="left", maintain_order="left")
    if out.height != features.height:
        raise DataError("player_game_summary has duplicate (game_id, player_id) rows")
    return out


def load_rows(warehouse: Warehouse, start: dt.date | None = None, end: dt.date | None = None) -> pl.DataFrame:
    """Feature-store rows in ``start..end`` with ``actual_points`` and ``actual_minutes``."""
    return with_actuals(read_feature_store(warehouse, start, end), read_actuals(warehouse, start, end))


# -- the split ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Cut dates: train < valid_start <= valid < test_start <= test <= test_end."""

    train_start: dt.date
    valid_start: dt.date
    test_start: dt.date
    test_end: dt.date

    def label(self, day: dt.date) -> str | None:
        if day < self.train_start or day > self.test_end:
            return None
        if day < self.valid_start:
            return "train"
        return "valid" if day < self.test_start else "test"

    def expr(self) -> pl.Expr:
        d = pl.col("game_date")
        return (
            pl.when((d >= self.train_start) & (d < self.valid_start))
            .then(pl.lit("train"))
            .when((d >= self.valid_start) & (d < self.test_start))
            .then(pl.lit("valid"))
            .when((d >= self.test_start) & (d <= self.test_end))
            .then(pl.lit("test"))
        )

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in asdict(self).items()}


def _date(value: object, what: str) -> dt.date | None:
    if value is None or value == "":
        return None
    try:
        return parse_date(value, f"training.split.{what}")
    except UsageError as exc:
        raise DataError(str(exc)) from None


def make_split(dates: Sequence[dt.date], settings: Mapping[str, object] | None = None) -> Split:
    """The chronological split of ``dates`` (the game dates with feature-store rows).

    ``settings`` (``training.split``): ``train_fraction`` / ``valid_fraction`` of the dates for
    the default cuts, and optional explicit ``valid_start``, ``test_start``, ``test_end``. An
    explicit cut date need not be a game date; each split must keep at least one game date.
    """
    settings = dict(settings or {})
    days = sorted(set(dates))
    if len(days) < 3:
        raise DataError(f"need at least 3 game dates with feature-store rows to split, found {len(days)}")
    train_fraction = float(settings.get("train_fraction") or 0.70)
    valid_fraction = float(settings.get("valid_fraction") or 0.15)
    if not (0 < train_fraction and 0 < valid_fraction and train_fraction + valid_fraction < 1):
        raise DataError(f"split fractions must be positive and leave room for test: train {train_fraction}, valid {valid_fraction}")
    n = len(days)
    i_valid = min(max(1, round(n * train_fraction)), n - 2)
    i_test = min(max(i_valid + 1, round(n * (train_fraction + valid_fraction))), n - 1)
    valid_start = _date(settings.get("valid_start"), "valid_start") or days[i_valid]
    test_start = _date(settings.get("test_start"), "test_start") or days[i_test]
    test_end = _date(settings.get("test_end"), "test_end") or days[-1]
    if not valid_start < test_start <= test_end:
        raise DataError(f"split dates out of order: need valid_start {valid_start} < test_start {test_start} <= test_end {test_end}")
    split = Split(days[0], valid_start, test_start, test_end)
    counts = {name: sum(1 for d in days if split.label(d) == name) for name in SPLITS}
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise DataError(f"split {split.as_dict()} leaves no game date in: {', '.join(empty)} (data covers {days[0]}..{days[-1]})")
    return split


def assign_split(frame: pl.DataFrame, split: Split) -> pl.DataFrame:
    return frame.with_columns(split=split.expr())


# -- row selections ----------------------------------------------------------------------------


def played() -> pl.Expr:
    return pl.col(ACTUAL_MINUTES).fill_null(0.0) > 0.0


def evaluation_rows() -> pl.Expr:
    """Played (minutes > 0) with at least 5 earlier played games this season."""
    return played() & (pl.col("games_played_season").fill_null(0) >= EVAL_MIN_PRIOR_GAMES)


def opening_rows() -> pl.Expr:
    """Played (minutes > 0) with fewer than 5 earlier played games this season: not evaluation
    rows; the report's "Opening weeks" section scores them apart."""
    return played() & (pl.col("games_played_season").fill_null(0) < EVAL_MIN_PRIOR_GAMES)


def training_rows(min_prior_games: int = 0) -> pl.Expr:
    expr = played()
    if min_prior_games:
        expr = expr & (pl.col("games_played_season").fill_null(0) >= min_prior_games)
    return expr


def used_rows(min_prior_games: int = 0) -> pl.Expr:
    """Every row a fit or a score reads: the training rows of the train and validation splits (the
    refit's, which hold the early-stopping fit's) and the evaluation rows of the validation and
    test splits. Needs the ``split`` column (:func:`assign_split`)."""
    split = pl.col("split")
    return (split.is_in(["train", "valid"]) & training_rows(min_prior_games)) | (split.is_in(["valid", "test"]) & evaluation_rows())


# What the fingerprint covers of each used row: what the model reads, its target, the row's identity and split.
FINGERPRINT_COLUMNS = (*ID_COLUMNS, *FEATURE_COLUMNS, TARGET, ACTUAL_MINUTES, "split")


@dataclass
class Dataset:
    """The rows of one training run: all three splits, with their target and selections."""

    rows: pl.DataFrame  # every feature-store row in the split's dates, with `split`
    split: Split
    train: pl.DataFrame  # training rows of the train split
    valid: pl.DataFrame  # evaluation rows of the validation split (early stopping, choice)
    test: pl.DataFrame  # evaluation rows of the test split
    refit: pl.DataFrame  # training rows of the train and validation splits (the refit's rows)
    fingerprint: str

    def opening(self, part: str = "test") -> pl.DataFrame:
        """The split's played rows with fewer than 5 earlier games this season (:func:`opening_rows`)."""
        return self.rows.filter((pl.col("split") == part) & opening_rows())

    def matrices(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        frame = getattr(self, part)
        return feature_matrix(frame), frame[TARGET].to_numpy().astype(np.float64)

    def rows_in(self, part: str) -> int:
        """Rows of ``train``, ``valid``, ``test`` or ``refit``."""
        return getattr(self, part).height

    def window(self, part: str) -> dict[str, str]:
        """First and last game date of ``train``, ``valid``, ``test`` or ``refit``."""
        days = getattr(self, part)["game_date"]
        return {"start": days.min().isoformat(), "end": days.max().isoformat()}


def data_fingerprint(frame: pl.DataFrame) -> str:
    """Content fingerprint of the rows used (features, target, split), independent of row order."""
    return fingerprint_of(partition_fingerprints(frame.select(sorted(frame.columns))))


def date_fingerprints(labelled: pl.DataFrame, min_prior_games: int = 0) -> dict[dt.date, str]:
    """{date: fingerprint} of the used rows (:func:`used_rows`) of split-labelled rows. A date's
    fingerprint depends on that date's rows alone, so blocks of dates can be fingerprinted apart."""
    used = labelled.filter(used_rows(min_prior_games)).select(FINGERPRINT_COLUMNS)
    return partition_fingerprints(used.select(sorted(used.columns)))


def fingerprint_of(per_date: Mapping[dt.date, str]) -> str:
    """The training data's fingerprint from its dates' (:func:`date_fingerprints`)."""
    return digest(f"{day.isoformat()}={fp}" for day, fp in sorted(per_date.items()))


def build_dataset(rows: pl.DataFrame, split: Split, *, min_prior_games: int = 0) -> Dataset:
    """Split ``rows`` (feature-store rows with actuals) into training and evaluation sets."""
    labelled = assign_split(rows, split).filter(pl.col("split").is_not_null())
    train = labelled.filter((pl.col("split") == "train") & training_rows(min_prior_games))
    refit = labelled.filter(pl.col("split").is_in(["train", "valid"]) & training_rows(min_prior_games))
    valid = labelled.filter((pl.col("split") == "valid") & evaluation_rows())
    test = labelled.filter((pl.col("split") == "test") & evaluation_rows())
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        if part.is_empty():
            raise DataError(f"no {name} rows in {split.as_dict()}")
        check_targets(part, name)
    return Dataset(labelled, split, train, valid, test, refit, fingerprint_of(date_fingerprints(labelled, min_prior_games)))


def check_targets(rows: pl.DataFrame, name: str) -> None:
    """Refuse rows a fit or a score would read without their actual points, naming their dates."""
    missing = rows.filter(pl.col(TARGET).is_null())
    if missing.height:
        days = sorted(set(missing["game_date"].to_list()))
        shown = ", ".join(d.isoformat() for d in days[:5]) + (f" and {len(days) - 5} more" if len(days) > 5 else "")
        raise DataError(
            f"{missing.height} {name} row(s) without actual points in {PLAYER_GAME_SUMMARY} on {shown} "
            f"(e.g. game {missing['game_id'][0]}, player {missing['player_id'][0]}): player_game_summary is incomplete"
        )


# -- one block of dates ------------------------------------------------------------------------

# The columns of a block's training rows (what a fit reads, and the date, to count rows per date)
# and of its evaluation and opening-weeks rows (what the scores and the report read).
FIT_COLUMNS = ("game_date", *FEATURE_COLUMNS, TARGET)
ROW_COLUMNS = (*ID_COLUMNS, *FEATURE_COLUMNS, TARGET, ACTUAL_MINUTES)


@dataclass
class BlockParts:
    """The selections of one block of dates (:func:`block_parts`); a part the block's split does
    not use is empty."""

    fit: pl.DataFrame  # training rows of the train and validation splits (FIT_COLUMNS)
    evaluation: pl.DataFrame  # evaluation rows of the validation and test splits (ROW_COLUMNS)
    opening: pl.DataFrame  # opening-weeks rows of the train and test splits (ROW_COLUMNS)
    fingerprints: dict[dt.date, str]  # of the used rows, per date (:func:`date_fingerprints`)


def block_parts(rows: pl.DataFrame, split: Split, *, min_prior_games: int = 0) -> BlockParts:
    """Feature-store rows of some dates, with their actuals (:func:`with_actuals`), cut into what
    training reads of them: the same selections :func:`build_dataset` makes of all rows, in the
    rows' order (sort them first: :func:`read_feature_store` does)."""
    labelled = assign_split(rows, split).filter(pl.col("split").is_not_null())
    part = pl.col("split")
    parts = BlockParts(
        fit=labelled.filter(part.is_in(["train", "valid"]) & training_rows(min_prior_games)).select(FIT_COLUMNS),
        evaluation=labelled.filter(part.is_in(["valid", "test"]) & evaluation_rows()).select(ROW_COLUMNS),
        opening=labelled.filter(part.is_in(["train", "test"]) & opening_rows()).select(ROW_COLUMNS),
        fingerprints=date_fingerprints(labelled, min_prior_games),
    )
    check_targets(labelled.filter(used_rows(min_prior_games)), "training or evaluation")
    return parts
