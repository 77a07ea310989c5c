"""The market backtest (training/backtest*.py): blocks, the blend weight, the scores worked out by
hand; that each block's model and blend weight learn nothing of the block (the block's outcomes
and lines changed, both stay the same to the bit); that a model which saw the range is refused;
and, end to end, that the backtest of a date made the morning of it (box scores through the day
before, its slate) equals the backtest made with its box scores present, and that a line
captured after tip-off is used by neither the backtest nor ``task=predict``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import LINES_DIR, RAW_DIR, pipeline_config, pipeline_overrides, read_table, run_in_process, unwrapped
from pipeline.tables.pregame_roster import slate_from_boxscores
from pipeline.warehouse.duckdb import DuckDBWarehouse
from training import artifacts
from training.backtest import ROWS_FILE, fit_blend_weight, priced_lines, walk
from training.backtest_models import Block, BlockModel, ModelRefused, cut_blocks, fit_block_model, given_model
from training.backtest_scores import BREAK_EVEN, hit_rate, payout, profit, sides
from training.data import TARGET, load_rows
from training.lines import read_lines, read_prop_lines
from training.train import TrainSettings

D = dt.date
# Small, fast fits: what is tested is which rows a model sees, not how good it is.
QUICK = ("training.num_boost_round=40", "training.early_stopping_rounds=10", "training.params.learning_rate=0.2")


# -- pieces worked out by hand ---------------------------------------------------------------------


def test_blocks_by_month_week_and_count():
    days = [D(2024, 10, 30), D(2024, 10, 31), D(2024, 11, 1), D(2024, 11, 4), D(2024, 11, 11)]
    assert [(b.start, b.end) for b in cut_blocks(days, "month")] == [(D(2024, 10, 30), D(2024, 10, 31)), (D(2024, 11, 1), D(2024, 11, 11))]
    # ISO weeks start on Monday: 10-30..11-01 (Wed..Fri), 11-04, 11-11.
    assert [len(b.dates) for b in cut_blocks(days, "week")] == [3, 1, 1]
    assert [b.dates for b in cut_blocks(days, "2")] == [tuple(days[:2]), tuple(days[2:4]), (days[4],)]


def test_the_blend_weight_is_the_one_of_least_mae():
    # Rows (model, line, actual): (10, 12, 11) and (20, 16, 17). The blend w·model + (1 − w)·line
    # is 12 − 2w and 16 + 4w; its errors |1 − 2w| and |4w − 1|. MAE at w = 0: (1 + 1) / 2 = 1;
    # at 0.25: (0.5 + 0) / 2 = 0.25; at 0.5: (0 + 1) / 2 = 0.5; between 0.25 and 0.5 it rises
    # (the second error grows by 4 per unit of w, the first falls by 2), below 0.25 it falls.
    assert fit_blend_weight(np.array([10.0, 20.0]), np.array([12.0, 16.0]), np.array([11.0, 17.0])) == 0.25
    # The line exactly right every time: all weight on the line.
    assert fit_blend_weight(np.array([5.0, 30.0]), np.array([10.0, 20.0]), np.array([10.0, 20.0])) == 0.0


def test_hit_rates_and_their_interval():
    # 3 hits of 4 picks. P(X >= 3) for X ~ Binomial(4, p = 110 / 210): 4·p³·(1 − p) + p⁴.
    p = 110 / 210
    by_hand = 4 * p**3 * (1 - p) + p**4
    result = hit_rate(3, 4)
    assert result["rate"] == 0.75 and result["picks"] == 4
    assert result["p_value"] == pytest.approx(by_hand, rel=1e-12)
    # The exact interval's upper end for 3 of 4: the p with P(X <= 3 | p) = 0.025, i.e. 1 − p⁴ = 0.025.
    assert result["ci_high"] == pytest.approx(0.975**0.25, rel=1e-9)
    assert BREAK_EVEN == pytest.approx(0.5238, abs=1e-4)


def test_sides_picks_pushes_and_top_picks():
    scored = pl.DataFrame(
        {
            "game_date": [D(2024, 11, 1)] * 5,
            "game_id": ["g"] * 5,
            "player_id": [1, 2, 3, 4, 5],
            "predicted_points": [25.0, 8.0, 15.0, 22.0, 30.0],
            "points_line": [20.5, 10.5, 15.0, 21.5, 24.5],
            "p_over": [0.72, 0.34, 0.55, 0.52, 0.81],
            TARGET: [22.0, 12.0, 15.0, 19.0, 31.0],
        }
    )
    # Player 1: over 20.5, 22 went over: hit. 2: under 10.5, 12: miss. 3: a push (15 on 15): left
    # out. 4: over 21.5, 19: miss. 5: over 24.5, 31: hit. Decided 4, hits 2.
    s = sides(scored, "predicted_points", "p_over", top_picks=2, edge_points=3.0)
    assert (s["overall"]["picks"], s["overall"]["hits"], s["pushes"]) == (4, 2, 1)
    # The two largest |P(over) − 0.5|: players 5 (0.31) and 1 (0.22): both hits.
    assert (s["top"]["picks"], s["top"]["hits"], s["top"]["min_edge"]) == (2, 2, pytest.approx(0.22))
    # |prediction − line| >= 3: players 1 (4.5) and 5 (5.5): both hits.
    assert (s["gap"]["picks"], s["gap"]["hits"]) == (2, 2)
    by_bucket = {b["bucket"]: (b["picks"], b["hits"]) for b in s["by_edge"]}
    assert by_bucket == {"<0.05": (1, 0), "0.05-0.1": (0, 0), "0.1-0.15": (0, 0), "0.15-0.2": (1, 0), "0.2+": (2, 2)}


def test_profit_at_american_prices():
    assert payout(-110) == pytest.approx(100 / 110) and payout(150) == 1.5 and payout(-100) == 1.0
    with pytest.raises(ValueError, match="not an American price"):
        payout(-50)
    bets = pl.DataFrame(
        {
            "game_date": [D(2024, 11, 1), D(2024, 11, 1), D(2024, 11, 2), D(2024, 11, 2)],
            "book_line": [20.5, 10.5, 15.0, 7.5],
            "over_price": [-110.0, 120.0, -105.0, -110.0],
            "under_price": [-110.0, -140.0, -115.0, None],
            "p_over": [0.62, 0.40, 0.51, 0.45],
            TARGET: [25.0, 9.0, 15.0, 3.0],
        }
    )
    # 1: over at -110, 25 > 20.5: wins 100/110. 2: under at -140, 9 < 10.5: wins 100/140.
    # 3: over on 15, 15: a push, 0. 4: under has no price: no bet. Staked 3.
    result = profit(bets, "p_over", top_picks=1)
    assert result["all"]["bets"] == 3
    assert result["all"]["profit"] == pytest.approx(100 / 110 + 100 / 140)
    assert result["all"]["per_unit"] == pytest.approx((100 / 110 + 100 / 140) / 3)
    assert result["top"] == {"bets": 1, "profit": pytest.approx(100 / 110), "per_unit": pytest.approx(100 / 110)}  # edge 0.12


def test_real_prices_only_from_named_books_or_flagged_lines():
    base = {"game_id": "g", "player_id": 1, "status": "used", "captured_at": None, "points_line": 20.5, "over_price": -110.0, "under_price": -110.0}
    rows = pl.DataFrame(
        [
            {**base, "bookmaker": "Sportsbook", "real_prices": None},
            {**base, "bookmaker": "Pickem", "real_prices": None},
            {**base, "bookmaker": "Flagged", "real_prices": True},
            {**base, "bookmaker": "Sportsbook", "player_id": 2, "real_prices": None},
            {**base, "bookmaker": "Sportsbook", "player_id": 2, "points_line": 21.5, "real_prices": None},  # two lines: which was on offer?
        ],
        schema_overrides={"captured_at": pl.Datetime("us"), "real_prices": pl.Boolean},
    )
    priced = priced_lines(rows, ("Sportsbook",))
    assert sorted(zip(priced["bookmaker"], priced["player_id"])) == [("Flagged", 1), ("Sportsbook", 1)]


# -- which rows each block's model and weight see ----------------------------------------------------


@pytest.fixture(scope="module")
def history(main_command) -> dict:
    """The main command's feature store (with actual points) from 2023-24 through 2024-12-31 (one
    season of history keeps the fits short), and its lines."""
    with DuckDBWarehouse(main_command[0] / "warehouse.duckdb", read_only=True) as warehouse:
        rows = load_rows(warehouse, start=D(2023, 10, 1), end=D(2024, 12, 31))
        lines = read_lines(warehouse, D(2024, 11, 1), D(2024, 12, 31))
    return {"rows": rows, "lines": lines}


def quick_walk(rows: pl.DataFrame, lines: pl.DataFrame, directory: Path):
    settings = TrainSettings.from_config(pipeline_config(pipeline_overrides(directory, QUICK, None)))
    blocks = cut_blocks([d for d in rows["game_date"].unique().to_list() if d >= D(2024, 11, 1)], "month")

    def model_for(block: Block, before: pl.DataFrame) -> BlockModel:
        return fit_block_model(before, block, settings, None, directory / block.label, backend="plain")

    return walk(rows, blocks, model_for, lines=lines)


@pytest.mark.slow  # the main command's warehouse
def test_each_block_model_and_weight_see_nothing_of_the_block(history, tmp_path):
    rows, lines = history["rows"], history["lines"]
    december = pl.col("game_date") >= D(2024, 12, 1)
    reference = quick_walk(rows, lines, tmp_path / "reference")
    # December's outcomes and lines changed: December's model and blend weight must not move.
    changed_rows = rows.with_columns(pl.when(december).then(pl.col(TARGET) + 7).otherwise(pl.col(TARGET)).alias(TARGET))
    december_games = set(rows.filter(december)["game_id"].to_list())
    changed_lines = lines.with_columns(pl.when(pl.col("game_id").is_in(december_games)).then(pl.col("points_line") + 3).otherwise(pl.col("points_line")).alias("points_line"))
    changed = quick_walk(changed_rows, changed_lines, tmp_path / "changed")
    assert [b.block.start for b in reference.blocks] == [D(2024, 11, 1), D(2024, 12, 1)]
    for ref, new in zip(reference.blocks, changed.blocks):
        assert new.model.saved.booster.model_to_string() == ref.model.saved.booster.model_to_string()
        assert new.weight == ref.weight
        assert new.model.last_date < new.block.start
    assert reference.blocks[0].weight == 0.5 and reference.blocks[0].weight_from is None
    assert reference.blocks[1].weight_from["end"] == "2024-11-30"  # fitted on November's scored rows only
    # Every prediction the same (features are pre-game); November's rows the same in every column,
    # December's P(over) and blend follow December's changed lines, as they should.
    assert_frame_equal(changed.rows.select("game_id", "player_id", "predicted_points", "p10", "p90", "interval_bin"), reference.rows.select("game_id", "player_id", "predicted_points", "p10", "p90", "interval_bin"))
    stamped = ["model_id", "predicted_at"]  # a model's id holds the time it was fitted
    assert_frame_equal(changed.rows.filter(~december).drop(stamped), reference.rows.filter(~december).drop(stamped))
    # The change did reach December's scores (what is scored is the changed data).
    assert changed.rows.filter(december & pl.col("scored"))[TARGET].sum() > reference.rows.filter(december & pl.col("scored"))[TARGET].sum()

    # The other way round, the test can fail: November's outcomes changed move December's model and weight.
    november = pl.col("game_date").is_between(D(2024, 11, 1), D(2024, 11, 30))
    earlier = quick_walk(rows.with_columns(pl.when(november).then(pl.col(TARGET) + 7).otherwise(pl.col(TARGET)).alias(TARGET)), lines, tmp_path / "earlier")
    assert earlier.blocks[0].model.saved.booster.model_to_string() == reference.blocks[0].model.saved.booster.model_to_string()
    assert earlier.blocks[1].model.saved.booster.model_to_string() != reference.blocks[1].model.saved.booster.model_to_string()
    assert earlier.blocks[1].weight != reference.blocks[1].weight


def test_a_model_that_learned_from_the_block_is_refused():
    rows = pl.DataFrame({"game_date": [D(2024, 12, 1), D(2024, 12, 2)]})
    blocks = cut_blocks([D(2024, 12, 2)], "month")
    leaky = BlockModel(saved=None, last_date=D(2024, 12, 2), trained_on={})  # type: ignore[arg-type]
    with pytest.raises(ModelRefused, match=r"the model of block 2024-12-02..2024-12-02 learned from rows up to 2024-12-02"):
        walk(rows, blocks, lambda block, before: leaky)


# -- a given model -----------------------------------------------------------------------------------


@pytest.mark.slow  # the main command's model
def test_a_given_model_that_saw_the_range_is_refused(main_command, tmp_path):
    model = main_command[0] / "model"
    metrics = json.loads((model / artifacts.METRICS_FILE).read_text())
    last = max(D.fromisoformat(metrics["valid"]["end"]), D.fromisoformat(metrics["fit"]["refit"]["end"]))
    start = D(2024, 11, 1)
    assert last >= start  # the main command's model learned from 2024-25 (its validation split)
    run = run_in_process(tmp_path, "task=backtest", f"backtest.model_dir={model}", f"dates.start={start}", "dates.end=2024-11-30")
    assert run.returncode == 1
    text = unwrapped(run.output)
    assert f"trained or validated on rows up to {last}" in text and f"reaches into the backtest's range {start}..2024-11-30" in text
    assert not (tmp_path / "warehouse.duckdb").exists()  # refused before anything was built

    # The same model, had it learned only from dates before the range: accepted; one day later: refused.
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    for end, accepted in ((start - dt.timedelta(days=1), True), (start, False)):
        edited = {**metrics, "train": {**metrics["train"], "end": "2024-03-01"}, "valid": {**metrics["valid"], "end": str(end)}, "fit": {**metrics["fit"], "refit": {**metrics["fit"]["refit"], "end": str(end)}}}
        (copy / artifacts.METRICS_FILE).write_text(json.dumps(edited))
        if accepted:
            assert given_model(copy, start, D(2024, 11, 30)).last_date == end
        else:
            with pytest.raises(ModelRefused, match=f"rows up to {end}"):
                given_model(copy, start, D(2024, 11, 30))


# -- end to end: the morning of a date and the day after -------------------------------------------

DAY = D(2024, 12, 2)  # four games with lines in the bundled file
TIPOFF = dt.datetime(2024, 12, 3, 0, 30)  # 7:30 pm Eastern


def planted_lines(main_command, folder: Path) -> dict:
    """The bundled lines, and lines of a made-up book for two players without a bundled line on
    DAY: one captured before tip-off (and a later one after it), one captured after tip-off only."""
    folder.mkdir()
    shutil.copy(next(LINES_DIR.glob("*.parquet")), folder)
    warehouse = main_command[0] / "warehouse.duckdb"
    features = read_table(warehouse, "nba_predictions.ml_feature_store").filter(game_date=DAY)
    lined = set(read_table(warehouse, "nba_raw.prop_lines").filter(game_date=DAY, status="used")["player_id"].to_list())
    schedule = read_table(warehouse, "nba_raw.schedule").filter(game_date=DAY)
    free = features.filter(~pl.col("player_id").is_in(list(lined))).sort("player_id").head(2).join(schedule, on="game_id")
    before, after = free.row(0, named=True), free.row(1, named=True)
    rows = [
        (before, 6.5, TIPOFF - dt.timedelta(hours=3)),
        (before, 40.5, TIPOFF + dt.timedelta(minutes=20)),  # after tip-off: never used
        (after, 40.5, TIPOFF + dt.timedelta(minutes=20)),
    ]
    header = "game_date,player_name,home_team,away_team,commence_time,captured_at,bookmaker,line,over_price,under_price\n"
    text = "".join(
        f"{DAY},{r['player_name']},{r['home_team_abbr']},{r['away_team_abbr']},{TIPOFF.isoformat()}Z,{at.isoformat()}Z,Made-up book,{line},-110,-110\n"
        for r, line, at in rows
    )
    (folder / "planted.csv").write_text(header + text)
    return {"before": before["player_id"], "after": after["player_id"]}


@pytest.fixture(scope="module")
def mornings(main_command, tmp_path_factory) -> dict:
    """``task=backtest`` of DAY twice, with the same lines folder: on a fresh warehouse whose raw
    files stop the day before (DAY from its slate), and on a copy of the main command's warehouse."""
    root = tmp_path_factory.mktemp("backtest_day")
    planted = planted_lines(main_command, root / "lines")
    slates = root / "slates"
    slates.mkdir()
    boxscores = pl.read_parquet(sorted(RAW_DIR.glob("player_boxscores_*.parquet"))).filter(game_date=DAY)
    slate_from_boxscores(boxscores).write_csv(slates / f"slate_{DAY}.csv")
    common = ("task=backtest", f"data.lines_dir={root / 'lines'}", f"dates.start={DAY}", f"dates.end={DAY}", *QUICK)
    morning, after = root / "morning", root / "after"
    morning.mkdir()
    after.mkdir()
    shutil.copy(main_command[0] / "warehouse.duckdb", after / "warehouse.duckdb")
    runs = {
        "morning": run_in_process(morning, *common, f"data.slate_dir={slates}", f"data.boxscores_through={DAY - dt.timedelta(days=1)}", f"backtest.output_dir={morning / 'backtest'}"),
        "after": run_in_process(after, *common, f"backtest.output_dir={after / 'backtest'}"),
    }
    for run in runs.values():
        assert run.returncode == 0, run.output
    return {"morning": morning, "after": after, "slates": slates, "lines": root / "lines", "planted": planted, "runs": runs}


PREDICTED = ["game_id", "player_id", "predicted_points", "p10", "p90", "interval_bin", "points_line", "bookmaker", "p_over", "blend_weight", "blend_points", "blend_p_over"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
def test_the_backtest_of_a_morning_equals_the_backtest_with_its_box_scores(mornings):
    made = {name: pl.read_parquet(mornings[name] / "backtest" / ROWS_FILE).sort("player_id") for name in ("morning", "after")}
    assert made["morning"].height == made["after"].height > 50  # four games
    assert made["morning"]["points_line"].is_not_null().sum() > 20
    assert_frame_equal(made["morning"].select(PREDICTED), made["after"].select(PREDICTED))
    # The morning has no box score to score with; the day after scores the player-games with a line.
    assert not made["morning"]["scored"].any() and made["after"]["scored"].sum() > 20
    for name in ("morning", "after"):
        (block,) = (mornings[name] / "backtest" / "models").iterdir()
        record = json.loads((block / "block.json").read_text())
        assert record["model_trained_through"] < str(DAY) and record["blend_weight"] == 0.5
    assert "model / line MAE:" in mornings["runs"]["after"].output
    assert "nothing scored" in unwrapped(mornings["runs"]["morning"].output)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
def test_a_line_captured_after_tipoff_is_used_by_neither_backtest_nor_predict(main_command, mornings):
    planted = mornings["planted"]
    rows = pl.read_parquet(mornings["morning"] / "backtest" / ROWS_FILE)
    line_of = dict(zip(rows["player_id"], rows["points_line"]))
    assert line_of[planted["before"]] == 6.5 and line_of[planted["after"]] is None
    assert 40.5 not in rows["points_line"].to_list()
    with DuckDBWarehouse(mornings["morning"] / "warehouse.duckdb", read_only=True) as warehouse:
        statuses = read_prop_lines(warehouse, DAY, DAY).filter(pl.col("bookmaker") == "Made-up book")["status"].to_list()
    assert statuses == ["used", "after_tipoff", "after_tipoff"]
    # The run that built them counted the rows set aside in its summary, by status.
    with DuckDBWarehouse(mornings["after"] / "warehouse.duckdb", read_only=True) as warehouse:
        aside = read_prop_lines(warehouse, DAY, DAY).filter(pl.col("status") != "used")
    counts = ", ".join(f"{n:,} {status}" for status, n in aside.group_by("status").len().sort("len", "status", descending=[True, False]).iter_rows())
    assert f"{aside.height:,} prop line row(s) set aside in nba_raw.prop_lines ({counts})" in unwrapped(mornings["runs"]["after"].output)
    assert "after_tipoff" in counts
    run = run_in_process(
        mornings["morning"], "task=predict", f"data.lines_dir={mornings['lines']}", f"data.slate_dir={mornings['slates']}",
        f"data.boxscores_through={DAY - dt.timedelta(days=1)}", f"dates.start={DAY}", f"dates.end={DAY}", f"training.model_dir={main_command[0] / 'model'}",
    )  # fmt: skip
    assert run.returncode == 0, run.output
    predicted = read_table(mornings["morning"] / "warehouse.duckdb", "nba_predictions.player_points_predictions").filter(game_date=DAY)
    line_of = dict(zip(predicted["player_id"], predicted["points_line"]))
    assert line_of[planted["before"]] == 6.5 and line_of[planted["after"]] is None
    assert predicted.filter(player_id=planted["before"])["bookmaker"].item() == "Made-up book"
    assert predicted["made_before_tipoff"].all()
    assert not math.isnan(predicted.filter(player_id=planted["before"])["p_over"].item())
