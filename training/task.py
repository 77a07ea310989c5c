"""The v5 model's tasks, with the signature of the task functions in pipeline/tasks.py.

- ``task=train``: :func:`train_task` (the whole of it is :func:`training.train.train_and_report`);
- ``task=predict dates.start=... dates.end=...`` (or ``dates.list=[...]``): :func:`predict_task`
  writes the predictions (with 80 % intervals, and P(over) and edge where
  ``nba_raw.pregame_roster`` or ``nba_raw.prop_lines`` has a line: :mod:`training.predict`,
  :mod:`training.lines`), prints them per date as a
  table by game (:mod:`training.slate`: at most ``training.predict.print_rows`` rows a date) and
  writes all of them to ``<logs.dir>/<run id>-predictions.csv``, beside the run's log;
- ``task=grade`` (same date options): :func:`grade_task` grades the prediction made before
  tip-off (else the latest) of each player-game and prints per date MAE, interval coverage and,
  over rows with a line, the hit rate of the side chosen and the Brier score of P(over);
- ``task=backtest dates.start=... dates.end=...`` (default: the dates of the prop lines):
  :func:`backtest_task` builds the feature store and the prop lines through the end date, walks
  the range in blocks with a model fitted before each (:mod:`training.backtest`) and writes
  ``backtest.md`` (:mod:`training.backtest_report`) under ``backtest.root``.

Each returns the exit code (0 ok, 1 failed) and never calls ``sys.exit``, so Hydra multirun jobs
run one after another in one process.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import polars as pl
from omegaconf import DictConfig, open_dict
from rich.table import Table as RichTable

from pipeline.command import EXIT_OK, UsageError, fail, hold_lock, parse_date
from pipeline.progress import console
from pipeline.build import build
from pipeline.warehouse import WarehouseError, open_warehouse
from training.artifacts import ModelNotFound, load_model
from training.data import FEATURE_STORE, DataError
from training.lines import PROP_LINES
from training.predict import grade_dates, graded_totals, mae_per_date, model_dir_for, predict_dates
from training.slate import MAX_ROWS, csv_path, print_slate, slate_frame, write_csv
from training.sweep import POINTER_FILE
from training.results import TrainResult
from training.settings import ConfigError, TrainSettings, training_config
from training.train import _multirun_job, existing_model_for, train_and_report, training_rows_for

log = logging.getLogger("pipeline.training")

EXPECTED = (DataError, ConfigError, ModelNotFound, FileNotFoundError, WarehouseError, UsageError)


def train_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    """``python -m pipeline task=train``: train, score against the baselines, write the report."""
    try:
        training_config(cfg)
        with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
            result = train_and_report(cfg, warehouse, run_id=run_id, overrides=overrides)
    except EXPECTED as exc:
        log.debug("train refused", exc_info=True)
        return fail(str(exc))
    _point_job_dir_at(result)
    return EXIT_OK


def train_after_run(cfg: DictConfig, warehouse, run_id: str, overrides: list[str]) -> int:
    """The end of ``task=run`` over the whole chain: train and report from the open warehouse,
    unless a model under ``training.models_root`` was already fitted on exactly these rows with
    these settings, whose figures are shown instead; skipped with ``training.after_run=false``.
    Prints the test MAE against the baselines and where the report is; returns the exit code (a
    training failure is 1)."""
    t = cfg.get("training")
    if t is None or not t.get("after_run", True):
        return EXIT_OK
    try:
        settings = TrainSettings.from_config(cfg)
        # Read for the fingerprint first: where the driver reads, without Ray and without keeping
        # the rows; where the workers read, they keep them for the fit.
        rows = training_rows_for(settings, cfg, warehouse, keep=False)
        existing = existing_model_for(settings, rows)
        if existing is not None:
            console.print(f"the feature store is unchanged since model {existing.model_id} was trained: {existing.output_dir}")
            existing.print_summary()
            return EXIT_OK
        train_and_report(cfg, warehouse, run_id=run_id, overrides=overrides, dataset=rows if rows.refs is not None else None)
    except EXPECTED as exc:
        log.debug("training after the run refused", exc_info=True)
        return fail(f"training: {exc}")
    return EXIT_OK


def _point_job_dir_at(result: TrainResult) -> None:
    """In a multirun job whose model went outside its Hydra directory, leave a pointer there."""
    job_dir, _ = _multirun_job()
    if job_dir is not None and Path(job_dir).resolve() != result.output_dir.resolve():
        Path(job_dir).mkdir(parents=True, exist_ok=True)
        (Path(job_dir) / POINTER_FILE).write_text(str(result.output_dir.resolve()) + "\n")


def requested_dates(cfg: DictConfig) -> tuple[dt.date | None, dt.date | None, list[dt.date] | None]:
    """``dates.list`` or ``dates.start`` / ``dates.end`` (either open) of the command line."""
    if cfg.dates.get("list"):
        days = sorted({parse_date(v, "dates.list") for v in cfg.dates.list})
        return days[0], days[-1], days
    start = parse_date(cfg.dates.start, "dates.start") if cfg.dates.get("start") else None
    end = parse_date(cfg.dates.end, "dates.end") if cfg.dates.get("end") else None
    if start and end and start > end:
        raise UsageError(f"dates.start {start} is after dates.end {end}")
    return start, end, None


def _span(start: dt.date | None, end: dt.date | None) -> str:
    return f"{start or 'first'}..{end or 'last'}"


def predict_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    """``task=predict``: build what the dates need (their feature-store rows: for a date with a
    slate and no box scores, its roster, schedule and Phase 4; never Phase 3 of the date), then
    predict every feature-store row on the dates; the slate printed and written to CSV beside
    the run log."""
    try:
        t = training_config(cfg)
        start, end, days = requested_dates(cfg)
        saved = load_model(model_dir_for(t.model_dir, t.models_root))
        warehouse = open_warehouse(cfg.warehouse)
        with warehouse, hold_lock(warehouse, cfg, run_id, overrides):
            summary = build(features_of(cfg), warehouse, run_id, overrides)
            if summary is not None and not summary.ok:
                return fail("the feature store of the requested dates did not build (see above); nothing was predicted")
            rows = predict_dates(warehouse, saved, start, end, days, bookmaker=lines_bookmaker(cfg))
    except EXPECTED as exc:
        log.debug("predict refused", exc_info=True)
        return fail(str(exc))
    predicted_dates = rows["game_date"].n_unique() if rows.height else 0
    if rows.height:
        slate = slate_frame(rows)
        path = write_csv(slate, csv_path(cfg.logs.dir, run_id))
        print_slate(console, slate, saved.model_id, path, max_rows=int(t.get("predict", {}).get("print_rows") or MAX_ROWS))
        console.print(f"all {rows.height:,} predictions: {path}", highlight=False, soft_wrap=True)
    if saved.intervals is None:
        console.print(f"[yellow]model {saved.model_id} has no intervals.json (trained before intervals existed): no p10 / p90 / p_over; retrain it")
    console.print(
        f"predicted {rows.height:,} player-games on {predicted_dates} date(s) in {_span(start, end)} "
        f"with model {saved.model_id} ({saved.directory}) into nba_predictions.player_points_predictions",
        highlight=False,
    )
    if days:
        missing = sorted(set(days) - set(rows["game_date"].to_list()))
        if missing:
            console.print(f"[yellow]no feature-store rows on {len(missing)} requested date(s): {', '.join(map(str, missing[:10]))}")
    elif rows.is_empty():
        console.print("[yellow]no feature-store rows in the requested dates")
    return EXIT_OK


def lines_bookmaker(cfg: DictConfig) -> str | None:
    """``lines.bookmaker``: the one bookmaker whose prop lines are used; None, the consensus."""
    return (cfg.get("lines") or {}).get("bookmaker") or None


def features_of(cfg: DictConfig) -> DictConfig:
    """``cfg`` asking a run for the feature store and the prop lines on the requested dates and
    what they read, and nothing else: later dates that an upstream rebuild makes stale wait for
    the next plain run."""
    built = cfg.copy()
    with open_dict(built):
        built.tables = [FEATURE_STORE, PROP_LINES]
        built.backfill.with_dependents = False
    return built


def history_through(cfg: DictConfig, end: dt.date | None) -> DictConfig:
    """``cfg`` asking a run for the feature store and the prop lines on every date through ``end``:
    what a backtest fits its models on and scores."""
    built = features_of(cfg)
    with open_dict(built):
        built.dates.start, built.dates.list = None, []
        built.dates.end = end.isoformat() if end else None
    return built


def backtest_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    """``task=backtest``: the model against the line on ``dates.start..dates.end`` (default: the
    first to the last date of a used prop line), walked in blocks; ``backtest.md`` and its plots."""
    from training.backtest import BacktestSettings, given_model, line_range, run_backtest
    from training.backtest_report import print_summary, summarise, write_report

    try:
        training_config(cfg)
        settings = BacktestSettings.from_config(cfg)
        start, end, days = requested_dates(cfg)
        if days:
            raise UsageError("task=backtest walks a range: give dates.start and dates.end, not dates.list")
        if settings.model_dir and start and end:
            given_model(settings.model_dir, start, end)  # refused before anything is built
        warehouse = open_warehouse(cfg.warehouse)
        with warehouse, hold_lock(warehouse, cfg, run_id, overrides):
            summary = build(history_through(cfg, end), warehouse, run_id, overrides)
            if summary is not None and not summary.ok:
                return fail("the feature store or the prop lines did not build (see above); nothing was backtested")
            if start is None or end is None:
                first, last = line_range(warehouse)
                start, end = start or first, end or last
            run = run_backtest(cfg, warehouse, run_id, start, end)
            metrics = summarise(run)
            report = write_report(run, metrics)
    except EXPECTED as exc:
        log.debug("backtest refused", exc_info=True)
        return fail(str(exc))
    print_summary(console, metrics, report)
    return EXIT_OK


def grade_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    """``task=grade``: actual points and errors of the stored predictions; MAE per date."""
    try:
        start, end, days = requested_dates(cfg)
        warehouse = open_warehouse(cfg.warehouse)
        with warehouse, hold_lock(warehouse, cfg, run_id, overrides):
            graded = grade_dates(warehouse, start, end, days)
    except EXPECTED as exc:
        log.debug("grade refused", exc_info=True)
        return fail(str(exc))
    if graded.is_empty():
        console.print(f"[yellow]no predictions with a box score to grade in {_span(start, end)}")
        return EXIT_OK
    print_grades(graded)
    return EXIT_OK


def print_grades(graded: pl.DataFrame, shown: int = 40) -> None:
    per_date = mae_per_date(graded)
    table = RichTable(
        title="prediction accuracy per date (over players who played; lines: side chosen by P(over) >= 0.5, pushes left out)",
        title_justify="left",
    )
    for column in ("date", "model", "graded", "played", "MAE", "eval rows", "MAE (eval)", "in 80% interval", "lines", "side hit rate", "Brier"):
        table.add_column(column, justify="left" if column in ("date", "model") else "right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    for row in per_date.tail(shown).iter_rows(named=True):
        table.add_row(
            str(row["game_date"]), row["model_id"], f"{row['rows']:,}", f"{row['played']:,}", fmt(row["mae"]),
            f"{row['evaluation_rows']:,}", fmt(row["evaluation_mae"]), pct(row["interval_coverage"]),
            f"{row['lines']:,}", pct(row["side_hit_rate"]), fmt(row["brier"]),
        )  # fmt: skip
    console.print(table)
    if per_date.height > shown:
        console.print(f"(last {shown} of {per_date.height} date-model rows shown)")
    total = graded_totals(graded)
    lines = (
        f"; {total['lines']:,} with a line: side hit rate {pct(total['hit_rate'])} over {total['decided']:,} decided, Brier {fmt(total['brier'])}"
        if total["lines"]
        else "; no lines"
    )
    console.print(
        f"graded {total['rows']:,} predictions on {total['dates']} date(s) into nba_predictions.prediction_accuracy; "
        f"MAE over {total['played']:,} played: {fmt(total['mae'])}; in the 80% interval: {pct(total['interval_coverage'])} "
        f"of {total['interval_rows']:,}{lines}",
        highlight=False,
        soft_wrap=True,
    )


__all__ = ["train_task", "predict_task", "grade_task", "backtest_task", "train_after_run", "train_and_report", "TrainResult"]
