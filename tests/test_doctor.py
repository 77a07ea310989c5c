"""``task=doctor``: a preflight that names every problem of a set-up, and the fix, before a run
meets it; changes nothing."""

from __future__ import annotations

from backends import Backend
from conftest import run_in_process, unwrapped
from pipeline.state import RUN_STATE
from pipeline.warehouse.bigquery import DATASETS


def make_datasets(backend: Backend, *, skip: str | None = None, elsewhere: str | None = None) -> None:
    """The datasets a first run would make (all in US, but ``elsewhere`` in EU; ``skip`` left out)."""
    from google.cloud import bigquery

    with backend.open() as warehouse:
        for name in (*DATASETS, "nba_staging"):
            if name == skip:
                continue
            dataset = bigquery.Dataset(f"{warehouse.project}.{backend.prefix}{name}")
            dataset.location = "EU" if name == elsewhere else "US"
            if name == "nba_staging":
                dataset.default_table_expiration_ms = 24 * 3600 * 1000
            warehouse.client.create_dataset(dataset)
        if skip != "nba_orchestration" and elsewhere != "nba_orchestration":
            warehouse.ensure_table(RUN_STATE)


def test_on_duckdb_every_check_passes_and_nothing_is_created(tmp_path):
    run = run_in_process(tmp_path, "task=doctor", f"backup.target={tmp_path / 'backups'}")
    text = unwrapped(run.output)
    assert run.returncode == 0, run.output
    for line in (f"ok warehouse file: {tmp_path / 'warehouse.duckdb'} does not exist yet: the first run creates it",
                 "ok data.raw_dir: 4 file(s) in", f"ok backup.target: {tmp_path / 'backups'} is writable", "ok alerts: off (alerts.enabled=false)", "all 6 checks passed"):  # fmt: skip
        assert line in text, line
    assert not (tmp_path / "warehouse.duckdb").exists() and not (tmp_path / "backups").exists()


def test_on_the_emulator_every_check_is_printed_and_passes(bigquery_emulator, tmp_path):
    backend = Backend.bigquery(bigquery_emulator)
    make_datasets(backend)
    run = run_in_process(tmp_path, "task=doctor", f"backup.target={tmp_path / 'backups'}", warehouse=backend.overrides)
    text = unwrapped(run.output)
    assert run.returncode == 0, run.output
    assert f"ok credentials: anonymous, for the emulator at {bigquery_emulator.rest}" in text
    for name in DATASETS:
        assert f"ok dataset {backend.prefix}{name}: in US" in text, name
    assert f"ok dataset {backend.prefix}nba_staging: in US, tables expire after a day" in text
    assert "ok a dry-run query: bigquery.jobs.create granted" in text
    assert "ok a Storage Read session: bigquery.readsessions.create granted" in text
    assert "all 14 checks passed" in text  # the alerts' (off) among them


def test_a_misconfigured_set_up_names_each_problem_and_exits_1(bigquery_emulator, tmp_path):
    backend = Backend.bigquery(bigquery_emulator)
    make_datasets(backend, skip="nba_precompute", elsewhere="nba_raw")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    run = run_in_process(tmp_path, "task=doctor", f"backup.target={blocked / 'backups'}", warehouse=backend.overrides)
    text = unwrapped(run.output)
    assert run.returncode == 1, run.output
    assert f"FAIL dataset {backend.prefix}nba_precompute: does not exist in project local" in text
    assert "roles/bigquery.dataEditor" in text and f"bq mk --location=US local:{backend.prefix}nba_precompute" in text
    assert f"FAIL dataset {backend.prefix}nba_raw: dataset {backend.prefix}nba_raw is in location EU, not US (warehouse.location)" in text
    assert f"FAIL backup.target: failed writing {blocked / 'backups'}/doctor-probe-" in text
    assert "set backup.target to a folder this user can write" in text
    assert "3 of 14 checks failed" in text
