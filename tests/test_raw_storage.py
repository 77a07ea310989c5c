"""Raw box scores and slates from Cloud Storage (``gs://``, where the scrapers put them), on the
storage emulator: the same checks, fingerprints and tables as from the local folder; and a local
folder refused where Ray workers on other machines would have to read it."""

from __future__ import annotations

import duckdb
import pytest

from backends import Backend
from conftest import RAW_DIR, run_in_process, unwrapped
from storage import upload_raw
from pipeline.tables import registry
from pipeline.tables._raw import RawDataError
from pipeline.warehouse.source import RawSource


def test_a_gs_folder_is_checked_and_read_like_the_local_one(storage_emulator, source):
    url = upload_raw(storage_emulator)
    remote = RawSource(url, endpoint_url=storage_emulator.url)
    assert remote.calendar().dates == source.calendar().dates
    for name in source.names:
        assert remote.fingerprints(name) == source.fingerprints(name), name
    day = source.calendar().dates[100]
    rows = remote.read("source.player_boxscores", day, day)
    assert rows.drop("source_file").equals(source.read("source.player_boxscores", day, day).drop("source_file"))
    assert rows["source_file"].str.starts_with(url + "/player_boxscores_").all()


def test_an_unreadable_gs_file_is_named_and_a_missing_folder_refused(storage_emulator):
    with pytest.raises(RawDataError, match=r"gs://raw-\w+/nightly/player_boxscores_2099-00.parquet: cannot read as PARQUET"):
        RawSource(upload_raw(storage_emulator, broken_file=True), endpoint_url=storage_emulator.url)
    with pytest.raises(RawDataError, match=r"raw data folder gs://raw-\w+/nowhere does not exist \(data.raw_dir\)"):
        RawSource(upload_raw(storage_emulator).replace("nightly", "nowhere"), endpoint_url=storage_emulator.url)


@pytest.mark.slow
def test_a_full_run_from_gs_raw_files_equals_the_run_from_the_local_folder(storage_emulator, main_command, tmp_path):
    local_dir, _ = main_command
    url = upload_raw(storage_emulator)
    run = run_in_process(tmp_path, f"data.raw_dir={url}", f"data.storage.endpoint_url={storage_emulator.url}", "training.after_run=false")
    assert run.returncode == 0, run.output
    with duckdb.connect(str(local_dir / "warehouse.duckdb"), read_only=True) as local, duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as remote:
        for name, table in registry().items():
            if table.phase > 4:
                continue
            columns = ", ".join(f'"{c}"' for c in table.schema if c != "source_file")
            order = ", ".join(f'"{c}"' for c in table.key)
            select = f"SELECT {columns} FROM {name} ORDER BY {order}"
            assert remote.execute(select).fetchall() == local.execute(select).fetchall(), f"{name} differs from the local folder's run"


def test_a_local_raw_folder_is_refused_where_cluster_workers_would_read_it(bigquery_emulator, tmp_path):
    """On a Ray cluster with BigQuery every worker reads its own raw files: a local folder that
    other nodes may not see is refused before anything starts, unless the config says it is shared."""
    backend = Backend.bigquery(bigquery_emulator)
    run = run_in_process(tmp_path, "ray=cluster", "tables=[player_boxscores]", warehouse=backend.overrides)
    assert run.returncode == 1
    text = unwrapped(run.output)
    assert f"data.raw_dir={RAW_DIR}" in text and "the other nodes may not see" in text
    assert "data.shared_filesystem=true" in text and "gs://bucket/path" in text


def test_the_refusal_needs_a_cluster_worker_io_and_a_local_folder(bigquery_emulator):
    from omegaconf import OmegaConf

    from pipeline.build import refuse_unshared_folders
    from pipeline.command import UsageError
    from pipeline.warehouse.duckdb import DuckDBWarehouse

    bigquery = Backend.bigquery(bigquery_emulator).open()

    def config(**changes):
        base = {"ray": {"address": "auto"}, "shard": {"worker_io": True},
                "data": {"raw_dir": str(RAW_DIR), "slate_dir": None, "shared_filesystem": False}}  # fmt: skip
        return OmegaConf.merge(base, changes)

    with pytest.raises(UsageError):
        refuse_unshared_folders(config(), bigquery)
    refuse_unshared_folders(config(data={"shared_filesystem": True}), bigquery)
    refuse_unshared_folders(config(data={"raw_dir": "gs://bucket/raw"}), bigquery)
    refuse_unshared_folders(config(ray={"address": None}), bigquery)  # Ray on this machine
    refuse_unshared_folders(config(shard={"worker_io": False}), bigquery)  # the driver reads
    refuse_unshared_folders(config(), DuckDBWarehouse(RAW_DIR / "never-opened.duckdb"))  # DuckDB: the driver reads
