"""Training rows read in blocks (training.blocks): how dates are cut into blocks, by hand; that the
blocks hold exactly the rows, order, selections and fingerprint of the rows read at once
(training.data); that Ray Train's shards (training.shards.BlockShards) give each block to one
worker; that scoring block by block in Ray tasks gives the figures scoring in this process gives;
and that a row without its target is refused naming it.

On a small synthetic warehouse (a real DuckDB file: a feature store and the actual points of 40
game dates) and a local Ray runtime; no Ray Train run (tests/test_training_at_scale.py has those).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from pipeline.state import OK, RUN_STATE, state_rows, state_write, utcnow
from pipeline.tables import registry
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURES, ID_COLUMNS, feature_matrix
from pipeline.warehouse import PartitionWrite
from pipeline.warehouse.duckdb import DuckDBWarehouse
from training.baselines import BASELINE_INPUTS
from training.blocks import balanced, cut_blocks, read_training_rows
from training.data import ACTUAL_MINUTES, FEATURE_STORE, FIT_COLUMNS, PLAYER_GAME_SUMMARY, ROW_COLUMNS, TARGET, DataError, Split, build_dataset, data_fingerprint, load_rows, make_split
from training.scoring import calibrate_intervals, evaluate_rows, score, score_opening_weeks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

D0 = dt.date(2024, 1, 1)


def day(i: int) -> dt.date:
    return D0 + dt.timedelta(days=i)


# -- cutting dates into blocks, by hand --------------------------------------------------------


def test_balanced_groups_are_contiguous_never_empty_and_close_to_equal_weight():
    days = [day(i) for i in range(6)]
    # Weights 1,1,1,1,1,1 in 3 groups: a group ends once the groups so far hold 2, 4.
    assert balanced(days, [1] * 6, 3) == [days[0:2], days[2:4], days[4:6]]
    # 5,1,1,1,1,1 (total 10) in 2: the first group holds 5 >= 10/2 after one day.
    assert balanced(days, [5, 1, 1, 1, 1, 1], 2) == [days[0:1], days[1:6]]
    # 1,1,1,1,1,10 in 3: shares 13/3 and 26/3 are reached only by the last day, so each of the
    # last two days must start a group of its own.
    assert balanced(days, [1, 1, 1, 1, 1, 10], 3) == [days[0:4], days[4:5], days[5:6]]


def test_blocks_stay_inside_a_split_hold_at_most_block_rows_and_come_in_multiples_of_the_workers():
    days = [day(i) for i in range(20)]
    split = Split(days[0], days[14], days[17], days[19])  # train 0-13, valid 14-16, test 17-19
    rows = {d: 100 for d in days}
    blocks = cut_blocks(days, rows, split, block_rows=500)
    # train: 1,400 rows -> ceil(1400 / 500) = 3 blocks of 5, 5 and 4 dates (shares 466.7, 933.3);
    # valid and test: 300 rows -> one block each.
    assert [(b.split, b.start, b.end) for b in blocks] == [
        ("train", days[0], days[4]), ("train", days[5], days[9]), ("train", days[10], days[13]),
        ("valid", days[14], days[16]), ("test", days[17], days[19]),
    ]  # fmt: skip
    # Two workers: train 3 -> 4 blocks, valid 1 -> 2 (each worker gets as many); test stays 1.
    two = cut_blocks(days, rows, split, block_rows=500, multiple_of=2)
    assert Counter(b.split for b in two) == {"train": 4, "valid": 2, "test": 1}
    assert [d for b in two for d in b.dates] == days  # every date once, in order
    # A date the run state does not know weighs the mean of the others: 19 dates of 100 and one
    # unknown make 2,000 rows, 4 train blocks at block_rows=400 (1,400 / 400 = 3.5).
    unknown = {**rows, days[3]: 0}
    assert Counter(b.split for b in cut_blocks(days, unknown, split, block_rows=400))["train"] == 4


def test_a_split_with_fewer_dates_than_workers_is_refused_by_name():
    days = [day(i) for i in range(10)]
    split = Split(days[0], days[8], days[9], days[9])  # one validation date
    with pytest.raises(DataError, match=r"the valid split \(2024-01-09\.\.2024-01-09\) has 1 game date\(s\), fewer than the 2"):
        cut_blocks(days, {d: 10 for d in days}, split, block_rows=100, multiple_of=2)


# -- a small warehouse -------------------------------------------------------------------------

DATES = 40
PLAYERS = 30


def synthetic_rows(seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Feature-store rows (every feature random, games_played_season = the date's index, so the
    first 5 dates are opening weeks) and their actual points and minutes (every 7th row a DNP)."""
    rng = np.random.default_rng(seed)
    n = DATES * PLAYERS
    index = np.arange(n)
    date_index = index // PLAYERS
    player = index % PLAYERS
    ids = {
        "game_id": [f"g{d:03d}-{p // 2:02d}" for d, p in zip(date_index, player)],
        "game_date": [day(int(d)) for d in date_index],
        "season": ["2023-24"] * n, "season_type": ["regular"] * n,
        "player_id": player.astype(np.int32), "player_name": [f"p{p}" for p in player],
        "team_abbr": ["AAA"] * n, "opponent_abbr": ["BBB"] * n,
    }  # fmt: skip
    columns = {}
    for name, dtype in FEATURES.items():
        if dtype == pl.Boolean:
            columns[name] = rng.random(n) < 0.5
        elif dtype.is_integer():
            columns[name] = rng.integers(0, 30, n)
        else:
            values = rng.normal(15, 6, n)
            # Some NULLs, but where the baselines read (on real rows they have a value on every evaluation row).
            columns[name] = values if name in BASELINE_INPUTS else np.where(rng.random(n) < 0.05, np.nan, values)
    columns["games_played_season"] = date_index
    features = pl.DataFrame({**ids, **columns}).with_columns(pl.col(c).cast(t) for c, t in FEATURES.items())
    features = features.with_columns(pl.col(c).fill_nan(None) for c, t in FEATURES.items() if t.is_float())
    points = rng.poisson(features["points_avg_last_5"].fill_null(10).clip(0, 40).to_numpy())
    actuals = pl.DataFrame(
        {
            "game_id": ids["game_id"], "game_date": ids["game_date"], "player_id": ids["player_id"],
            "did_not_play": index % 7 == 3, "minutes": rng.uniform(5, 40, n), "pts": points,
        }  # fmt: skip
    ).with_columns(minutes=pl.when(pl.col("did_not_play")).then(None).otherwise(pl.col("minutes")))
    return features, actuals


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("blocks") / "warehouse.duckdb"
    features, actuals = synthetic_rows()
    dates = sorted(set(features["game_date"].to_list()))
    with DuckDBWarehouse(path) as wh:
        for name, rows in ((FEATURE_STORE, features), (PLAYER_GAME_SUMMARY, actuals)):
            wh.ensure_table(registry()[name].warehouse_schema)
            wh.write([PartitionWrite(name, dates, rows)])
        wh.ensure_table(RUN_STATE)
        counts = dict(features.group_by("game_date").len().iter_rows())
        now = utcnow()
        state = state_rows(
            FEATURE_STORE, dates, status=OK, attempts={d: 0 for d in dates}, input_fingerprints={d: "x" for d in dates},
            rows_written=counts, started_at=now, finished_at=now, node=None, run_id="test",
        )  # fmt: skip
        wh.write([state_write(FEATURE_STORE, state)])
    return path


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def reference(path, settings=None):
    """The rows read at once, as training.data reads them (the way before blocks)."""
    with DuckDBWarehouse(path, read_only=True) as wh:
        rows = load_rows(wh)
    return build_dataset(rows, make_split(rows["game_date"].unique().to_list(), settings), min_prior_games=0)


def test_blocks_hold_the_counts_dates_and_fingerprint_of_the_rows_read_at_once(warehouse):
    dataset = reference(warehouse)
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        rows = read_training_rows(wh, block_rows=200, keep=False)  # the driver reads; no Ray
    assert rows.refs is None and not rows.workers_read
    # 40 dates of 30 rows: train 28 dates (840 rows) in ceil(840 / 200) = 5 blocks, valid and test 6 dates (180) in one each.
    assert Counter(s.block.split for s in rows.summaries) == {"train": 5, "valid": 1, "test": 1}
    assert rows.split == dataset.split
    for name in ("train", "valid", "test", "refit"):
        assert rows.rows_in(name) == dataset.rows_in(name) > 0, name
        assert rows.window(name) == dataset.window(name), name
    assert rows.rows_in("opening_train") == dataset.opening("train").height > 0
    assert rows.used_dates == sorted(set(dataset.train["game_date"]) | set(dataset.valid["game_date"]) | set(dataset.test["game_date"]))
    assert rows.fingerprint == dataset.fingerprint
    # As training fingerprinted its rows before blocks: every row a fit or a score reads, once.
    used = pl.concat([dataset.refit, dataset.valid, dataset.test]).unique(subset=["game_id", "player_id"], keep="first", maintain_order=True)
    assert rows.fingerprint == data_fingerprint(used.select(*ID_COLUMNS, *FEATURE_COLUMNS, TARGET, ACTUAL_MINUTES, "split"))
    assert rows.driver_bytes > rows.read_bytes  # the driver read every block, and got their summaries


def test_blocks_in_the_object_store_hold_the_rows_read_at_once_in_their_order(warehouse, ray_runtime):
    dataset = reference(warehouse)
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        rows = read_training_rows(wh, block_rows=200)
    assert rows.frame("train").equals(dataset.train.select(FIT_COLUMNS))
    assert rows.frame("refit").equals(dataset.refit.select(FIT_COLUMNS))
    assert rows.frame("valid").equals(dataset.valid.select(ROW_COLUMNS))
    assert rows.frame("test").equals(dataset.test.select(ROW_COLUMNS))
    assert rows.frame("opening_test").equals(dataset.opening("test").select(ROW_COLUMNS))
    # As Ray Train's loop makes its matrix of them: the same numbers, in the same order.
    np.testing.assert_array_equal(feature_matrix(rows.frame("train")), feature_matrix(dataset.train))


def test_ray_train_shards_give_each_block_to_one_worker_in_date_order(warehouse, ray_runtime):
    from training.shards import BlockShards

    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        rows = read_training_rows(wh, block_rows=200, workers=2)
    blocks = [s.block for s in rows.summaries if s.block.split == "train"]
    assert len(blocks) == 6  # 5 rounded up to a multiple of 2

    def dates_seen(world: int) -> list[list[dt.date]]:
        iterators = BlockShards().configure({"train": rows.datasets(world, refit=False)["train"]}, world, None, None)
        return [
            [d for table in shard["train"].iter_batches(batch_size=None, batch_format="pyarrow") for d in table["game_date"].to_pylist()]
            for shard in iterators
        ]

    # Two workers: worker 0 gets blocks 0, 2, 4, worker 1 blocks 1, 3, 5, each in date order.
    first, second = dates_seen(2)
    expected = [sorted(set().union(*(blocks[i].dates for i in range(rank, 6, 2)))) for rank in (0, 1)]
    assert sorted(set(first)) == expected[0] and sorted(set(second)) == expected[1]
    assert first == sorted(first) and second == sorted(second)
    assert len(first) + len(second) == rows.rows_in("train")
    # Three workers: blocks r and r + 3 each, whole, although their dates differ (5 + 5, 5 + 5 and
    # 4 + 4 of the 28 dates: the balanced cut of 28 dates in 6 blocks holds 5, 5, 4, 5, 5, 4), so
    # their rows differ: whole blocks, not an equal number of rows each (Ray's default).
    thirds = dates_seen(3)
    assert [len(set(seen)) for seen in thirds] == [10, 10, 8]
    assert [sorted(set(seen)) for seen in thirds] == [sorted(blocks[rank].dates + blocks[rank + 3].dates) for rank in range(3)]
    assert sum(len(seen) for seen in thirds) == rows.rows_in("train")
    # One worker: every row, in the order the rows read at once have.
    (alone,) = dates_seen(1)
    assert alone == reference(warehouse).train["game_date"].to_list()


class Fitted:
    def __init__(self, booster: lgb.Booster):
        self.booster = booster


def test_scoring_block_by_block_in_ray_tasks_gives_the_figures_of_scoring_in_this_process(warehouse, ray_runtime):
    dataset = reference(warehouse)
    train = lgb.Dataset(feature_matrix(dataset.train), label=dataset.train[TARGET].to_numpy(), feature_name=list(FEATURE_COLUMNS))
    params = {"objective": "regression_l1", "verbose": -1, "num_threads": 1, "deterministic": True, "seed": 1}
    chosen, kept = lgb.train(params, train, num_boost_round=5), lgb.train(params, train, num_boost_round=8)
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        rows = read_training_rows(wh, block_rows=200)
    evaluation = evaluate_rows(rows, chosen, kept)

    valid, test, predictions = score(dataset, Fitted(chosen), Fitted(kept))
    calibration, interval_metrics = calibrate_intervals(dataset, predictions)
    assert evaluation.valid == valid and evaluation.test == test
    assert evaluation.intervals == interval_metrics and evaluation.calibration.to_json() == calibration.to_json()
    assert evaluation.opening_weeks == score_opening_weeks(dataset, kept)
    assert set(evaluation.plots) == {"predicted_vs_actual.png", "residuals_by_month.png"}
    assert all(png.startswith(b"\x89PNG") for png in evaluation.plots.values())


def test_a_row_without_its_actual_points_is_refused_naming_it(warehouse, ray_runtime, tmp_path):
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    with DuckDBWarehouse(copy) as wh:
        actuals = wh.read(PLAYER_GAME_SUMMARY, start=day(20), end=day(20))
        wh.write([PartitionWrite(PLAYER_GAME_SUMMARY, [day(20)], actuals.with_columns(pts=pl.when(pl.col("player_id") == 4).then(None).otherwise(pl.col("pts"))))])
    with DuckDBWarehouse(copy, read_only=True) as wh, pytest.raises(DataError) as refused:
        read_training_rows(wh, block_rows=200)  # read in a Ray task: the task's error, as itself
    assert "1 training or evaluation row(s) without actual points in nba_analytics.player_game_summary on 2024-01-21" in str(refused.value)
    assert "game g020-02, player 4" in str(refused.value)


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_block_size_that_is_not_a_positive_number_of_rows_is_refused_by_its_key(value):
    from hydra import compose, initialize_config_dir

    import pipeline.__main__  # noqa: F401 - registers ${project_root:}
    from conftest import PROJECT_ROOT
    from training.train import ConfigError, TrainSettings

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"training.data.block_rows={value}"])
    with pytest.raises(ConfigError, match=rf"training.data.block_rows must be a positive number of rows, not '?{value}'?"):
        TrainSettings.from_config(cfg)
