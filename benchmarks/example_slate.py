"""Write the example slate: the last date of the bundled box scores as its morning's slate.

    python benchmarks/example_slate.py [--date YYYY-MM-DD] [--out data/examples/slates]

The slate is derived from the box scores of that date (every listed player, the starters, the
inactive list; no prop lines), by the same function the pre-game equivalence test uses, so
README's morning command can run end to end with that date's box scores set aside
(``data.boxscores_through``).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl

from pipeline.tables.pregame_roster import slate_from_boxscores

ROOT = Path(__file__).resolve().parents[1]
RAW_DIR = ROOT / "data" / "raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=dt.date.fromisoformat, help="a game date of the bundled data (default: the last one)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "examples" / "slates")
    args = parser.parse_args()
    boxscores = pl.read_parquet(sorted(RAW_DIR.glob("player_boxscores_*.parquet")))
    day = args.date or boxscores["game_date"].max()
    slate = slate_from_boxscores(boxscores.filter(pl.col("game_date") == day))
    if slate.is_empty():
        raise SystemExit(f"no box scores on {day} in {RAW_DIR}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"slate_{day}.csv"
    slate.write_csv(path)
    print(f"{path}: {slate.height} listed players in {slate['game_id'].n_unique()} game(s) on {day}")


if __name__ == "__main__":
    main()
