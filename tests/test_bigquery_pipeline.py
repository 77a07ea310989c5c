"""README's commands on the BigQuery emulator, against the same commands on DuckDB: every table
holds the same rows and the model is the same; status and validate read it back."""

from __future__ import annotations

import json

import polars as pl
import pytest

from backends import Backend
from conftest import run_pipeline, unwrapped
from pipeline.state import RUN_STATE
from pipeline.tables import registry
from pipeline.validation.report import VALIDATION_RESULTS

pytestmark = pytest.mark.slow

# Columns that say when, where and by which run a row was written, not what it holds.
VOLATILE = {"run_id", "started_at", "finished_at", "node", "checked_at", "run_date", "last_error"}


@pytest.fixture(scope="module")
def bigquery_main_command(bigquery_emulator, tmp_path_factory):
    """README's main command (every table, the gates, the model) on a fresh dataset prefix."""
    workdir = tmp_path_factory.mktemp("bigquery_main")
    backend = Backend.bigquery(bigquery_emulator)
    run = run_pipeline(workdir, "training.after_run=true", f"training.output_dir={workdir / 'model'}", warehouse=backend.overrides)
    assert run.returncode == 0, run.output
    return workdir, backend, run


def comparable(frame: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    return frame.drop([c for c in frame.columns if c in VOLATILE]).sort(key, nulls_last=True)


def test_every_table_and_the_model_are_the_same_as_on_duckdb(main_command, bigquery_main_command):
    duckdb_dir, _ = main_command
    workdir, backend, _ = bigquery_main_command
    tables = {name: list(spec.key) for name, spec in registry().items()}
    tables[RUN_STATE.name] = ["table_name", "game_date"]
    tables[VALIDATION_RESULTS.name] = ["context", "table_name", "check_name", "feature", "scope", "start_date", "end_date"]
    with Backend.duckdb(duckdb_dir / "warehouse.duckdb").open(read_only=True) as duckdb, backend.open(read_only=True) as bigquery:
        for name, key in tables.items():
            expected, got = comparable(duckdb.read(name), key), comparable(bigquery.read(name), key)
            assert got.height == expected.height, name
            assert got.equals(expected), f"{name} differs between DuckDB and BigQuery"
            assert got.height or name == "nba_raw.quarantine", f"{name} is empty"  # the bundled data has no bad rows
    duckdb_metrics = json.loads((duckdb_dir / "model" / "metrics.json").read_text())
    bigquery_metrics = json.loads((workdir / "model" / "metrics.json").read_text())
    for keys in (("test", "mae"), ("test", "rows"), ("valid", "mae"), ("data_fingerprint",)):
        assert _at(bigquery_metrics, keys) == _at(duckdb_metrics, keys), keys
    # Ray Train in another process, reading another warehouse: the same model, tree for tree.
    assert (workdir / "model" / "model.txt").read_text() == (duckdb_dir / "model" / "model.txt").read_text()


def _at(metrics: dict, keys: tuple[str, ...]):
    for key in keys:
        metrics = metrics[key]
    return metrics


def test_status_and_validate_read_it_back(bigquery_main_command):
    workdir, backend, _ = bigquery_main_command
    status = run_pipeline(workdir, "task=status", warehouse=backend.overrides)
    assert status.returncode == 0, status.output
    text = unwrapped(status.output)
    assert f"run state in bigquery:local (datasets {backend.prefix}nba_*" in text and "nba_predictions.ml_feature_store" in text
    validate = run_pipeline(workdir, "task=validate", f"validation.reports_dir={workdir / 'reports'}", warehouse=backend.overrides)
    assert validate.returncode == 0, validate.output
    assert "result rows stored in nba_orchestration.validation_results" in unwrapped(validate.output)
    # A plain rerun finds nothing to do and shows the model it already fitted.
    rerun = run_pipeline(workdir, "training.after_run=true", f"training.output_dir={workdir / 'model'}", warehouse=backend.overrides)
    assert rerun.returncode == 0 and "nothing to do" in rerun.output and "test MAE" in rerun.output
