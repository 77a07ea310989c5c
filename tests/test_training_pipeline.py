"""v5 model end to end on the bundled data: the quality bar, honesty, determinism, predict and grade.

README's main command runs once per test worker (conftest.main_command: every table over the whole
history, then the model, about 50 s); its model is reused by every test. A few more fits cover
the refit switch, the feature-store-only rule (Ray Train and plain LightGBM: the same model) and
the multirun sweep; `task=predict` and `task=grade` run on copies of its warehouse, with prop
lines too. The 80 % intervals are checked on the main command's model.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir

import pipeline.__main__  # noqa: F401 - registers ${project_root:}
import datetime as dt

from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, feature_matrix
from pipeline.warehouse import PartitionWrite, TableSchema
from pipeline.warehouse.duckdb import DuckDBWarehouse
from training.artifacts import load_model
from training.data import TARGET, build_dataset, load_rows, make_split
from training.evaluate import tier_expr
from training.lines import PREGAME_ROSTER
from training.predict import predict_dates
from training.baselines import SHORT_LABELS
from training.report import BASELINE_LABELS
from training.train import VOLATILE_KEYS, TrainSettings, dataset_for, existing_model_for, train_and_report

from conftest import PROJECT_ROOT, query, read_table, run_in_process, run_pipeline, unwrapped

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]

CONF_DIR = str(PROJECT_ROOT / "conf")
REQUIRED_KEYS = [
    ("test", "mae"), ("test", "rmse"), ("test", "rows"), ("test", "start"), ("test", "end"), ("valid", "mae"),
    ("train", "rows"), ("baselines", "rules", "mae"), ("baselines", "rules_core", "mae"), ("baselines", "last10", "mae"),
    ("baselines", "season_avg", "mae"), ("baselines", "prior_season_avg", "mae"), ("best_baseline", "name"),
    ("best_baseline", "mae"), ("best_baseline", "ratio"), ("opening_weeks", "overall"), ("features",), ("params",),
    ("data_fingerprint",), ("git_commit",),
]  # fmt: skip


def compose_cfg(warehouse: Path, workdir: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"warehouse.path={warehouse}", f"logs.dir={workdir / 'logs'}", "ray.num_cpus=2", *overrides],
        )


def recorded(metrics: dict) -> dict:
    """What metrics.json says about a model, but when, where and by which backend it was fitted,
    and the data fingerprint (it covers the rows' IDs and names too, not only what the model reads)."""
    kept = {k: v for k, v in metrics.items() if k not in (*VOLATILE_KEYS, "data_fingerprint")}
    return {**kept, "fit": {k: v for k, v in metrics["fit"].items() if k not in ("backend", "num_workers")}}


@pytest.fixture(scope="module")
def workdir(main_command) -> Path:
    return main_command[0]


@pytest.fixture(scope="module")
def trained(main_command) -> tuple[Path, dict]:
    """The default model, trained at the end of the main command, which says how it did."""
    workdir, output = main_command
    out = workdir / "model"
    assert "test MAE" in output and "x the best baseline" in output and "baselines on the same rows: " in output
    assert f"report: {out / 'report.md'}" in output
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def rows(workdir) -> pl.DataFrame:
    with DuckDBWarehouse(workdir / "warehouse.duckdb", read_only=True) as warehouse:
        return load_rows(warehouse)


@pytest.fixture(scope="module", autouse=True)
def _stop_ray():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_beats_every_baseline_on_the_same_rows(trained):
    _, m = trained
    for path in REQUIRED_KEYS:
        value = m
        for key in path:
            assert key in value, f"metrics.json lacks {'.'.join(path)}"
            value = value[key]
    rules = m["baselines"]["rules"]["mae"]
    assert m["test"]["mae"] <= 0.95 * rules
    assert m["test"]["mae"] < min(s["mae"] for s in m["baselines"].values())
    assert m["best_baseline"]["ratio"] < 0.97
    # Every predictor was scored on the same rows: the test evaluation rows.
    assert {s["rows"] for s in m["baselines"].values()} == {m["test"]["rows"]}
    assert m["test"]["rows"] > 5000 and m["train"]["rows"] > 40000
    assert m["features"] == FEATURE_COLUMNS
    # Fitted through Ray Train, stopped early on the validation MAE.
    assert m["fit"]["backend"] == "ray_train" and m["fit"]["num_workers"] == 1
    assert m["fit"]["best_iteration"] + m["params"]["early_stopping_rounds"] == m["fit"]["rounds"] < m["params"]["num_boost_round"]
    # The model kept is that fit's settings again, for the rounds it chose, on training + validation
    # rows (never a test date); validation is scored with the early-stopping fit, as LightGBM did.
    refit = m["fit"]["refit"]
    assert m["params"]["refit"] is True and refit["rounds"] == m["fit"]["best_iteration"]
    assert refit["rows"] > m["train"]["rows"] + m["valid"]["rows"] and refit["start"] == m["train"]["start"]
    assert m["valid"]["end"] <= refit["end"] < m["split"]["test_start"]
    assert m["valid"]["mae"] == pytest.approx(m["valid"]["lightgbm_l1"], abs=1e-9)


def test_refit_off_keeps_the_early_stopping_fit(trained, workdir, tmp_path):
    """training.refit=false: the model kept is the early-stopping fit itself. Its validation
    scores are the default model's (both come from that fit); its test predictions are not."""
    out, default = trained
    cfg = compose_cfg(workdir / "warehouse.duckdb", tmp_path, "training.refit=false")
    with DuckDBWarehouse(workdir / "warehouse.duckdb", read_only=True) as warehouse:
        plain = train_and_report(cfg, warehouse, output_dir=tmp_path / "no-refit", backend="plain", print_summary=False).metrics
    assert plain["fit"]["refit"] is None and plain["params"]["refit"] is False
    assert plain["fit"]["best_iteration"] == default["fit"]["best_iteration"]
    assert plain["valid"]["mae"] == default["valid"]["mae"]
    assert load_model(tmp_path / "no-refit").booster.num_trees() == load_model(out).booster.num_trees() == default["fit"]["best_iteration"]
    assert plain["test"]["mae"] != default["test"]["mae"]
    assert "the model kept is the early-stopping fit (`training.refit=false`)" in (tmp_path / "no-refit" / "report.md").read_text()
    assert f"fitted again for {default['fit']['refit']['rounds']} rounds" in (out / "report.md").read_text()


def test_headline_names_the_best_baseline_on_the_same_rows(trained, main_command):
    """report.md and the printed summary lead with the model against the best baseline, by name;
    its ratio is model MAE / that baseline's MAE on the test rows; the old rules model stays a row."""
    out, m = trained
    base = m["baselines"]
    name = min(base, key=lambda n: base[n]["mae"])
    best = m["best_baseline"]
    assert best["name"] == name and best["mae"] == base[name]["mae"]
    assert best["ratio"] == pytest.approx(m["test"]["mae"] / base[name]["mae"], rel=1e-12)
    assert m["ratios"]["test_mae_vs_best_baseline"] == best["ratio"]
    assert base[name]["rows"] == m["test"]["rows"]
    label = SHORT_LABELS[name]
    headline = (out / "report.md").read_text().split("\n")[2]
    assert headline.startswith(f"Test MAE **{m['test']['mae']:.3f}**")
    assert f"**{best['ratio']:.3f} × the best baseline**, {label} {best['mae']:.3f}, on the same rows" in headline
    assert f"The old rules model (with its fixed adjustments, bias {base['rules']['bias']:+.2f}) scores {base['rules']['mae']:.3f}" in headline
    report = (out / "report.md").read_text()
    assert f"| {BASELINE_LABELS['rules']} | {base['rules']['mae']:.3f} |" in report  # the reference row
    output = unwrapped(main_command[1])
    assert f"test MAE {m['test']['mae']:.3f} on {m['test']['rows']:,} player-games" in output
    assert f"{best['ratio']:.3f} x the best baseline, {label} {best['mae']:.3f}" in output
    assert f"baselines on the same rows: {label} {best['mae']:.3f}," in output
    assert f"old rules model {base['rules']['mae']:.3f} (reference" in output


def test_opening_weeks_score_every_predictor_on_the_same_rows(trained, rows):
    """The test split's played rows with fewer than 5 earlier games, apart from the evaluation rows:
    the model and every baseline on all of them, by 0, 1-2 and 3-4 earlier games."""
    out, m = trained
    ow = m["opening_weeks"]
    test = build_dataset(rows, make_split(rows["game_date"].unique().to_list())).opening("test")
    assert ow["rows"] == test.height > 50
    assert test["games_played_season"].max() < 5 and (test["actual_minutes"] > 0).all()
    assert set(ow["overall"]) == {"model", *m["baselines"]}
    assert {s["rows"] for s in ow["overall"].values()} == {ow["rows"]}
    assert [g["earlier_games"] for g in ow["by_earlier_games"]] == ["0", "1-2", "3-4"]
    assert sum(g["rows"] for g in ow["by_earlier_games"]) == ow["rows"]
    # The model beats every baseline there too, the previous season carried over included.
    assert ow["overall"]["model"]["mae"] < min(s["mae"] for name, s in ow["overall"].items() if name != "model")
    zero = ow["by_earlier_games"][0]["rows"]
    # No season average before a player's first game: those baselines used the fallback there.
    assert ow["fallback"]["used_on"]["season_avg"] == zero and 0 < ow["fallback"]["rows"]
    assert ow["fallback"]["used_on"]["prior_season_avg"] < zero
    first = test.filter(pl.col("games_played_season") == 0)
    assert ow["fallback"]["used_on"]["prior_season_avg"] == first["points_avg_prev_season"].null_count()
    report = (out / "report.md").read_text()
    assert "## Opening weeks" in report and f"{ow['rows']:,} player-games" in report
    assert f"**{ow['fallback']['points']:.2f} points**" in report
    assert f"| **all (< 5)** | {ow['rows']:,} | **{ow['overall']['model']['mae']:.3f}** |" in report


def test_rerun_shows_the_model_of_the_same_rows_and_settings(trained, workdir, tmp_path):
    """The main command run again finds its model instead of training another; other settings or
    other rows find none (a rerun after those trains)."""
    out, first = trained
    warehouse_path = workdir / "warehouse.duckdb"
    same = ("training.models_root=" + str(workdir / "models"), f"training.output_dir={out}")

    def existing(path: Path, *overrides: str):
        settings = TrainSettings.from_config(compose_cfg(path, tmp_path, *same, *overrides))
        with DuckDBWarehouse(path, read_only=True) as warehouse:
            return existing_model_for(settings, dataset_for(settings, warehouse))

    found = existing(warehouse_path)
    assert found is not None and found.model_id == first["model_id"] and found.output_dir == out
    assert existing(warehouse_path, "training.params.num_leaves=7") is None
    assert existing(warehouse_path, "training.split.test_end=2025-05-31") is None
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse_path, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE nba_predictions.ml_feature_store SET points_avg_last_10 = points_avg_last_10 + 1 WHERE game_date = '2023-01-10'")
    assert existing(copy) is None

    rerun = run_pipeline(workdir, "training.after_run=true", f"training.output_dir={out}")
    assert rerun.returncode == 0, rerun.output
    assert f"unchanged since model {first['model_id']} was trained" in rerun.output
    assert f"test MAE {first['test']['mae']:.3f}" in rerun.output


def test_report_and_plots(trained):
    out, m = trained
    report = (out / "report.md").read_text()
    # The historical reference is quoted beside what the same rules score on this test window's rows.
    assert f"On this test window's rows the same rules (without their random noise) score {m['baselines']['rules']['mae']:.3f}" in report
    for section in ("By player tier", "By month", "within 1", "RMSE"):
        assert section in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["feature_importance.png", "mae_by_tier.png", "predicted_vs_actual.png", "residuals_by_month.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report
    assert [t["tier"] for t in m["by_tier"]] == ["bench", "role", "starter", "star"]
    assert sum(t["rows"] for t in m["by_tier"]) == sum(r["rows"] for r in m["by_month"]) == m["test"]["rows"]


def test_default_split_no_date_in_two_splits(trained, rows):
    _, m = trained
    split = make_split(rows["game_date"].unique().to_list())
    assert split.as_dict() == m["split"]
    ds = build_dataset(rows, split)
    dates = {name: set(getattr(ds, name)["game_date"].to_list()) for name in ("train", "valid", "test")}
    assert not (dates["train"] & dates["valid"] or dates["valid"] & dates["test"] or dates["train"] & dates["test"])
    all_dates = sorted(rows["game_date"].unique().to_list())
    # 70 / 15 / 15 of the game dates, in order.
    labels = [split.label(d) for d in all_dates]
    assert labels == sorted(labels, key=["train", "valid", "test"].index)
    assert abs(labels.count("train") / len(all_dates) - 0.70) < 0.01 and abs(labels.count("test") / len(all_dates) - 0.15) < 0.01
    assert m["test"]["start"] >= m["split"]["test_start"] and m["valid"]["end"] < m["split"]["test_start"]


def test_evaluation_rows_count_earlier_played_games_of_the_season(workdir):
    """games_played_season, the evaluation filter's input, counts the player's played games
    (minutes > 0) of the same season strictly before the date."""
    mismatches = query(
        workdir / "warehouse.duckdb",
        """
        SELECT count(*) FROM nba_predictions.ml_feature_store f
        WHERE f.games_played_season != (
            SELECT count(*) FROM nba_analytics.player_game_summary p
            WHERE p.player_id = f.player_id AND p.season = f.season AND p.game_date < f.game_date
              AND NOT p.did_not_play AND p.minutes > 0)
        """,
    )
    assert mismatches == [(0,)]


# Short fits, for a test that compares fits of its own (each an early-stopping fit and a refit).
SHORT_FIT = ("training.num_boost_round=60", "training.early_stopping_rounds=10")


def test_features_come_only_from_the_feature_store(workdir, tmp_path, rows):
    """Changing columns the model must not read (feature-store IDs, box-score columns other than
    points and minutes) leaves the fitted model unchanged; changing a feature does not. The first
    fit goes through Ray Train, the others are plain ``lightgbm.train`` calls in this process: the
    same model, bit for bit. (That the main command's model comes out the same again, through Ray
    Train in another process, is test_bigquery_pipeline's.)"""
    test_matrix = feature_matrix(build_dataset(rows, make_split(rows["game_date"].unique().to_list())).test)

    def fit(path: Path, name: str, backend: str = "plain") -> tuple[np.ndarray, dict]:
        """A short fit on the warehouse at ``path``: its test predictions and metrics."""
        with DuckDBWarehouse(path, read_only=True) as warehouse:
            cfg = compose_cfg(path, tmp_path, *SHORT_FIT)
            metrics = train_and_report(cfg, warehouse, output_dir=tmp_path / name, backend=backend, print_summary=False).metrics
        model = load_model(tmp_path / name)
        assert model.features == FEATURE_COLUMNS == model.booster.feature_name()
        return model.booster.predict(test_matrix), metrics

    original, original_metrics = fit(workdir / "warehouse.duckdb", "original", backend="ray")
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(workdir / "warehouse.duckdb", copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE nba_predictions.ml_feature_store SET player_name = 'someone else', team_abbr = 'XXX', opponent_abbr = 'YYY', feature_version = 99")
        con.execute(
            "UPDATE nba_analytics.player_game_summary SET reb = reb + 5, ast = 0, fga = fga + 3, fgm = 0, usage_rate = NULL, "
            "plus_minus = 42, starter = NOT starter, ts_pct = 0.0"
        )
    same, same_metrics = fit(copy, "same")
    assert (original_metrics["fit"]["backend"], same_metrics["fit"]["backend"]) == ("ray_train", "lightgbm")
    np.testing.assert_array_equal(same, original)
    assert (tmp_path / "same" / "model.txt").read_text() == (tmp_path / "original" / "model.txt").read_text()
    assert recorded(same_metrics) == recorded(original_metrics)
    assert same_metrics["fit"]["refit"]["rounds"] == same_metrics["fit"]["best_iteration"]

    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE nba_predictions.ml_feature_store SET points_avg_last_3 = points_avg_last_3 + 3 WHERE season = '2022-23'")
    changed, changed_metrics = fit(copy, "changed")
    assert not np.array_equal(changed, original)
    assert changed_metrics["data_fingerprint"] != same_metrics["data_fingerprint"]


def test_predict_and_grade_end_to_end(trained, workdir, tmp_path):
    out, _ = trained
    shutil.copy(workdir / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    dates = ["2025-03-05", "2025-03-06", "2025-03-07"]
    args = [f"training.model_dir={out}", "dates.start=2025-03-05", "dates.end=2025-03-07"]
    for _ in range(2):  # twice: the second run replaces the same partitions
        proc = run_in_process(tmp_path, "task=predict", *args)
        assert proc.returncode == 0, proc.output
    saved = load_model(out)
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path, read_only=True) as con:
        features = pl.from_arrow(
            con.execute(
                "SELECT * FROM nba_predictions.ml_feature_store WHERE game_date BETWEEN '2025-03-05' AND '2025-03-07' ORDER BY game_id, player_id"
            ).to_arrow_table()
        )
        predictions = pl.from_arrow(
            con.execute("SELECT * FROM nba_predictions.player_points_predictions ORDER BY game_id, player_id").to_arrow_table()
        )
    assert predictions.height == features.height > 100
    assert sorted({d.isoformat() for d in predictions["game_date"].unique()}) == dates
    assert predictions["model_id"].unique().to_list() == [saved.model_id]
    np.testing.assert_allclose(predictions["predicted_points"].to_numpy(), saved.booster.predict(feature_matrix(features)))
    assert predictions["feature_fingerprint"].null_count() == 0 and predictions["feature_fingerprint"].n_unique() > 100

    proc = run_in_process(tmp_path, "task=grade", "dates.start=2025-03-05", "dates.end=2025-03-07")
    assert proc.returncode == 0, proc.output
    assert "prediction accuracy per date" in proc.stderr and "2025-03-06" in proc.stderr
    with duckdb.connect(path, read_only=True) as con:
        graded = pl.from_arrow(con.execute("SELECT * FROM nba_predictions.prediction_accuracy").to_arrow_table())
        actual = dict(
            ((g, p), float(pts))
            for g, p, pts in con.execute(
                "SELECT game_id, player_id, pts FROM nba_analytics.player_game_summary WHERE game_date BETWEEN '2025-03-05' AND '2025-03-07'"
            ).fetchall()
        )
    assert graded.height == predictions.height
    for row in graded.iter_rows(named=True):
        assert row["actual_points"] == actual[(row["game_id"], row["player_id"])]
        assert row["absolute_error"] == pytest.approx(abs(row["predicted_points"] - row["actual_points"]))
    assert 0 < graded["played"].sum() < graded.height  # dressed players who did not play are graded, not scored
    assert graded["is_evaluation_row"].sum() <= graded["played"].sum()


def test_multirun_writes_a_sweep_summary_sorted_by_validation_mae(workdir):
    """Two jobs in one process (Ray started once); short fits through Ray Train's local mode
    (num_workers=0, the same training loop without worker actors) to keep the test quick."""
    sweep = workdir / "sweep"
    proc = run_pipeline(
        workdir, "task=train", "training.params.num_leaves=7,15", "training.num_boost_round=40",
        "training.early_stopping_rounds=10", "training.num_workers=0", f"hydra.sweep.dir={sweep}", multirun=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.output
    jobs = [json.loads((sweep / j / "metrics.json").read_text()) for j in ("0", "1")]
    assert [j["params"]["lightgbm"]["num_leaves"] for j in jobs] == [7, 15]
    assert [j["fit"]["backend"] for j in jobs] == ["ray_train_local"] * 2
    summary = pl.read_csv(sweep / "sweep_summary.csv")
    assert summary["valid_mae"].to_list() == sorted(j["valid"]["mae"] for j in jobs)
    # Each job against the best baseline on its own test rows, named, as in its report; old rules for reference.
    by_job = {row["job"]: row for row in summary.iter_rows(named=True)}
    for number, job in zip(("0", "1"), jobs):
        row = by_job[int(number)]
        assert (row["best_baseline"], row["test_vs_best_baseline"]) == (job["best_baseline"]["name"], job["best_baseline"]["ratio"])
        assert row["test_vs_rules"] == job["ratios"]["test_mae_vs_rules"] != row["test_vs_best_baseline"]
    markdown = (sweep / "sweep_summary.md").read_text()
    assert "sorted by validation MAE" in markdown and "| test / best baseline |" in markdown
    assert f"| {SHORT_LABELS[jobs[0]['best_baseline']['name']]} {jobs[0]['best_baseline']['mae']:.4f} |" in markdown
    assert "sweep summary" in proc.stderr


def readme_interval_figures() -> tuple[float, float, float, float]:
    """What README says of the intervals on the bundled data: overall coverage, the per-tier range
    and the mean width, as fractions and points (one number in README and in the test)."""
    text = " ".join((PROJECT_ROOT / "README.md").read_text().split())
    found = re.search(r"on the bundled data (\d+) % of actual points fall inside, (\d+)-(\d+) % in every tier, mean width about (\d+) points", text)
    assert found, "README no longer states the intervals' coverage and width"
    overall, low, high, width = (int(g) for g in found.groups())
    return overall / 100, low / 100, high / 100, float(width)


def test_intervals_cover_80_percent_of_test_rows_overall_and_per_tier(trained, rows):
    """Calibrated on the validation rows only; on the default split's test rows the share of actual
    points in [p10, p90], overall and in every minutes tier, and the mean width, are what README says
    (to its precision: whole percents, whole points). The intervals.json loaded with the model gives
    the same figures as metrics.json, counted here from the bounds themselves."""
    out, m = trained
    iv = m["intervals"]
    overall, low, high, width = readme_interval_figures()
    assert round(iv["coverage"], 2) == overall and iv["rows"] == m["test"]["rows"]
    assert [t["tier"] for t in iv["by_tier"]] == [t["tier"] for t in m["by_tier"]]
    for tier in iv["by_tier"]:
        assert low <= round(tier["coverage"], 2) <= high, tier
    assert round(iv["mean_width"]) == width
    assert iv["bins"]["all"] >= 1 and all(n >= 1 for n in iv["bins"].values())
    saved = load_model(out)
    assert saved.intervals is not None and saved.intervals.calibrated_on["split"] == "valid"
    assert saved.intervals.calibrated_on["end"] < m["split"]["test_start"]
    assert all(b.rows >= 300 for b in saved.intervals.bins.values())
    test = build_dataset(rows, make_split(rows["game_date"].unique().to_list())).test
    predicted = saved.booster.predict(feature_matrix(test))
    tiers = np.array(test.select(tier_expr()).to_series().to_list(), dtype=object)
    p10, p90 = saved.intervals.bounds(predicted, saved.intervals.assign(predicted, list(tiers)))
    actual = test[TARGET].to_numpy()
    inside = (p10 <= actual) & (actual <= p90)
    # The model as loaded from its file: a bound may move by a last bit, and a row on it with it.
    assert inside.mean() == pytest.approx(iv["coverage"], abs=1 / iv["rows"])
    assert (p90 - p10).mean() == pytest.approx(iv["mean_width"], rel=1e-6)
    for tier in iv["by_tier"]:
        assert inside[tiers == tier["tier"]].mean() == pytest.approx(tier["coverage"], abs=1 / tier["rows"]), tier["tier"]
    report = (out / "report.md").read_text()
    assert "## Prediction intervals" in report and f"**{iv['coverage']:.1%}**" in report


# A pregame roster of fewer columns than the pipeline declares (no team_id, birth_date): writing it
# also takes the warehouse through dropping declared columns, which DuckDB needs checkpointed.
ROSTER = TableSchema(
    name=PREGAME_ROSTER,
    columns={
        "game_id": pl.String, "game_date": pl.Date, "season": pl.String, "season_type": pl.String, "team_abbr": pl.String,
        "opponent_abbr": pl.String, "is_home": pl.Boolean, "player_id": pl.Int32, "player_name": pl.String, "starter": pl.Boolean,
        "status": pl.String, "is_inactive": pl.Boolean, "points_line": pl.Float64, "bookmaker": pl.String, "source": pl.String,
    },
)  # fmt: skip
OLD_PREDICTION_COLUMNS = (
    "game_id, game_date, season, season_type, player_id, player_name, team_abbr, opponent_abbr, model_id, predicted_points, "
    "feature_fingerprint, feature_version, predicted_at"
)


def test_predict_with_lines_before_tipoff_and_grade(trained, workdir, tmp_path):
    """On a copy of the warehouse whose predictions table is of the old kind (no interval, line
    or moment columns) and with a made-up nba_raw.pregame_roster holding lines for some players:
    2025-03-07 predicted in the morning (its box scores held back), then again after they are
    loaded; 2025-03-06 predicted with lines. Grading takes the morning's prediction, and scores
    the lines: P(over), edge, side hit rate, Brier."""
    out, _ = trained
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(workdir / "warehouse.duckdb", path)
    d6, d7 = dt.date(2025, 3, 6), dt.date(2025, 3, 7)
    saved = load_model(out)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE IF EXISTS nba_predictions.player_points_predictions")
        con.execute(
            f"CREATE TABLE nba_predictions.player_points_predictions AS SELECT {OLD_PREDICTION_COLUMNS} FROM ("
            f"SELECT game_id, game_date, season, season_type, player_id, player_name, team_abbr, opponent_abbr, '{saved.model_id}' AS model_id, "
            "10.0 AS predicted_points, 'old' AS feature_fingerprint, CAST(1 AS SMALLINT) AS feature_version, TIMESTAMP '2025-03-06 08:00:00' AS predicted_at "
            "FROM nba_predictions.ml_feature_store WHERE game_date = '2025-03-06')"
        )
        con.execute("CREATE TABLE held_back AS SELECT * FROM nba_analytics.player_game_summary WHERE game_date = '2025-03-07'")
        con.execute("DELETE FROM nba_analytics.player_game_summary WHERE game_date = '2025-03-07'")
        store = pl.from_arrow(
            con.execute(
                "SELECT f.*, p.pts FROM nba_predictions.ml_feature_store f JOIN held_back p USING (game_id, player_id) "
                "WHERE f.game_date = '2025-03-07' UNION ALL SELECT f.*, p.pts FROM nba_predictions.ml_feature_store f "
                "JOIN nba_analytics.player_game_summary p USING (game_id, player_id) WHERE f.game_date = '2025-03-06' AND NOT p.did_not_play"
            ).to_arrow_table()
        )
    # Lines for the 12 players of each date with the most recent points, at their last-10 average
    # rounded to x.5, one of them at his actual points exactly (a push).
    lined = store.sort("points_avg_last_10", descending=True, nulls_last=True).group_by("game_date", maintain_order=True).head(12)
    lined = lined.with_columns(points_line=(pl.col("points_avg_last_10").floor() + 0.5))
    push = lined.filter(pl.col("game_date") == d6).row(0, named=True)
    lined = lined.with_columns(
        pl.when((pl.col("player_id") == push["player_id"]) & (pl.col("game_id") == push["game_id"])).then(pl.col("pts").cast(pl.Float64)).otherwise(pl.col("points_line")).alias("points_line")
    )
    roster = lined.select(
        "game_id", "game_date", "season", "season_type", "team_abbr", "opponent_abbr", "is_home", "player_id", "player_name", "starter",
        pl.lit("active").alias("status"), pl.lit(False).alias("is_inactive"), "points_line", pl.lit("testbook").alias("bookmaker"), pl.lit("slate").alias("source"),
    )  # fmt: skip
    with DuckDBWarehouse(path) as warehouse:
        warehouse.ensure_table(ROSTER)
        warehouse.write([PartitionWrite(PREGAME_ROSTER, [d6, d7], roster)])

    # The morning: 2025-03-07 has no box scores yet; 2025-03-06 has (and old-kind rows to replace).
    proc = run_in_process(tmp_path, "task=predict", f"training.model_dir={out}", "dates.start=2025-03-06", "dates.end=2025-03-07")
    assert proc.returncode == 0, proc.output
    csvs = list((tmp_path / "logs").glob("*-predictions.csv"))
    assert len(csvs) == 1
    assert str(csvs[0]) in unwrapped(proc.stderr) and "predictions for 2025-03-07" in proc.stderr
    printed = pl.read_csv(csvs[0], try_parse_dates=True)
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO nba_analytics.player_game_summary SELECT * FROM held_back")
        con.execute("DROP TABLE held_back")
    with DuckDBWarehouse(path) as warehouse:  # the evening: predicted again, from the same features
        evening = predict_dates(warehouse, saved, None, None, [d7])
        stored = warehouse.read("nba_predictions.player_points_predictions")
    assert not evening["made_before_tipoff"].any()
    assert printed.height == stored.filter(pl.col("made_before_tipoff") | (pl.col("game_date") == d6)).height
    by_moment = stored.group_by("game_date", "made_before_tipoff").len().sort("game_date", "made_before_tipoff")
    (n6,), (n7,) = (query(path, f"SELECT count(*) FROM nba_predictions.ml_feature_store WHERE game_date = '{d}'")[0] for d in (d6, d7))
    assert evening.height == n7
    assert by_moment.rows() == [(d6, False, n6), (d7, False, n7), (d7, True, n7)]  # the morning's rows kept
    assert stored.filter(pl.col("feature_fingerprint") == "old").is_empty()  # the old-kind rows were replaced
    # p10 is floored at 0 points; the model's own prediction can be a little under 0.
    assert stored["p10"].null_count() == 0 and (stored["p10"] <= stored["predicted_points"].clip(lower_bound=0)).all()
    assert (stored["predicted_points"] <= stored["p90"]).all()

    with_line = stored.filter(pl.col("points_line").is_not_null())
    assert with_line.height == 3 * 12 and (with_line["bookmaker"] == "testbook").all()
    assert with_line["p_over"].is_between(0, 1).all() and with_line["edge"].to_list() == pytest.approx((with_line["p_over"] - 0.5).to_list())
    for r in with_line.iter_rows(named=True):
        assert r["p_over"] == pytest.approx(saved.intervals.p_over(r["predicted_points"], r["interval_bin"], r["points_line"]))
        if r["predicted_points"] > r["points_line"] + 3:
            assert r["p_over"] > 0.5
        if r["predicted_points"] < r["points_line"] - 3:
            assert r["p_over"] < 0.5
    assert stored.filter(pl.col("points_line").is_null())["p_over"].null_count() == stored.height - with_line.height

    proc = run_in_process(tmp_path, "task=grade", "dates.start=2025-03-06", "dates.end=2025-03-07")
    assert proc.returncode == 0, proc.output
    text = unwrapped(proc.stderr)
    assert "side hit rate" in text and "Brier" in text and "in the 80% interval" in text
    graded = read_table(path, "nba_predictions.prediction_accuracy")
    assert graded.height == n6 + n7  # one grade per player-game: the morning's for 2025-03-07
    day7 = graded.filter(pl.col("game_date") == d7)
    assert day7["made_before_tipoff"].all() and day7.height == n7
    morning_at = stored.filter(pl.col("made_before_tipoff"))["predicted_at"].unique().to_list()
    assert day7["predicted_at"].unique().to_list() == morning_at
    played = graded.filter(pl.col("played"))
    assert 0.6 < played["in_interval"].mean() < 0.95
    lines = graded.filter(pl.col("points_line").is_not_null() & pl.col("played"))
    assert lines.height >= 20
    assert set(lines["side"].unique().to_list()) <= {"over", "under"}
    pushed = graded.filter((pl.col("player_id") == push["player_id"]) & (pl.col("game_id") == push["game_id"]))
    assert pushed["side_hit"].to_list() == [None]
    decided = lines.filter(pl.col("side_hit").is_not_null())
    hit_rate = decided["side_hit"].mean()
    brier = ((lines["p_over"] - (lines["actual_points"] > lines["points_line"]).cast(pl.Float64)) ** 2).mean()
    assert 0.2 <= hit_rate <= 0.9 and 0.1 <= brier <= 0.35
    assert f"{hit_rate:.1%}" in text and f"Brier {brier:.3f}" in text


# Counts the NULLs before a player's first game of the season against the feature store: its
# coverage of points_avg_last_5 falls below the critical 100 %.
FAILING_FEATURE_STORE = "validation.thresholds.ml_feature_store.points_avg_last_5.population=[]"


def test_a_feature_store_failing_its_gate_is_not_trained_on(workdir, tmp_path):
    shutil.copy(workdir / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    models = tmp_path / "models"

    # A whole-chain run whose Phase 4 gate fails on the feature store ends without a model.
    run = run_in_process(tmp_path, FAILING_FEATURE_STORE, "dates.list=[2025-03-05]", "training.after_run=true")
    assert run.returncode == 1, run.output
    assert "validation gate failed for nba_predictions.ml_feature_store" in run.output
    assert "the model was not trained" in run.output and "test MAE" not in run.output
    assert not models.exists()

    # Training on its own checks the whole feature store first, and refuses.
    refused = run_in_process(tmp_path, "task=train", FAILING_FEATURE_STORE, f"training.models_root={models}")
    assert refused.returncode == 1, refused.output
    text = unwrapped(refused.output)
    assert re.search(r"the feature store fails \d+ critical check\(s\) \(coverage points_avg_last_5 all;", text), text
    assert "validation.gate=false" in text
    assert not models.exists()
