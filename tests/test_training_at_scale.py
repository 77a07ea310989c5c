"""Training at cluster scale on a real two-node Ray cluster on this machine (``ray.cluster_utils``,
one CPU a node), this test process its driver: on BigQuery (the emulator) the Ray tasks read the
training rows themselves and the driver moves under 1 % of them, and one Ray Train worker gives the
model a plain ``lightgbm.train`` gives on the same rows; two workers, one a node, each take their
share of the blocks, every training row exactly once, and the model scores as the one-worker model.

The warehouse is the main command's (conftest.main_command), read only; for BigQuery, the tables
training reads (training.train.TABLES_READ) are copied into a fresh dataset prefix on the emulator
through the warehouse interface (pipeline.emulator.copy_tables).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from hydra import compose, initialize_config_dir

import pipeline.__main__  # noqa: F401 - registers ${project_root:}
from backends import Backend
from conftest import PROJECT_ROOT, token_auth_for_test_clusters, unwrapped
from pipeline.emulator import copy_tables
from pipeline.backup.manifest import owned_tables
from pipeline.warehouse import PartitionWrite
from pipeline.warehouse.duckdb import DuckDBWarehouse
from training import artifacts
from training.data import FEATURE_STORE, DataError
from training.scoring import evaluate_rows
from training.train import TABLES_READ, TrainSettings, dataset_for, fit, fit_rows, train_and_report, training_rows_for

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]

SHORT_FIT = ("training.num_boost_round=60", "training.early_stopping_rounds=10")


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each, this process connected to them as the driver."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    token_auth_for_test_clusters()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, logging_level="ERROR", log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def config(tmp_path: Path, warehouse: list[str], *overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*warehouse, f"logs.dir={tmp_path / 'logs'}", *overrides])


def test_on_bigquery_the_workers_read_the_rows_and_one_worker_gives_the_plain_model(cluster, bigquery_emulator, main_command, tmp_path, capsys):
    warehouse = main_command[0] / "warehouse.duckdb"
    backend = Backend.bigquery(bigquery_emulator)
    with DuckDBWarehouse(warehouse, read_only=True) as duckdb, backend.open() as bigquery:
        copy_tables(duckdb, bigquery, [owned_tables()[name] for name in TABLES_READ])
    cfg = config(tmp_path, backend.overrides, *SHORT_FIT)
    with backend.open(read_only=True) as bigquery:
        metrics = train_and_report(cfg, bigquery, output_dir=tmp_path / "bigquery").metrics
    data = metrics["data"]
    assert data["read_by"] == "workers" and data["blocks"] >= 3  # a block per split at least
    # The driver got summaries (dates, fingerprints), never rows: under 1 % of what the tasks read.
    assert data["read_bytes"] > 50 * 2**20 and data["driver_bytes"] < 0.01 * data["read_bytes"], data
    assert "the workers read them from the warehouse; the driver moved" in unwrapped(capsys.readouterr().err)

    # The reference: the rows read at once in this process (training.data, as before blocks), one
    # plain lightgbm.train fit and refit of the same settings. The same model, to the last bit.
    duckdb_cfg = config(tmp_path, [f"warehouse.path={warehouse}"], *SHORT_FIT)
    settings = TrainSettings.from_config(duckdb_cfg)
    with DuckDBWarehouse(warehouse, read_only=True) as duckdb:
        dataset = dataset_for(settings, duckdb)
    plain = fit(settings, dataset, duckdb_cfg, run_name="plain", backend="plain").kept
    artifacts.save_model(tmp_path / "plain", plain.booster, {})
    assert (tmp_path / "bigquery" / artifacts.MODEL_FILE).read_text() == (tmp_path / "plain" / artifacts.MODEL_FILE).read_text()
    assert metrics["data_fingerprint"] == dataset.fingerprint
    assert metrics["fit"]["rows_per_worker"] == [{"train": dataset.train.height, "refit": dataset.refit.height}]

    # The checks before training ran where the rows were read, and still stop a fit: a date whose
    # recent points are missing fails a critical coverage check.
    day = dataset.test["game_date"][0]
    with backend.open() as bigquery:
        broken = bigquery.read(FEATURE_STORE, start=day, end=day).with_columns(points_avg_last_5=pl.lit(None, dtype=pl.Float64))
        bigquery.write([PartitionWrite(FEATURE_STORE, [day], broken)])
    with backend.open(read_only=True) as bigquery, pytest.raises(DataError, match=r"the feature store fails \d+ critical check\(s\) \(.*points_avg_last_5"):
        train_and_report(cfg, bigquery, output_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def rows_per_date(frame: pl.DataFrame) -> Counter:
    return Counter({day.isoformat(): n for day, n in frame.group_by("game_date").len().iter_rows()})


def test_two_workers_on_two_nodes_take_every_training_row_once(cluster, main_command, tmp_path):
    workdir = main_command[0]
    warehouse = workdir / "warehouse.duckdb"
    one_worker = json.loads((workdir / "model" / "metrics.json").read_text())
    cfg = config(tmp_path, [f"warehouse.path={warehouse}"], "training.num_workers=2")
    settings = TrainSettings.from_config(cfg)
    with DuckDBWarehouse(warehouse, read_only=True) as duckdb:
        rows = training_rows_for(settings, cfg, duckdb)
        dataset = dataset_for(settings, duckdb)  # the rows read at once, as the reference
    fitted = fit_rows(settings, rows, cfg, run_name="two-workers")
    evaluation = evaluate_rows(rows, fitted.booster, fitted.kept.booster)
    mae = evaluation.test["overall"]["model"]["mae"]
    assert abs(mae - one_worker["test"]["mae"]) < 0.01, (mae, one_worker["test"]["mae"])
    assert evaluation.test["rows"] == one_worker["test"]["rows"] and rows.fingerprint == one_worker["data_fingerprint"]

    # One worker a node, each with its share; each worker's rows per date as it counted them: no
    # date in both, and every row of every date in one of them (as the rows read at once hold
    # them), for the early-stopping fit and for the refit.
    assert fitted.num_workers == 2 and {s["node"] for s in fitted.shards} == {n.node_id for n in cluster.list_all_nodes()}
    for name, frame in (("train", dataset.train), ("refit", dataset.refit)):
        counted = [Counter(shard[name]) for shard in fitted.shards]
        assert all(sum(c.values()) > 0.4 * frame.height for c in counted), f"{name} rows shared unevenly: {[sum(c.values()) for c in counted]}"
        assert not set(counted[0]) & set(counted[1]), f"a date of {name} went to both workers"
        assert counted[0] + counted[1] == rows_per_date(frame), f"{name} rows lost or repeated"
