"""The two warehouse backends as tests use them: a DuckDB file, or a dataset prefix of its own
on a BigQuery emulator that one subprocess serves for the whole session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.emulator import EmulatorProcess
from pipeline.warehouse import Warehouse
from pipeline.warehouse.bigquery import BigQueryWarehouse
from pipeline.warehouse.duckdb import DuckDBWarehouse

EMULATOR_PROJECT = "local"


@dataclass
class Backend:
    """One warehouse for one test: how ``python -m pipeline`` is pointed at it, and how the
    test opens it to look inside."""

    name: str
    overrides: list[str]
    path: Path | None = None  # DuckDB
    emulator: EmulatorProcess | None = None
    prefix: str = ""

    @classmethod
    def duckdb(cls, path: Path) -> "Backend":
        return cls("duckdb", [f"warehouse.path={path}"], path=path)

    @classmethod
    def bigquery(cls, emulator: EmulatorProcess, prefix: str | None = None) -> "Backend":
        prefix = prefix or f"t{uuid.uuid4().hex[:10]}_"
        overrides = [*emulator.overrides(EMULATOR_PROJECT), f"warehouse.dataset_prefix={prefix}"]
        return cls("bigquery", overrides, emulator=emulator, prefix=prefix)

    def open(self, *, read_only: bool = False) -> Warehouse:
        if self.name == "duckdb":
            return DuckDBWarehouse(self.path, read_only=read_only)
        return BigQueryWarehouse(
            EMULATOR_PROJECT,
            dataset_prefix=self.prefix,
            rest_endpoint=self.emulator.rest,
            grpc_endpoint=self.emulator.grpc,
            read_only=read_only,
        )


# -- fixtures (registered for every test module by conftest's pytest_plugins) ------------------


@pytest.fixture(scope="session")
def bigquery_emulator():
    with EmulatorProcess.start() as emulator:
        yield emulator


@pytest.fixture(params=["duckdb", "bigquery"])
def backend(request, tmp_path) -> Backend:
    """Each backend in turn: a fresh DuckDB file, or a fresh dataset prefix on the emulator."""
    if request.param == "duckdb":
        return Backend.duckdb(tmp_path / "warehouse.duckdb")
    return Backend.bigquery(request.getfixturevalue("bigquery_emulator"))


# -- the opt-in live suite (tests/test_bigquery_live.py) ----------------------------------------

LIVE_MARKER = "bigquery_live"


def pytest_collection_modifyitems(config, items):
    """Live tests run only when asked for by marker (``-m bigquery_live``), and then only with a
    project named; otherwise they are deselected, never counted as skipped."""
    import os

    asked = LIVE_MARKER in (config.getoption("markexpr") or "") and "not " + LIVE_MARKER not in (config.getoption("markexpr") or "")
    live = [item for item in items if item.get_closest_marker(LIVE_MARKER)]
    if not asked:
        if live:
            config.hook.pytest_deselected(items=live)
            items[:] = [item for item in items if not item.get_closest_marker(LIVE_MARKER)]
        return
    if live and not os.environ.get("NBA_PIPELINE_LIVE_PROJECT"):
        raise pytest.UsageError(
            "-m bigquery_live runs against real BigQuery: name the project with NBA_PIPELINE_LIVE_PROJECT=my-project "
            "(Application Default Credentials, with the roles README lists)"
        )
