"""Phase 4 through the real pipeline: sharded run equals per-date run, rows from the opener, and
a bootstrap window marked when one is asked for.

Two pipeline runs (in this process, on one Ray runtime) build the Phase 4 tables over the start
of 2023-24 (its opener and the weeks after it) into copies of the same Phase 3 warehouse, one
with the default 64-date shards and one with one date per shard; every Phase 4 table must come
out row for row the same, with rows on every game date from the opener. A third run over the
first copy with ``phase4.bootstrap_days=14`` (the old system's rule) must empty the first 14 days
of the season and mark them ``skipped_bootstrap``, leaving the later dates as they were.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from polars.testing import assert_frame_equal

from conftest import query, read_table, run_in_process
from pipeline.tables import registry

TABLES = registry()
PHASE4 = [n for n, t in TABLES.items() if t.phase == 4]
START, END = dt.date(2023, 10, 24), dt.date(2023, 11, 24)
OPENER = dt.date(2023, 10, 24)  # first 2023-24 regular-season date in the bundled schedule


def run_state(path) -> list[tuple]:
    return query(
        path,
        "SELECT table_name, game_date, status, rows_written FROM nba_orchestration.run_state "
        f"WHERE game_date BETWEEN DATE '{START}' AND DATE '{END}' AND table_name IN ({', '.join(repr(n) for n in PHASE4)})",
    )


@pytest.mark.slow
def test_sharded_run_equals_per_date_run_and_a_bootstrap_window_is_marked(phase3_warehouse, tmp_path):
    tables = f"tables=[{','.join(TABLES[n].short_name for n in PHASE4)}]"
    warehouses = {}
    for shard_days in (64, 1):
        workdir = tmp_path / f"shard{shard_days}"
        workdir.mkdir()
        shutil.copy(phase3_warehouse, workdir / "warehouse.duckdb")
        run = run_in_process(workdir, tables, f"dates.start={START}", f"dates.end={END}", f"shard.days={shard_days}")
        assert run.returncode == 0, run.output
        warehouses[shard_days] = workdir / "warehouse.duckdb"

    built = {}
    for name in PHASE4:
        order = ", ".join(TABLES[name].key)
        sharded = read_table(warehouses[64], name, order_by=order)
        per_date = read_table(warehouses[1], name, order_by=order)
        assert sharded.height > 1000 if "player_id" in TABLES[name].key else sharded.height > 100
        assert_frame_equal(per_date, sharded)
        assert sharded["game_date"].min() == OPENER
        built[name] = sharded

    game_dates = {
        d for (d,) in query(warehouses[64], "SELECT DISTINCT game_date FROM nba_analytics.player_game_summary "
                                            f"WHERE game_date BETWEEN DATE '{START}' AND DATE '{END}'")
    }  # fmt: skip
    window = {d for d in game_dates if (d - OPENER).days < 14}
    assert len(game_dates) > 20 and window
    for path in warehouses.values():
        states = run_state(path)
        assert {(t, d) for t, d, _, _ in states} == {(t, d) for t in PHASE4 for d in game_dates}
        assert all(status == "ok" and rows > 0 for _, _, status, rows in states), states

    # The old rule, asked for: the window's dates are emptied and marked, nothing else is rebuilt.
    workdir = tmp_path / "shard64"
    run = run_in_process(workdir, tables, f"dates.start={START}", f"dates.end={END}", "phase4.bootstrap_days=14")
    assert run.returncode == 0, run.output
    for table_name, day, status, rows in run_state(warehouses[64]):
        if day in window:
            assert (status, rows) == ("skipped_bootstrap", 0), (table_name, day)
        else:
            assert status == "ok" and rows > 0, (table_name, day)
    for name in PHASE4:
        after = read_table(warehouses[64], name, order_by=", ".join(TABLES[name].key))
        # 2023-11-07, day 14 of the season, had no games.
        assert after["game_date"].min() == dt.date(2023, 11, 8), name
        assert_frame_equal(after, built[name].filter(~built[name]["game_date"].is_in(sorted(window))))
