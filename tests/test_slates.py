"""Tonight's slate: predictions before tip-off from a slate file, and the pre-game equivalence.

The strongest leak test the project has: take dates of the bundled data, derive their slates
from their box scores (``slate_from_boxscores``, as the example slate is derived), remove those
dates' box scores, and predict from the slates on a fresh warehouse: every feature-store row and
every prediction equals the one built with the box scores present (README's main command,
``conftest.main_command``). Then a slate for the morning after the last box score, with a star
listed out, lines, and starters not yet announced; and bad slate files and rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import RAW_DIR, pipeline_config, pipeline_overrides, query, read_table, run_in_process, unwrapped
from pipeline.build import Context
from pipeline.tables.pregame_roster import slate_from_boxscores
from pipeline.tasks import status_frame
from pipeline.warehouse.duckdb import DuckDBWarehouse
from training.artifacts import load_model
from training.data import read_feature_store
from training.lines import pick_lines
from training.predict import prediction_rows

pytestmark = pytest.mark.slow  # runs the pipeline end to end

FEATURE_STORE = "nba_predictions.ml_feature_store"
PREDICTIONS = "nba_predictions.player_points_predictions"
CONTEXT = "nba_analytics.upcoming_player_game_context"
ROSTER = "nba_raw.pregame_roster"
PHASE3 = ("nba_analytics.player_game_summary", "nba_analytics.team_offense_game_summary", "nba_analytics.team_defense_game_summary")

# The first day of the 2023 playoffs, and the third game date of 2024-25 (its first games and the
# whole of 2023-24 behind it): two seasons apart, so neither date is in the other's history (a
# date's season to date and the season before), whose box scores must all be there.
SLATE_DATES = [dt.date(2023, 4, 15), dt.date(2024, 10, 24)]
MORNING = dt.date(2024, 1, 6)  # the slate of the next-day test; box scores through the day before


def raw_without(dates: list[dt.date], target: Path) -> Path:
    """A copy of the bundled raw files without the box scores (player and team) of ``dates``."""
    target.mkdir()
    for path in sorted(RAW_DIR.glob("*.parquet")):
        pl.read_parquet(path).filter(~pl.col("game_date").is_in(dates)).write_parquet(target / path.name)
    return target


def boxscores_on(dates: list[dt.date]) -> pl.DataFrame:
    return pl.read_parquet(sorted(RAW_DIR.glob("player_boxscores_*.parquet"))).filter(pl.col("game_date").is_in(dates))


def model_dir(main_command) -> Path:
    return main_command[0] / "model"


def feature_rows(warehouse: Path, dates: list[dt.date]) -> pl.DataFrame:
    with DuckDBWarehouse(warehouse, read_only=True) as w:
        rows = read_feature_store(w, min(dates), max(dates))
    return rows.filter(pl.col("game_date").is_in(dates)).sort("game_date", "player_id")


# -- the pre-game equivalence ---------------------------------------------------------------------


def slates_with_lines(dates: list[dt.date]) -> pl.DataFrame:
    """The slates of ``dates`` derived from their box scores, with a made-up line for every third
    player (lines are no feature: they change P(over) and edge, not the features)."""
    derived = slate_from_boxscores(boxscores_on(dates))
    lined = pl.int_range(pl.len()) % 3 == 0
    return derived.with_columns(
        points_line=pl.when(lined).then(pl.lit(11.5)), bookmaker=pl.when(lined).then(pl.lit("made-up book"))
    )


@pytest.fixture(scope="module")
def from_slates(main_command, tmp_path_factory) -> Path:
    """``task=predict`` of SLATE_DATES on a fresh warehouse whose raw files lack those dates'
    box scores, from slates derived from them (one date in a Parquet file, one in a CSV file)."""
    workdir = tmp_path_factory.mktemp("from_slates")
    raw = raw_without(SLATE_DATES, workdir / "raw")
    slates = workdir / "slates"
    slates.mkdir()
    derived = slates_with_lines(SLATE_DATES)
    derived.filter(pl.col("game_date") < SLATE_DATES[-1]).write_parquet(slates / "slates.parquet")
    derived.filter(pl.col("game_date") == SLATE_DATES[-1]).write_csv(slates / f"slate_{SLATE_DATES[-1]}.csv")
    run = run_in_process(
        workdir, "task=predict", f"data.raw_dir={raw}", f"data.slate_dir={slates}",
        f"dates.list=[{','.join(map(str, SLATE_DATES))}]", f"training.model_dir={model_dir(main_command)}",
    )  # fmt: skip
    assert run.returncode == 0, run.output
    return workdir / "warehouse.duckdb"


def test_features_from_the_slates_equal_the_features_with_the_box_scores(main_command, from_slates):
    with_box_scores = feature_rows(main_command[0] / "warehouse.duckdb", SLATE_DATES)
    from_slate = feature_rows(from_slates, SLATE_DATES)
    assert set(with_box_scores["game_date"]) == set(SLATE_DATES)  # every date has rows to compare
    assert_frame_equal(from_slate, with_box_scores)


def test_predictions_from_the_slates_equal_the_predictions_with_the_box_scores(main_command, from_slates):
    """Every column of every prediction (the interval, its bin, the line, P(over), edge...), but the
    moment it was made; both made before tip-off, with the slates' lines."""
    saved = load_model(model_dir(main_command))
    features = feature_rows(main_command[0] / "warehouse.duckdb", SLATE_DATES)
    expected = prediction_rows(features, saved, lines=pick_lines(slates_with_lines(SLATE_DATES)), before_tipoff=SLATE_DATES)
    made = read_table(from_slates, PREDICTIONS).sort("game_date", "player_id")
    assert made.height == expected.height > 0
    assert made["made_before_tipoff"].all() and made["p10"].null_count() == 0
    assert made["p_over"].drop_nulls().len() == made["points_line"].drop_nulls().len() > 20
    assert_frame_equal(made.drop("predicted_at"), expected.sort("game_date", "player_id").drop("predicted_at"), check_exact=True)


def test_the_slate_dates_come_from_the_slates_and_build_nothing_of_phase_3(from_slates):
    sources = query(from_slates, f"SELECT DISTINCT game_date, source FROM {ROSTER} WHERE game_date IN ({', '.join(repr(str(d)) for d in SLATE_DATES)})")
    assert sorted(sources) == [(d, "slate") for d in SLATE_DATES]
    built = query(
        from_slates,
        "SELECT table_name, game_date FROM nba_orchestration.run_state WHERE table_name IN "
        f"({', '.join(repr(t) for t in PHASE3)}) AND game_date IN ({', '.join(repr(str(d)) for d in SLATE_DATES)})",
    )
    assert built == []
    # The history before them was built: the day before each slate date has Phase 3 rows.
    assert query(from_slates, "SELECT count(*) FROM nba_analytics.player_game_summary WHERE game_date = '2024-01-05'")[0][0] > 0


def test_status_counts_the_slate_dates_as_awaiting_box_scores_not_missing(from_slates):
    """``task=status`` on that warehouse (with the same raw files and slates): a box-score table's
    slate-only date is awaiting its box scores, not missing; Phase 4 has it built."""
    workdir = from_slates.parent
    sources = (f"data.raw_dir={workdir / 'raw'}", f"data.slate_dir={workdir / 'slates'}")
    run = run_in_process(workdir, "task=status", *sources)
    assert run.returncode == 0, run.output
    assert f"2 date(s) known from a slate only, before their box scores ({SLATE_DATES[0]}, {SLATE_DATES[1]})" in unwrapped(run.output)
    cfg = pipeline_config(pipeline_overrides(workdir, sources, None))
    with DuckDBWarehouse(from_slates, read_only=True) as warehouse:
        frame = status_frame(Context.open(cfg, warehouse), by_month=False)
    awaiting = {(t, season): n for t, season, n in frame.select("table", "season", "awaiting_box_scores").iter_rows() if n}
    # The player box scores are loaded on the slate dates too (no rows: the pre-game roster reads
    # them for the played dates beside the slates), so only the other box-score tables await them.
    awaiting_tables = (*PHASE3, "nba_raw.team_boxscores")
    assert awaiting == {(table, season): 1 for table in awaiting_tables for season in ("2022-23", "2024-25")}
    assert frame.filter(table=CONTEXT, season="2024-25")["ok"].item() >= 1


# -- the morning after the last box score ---------------------------------------------------------


@pytest.fixture(scope="module")
def morning(main_command, tmp_path_factory) -> dict:
    """Box scores through the day before MORNING; MORNING's slate from its real rosters, with the
    team's most used player listed ``out``, a teammate ``questionable``, one game's starters not
    announced yet, and made-up lines for that team's active players."""
    workdir = tmp_path_factory.mktemp("morning")
    context = read_table(main_command[0] / "warehouse.duckdb", CONTEXT).filter(game_date=MORNING)
    star = context.sort("plays_share_last_10_team_games", descending=True, nulls_last=True).row(0, named=True)
    slate = slate_from_boxscores(boxscores_on([MORNING]))
    teammates = slate.filter((pl.col("team_abbr") == star["team_abbr"]) & (pl.col("player_id") != star["player_id"]) & (pl.col("status") == "active"))
    questionable = teammates["player_id"][0]
    lined = teammates["player_id"][1:4].to_list()
    other_game = slate.filter(pl.col("game_id") != star["game_id"])["game_id"][0]
    slate = slate.with_columns(
        status=pl.when(pl.col("player_id") == star["player_id"]).then(pl.lit("out"))
        .when(pl.col("player_id") == questionable).then(pl.lit("questionable"))
        .otherwise(pl.col("status")),
        starter=pl.when(pl.col("game_id") == other_game).then(None).otherwise(pl.col("starter")),
        points_line=pl.when(pl.col("player_id").is_in(lined)).then(pl.lit(14.5)),
        bookmaker=pl.when(pl.col("player_id").is_in(lined)).then(pl.lit("made-up book")),
    )  # fmt: skip
    slates = workdir / "slates"
    slates.mkdir()
    slate.write_csv(slates / f"slate_{MORNING}.csv")
    run = run_in_process(
        workdir, "task=predict", f"data.slate_dir={slates}", f"data.boxscores_through={MORNING - dt.timedelta(days=1)}",
        f"dates.start={MORNING}", f"dates.end={MORNING}", f"training.model_dir={model_dir(main_command)}",
    )  # fmt: skip
    assert run.returncode == 0, run.output
    return {
        "workdir": workdir, "slate": slate, "star": star, "questionable": questionable, "other_game": other_game,
        "model": model_dir(main_command), "run": run,
    }  # fmt: skip


def test_every_listed_player_who_may_play_is_predicted(morning):
    predicted = read_table(morning["workdir"] / "warehouse.duckdb", PREDICTIONS).filter(game_date=MORNING)
    slate = morning["slate"]
    may_play = set(slate.filter(~pl.col("status").is_in(["out", "inactive"]))["player_id"])
    assert set(predicted["player_id"]) == may_play
    assert morning["star"]["player_id"] not in may_play and morning["questionable"] in may_play
    # Starters not announced yet: the game's players are predicted all the same.
    assert set(slate.filter(game_id=morning["other_game"])["player_id"]) & may_play <= set(predicted["player_id"])
    assert predicted["predicted_points"].is_not_null().all()


def test_a_player_listed_out_shifts_his_share_to_his_teammates(main_command, morning):
    star = morning["star"]
    before = read_table(main_command[0] / "warehouse.duckdb", CONTEXT).filter(game_date=MORNING, team_abbr=star["team_abbr"])
    after = read_table(morning["workdir"] / "warehouse.duckdb", CONTEXT).filter(game_date=MORNING, team_abbr=star["team_abbr"])
    assert star["player_id"] in set(before["player_id"]) and star["player_id"] not in set(after["player_id"])
    joined = after.join(before, on="player_id", suffix="_box")
    assert joined.height == after.height > 5
    missing = joined["inactive_teammates_usage_share"] - joined["inactive_teammates_usage_share_box"]
    assert missing.to_list() == pytest.approx([star["plays_share_last_10_team_games"]] * joined.height)
    assert all(star["player_name"] in names for names in joined["inactive_teammate_names"])


def test_a_slate_of_one_sides_players_is_predicted(morning, tmp_path):
    """A desk that prices one team: MORNING's slate lists four players of the away side of one game
    and nothing else. The game is on the calendar with its date and both teams (before, its date was
    NULL and task=predict refused: "no game dates in ...; the box scores and slates cover None..."),
    and the four are predicted against their opponent."""
    shutil.copy(morning["workdir"] / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    slate = slate_from_boxscores(boxscores_on([MORNING]))
    game = slate.row(0, named=True)["game_id"]
    four = slate.filter(game_id=game, is_home=False, status="active").head(4)
    slates = tmp_path / "slates"
    slates.mkdir()
    four.write_csv(slates / "one_side.csv")
    run = run_in_process(
        tmp_path, "task=predict", f"data.boxscores_through={MORNING - dt.timedelta(days=1)}", f"dates.start={MORNING}",
        f"dates.end={MORNING}", f"training.model_dir={morning['model']}",
    )  # fmt: skip
    assert run.returncode == 0, run.output
    schedule = read_table(tmp_path / "warehouse.duckdb", "nba_raw.schedule").filter(game_date=MORNING)
    home = slate.filter(game_id=game, is_home=True)["team_abbr"][0]
    assert schedule.select("game_id", "home_team_abbr", "away_team_abbr").rows() == [(game, home, four["team_abbr"][0])]
    predicted = read_table(tmp_path / "warehouse.duckdb", PREDICTIONS).filter(game_date=MORNING)
    assert sorted(predicted["player_id"]) == sorted(four["player_id"])
    assert set(predicted["opponent_abbr"]) == {home} and predicted["predicted_points"].is_not_null().all()


def test_bad_slate_rows_fail_naming_file_row_and_value(tmp_path):
    slate = slate_from_boxscores(boxscores_on([MORNING])).with_columns(
        status=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("probable")).otherwise(pl.col("status"))
    )
    slates = tmp_path / "slates"
    slates.mkdir()
    slate.write_csv(slates / "tonight.csv")
    common = (f"data.slate_dir={slates}", "tables=[pregame_roster]", f"dates.start={MORNING}", f"dates.end={MORNING}")
    run = run_in_process(tmp_path, *common)
    assert run.returncode != 0
    text = unwrapped(run.output)
    assert "tonight.csv row 4" in text and "status 'probable' is not one of active, questionable, out, inactive" in text

    run = run_in_process(tmp_path, *common, "data.on_bad_rows=quarantine")
    assert run.returncode == 0, run.output
    roster = read_table(tmp_path / "warehouse.duckdb", ROSTER).filter(game_date=MORNING)
    assert roster.height == slate.height - 1 and set(roster["source"]) == {"slate"}
    quarantined = read_table(tmp_path / "warehouse.duckdb", "nba_raw.quarantine").filter(game_date=MORNING)
    assert quarantined.select("source_row", "reason").rows() == [(4, "status 'probable' is not one of active, questionable, out, inactive")]


def test_a_slate_file_of_the_wrong_type_holds_back_only_its_dates(tmp_path):
    slates = tmp_path / "slates"
    slates.mkdir()
    slate_from_boxscores(boxscores_on([MORNING])).write_csv(slates / "good.csv")
    other = MORNING + dt.timedelta(days=1)
    broken = slate_from_boxscores(boxscores_on([other])).with_columns(starter=pl.lit("maybe"))
    broken.write_csv(slates / "broken.csv")
    run = run_in_process(tmp_path, f"data.slate_dir={slates}", "tables=[pregame_roster]", f"dates.start={MORNING}", f"dates.end={other}")
    assert run.returncode != 0
    text = unwrapped(run.output)
    assert "broken.csv: a column does not have the expected type: column 'starter' row 1 holds 'maybe'" in text
    roster = read_table(tmp_path / "warehouse.duckdb", ROSTER)
    assert set(roster.filter(source="slate")["game_date"]) == {MORNING}  # the good file's date built
    states = dict(query(tmp_path / "warehouse.duckdb", f"SELECT game_date, status FROM nba_orchestration.run_state WHERE table_name = '{ROSTER}'"))
    assert states[MORNING] == "ok" and states[other] == "failed"


def test_lines_on_the_slate_get_p_over_and_edge(morning):
    predicted = read_table(morning["workdir"] / "warehouse.duckdb", PREDICTIONS).filter(game_date=MORNING)
    with_line = predicted.filter(pl.col("points_line").is_not_null())
    assert with_line.height == 3 and set(with_line["points_line"]) == {14.5} and set(with_line["bookmaker"]) == {"made-up book"}
    assert with_line["p_over"].is_between(0, 1).all() and with_line["edge"].to_list() == pytest.approx((with_line["p_over"] - 0.5).to_list())
    assert predicted.filter(pl.col("points_line").is_null())["p_over"].is_null().all()
    assert predicted["made_before_tipoff"].all()
    # The slate as printed, in the CSV beside the run log.
    printed = pl.read_csv(next((morning["workdir"] / "logs").glob("*-predictions.csv")))
    assert printed.height == predicted.height


def test_grading_after_the_box_scores_arrive_uses_the_mornings_predictions(morning, tmp_path):
    """The morning's predictions, then the box scores arrive (the slate goes: the roster now comes
    from the box scores, where the star is not out) and the features are rebuilt and predicted
    again; grading takes the morning's predictions, by their predicted_at."""
    shutil.copy(morning["workdir"] / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    model = morning["model"]
    morning_rows = read_table(tmp_path / "warehouse.duckdb", PREDICTIONS).filter(game_date=MORNING)
    no_slates = tmp_path / "no_slates"
    no_slates.mkdir()
    day = (f"dates.start={MORNING}", f"dates.end={MORNING}")
    arrived = run_in_process(tmp_path, f"data.slate_dir={no_slates}", "tables=[player_game_summary,ml_feature_store]", *day)
    assert arrived.returncode == 0, arrived.output
    again = run_in_process(tmp_path, "task=predict", f"data.slate_dir={no_slates}", f"training.model_dir={model}", *day)
    assert again.returncode == 0, again.output
    stored = read_table(tmp_path / "warehouse.duckdb", PREDICTIONS).filter(game_date=MORNING)
    evening = stored.filter(~pl.col("made_before_tipoff"))
    assert morning["star"]["player_id"] in set(evening["player_id"])  # listed active in the box scores
    changed = evening.join(morning_rows, on="player_id", suffix="_morning").filter(pl.col("predicted_points") != pl.col("predicted_points_morning"))
    assert changed.height > 0  # the rebuilt features do predict differently

    graded = run_in_process(tmp_path, "task=grade", *day)
    assert graded.returncode == 0, graded.output
    accuracy = read_table(tmp_path / "warehouse.duckdb", "nba_predictions.prediction_accuracy").filter(game_date=MORNING)
    from_morning = accuracy.join(morning_rows.select("player_id", "predicted_at", "predicted_points"), on="player_id", suffix="_morning")
    assert from_morning.height == morning_rows.height
    assert (from_morning["predicted_at"] == from_morning["predicted_at_morning"]).all() and from_morning["made_before_tipoff"].all()
    assert from_morning["predicted_points"].to_list() == from_morning["predicted_points_morning"].to_list()
