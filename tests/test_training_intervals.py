"""Prediction intervals, prop lines and grading, fast parts: calibration where the answer is known,
P(over) with whole-number points against x.5 lines, the grade's choice of prediction, the writes
that keep a morning prediction, and an old predictions table brought up to date.

The end-to-end parts (the bundled data's coverage, predict and grade with lines) are in
tests/test_training_pipeline.py.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from pipeline.warehouse import TableSchema
from pipeline.warehouse.duckdb import DuckDBWarehouse
from training import intervals
from training.intervals import Bin, Calibration, calibrate, coverage, p_over
from training.lines import line_scores, pick_lines, side_expr, side_hit_expr
from training.predict import ACCURACY, PREDICTIONS, chosen_predictions, grade_dates, grade_rows, prediction_writes
from training.slate import shown_rows, slate_frame

D1, D2 = dt.date(2025, 3, 5), dt.date(2025, 3, 6)
T0 = dt.datetime(2025, 3, 5, 9, 0)


def uniform_bin(low: float, high: float, bin_id: str = "all:0") -> Bin:
    """A bin whose residuals are uniform on [low, high]: quantile at level p is low + p (high − low)."""
    return Bin(bin_id, 1000, -math.inf, math.inf, tuple(low + p * (high - low) for p in intervals.LEVELS))


# -- calibration ---------------------------------------------------------------------------------


def test_calibration_recovers_known_quantiles_per_tier():
    """Residuals uniform on [-4, 4] for bench rows and [-10, 10] for star rows: the 80 % interval
    is the prediction ± 3.2 and ± 8, and 80 % of fresh rows from the same law fall inside."""
    rng = np.random.default_rng(7)
    n = 6000
    tiers = np.array(["bench"] * n + ["star"] * n, dtype=object)
    predicted = np.concatenate([rng.uniform(2, 8, n), rng.uniform(20, 32, n)])
    spread = np.where(tiers == "bench", 4.0, 10.0)
    actual = predicted + rng.uniform(-1, 1, 2 * n) * spread
    cal = calibrate(predicted, actual, tiers, max_bins=3, min_rows=300)
    assert set(cal.groups) == {"all", "bench", "star"}
    assert all(len(group) == 3 and all(b.rows >= 300 for b in group) for group in cal.groups.values())
    bins = cal.assign(predicted, tiers)
    assert {b.split(":")[0] for b in bins} == {"bench", "star"}
    p10, p90 = cal.bounds(predicted, bins)
    half = np.where(tiers == "bench", 3.2, 8.0)
    np.testing.assert_allclose(p90 - predicted, half, atol=0.6)
    np.testing.assert_allclose(np.maximum(predicted - half, 0) - p10, 0, atol=0.6)
    fresh = predicted + rng.uniform(-1, 1, 2 * n) * spread
    out = coverage(fresh, p10, p90, tiers)
    assert 0.78 < out["coverage"] < 0.82
    assert {t["tier"]: round(t["coverage"], 1) for t in out["by_tier"]} == {"bench": 0.8, "star": 0.8}
    # A tier without enough rows (and an unknown one) falls back to the pooled bins.
    assert cal.assign([5.0, 5.0], ["role", None])[0].startswith("all:")
    # Saved and loaded, the calibration gives the same intervals.
    again = Calibration.from_json(cal.to_json())
    np.testing.assert_allclose(again.bounds(predicted, bins)[0], p10, atol=1e-5)


def test_out_of_time_widening_is_the_least_that_covers_80_percent_of_the_later_half():
    """Residuals uniform on [-5, 5] in the first half of the dates. If the second half is the same
    law, 10 / 90 % already cover 80 % of it (widening 0); if it is 10 % wider, [q10, q90] of the
    first half covers only 8 / 11 of it, and the levels widen just until 80 % of the second half is
    inside: about 6 / 94 % (± 4.4 of ± 5.5). The calibration keeps the levels, on disk too."""
    rng = np.random.default_rng(11)
    n = 8000
    dates = [D1] * n + [D2] * n
    tiers = ["role"] * (2 * n)
    predicted = rng.uniform(10, 20, 2 * n)
    noise = rng.uniform(-5, 5, 2 * n)
    same = predicted + noise
    levels, measured = intervals.out_of_time_levels(predicted, same, tiers, dates)
    assert measured["rows"] == n and measured["from"] == str(D2)
    assert levels == (intervals.LOWER, intervals.UPPER) and measured["widening"] == 0.0
    drifted = predicted + noise * np.where(np.arange(2 * n) < n, 1.0, 1.1)
    levels, measured = intervals.out_of_time_levels(predicted, drifted, tiers, dates)
    widening = measured["widening"]
    assert widening == pytest.approx(0.04, abs=0.011) and levels == pytest.approx((0.10 - widening, 0.90 + widening))
    trials = list(measured["coverage_by_widening"].items())
    assert trials[-1][0] == f"{widening:.3f}" and trials[-1][1] >= 0.80
    assert all(covered < 0.80 for _, covered in trials[:-1]) and trials[0][1] == pytest.approx(8 / 11, abs=0.02)
    # Calibrated with those levels, its intervals cover 80 % of the later law: [q_low, q_high] of
    # the first half's residuals, uniform on [-5, 5], around the prediction.
    cal = calibrate(predicted[:n], drifted[:n], tiers[:n], levels=levels)
    p10, p90 = cal.bounds(predicted[n:], cal.assign(predicted[n:], tiers[n:]))
    assert coverage(drifted[n:], p10, p90, tiers[n:])["coverage"] == pytest.approx(0.80, abs=0.01)
    np.testing.assert_allclose(p90 - predicted[n:], 5 * (2 * levels[1] - 1), atol=0.3)
    again = Calibration.from_json(cal.to_json())
    assert again.levels == pytest.approx(levels)
    np.testing.assert_allclose(again.bounds(predicted[n:], cal.assign(predicted[n:], tiers[n:]))[1], p90, atol=1e-5)


def test_bins_keep_enough_rows_and_merge_ties():
    # 400 rows of one prediction value and 350 spread out: quantile cuts would leave a small bin.
    predicted = np.concatenate([np.full(400, 10.0), np.linspace(10.5, 30, 350)])
    cal = calibrate(predicted, predicted + 1, ["role"] * predicted.size, max_bins=3, min_rows=300)
    assert [b.rows for b in cal.groups["role"]] in ([400, 350], [750])
    assert sum(b.rows for b in cal.groups["role"]) == 750
    small = calibrate(np.arange(100.0), np.arange(100.0), ["star"] * 100, min_rows=300)
    assert set(small.groups) == {"all"} and len(small.groups["all"]) == 1


# -- P(over) ---------------------------------------------------------------------------------------


def test_p_over_with_whole_number_points():
    """Residuals uniform on [-5, 5] around 20: actual > 24.5 means actual >= 25, the continuous
    cut 24.5 (residual 4.5): P = 0.05. A 24 line asks the same (24 is a push)."""
    b = uniform_bin(-5, 5)
    assert p_over(20.0, b, 24.5) == pytest.approx(0.05)
    assert p_over(20.0, b, 24.0) == pytest.approx(0.05)
    assert p_over(20.0, b, 24.9) == pytest.approx(0.05)
    assert p_over(20.0, b, 19.5) == pytest.approx(0.55)  # 20 or more: residual >= -0.5
    assert p_over(20.0, b, 20.0) == pytest.approx(0.45)  # 21 or more (20 a push)
    assert p_over(20.0, b, 14.5) == pytest.approx(1.0) and p_over(20.0, b, 25.5) == pytest.approx(0.0)
    lines = np.arange(0, 40, 0.5)
    values = [p_over(20.0, b, line) for line in lines]
    assert all(a >= c for a, c in zip(values, values[1:]))  # non-increasing in the line
    assert all(0.0 <= v <= 1.0 for v in values)
    # Against integer outcomes drawn from that law (rounded), the probabilities are right.
    rng = np.random.default_rng(3)
    actual = np.round(20.0 + rng.uniform(-5, 5, 200_000))
    for line in (17.5, 19.5, 21.5, 22.0):
        # round(20 + U) > 19.5 exactly when 20 + U > 19.5: the half-point cut is the right one.
        assert (actual > line).mean() == pytest.approx(p_over(20.0, b, line), abs=0.01)


def test_p_over_of_a_calibration_by_bin_id():
    cal = Calibration({"all": [uniform_bin(-5, 5)]})
    assert cal.p_over(20.0, "all:0", 19.5) == pytest.approx(0.55)
    assert cal.p_over_many([20.0, 20.0, 20.0], ["all:0", None, "all:0"], [24.5, 10.5, None]) == [pytest.approx(0.05), None, None]


# -- lines and grading ---------------------------------------------------------------------------


def test_pick_lines_one_per_player_first_bookmaker_with_a_line():
    roster = pl.DataFrame(
        {
            "game_id": ["g1", "g1", "g1", "g1"],
            "player_id": [1, 1, 2, 3],
            "points_line": [20.5, 21.5, None, 8.5],
            "bookmaker": ["zbook", "abook", "abook", None],
        }
    )
    lines = pick_lines(roster)
    assert lines.sort("player_id").rows() == [("g1", 1, 21.5, "abook"), ("g1", 3, 8.5, None)]


def test_side_and_its_hit():
    frame = pl.DataFrame(
        {
            "p_over": [0.7, 0.7, 0.3, 0.3, 0.6, None, 0.8],
            "points_line": [20.5, 20.5, 20.5, 20.5, 20.0, None, 20.5],
            "actual_points": [25.0, 15.0, 15.0, 25.0, 20.0, 10.0, 0.0],
            "played": [True, True, True, True, True, True, False],
        }
    ).with_columns(side_expr()).with_columns(side_hit_expr())
    assert frame["side"].to_list() == ["over", "over", "under", "under", "over", None, "over"]
    assert frame["side_hit"].to_list() == [True, False, True, False, None, None, None]  # push, no line, did not play: NULL
    scores = line_scores(frame)
    assert scores["lines"] == 5 and scores["decided"] == 4 and scores["hit_rate"] == 0.5
    # Brier over the 5 played rows with a line: (0.7-1)², (0.7-0)², (0.3-0)², (0.3-1)², (0.6-0)² (the push is not over).
    assert scores["brier"] == pytest.approx((0.09 + 0.49 + 0.09 + 0.49 + 0.36) / 5)


def prediction(game: str, player: int, at: dt.datetime, before: bool | None, points: float, **extra) -> dict:
    return {
        "game_id": game, "game_date": D1, "season": "2024-25", "season_type": "regular", "player_id": player,
        "player_name": f"p{player}", "team_abbr": "BOS", "opponent_abbr": "NYK", "model_id": "m", "predicted_points": points,
        "p10": points - 5, "p90": points + 5, "interval_bin": "all:0", "points_line": None, "bookmaker": None, "p_over": None,
        "edge": None, "made_before_tipoff": before, "feature_fingerprint": "f", "feature_version": 3, "predicted_at": at, **extra,
    }  # fmt: skip


def predictions_frame(records: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(records, schema=PREDICTIONS.columns)


def test_grading_prefers_the_prediction_made_before_tipoff():
    morning, night, later = T0, T0 + dt.timedelta(hours=14), T0 + dt.timedelta(hours=20)
    frame = predictions_frame(
        [
            prediction("g1", 1, morning, True, 20.0, points_line=19.5, p_over=0.6, edge=0.1),
            prediction("g1", 1, later, False, 26.0),  # after the game, from rebuilt features: not graded
            prediction("g1", 2, night, False, 10.0),
            prediction("g1", 2, later, False, 12.0),  # no morning prediction: the latest
            prediction("g1", 3, morning, None, 7.0),  # written before the column existed: counts as after
            prediction("g1", 3, night, False, 8.0),
        ]
    )
    chosen = chosen_predictions(frame)
    assert chosen.select("player_id", "predicted_points").rows() == [(1, 20.0), (2, 12.0), (3, 8.0)]
    actuals = pl.DataFrame({"game_id": ["g1"] * 3, "player_id": [1, 2, 3], "actual_points": [22.0, 3.0, 8.0], "actual_minutes": [30.0, 12.0, None]})
    prior = pl.DataFrame({"game_id": ["g1"] * 3, "player_id": [1, 2, 3], "games_played_season": [10, 10, 10]})
    graded = grade_rows(frame, actuals, prior, graded_at=later)
    assert graded.columns == list(ACCURACY.columns) and graded.height == 3
    one = graded.row(0, named=True)
    assert (one["predicted_at"], one["made_before_tipoff"], one["predicted_points"]) == (morning, True, 20.0)
    assert (one["in_interval"], one["side"], one["side_hit"]) == (True, "over", True)
    two = graded.row(1, named=True)
    assert (two["in_interval"], two["side"], two["side_hit"]) == (False, None, None)  # 3 outside 7..17; no line
    assert graded.row(2, named=True)["in_interval"] is None  # did not play


# -- writes --------------------------------------------------------------------------------------


def test_writes_replace_only_the_same_model_and_moment():
    rows = predictions_frame([prediction("g1", 1, T0, True, 20.0), {**prediction("g2", 1, T0, False, 10.0), "game_date": D2}])
    writes = prediction_writes("m", [D1, D2], [D1], rows)
    assert [(w.dates, dict(w.where), w.rows.height) for w in writes] == [
        ([D1], {"model_id": "m", "made_before_tipoff": True}, 1),
        ([D2], {"model_id": "m", "made_before_tipoff": False}, 1),
    ]
    # Stored rows from before the column (NULL) on D2 count as made after the game: D2 is
    # rewritten for the model, the morning row kept, the old one replaced.
    existing = predictions_frame([{**prediction("g2", 1, T0, True, 9.0), "game_date": D2}, {**prediction("g2", 2, T0, None, 5.0), "game_date": D2}])
    writes = prediction_writes("m", [D1, D2], [D1], rows, existing)
    assert [dict(w.where) for w in writes] == [{"model_id": "m", "made_before_tipoff": True}, {"model_id": "m"}]
    legacy = writes[1].rows
    assert sorted(legacy.select("player_id", "made_before_tipoff", "predicted_points").rows()) == [(1, False, 10.0), (1, True, 9.0)]


OLD_PREDICTIONS = TableSchema(
    name=PREDICTIONS.name,
    columns={c: t for c, t in PREDICTIONS.columns.items() if c not in ("p10", "p90", "interval_bin", "points_line", "bookmaker", "p_over", "edge", "made_before_tipoff")},
)
OLD_ACCURACY = TableSchema(
    name=ACCURACY.name,
    columns={c: t for c, t in ACCURACY.columns.items() if c not in ("predicted_at", "made_before_tipoff", "p10", "p90", "in_interval", "points_line", "bookmaker", "p_over", "side", "side_hit")},
)


def test_an_old_predictions_table_is_graded_and_brought_up_to_date(tmp_path):
    """A warehouse whose prediction tables predate intervals and lines: grading reads the old rows
    (no interval, no line), and the tables gain the new columns in place, keeping their rows."""
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path) as warehouse:
        warehouse.ensure_table(OLD_PREDICTIONS)
        warehouse.ensure_table(OLD_ACCURACY)
        old = predictions_frame([prediction("g1", 1, T0, None, 20.0)]).select(list(OLD_PREDICTIONS.columns))
        warehouse.write([intervals_write(old)])
        summary = pl.DataFrame(
            {"game_id": ["g1"], "game_date": [D1], "player_id": [1], "did_not_play": [False], "minutes": [30.0], "pts": [18]},
            schema={"game_id": pl.String, "game_date": pl.Date, "player_id": pl.Int32, "did_not_play": pl.Boolean, "minutes": pl.Float64, "pts": pl.Int32},
        )
        store = pl.DataFrame({"game_id": ["g1"], "game_date": [D1], "player_id": [1], "games_played_season": [9]}, schema={"game_id": pl.String, "game_date": pl.Date, "player_id": pl.Int32, "games_played_season": pl.Int32})
        for name, frame in (("nba_analytics.player_game_summary", summary), ("nba_predictions.ml_feature_store", store)):
            warehouse.ensure_table(TableSchema(name, dict(frame.schema)))
            warehouse.write([intervals_write(frame, name)])
        graded = grade_dates(warehouse, D1, D1)
        assert graded.height == 1
        row = graded.row(0, named=True)
        assert (row["actual_points"], row["error"], row["made_before_tipoff"], row["p10"], row["side"]) == (18.0, 2.0, None, None, None)
        assert set(warehouse.read(ACCURACY.name).columns) == set(ACCURACY.columns)
        warehouse.ensure_table(PREDICTIONS)
        stored = warehouse.read(PREDICTIONS.name)
        assert set(stored.columns) == set(PREDICTIONS.columns) and stored.height == 1 and stored["predicted_points"].to_list() == [20.0]
        # Written again by a prediction made after the game, the old row is replaced, not duplicated.
        new = predictions_frame([prediction("g1", 1, T0 + dt.timedelta(hours=20), False, 21.0)])
        warehouse.write(prediction_writes("m", [D1], [], new, stored))
        assert warehouse.read(PREDICTIONS.name).select("predicted_points", "made_before_tipoff").rows() == [(21.0, False)]


def intervals_write(rows: pl.DataFrame, table: str = PREDICTIONS.name):
    from pipeline.warehouse import PartitionWrite

    return PartitionWrite(table, sorted(set(rows["game_date"].to_list())), rows)


# -- the printed slate ---------------------------------------------------------------------------


def test_slate_sorted_by_game_team_prediction_and_capped_per_game():
    records = []
    for g in range(10):
        for i in range(20):
            home = i % 2 == 0
            records.append(
                {**prediction(f"g{g}", g * 100 + i, T0, True, float(i)), "team_abbr": "H" if home else "A", "opponent_abbr": "A" if home else "H", "starter": i < 5, "is_home": home}
            )
    slate = slate_frame(pl.DataFrame(records))
    first = slate.filter(pl.col("game_id") == "g0")
    assert first["game"].unique().to_list() == ["A @ H"]
    assert first["team_abbr"].to_list() == ["A"] * 10 + ["H"] * 10
    assert first.filter(pl.col("team_abbr") == "A")["predicted_points"].to_list() == sorted(first.filter(pl.col("team_abbr") == "A")["predicted_points"].to_list(), reverse=True)
    shown = shown_rows(slate, max_rows=60)
    assert shown.height == 60 and shown.group_by("game_id").len()["len"].to_list() == [6] * 10
    assert shown.filter(pl.col("game_id") == "g3")["predicted_points"].min() == 14.0  # each game's top 6
    assert shown_rows(slate.head(30), max_rows=60).height == 30
