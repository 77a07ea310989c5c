"""v5 model, fast parts: the date split, row selections, baselines worked by hand, scores, sweep summary.

The end-to-end parts (a real warehouse, Ray Train, predict and grade) are in
tests/test_training_pipeline.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURES, ID_COLUMNS, feature_matrix
from training.baselines import BASELINE_INPUTS, baseline_predictions, fill_missing, opening_fallback_points, rules_adjustments
from training.data import ACTUAL_MINUTES, TARGET, DataError, build_dataset, make_split
from training.evaluate import evaluate, opening_weeks, scores, tier_expr
from training.baselines import best_baseline_of
from training.sweep import SUMMARY_CSV, SUMMARY_MD, write_sweep_summary

D0 = dt.date(2024, 1, 1)


def days(n: int, start: dt.date = D0, step: int = 1) -> list[dt.date]:
    return [start + dt.timedelta(days=i * step) for i in range(n)]


def feature_rows(records: list[dict]) -> pl.DataFrame:
    """Feature-store-shaped rows: every ID and feature column, NULL unless given; plus actuals."""
    schema = {
        "game_id": pl.String, "game_date": pl.Date, "season": pl.String, "season_type": pl.String,
        "player_id": pl.Int32, "player_name": pl.String, "team_abbr": pl.String, "opponent_abbr": pl.String,
        **FEATURES, TARGET: pl.Float64, ACTUAL_MINUTES: pl.Float64,
    }  # fmt: skip
    filled = []
    for i, r in enumerate(records):
        base = {"game_id": f"g{i}", "season": "2023-24", "season_type": "regular", "player_id": i, "player_name": f"p{i}", "team_abbr": "BOS", "opponent_abbr": "NYK"}
        filled.append({**{c: None for c in schema}, **base, **r})
    return pl.DataFrame(filled, schema=schema)


# -- the split ---------------------------------------------------------------------------------


def test_default_split_is_70_15_15_of_game_dates_in_order():
    dates = days(20, step=2)
    split = make_split(dates)
    labels = [split.label(d) for d in dates]
    assert labels == ["train"] * 14 + ["valid"] * 3 + ["test"] * 3
    assert split.train_start == dates[0] and split.valid_start == dates[14] and split.test_start == dates[17] and split.test_end == dates[-1]


def test_explicit_cut_dates_are_respected_and_need_not_be_game_dates():
    dates = days(30)
    split = make_split(dates, {"valid_start": "2024-01-10", "test_start": dt.date(2024, 1, 20), "test_end": "2024-01-25"})
    labels = {d: split.label(d) for d in dates}
    assert all(labels[d] == "train" for d in dates if d < dt.date(2024, 1, 10))
    assert all(labels[d] == "valid" for d in dates if dt.date(2024, 1, 10) <= d < dt.date(2024, 1, 20))
    assert all(labels[d] == "test" for d in dates if dt.date(2024, 1, 20) <= d <= dt.date(2024, 1, 25))
    assert all(labels[d] is None for d in dates if d > dt.date(2024, 1, 25))
    # A cut between game dates: every other day is a game date, the cut falls on an off day.
    sparse = days(20, step=2)
    split = make_split(sparse, {"valid_start": "2024-01-20", "test_start": "2024-01-30"})
    assert split.label(dt.date(2024, 1, 19)) == "train" and split.label(dt.date(2024, 1, 21)) == "valid"
    assert split.label(dt.date(2024, 1, 29)) == "valid" and split.label(dt.date(2024, 1, 31)) == "test"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"valid_start": "2024-01-20", "test_start": "2024-01-10"}, "out of order"),
        ({"test_start": "2024-01-05", "test_end": "2024-01-04"}, "out of order"),
        ({"valid_start": "2023-12-01"}, "no game date in: train"),
        ({"test_start": "2024-03-01", "test_end": "2024-03-10"}, "no game date in: test"),
        ({"valid_start": "2024-13-01"}, "not a date"),
        ({"train_fraction": 0.9, "valid_fraction": 0.2}, "fractions"),
    ],
)
def test_bad_split_settings_are_refused(settings, message):
    with pytest.raises(DataError, match=message):
        make_split(days(30), settings)


def test_dataset_rows_no_date_in_two_splits_and_the_right_selections():
    dates = days(10)
    records = []
    for d in dates:
        records += [
            {"game_date": d, "games_played_season": 7, TARGET: 12.0, ACTUAL_MINUTES: 30.0, "points_avg_last_10": 11.0},
            {"game_date": d, "games_played_season": 2, TARGET: 4.0, ACTUAL_MINUTES: 10.0, "points_avg_last_10": 3.0},
            {"game_date": d, "games_played_season": 9, TARGET: 0.0, ACTUAL_MINUTES: None, "points_avg_last_10": 6.0},  # DNP
            {"game_date": d, "games_played_season": 9, TARGET: 0.0, ACTUAL_MINUTES: 0.0, "points_avg_last_10": 6.0},  # 0:00
        ]
    ds = build_dataset(feature_rows(records), make_split(dates))
    split_dates = {name: set(getattr(ds, name)["game_date"].to_list()) for name in ("train", "valid", "test")}
    assert not (split_dates["train"] & split_dates["valid"]) and not (split_dates["valid"] & split_dates["test"])
    assert not (split_dates["train"] & split_dates["test"])
    assert max(split_dates["train"]) < min(split_dates["valid"]) <= max(split_dates["valid"]) < min(split_dates["test"])
    # Training: every played row (both players); evaluation: played with >= 5 earlier games.
    assert ds.train.height == 2 * len(split_dates["train"])
    assert ds.train[ACTUAL_MINUTES].min() > 0
    for part in (ds.valid, ds.test):
        assert part["games_played_season"].to_list() == [7] * part.height
    # The refit's rows: the training selection over the train and validation dates, never a test date.
    valid_played = ds.rows.filter((pl.col("split") == "valid") & (pl.col(ACTUAL_MINUTES) > 0))
    assert ds.refit.height == ds.train.height + valid_played.height == 2 * (len(split_dates["train"]) + len(split_dates["valid"]))
    assert ds.refit.head(ds.train.height).equals(ds.train)
    assert set(ds.refit["game_date"].to_list()) == split_dates["train"] | split_dates["valid"]
    assert ds.refit[ACTUAL_MINUTES].min() > 0
    strict = build_dataset(feature_rows(records), make_split(dates), min_prior_games=5)
    assert strict.train["games_played_season"].min() >= 5
    assert strict.refit["games_played_season"].min() >= 5
    # The model matrix is exactly FEATURE_COLUMNS of the rows.
    x, y = ds.matrices("train")
    assert x.shape == (ds.train.height, len(FEATURE_COLUMNS))
    np.testing.assert_array_equal(x, feature_matrix(ds.train))
    np.testing.assert_array_equal(y, ds.train[TARGET].to_numpy())


def test_fingerprint_follows_the_rows_used_not_their_order():
    dates = days(10)
    records = [{"game_date": d, "games_played_season": 6, TARGET: float(i), ACTUAL_MINUTES: 20.0} for i, d in enumerate(dates)]
    # Played rows with too few earlier games for evaluation: training (and refit) rows only.
    records += [{"game_date": d, "games_played_season": 1, TARGET: 3.0, ACTUAL_MINUTES: 8.0} for d in dates]
    frame = feature_rows(records)
    split = make_split(dates)
    a = build_dataset(frame, split).fingerprint
    assert build_dataset(frame.reverse(), split).fingerprint == a
    # A change on any split's date changes it: test, validation (the refit's rows), training.
    for day, games in ((dates[-1], 6), (split.valid_start, 1), (dates[0], 1)):
        row = (pl.col("game_date") == day) & (pl.col("games_played_season") == games)
        changed = frame.with_columns(pl.when(row).then(99.0).otherwise(pl.col(TARGET)).alias(TARGET))
        assert build_dataset(changed, split).fingerprint != a, day


# -- baselines, worked by hand -----------------------------------------------------------------


def baseline_row(**values) -> dict:
    return {c: values.get(c) for c in BASELINE_INPUTS}


def test_rules_model_worked_by_hand():
    rows = feature_rows(
        [
            # A: base 0.35*20 + 0.40*18 + 0.25*16 = 18.2
            #    fatigue 10 -> freshness 90 > 85: +0.5; zone 0.35*2 = +0.7; pace 3 * 0.12 (usage 30 > 28) = +0.36;
            #    spike 6 (> 5) * 0.35 = +2.1; opp def 106 < 108: -1.5; no b2b: 0; home: +1.0; minutes 37 > 36: +0.8;
            #    paint 50 % but def 106 not > 115; three rate 45 % > 40 and def 106 < 110: -0.5.  Sum +3.46 -> 21.66
            baseline_row(
                points_avg_last_5=20.0, points_avg_last_10=18.0, points_avg_season=16.0, fatigue_score=10.0,
                shot_zone_mismatch_score=2.0, pace_score=3.0, usage_avg_last_10=30.0, usage_spike_score=6.0,
                opponent_def_rating_last_10=106.0, back_to_back=False, is_home=True, minutes_avg_last_10=37.0,
                pct_pts_2pt_season=0.5, fg3a_rate_season=0.45,
            ),  # fmt: skip
            # B: base 0.35*4 + 0.40*5 + 0.25*6 = 4.9
            #    fatigue 60 -> freshness 40 < 50: -2.5; zone NULL: 0; pace -2 * 0.08 (usage 20) = -0.16; spike 1 * 0.25 = +0.25;
            #    def 120 > 118: +1.0; b2b: -2.2; away: -0.6; minutes 12 < 25: -1.2; paint 60 % > 45 and def 120 > 115: +0.8.
            #    Sum -4.61 -> 0.29
            baseline_row(
                points_avg_last_5=4.0, points_avg_last_10=5.0, points_avg_season=6.0, fatigue_score=60.0,
                shot_zone_mismatch_score=None, pace_score=-2.0, usage_avg_last_10=20.0, usage_spike_score=1.0,
                opponent_def_rating_last_10=120.0, back_to_back=True, is_home=False, minutes_avg_last_10=12.0,
                pct_pts_2pt_season=0.6, fg3a_rate_season=0.2,
            ),  # fmt: skip
            # C: base 1.0; freshness 20: -2.5; b2b -2.2; away -0.6; minutes 10: -1.2 -> negative, clipped to 0
            baseline_row(
                points_avg_last_5=1.0, points_avg_last_10=1.0, points_avg_season=1.0, fatigue_score=80.0,
                back_to_back=True, is_home=False, minutes_avg_last_10=10.0, opponent_def_rating_last_10=112.0,
            ),  # fmt: skip
            # D: no season average (no played game this season): no rules prediction, no season average
            baseline_row(points_avg_last_5=8.0, points_avg_last_10=9.0, points_avg_season=None, is_home=True),
            # E: every adjustment input NULL: base only, 0.35*10 + 0.40*10 + 0.25*10 = 10
            baseline_row(points_avg_last_5=10.0, points_avg_last_10=10.0, points_avg_season=10.0),
            # F: freshness 65 (fatigue 35): -1.0; spike -6: -2.1; def 112: 0; minutes 30: 0; home +1.0.
            #    base 0.35*12 + 0.40*10 + 0.25*8 = 10.2 -> 10.2 - 1.0 - 2.1 + 1.0 = 8.1
            baseline_row(
                points_avg_last_5=12.0, points_avg_last_10=10.0, points_avg_season=8.0, fatigue_score=35.0,
                usage_spike_score=-6.0, opponent_def_rating_last_10=112.0, is_home=True, minutes_avg_last_10=30.0,
            ),  # fmt: skip
        ]
    )
    out = baseline_predictions(rows)
    expected = [21.66, 0.29, 0.0, None, 10.0, 8.1]
    for got, want in zip(out["rules"].to_list(), expected):
        assert (got is None) if want is None else got == pytest.approx(want, abs=1e-9)
    # The core is the base alone: A 18.2, B 4.9, C 1.0, D none, E 10, F 10.2.
    for got, want in zip(out["rules_core"].to_list(), [18.2, 4.9, 1.0, None, 10.0, 10.2]):
        assert (got is None) if want is None else got == pytest.approx(want, abs=1e-9)
    assert out["last10"].to_list() == [18.0, 5.0, 1.0, 9.0, 10.0, 10.0]
    assert out["season_avg"].to_list() == [16.0, 6.0, 1.0, None, 10.0, 8.0]
    # Freshness 75 (fatigue 25) is neutral; exactly 85 is neutral too; exactly 50 is moderate.
    fatigue = rows.head(3).with_columns(fatigue_score=pl.Series([25.0, 15.0, 50.0])).select(rules_adjustments()["fatigue"]).to_series()
    assert fatigue.to_list() == [0.0, 0.0, -1.0]


def test_baselines_read_only_feature_store_columns():
    assert set(BASELINE_INPUTS) <= set(FEATURE_COLUMNS)


def test_rules_core_and_prior_season_average_worked_by_hand():
    l5_l10_season = {"points_avg_last_5": 12.0, "points_avg_last_10": 11.0, "points_avg_season": 10.0}  # core 4.2 + 4.4 + 2.5
    rows = feature_rows(
        [
            # A player with a previous season (avg 18.5): before his 5th game the prior season, from it on this season.
            {**baseline_row(games_played_season=0), "points_avg_prev_season": 18.5},  # his first game: no average this season yet
            {**baseline_row(**l5_l10_season, games_played_season=2), "points_avg_prev_season": 18.5},
            {**baseline_row(**l5_l10_season, games_played_season=4), "points_avg_prev_season": 18.5},
            {**baseline_row(**l5_l10_season, games_played_season=5), "points_avg_prev_season": 18.5},
            {**baseline_row(**l5_l10_season, games_played_season=30), "points_avg_prev_season": 18.5},
            # A player without one: the season average, as season_avg (none before his first game).
            baseline_row(**l5_l10_season, games_played_season=3),
            baseline_row(games_played_season=0),
            # A missing count reads as 0 earlier games.
            {**baseline_row(**l5_l10_season, games_played_season=None), "points_avg_prev_season": 7.25},
        ]
    )  # fmt: skip
    out = baseline_predictions(rows)
    assert out["prior_season_avg"].to_list() == [18.5, 18.5, 18.5, 10.0, 10.0, 10.0, None, 7.25]
    assert out["season_avg"].to_list() == [None, 10.0, 10.0, 10.0, 10.0, 10.0, None, 10.0]
    core = out["rules_core"].to_list()
    assert core[0] is None and core[6] is None
    assert core[1:6] + core[7:] == pytest.approx([11.1] * 6)  # 0.35*12 + 0.40*11 + 0.25*10 = 4.2 + 4.4 + 2.5


# -- scores ------------------------------------------------------------------------------------


def test_scores_by_hand():
    s = scores(np.array([0.0, 10.0, 20.0, 4.0]), np.array([1.0, 13.0, 20.0, 10.0]))
    assert s["mae"] == pytest.approx((1 + 3 + 0 + 6) / 4)
    assert s["rmse"] == pytest.approx(math.sqrt((1 + 9 + 0 + 36) / 4))
    assert s["bias"] == pytest.approx((1 + 3 + 0 + 6) / 4)
    assert (s["within_1"], s["within_3"], s["within_5"]) == (0.5, 0.75, 0.75)
    with pytest.raises(ValueError, match="missing"):
        scores(np.array([1.0, 2.0]), np.array([1.0, np.nan]))


def test_tiers_by_recent_minutes():
    frame = pl.DataFrame({"minutes_avg_last_10": [0.5, 14.99, 15.0, 24.99, 25.0, 31.99, 32.0, 44.0, None]})
    assert frame.select(tier_expr()).to_series().to_list() == [
        "bench", "bench", "role", "role", "starter", "starter", "star", "star", "unknown",
    ]  # fmt: skip


def test_evaluate_scores_every_predictor_on_the_same_rows():
    rows = feature_rows(
        [
            {"game_date": dt.date(2024, 3, 1), TARGET: 10.0, "minutes_avg_last_10": 10.0},
            {"game_date": dt.date(2024, 3, 2), TARGET: 20.0, "minutes_avg_last_10": 34.0},
            {"game_date": dt.date(2024, 4, 1), TARGET: 30.0, "minutes_avg_last_10": 34.0},
        ]
    )
    out = evaluate(rows, {"model": np.array([12.0, 20.0, 27.0]), "rules": np.array([10.0, 25.0, 30.0])})
    assert out["overall"]["model"]["rows"] == out["overall"]["rules"]["rows"] == 3
    assert out["overall"]["model"]["mae"] == pytest.approx(5 / 3)
    by_tier = {r["tier"]: r for r in out["by_tier"]}
    assert by_tier["bench"]["rows"] == 1 and by_tier["star"]["model"] == pytest.approx(1.5) and by_tier["star"]["rules"] == pytest.approx(2.5)
    assert [r["month"] for r in out["by_month"]] == ["2024-03", "2024-04"]
    with pytest.raises(ValueError):
        evaluate(rows, {"model": np.array([1.0, 2.0])})


def test_opening_weeks_same_rows_for_every_predictor_with_the_fallback():
    train = feature_rows(
        [
            {"game_date": D0, "games_played_season": 0, TARGET: 2.0, ACTUAL_MINUTES: 8.0},
            {"game_date": D0, "games_played_season": 0, TARGET: 7.0, ACTUAL_MINUTES: 20.0},
            {"game_date": D0, "games_played_season": 3, TARGET: 30.0, ACTUAL_MINUTES: 30.0},  # not a first game
        ]
    )
    assert opening_fallback_points(train) == (4.5, 2)
    assert opening_fallback_points(train.filter(pl.col("games_played_season") > 0)) == (0.0, 0)
    test = feature_rows(
        [
            {"game_date": D0, "games_played_season": 0, TARGET: 6.0, "points_avg_prev_season": 9.0},
            {"game_date": D0, "games_played_season": 0, TARGET: 3.0},
            {"game_date": D0, "games_played_season": 2, TARGET: 10.0, "points_avg_last_5": 8.0, "points_avg_last_10": 8.0, "points_avg_season": 8.0},
            {"game_date": D0, "games_played_season": 4, TARGET: 1.0, "points_avg_last_5": 5.0, "points_avg_last_10": 5.0, "points_avg_season": 5.0},
        ]
    )  # fmt: skip
    filled = fill_missing(baseline_predictions(test), 4.5)
    assert filled["season_avg"].to_list() == [4.5, 4.5, 8.0, 5.0]
    assert filled["prior_season_avg"].to_list() == [9.0, 4.5, 8.0, 5.0]
    with pytest.raises(ValueError, match="missing"):  # unfilled: no value on a row is an error
        opening_weeks(test, {"season_avg": baseline_predictions(test)["season_avg"].to_numpy()})
    out = opening_weeks(test, {"model": np.array([5.0, 3.0, 9.0, 2.0]), **{n: filled[n].to_numpy() for n in ("season_avg", "prior_season_avg")}})
    assert out["rows"] == 4
    # season_avg: |4.5-6| + |4.5-3| + |8-10| + |5-1| = 1.5 + 1.5 + 2 + 4 = 9 -> 2.25; prior: 3 + 1.5 + 2 + 4 -> 2.625
    assert out["overall"]["season_avg"]["mae"] == pytest.approx(2.25) and out["overall"]["prior_season_avg"]["mae"] == pytest.approx(2.625)
    assert out["overall"]["model"]["mae"] == pytest.approx((1 + 0 + 1 + 1) / 4)
    groups = {g["earlier_games"]: g for g in out["by_earlier_games"]}
    assert list(groups) == ["0", "1-2", "3-4"] and [g["rows"] for g in groups.values()] == [2, 1, 1]
    assert groups["0"]["season_avg"] == pytest.approx(1.5) and groups["0"]["prior_season_avg"] == pytest.approx(2.25)


def test_best_baseline_is_the_lowest_mae_and_the_ratio_is_model_over_it():
    base = {"rules": {"mae": 5.1}, "rules_core": {"mae": 4.8}, "season_avg": {"mae": 4.95}, "prior_season_avg": {"mae": 4.95}}
    best = best_baseline_of(4.5, base)
    assert best == {"name": "rules_core", "mae": 4.8, "ratio": pytest.approx(4.5 / 4.8)}
    assert best_baseline_of(4.0, {"a": {"mae": 5.0}, "b": {"mae": 5.0}})["name"] == "a"  # a tie: the first listed


# -- sweep summary -----------------------------------------------------------------------------


def test_sweep_summary_sorted_by_validation_mae(tmp_path):
    for job, (valid, test) in enumerate([(4.41, 4.40), (4.39, 4.60), (4.45, 4.30)]):
        (tmp_path / str(job)).mkdir()
        metrics = {
            "overrides": [f"training.params.num_leaves={15 * (job + 1)}", "task=train"],
            "valid": {"mae": valid},
            "test": {"mae": test},
            "fit": {"best_iteration": 100 + job},
            "baselines": {"rules": {"mae": 5.0}, "rules_core": {"mae": 4.8}},
            "best_baseline": {"name": "rules_core", "mae": 4.8, "ratio": test / 4.8},
            "ratios": {"test_mae_vs_rules": test / 5.0},
            "output_dir": str(tmp_path / str(job)),
        }
        (tmp_path / str(job) / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "3").mkdir()  # a job that failed: no metrics
    frame = write_sweep_summary(tmp_path)
    assert frame["job"].to_list() == ["1", "0", "2"]  # by validation MAE, never by test MAE
    assert frame["overrides"][0] == "training.params.num_leaves=30"
    assert (tmp_path / SUMMARY_CSV).exists()
    text = (tmp_path / SUMMARY_MD).read_text()
    assert text.index("| 1 | 1 |") < text.index("| 2 | 0 |") < text.index("| 3 | 2 |")
    # Test MAE against the best baseline, named, then the old rules model for reference.
    assert "| 4.6000 | rules core 4.8000 | 0.958 | 0.920 |" in text
    assert write_sweep_summary(tmp_path / "3") is None


def test_id_columns_are_not_features():
    assert not set(ID_COLUMNS) & set(FEATURE_COLUMNS)
