"""The market backtest on the bundled lines' window, 2024-10-22..2025-01-12: each month predicted by
a model fitted only on the dates before it (the 2022-23 and 2023-24 seasons, then every earlier
month of 2024-25 too), against the consensus line of the pick'em sites on the same player-games,
with the blend of the two. Prints the backtest's table (MAE, bias, the side's hit rates with
their 95 % intervals, Brier), the lines matched and set aside, the blocks, the time; the
model-to-line MAE ratio last.

It is ``task=backtest`` with the configured model settings (``training.*``), every model through
Ray Train as ``task=train`` fits it; the report (``backtest.md``, plots, block models) is kept
under ``var/backtests/benchmark-<time>/``.

The warehouse: ``--warehouse PATH`` (default ``var/warehouse.duckdb``); when missing it is built
first with ``python -m pipeline`` (every table, no model), and what the backtest reads is brought
up to date as ``task=backtest`` does (the prop lines, for a warehouse built before they existed).
The time printed is the backtest's alone.

    python benchmarks/backtest.py [--warehouse PATH] [extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from _harness import PROJECT_ROOT, config
from model_windows import ensure_warehouse

from pipeline.build import build
from pipeline.command import hold_lock
from pipeline.warehouse import open_warehouse
from training.backtest import run_backtest
from training.backtest_report import print_summary, summarise, write_report
from training.task import history_through

START, END = dt.date(2024, 10, 22), dt.date(2025, 1, 12)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, default=PROJECT_ROOT / "var" / "warehouse.duckdb")
    args, extra = parser.parse_known_args(argv)
    path = args.warehouse.resolve()
    run_id = "benchmark-" + dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        ensure_warehouse(path, Path(tmp) / "logs", extra)
        cfg = config(f"warehouse.path={path}", f"logs.dir={Path(tmp) / 'logs'}", f"backtest.root={PROJECT_ROOT / 'var' / 'backtests'}", *extra)
        with open_warehouse(cfg.warehouse) as warehouse, hold_lock(warehouse, cfg, run_id, extra):
            # What task=backtest builds first: nothing on an up-to-date warehouse, the prop lines on an older one.
            built = build(history_through(cfg, END), warehouse, run_id, extra)
            if built is not None and not built.ok:
                raise SystemExit("building the feature store or the prop lines failed (see above)")
            started = time.perf_counter()
            run = run_backtest(cfg, warehouse, run_id, START, END)
            metrics = summarise(run)
            report = write_report(run, metrics)
        seconds = time.perf_counter() - started
    lines = metrics["lines"]
    print(f"backtest {START}..{END} in {seconds:.1f}s ({len(metrics['blocks'])} blocks, a model fitted for each)")
    print(
        f"  lines: {lines['rows']:,} rows; "
        + ", ".join(f"{s['status']} {s['rows']:,} ({s['lines']:,} lines)" for s in lines["by_status"])
        + f"; {lines['matched_player_games']:,} player-games matched, {lines['scored']:,} scored (a line, a prediction, played)"
    )
    for block in metrics["blocks"]:
        fitted = block["blend_weight_fitted_on"]
        weight_from = "initial" if fitted is None else f"fitted on {fitted['rows']:,} earlier rows"
        print(
            f"  block {block['start']}..{block['end']}: model trained through {block['model_trained_through']}, "
            f"blend weight {block['blend_weight']:.2f} ({weight_from}), {block['scored']:,} scored"
        )
    for name in ("model", "blend"):
        s = metrics["sides"][name]
        top, gap = s["top"], s["gap"]
        print(
            f"  {name} side: {s['overall']['rate']:.1%} of {s['overall']['picks']:,}; top {top['picks']} by |P(over) - 0.5| "
            f"{top['rate']:.1%} (95% {top['ci_low']:.1%}-{top['ci_high']:.1%}, p {top['p_value']:.3f} against 52.4%); "
            f"|{name} - line| >= {gap['points']:g}: {gap['rate']:.1%} of {gap['picks']:,}"
        )
    print(f"  report: {report}")
    print_summary(Console(width=160), metrics, report)


if __name__ == "__main__":
    main(sys.argv[1:])
