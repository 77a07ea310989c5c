"""The DuckDB run lock: a flock on ``<db>.lock``, the holder in ``<db>.lock.holder`` written whole."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pipeline.command import holder_info
from pipeline.warehouse import WarehouseLocked
from pipeline.warehouse import duckdb as duckdb_warehouse
from pipeline.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture
def warehouse(tmp_path):
    return DuckDBWarehouse(tmp_path / "warehouse.duckdb")


def flock_held(warehouse: DuckDBWarehouse) -> int:
    """Another holder's flock on the lock file (a second descriptor conflicts even in this process)."""
    fd = os.open(warehouse.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_holder_file_is_there_while_held_and_gone_after(warehouse):
    with warehouse.lock(holder=holder_info("run-a", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
        holder = json.loads(warehouse.holder_path.read_text())
        assert holder["run"] == "run-a" and holder["pid"] == os.getpid()
        assert warehouse.lock_path.read_bytes() == b""  # the flocked file is never written
        with pytest.raises(WarehouseLocked, match=r"is in use by another run \(held by run run-a, pid \d+"):
            with warehouse.lock(holder=holder_info("run-b", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
                pass
        assert json.loads(warehouse.holder_path.read_text())["run"] == "run-a"  # the refused run left it alone
    assert not warehouse.holder_path.exists()
    assert [p.name for p in warehouse.path.parent.iterdir()] == ["warehouse.duckdb.lock"]  # no temporary file left


def test_the_next_holder_can_open_the_database_as_soon_as_the_lock_is_released(warehouse):
    """The run let in by the flock opens the file at once: this run's connection (DuckDB's own
    lock on the file) is closed before the flock goes, not when the warehouse object is."""
    opens = [sys.executable, "-c", f"import duckdb; duckdb.connect({str(warehouse.path)!r}).close()"]
    with warehouse.lock(holder=holder_info("run-a", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
        warehouse.con.execute("CREATE TABLE held (x INTEGER)")
        blocked = subprocess.run(opens, capture_output=True, text=True)
        assert blocked.returncode != 0 and "lock" in blocked.stderr.lower()  # held while the run holds the lock
    opened = subprocess.run(opens, capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr


def test_refused_between_the_winners_flock_and_its_holder_file_still_names_it(warehouse, monkeypatch):
    """The winner writes its holder file only after its flock: a run refused in between finds no
    file at first, and looks again. Here the winner writes it right after the loser's first look
    (a spy on the loser's reads plays the winner, so the order is certain, whatever the load)."""
    reads = spy_on_holder_reads(monkeypatch, on_first=lambda: warehouse.holder_path.write_text(json.dumps(holder_info("run-late", "python -m pipeline"))))
    fd = flock_held(warehouse)
    try:
        with pytest.raises(WarehouseLocked, match=r"held by run run-late, pid \d+"):
            with warehouse.lock(holder=holder_info("run-b", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
                pass
    finally:
        os.close(fd)
    assert reads[0] == {} and reads[-1]["run"] == "run-late"


def test_a_killed_holders_file_is_not_named_as_the_holder(warehouse, monkeypatch):
    """A holder file left by a run that no longer runs: the refused run keeps reading it for the
    settle time (in case the winner replaces it), then names the holder as unknown."""
    monkeypatch.setattr(duckdb_warehouse, "HOLDER_SETTLE_SECONDS", 0.5)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    warehouse.holder_path.write_text(json.dumps({"run": "run-killed", "pid": dead.pid, "host": socket.gethostname()}))
    reads = spy_on_holder_reads(monkeypatch)
    fd = flock_held(warehouse)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLocked, match=r"held by an unknown holder \(the last one recorded, run run-killed, .* no longer runs\)"):
            with warehouse.lock(holder=holder_info("run-b", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
                pass
        assert time.monotonic() - started >= 0.5  # the settle time, however busy the machine
        assert len(reads) >= 2 and all(r["run"] == "run-killed" for r in reads)  # it looked more than once
    finally:
        os.close(fd)
    # Once free, the next run takes the lock and replaces the stale file with its own.
    with warehouse.lock(holder=holder_info("run-c", "python -m pipeline"), wait_seconds=0, stale_seconds=0):
        assert json.loads(warehouse.holder_path.read_text())["run"] == "run-c"


def spy_on_holder_reads(monkeypatch, on_first=None) -> list[dict]:
    """Every holder file the lock reads, in order; ``on_first`` runs right after the first read."""
    reads: list[dict] = []
    read = duckdb_warehouse._read_holder

    def spied(path):
        found = read(path)
        reads.append(found)
        if on_first is not None and len(reads) == 1:
            on_first()
        return found

    monkeypatch.setattr(duckdb_warehouse, "_read_holder", spied)
    return reads
