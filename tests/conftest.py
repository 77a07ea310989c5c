"""Shared fixtures: real pipeline runs in subprocesses against temporary DuckDB files (or the
BigQuery emulator: tests/backends.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.calendar import Calendar
from pipeline.warehouse.source import RawSource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RAW_DIR = PROJECT_ROOT / "data" / "raw"
LINES_DIR = PROJECT_ROOT / "data" / "lines"  # the bundled prop lines, read like the raw files
# Every Phase 2 and 3 table that has dependents or is a leaf of Phase 3 (the rest come as upstream).
PHASE3_TABLES = "[player_game_summary,team_defense_game_summary,schedule,prop_lines,quarantine]"

# A run that has not ended after this long has hung: a guard, not a bound on a slow one. The main
# command (about 50 s on 2 quiet cores) took over 600 s beside three other engineers' suites and
# benchmarks on this machine (load average above 20).
HUNG_RUN_SECONDS = 3600

# fixtures: backend, bigquery_emulator (backends.py); storage_emulator, gs_target (storage.py); webhook_server, smtp_server (alert_servers.py)
pytest_plugins = ["backends", "storage", "alert_servers"]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def pipeline_overrides(workdir: Path, overrides: tuple[str, ...], warehouse: list[str] | None) -> list[str]:
    """The command line of a test's pipeline run (``run_pipeline``, ``run_in_process``): every
    folder it reads or writes is under ``workdir`` (the slates folder does not exist until a test
    makes it: no slates), never the repository's ``data/slates`` or ``var/``; only the raw files
    come from ``data/raw``. A test's own overrides come last, and win."""
    return [
        *(warehouse or [f"warehouse.path={workdir / 'warehouse.duckdb'}"]),
        f"data.slate_dir={workdir / 'slates'}",
        f"logs.dir={workdir / 'logs'}",
        f"validation.reports_dir={workdir / 'reports'}",
        f"training.models_root={workdir / 'models'}",
        f"backup.target={workdir / 'backups'}",
        "training.after_run=false",
        "ray.num_cpus=2",
        *overrides,
    ]  # fmt: skip


def run_pipeline(
    workdir: Path,
    *overrides: str,
    env: dict[str, str] | None = None,
    timeout: float = HUNG_RUN_SECONDS,
    warehouse: list[str] | None = None,
    multirun: bool = False,
) -> Run:
    """`python -m pipeline` in a subprocess with its warehouse, logs and models under ``workdir``
    (``warehouse``: the overrides of another warehouse, e.g. ``Backend.overrides``; ``multirun``:
    a Hydra multirun, ``-m``, which must come before the overrides).

    A full run does not train the model unless a test asks (``training.after_run=true``)."""
    args = [sys.executable, "-m", "pipeline", *(["-m"] if multirun else []), *pipeline_overrides(workdir, overrides, warehouse)]
    proc = subprocess.run(
        args,
        cwd=workdir,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


_ray_started_here = False


def pipeline_config(args: list[str]):
    """The Hydra config ``python -m pipeline`` composes from the command-line overrides ``args``
    (``pipeline_overrides``)."""
    from hydra import compose, initialize_config_dir

    import pipeline.__main__  # noqa: F401 - registers ${project_root:}

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=args)


def run_in_process(workdir: Path, *overrides: str, env: dict[str, str] | None = None, warehouse: list[str] | None = None) -> Run:
    """The run ``run_pipeline`` makes, with the same command line, in this process instead of a
    subprocess: the Hydra config composed from it, ``run_task`` (what ``python -m pipeline``
    calls) with ``workdir`` as the working directory, its terminal output captured and its
    return value as the exit code (an exception escaping it: exit code 1 and its traceback, as
    from the command). The Ray runtime the pipeline starts stays up for the module's next runs
    (and is stopped after the module): its start and stop are most of a small run's time.

    For runs that test what a run builds, records or prints; a test of the command line itself,
    a kill, the lock or two runs at once keeps ``run_pipeline``."""
    global _ray_started_here
    from pipeline.progress import console
    from pipeline.tasks import run_task

    args = pipeline_overrides(workdir, overrides, warehouse)
    cfg = pipeline_config(args)
    saved_env, saved_cwd, root = dict(os.environ), os.getcwd(), logging.getLogger()
    saved_level, saved_width = root.level, console._width
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update({"COLUMNS": "200", **(env or {})})
        os.chdir(workdir)
        console.width = 150  # as in a subprocess, whose stderr is not a terminal (pipeline.progress)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_task(cfg, overrides=args)
            except Exception:  # noqa: BLE001 - the command would print it and exit with 1
                traceback.print_exc()
                code = 1
    finally:
        _ray_started_here = _ray_started_here or ray_is_running()
        for handler in [h for h in root.handlers if getattr(h, "_pipeline", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved_level)
        console._width = saved_width
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Run(code, out.getvalue(), err.getvalue())


def ray_is_running() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


def token_auth_for_test_clusters() -> None:
    """Put this process in Ray's token auth mode (with a token), before it starts a
    ``ray.cluster_utils.Cluster`` and connects to it.

    A local ``ray.init()`` turns token auth on by default (Ray 2.60), and so does connecting to a
    cluster when a token file exists; a ``Cluster`` started from this process takes the mode its
    environment says at that moment. Started before any local ``ray.init()`` in this test worker,
    its raylets ran without a token while the driver required one: the raylets' calls to the
    driver were refused ("InvalidAuthToken: Authentication token is missing or incorrect"), the
    driver's objects looked lost ("OwnerDiedError") and a fit's controller never started."""
    from ray._private.authentication.authentication_token_setup import enable_token_auth_by_default, ensure_token_if_auth_enabled

    enable_token_auth_by_default()
    ensure_token_if_auth_enabled(None, create_token_if_missing=True)


def stop_in_process_ray() -> None:
    """Stop the Ray runtime ``run_in_process`` left running. Before a test starts Ray in a
    subprocess: two local Rays on one machine contend for the dashboard agent's port, which
    costs the second one's start several seconds."""
    global _ray_started_here
    if _ray_started_here and ray_is_running():
        import ray

        ray.shutdown()
    _ray_started_here = False


def kill_process_group(pgid: int, timeout: float = 60) -> None:
    """SIGKILL a subprocess's whole session (started with ``start_new_session=True``), and wait
    until none of it is alive: a killed run's Ray helpers that are still exiting slow the next
    Ray's start, enough on a busy machine to run out Ray's start-up timeouts."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive := live_members(pgid):
        assert time.monotonic() < deadline, f"process group {pgid} still has live processes {alive} {timeout} s after SIGKILL"
        time.sleep(0.2)


def live_members(pgid: int) -> list[int]:
    """Processes of a group that are not yet zombies (a zombie holds no resources)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid pgrp ...": comm may hold spaces or parentheses, so split after its last ")".
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state not in ("Z", "X"):
                members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="module", autouse=True)
def _stop_in_process_ray():
    """Stop the Ray runtime ``run_in_process`` left running, once the module is done."""
    yield
    stop_in_process_ray()


def unwrapped(text: str) -> str:
    """Output with its whitespace normalised, to look for a message in it. The console wraps a
    long line at a space (where depends on the temporary paths in it) and indents the rest of a
    wrapped log message: both come out as one space here."""
    return " ".join(text.split())


def read_table(path: Path, table: str, order_by: str | None = None) -> pl.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        sql = f"SELECT * FROM {table}" + (f" ORDER BY {order_by}" if order_by else "")
        return pl.from_arrow(con.execute(sql).to_arrow_table())


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="session")
def source() -> RawSource:
    """The bundled raw files, checked once per session (tests that read them in-process)."""
    return RawSource(RAW_DIR)


@pytest.fixture(scope="session")
def calendar(source: RawSource) -> Calendar:
    return source.calendar()


@pytest.fixture(scope="session")
def phase3_warehouse(tmp_path_factory) -> Path:
    """The full bundled history through Phase 3, built once by a real run; copy before mutating."""
    workdir = tmp_path_factory.mktemp("phase3")
    run = run_in_process(workdir, f"tables={PHASE3_TABLES}", "backfill.with_dependents=false")
    assert run.returncode == 0, run.output
    return workdir / "warehouse.duckdb"


@pytest.fixture(scope="session")
def main_command(tmp_path_factory) -> tuple[Path, str]:
    """README's main command on DuckDB, once per test worker: every table over the whole bundled
    history, the gates (their report under ``reports/``, as every run's), then the model (written
    to ``model/``). Never written to afterwards: copy the warehouse before changing it."""
    workdir = tmp_path_factory.mktemp("main_command")
    run = run_pipeline(workdir, "training.after_run=true", f"training.output_dir={workdir / 'model'}")
    assert run.returncode == 0, run.output
    return workdir, run.output


@pytest.fixture
def phase3_copy(phase3_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the Phase 3 warehouse in ``tmp_path`` (as warehouse.duckdb)."""
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(phase3_warehouse, target)
    return target


@pytest.fixture
def raw_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled raw files, to break on purpose."""
    target = tmp_path / "raw"
    shutil.copytree(RAW_DIR, target)
    return target
