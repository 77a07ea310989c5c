"""Phase 4 through the real pipeline: sharded run equals per-date run, bootstrap dates marked.

Two runs of ``python -m pipeline`` build the Phase 4 tables over the start of 2023-24 (the
14-day bootstrap window and the weeks after it) into copies of the same Phase 3 warehouse, one
with the default 64-date shards and one with one date per shard; every Phase 4 table must come
out row for row the same, and run_state must mark the bootstrap dates ``skipped_bootstrap``.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from polars.testing import assert_frame_equal

from conftest import query, read_table, run_pipeline
from pipeline.tables import registry

TABLES = registry()
PHASE4 = [n for n, t in TABLES.items() if t.phase == 4]
START, END = dt.date(2023, 10, 24), dt.date(2023, 11, 24)
OPENER = dt.date(2023, 10, 24)  # first 2023-24 regular-season date in the bundled schedule


@pytest.mark.slow
def test_sharded_run_equals_per_date_run(phase3_warehouse, tmp_path):
    warehouses = {}
    for shard_days in (64, 1):
        workdir = tmp_path / f"shard{shard_days}"
        workdir.mkdir()
        shutil.copy(phase3_warehouse, workdir / "warehouse.duckdb")
        run = run_pipeline(
            workdir,
            f"tables=[{','.join(TABLES[n].short_name for n in PHASE4)}]",
            f"dates.start={START}",
            f"dates.end={END}",
            f"shard.days={shard_days}",
        )
        assert run.returncode == 0, run.output
        warehouses[shard_days] = workdir / "warehouse.duckdb"

    for name in PHASE4:
        order = ", ".join(TABLES[name].key)
        sharded = read_table(warehouses[64], name, order_by=order)
        per_date = read_table(warehouses[1], name, order_by=order)
        assert sharded.height > 1000 if "player_id" in TABLES[name].key else sharded.height > 100
        assert_frame_equal(per_date, sharded)
        # 2023-11-07, the first date after the window, had no games.
        assert sharded["game_date"].min() == dt.date(2023, 11, 8)

    for path in warehouses.values():
        states = query(
            path,
            "SELECT table_name, game_date, status, rows_written FROM nba_orchestration.run_state "
            f"WHERE game_date BETWEEN DATE '{START}' AND DATE '{END}' AND table_name IN ({', '.join(repr(n) for n in PHASE4)})",
        )
        # Every game date of the range has a row per table: the bootstrap dates are marked, not left out.
        game_dates = {d for _, d, _, _ in query(path, "SELECT table_name, game_date, status, rows_written FROM nba_orchestration.run_state "
                                                    f"WHERE table_name = 'nba_analytics.player_game_summary' AND game_date BETWEEN DATE '{START}' AND DATE '{END}'")}
        assert len(game_dates) > 20 and any((d - OPENER).days < 14 for d in game_dates)
        assert {(t, d) for t, d, _, _ in states} == {(t, d) for t in PHASE4 for d in game_dates}
        for table_name, day, status, rows in states:
            if (day - OPENER).days < 14:
                assert (status, rows) == ("skipped_bootstrap", 0), (table_name, day)
            else:
                assert status == "ok" and rows > 0, (table_name, day)
        assert {d for _, d, s, _ in states if s == "skipped_bootstrap"} == {
            d for _, d, _, _ in states if (d - OPENER).days < 14
        }
