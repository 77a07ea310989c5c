"""What ``task=predict`` shows: the slate of predictions as a table per date, and all of it as CSV.

- :func:`slate_frame` (pure): the prediction rows in reading order, by date, game, team, then
  predicted points descending; the game as ``AWAY @ HOME``.
- :func:`shown_rows` (pure): at most ``max_rows`` rows of one date for the terminal, the same
  number of top predictions from every game (at least ``MIN_PER_GAME``), so a full night of
  games stays readable; the rest is in the CSV.
- :func:`write_csv`: every row, every column of the slate, to ``<logs.dir>/<run id>-predictions.csv``
  beside the run's log (``<run id>-predict.log``), so no run overwrites another's.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table as RichTable

MAX_ROWS = 60
MIN_PER_GAME = 3
CSV_COLUMNS = [
    "game_date", "game", "game_id", "team_abbr", "opponent_abbr", "player_id", "player_name", "starter",
    "predicted_points", "p10", "p90", "points_line", "bookmaker", "p_over", "edge", "made_before_tipoff", "model_id",
]  # fmt: skip


def csv_path(logs_dir: str | Path, run_id: str) -> Path:
    return Path(logs_dir) / f"{run_id}-predictions.csv"


def slate_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """Prediction rows (with ``starter``, ``is_home``) sorted by date, game, team, predicted points."""
    home = pl.when(pl.col("is_home")).then(pl.col("team_abbr")).otherwise(pl.col("opponent_abbr"))
    away = pl.when(pl.col("is_home")).then(pl.col("opponent_abbr")).otherwise(pl.col("team_abbr"))
    return (
        rows.with_columns(pl.when(pl.col("is_home").is_null()).then(pl.col("game_id")).otherwise(pl.format("{} @ {}", away, home)).alias("game"))
        .sort(["game_date", "game_id", "team_abbr", "predicted_points", "player_id"], descending=[False, False, False, True, False])
        .select(CSV_COLUMNS)
    )


def shown_rows(day: pl.DataFrame, max_rows: int = MAX_ROWS) -> pl.DataFrame:
    """At most ``max_rows`` rows of one date's slate (already sorted): every game's top predictions."""
    if day.height <= max_rows:
        return day
    games = day["game_id"].n_unique()
    per_game = max(MIN_PER_GAME, max_rows // max(games, 1))
    # Rows are sorted by team within a game: rank by predicted points across the game's two teams.
    ranked = day.with_columns(_rank=pl.col("predicted_points").rank("ordinal", descending=True).over("game_id"))
    return ranked.filter(pl.col("_rank") <= per_game).drop("_rank")


def write_csv(slate: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    slate.write_csv(path)
    return path


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "" if value is None else fmt.format(value)


def print_slate(console: Console, slate: pl.DataFrame, model_id: str, csv: Path | None, max_rows: int = MAX_ROWS) -> None:
    """One table per date: player, team, opponent, starter, prediction, 80 % interval, line, P(over), edge."""
    for (day,), rows in slate.group_by("game_date", maintain_order=True):
        shown = shown_rows(rows, max_rows)
        when = "before tip-off" if rows["made_before_tipoff"].all() else "after the games"
        table = RichTable(
            title=f"predictions for {day} ({rows['game_id'].n_unique()} games, {rows.height} players; model {model_id}, made {when})",
            title_justify="left",
        )
        for column in ("game", "player", "team", "opp", "starter", "pred", "80% interval", "line", "P(over)", "edge"):
            table.add_column(column, justify="left" if column in ("game", "player", "team", "opp") else "right", no_wrap=column != "player")
        previous = None
        for r in shown.iter_rows(named=True):
            starter = {True: "yes", False: "", None: "?"}[r["starter"]]
            interval = "" if r["p10"] is None else f"{r['p10']:.1f}-{r['p90']:.1f}"
            edge = "" if r["edge"] is None else f"{r['edge']:+.2f}"
            table.add_row(
                r["game"] if r["game"] != previous else "", r["player_name"], r["team_abbr"], r["opponent_abbr"], starter,
                _num(r["predicted_points"]), interval, _num(r["points_line"]), _num(r["p_over"], "{:.2f}"), edge,
                end_section=False,
            )  # fmt: skip
            previous = r["game"]
        console.print(table)
        if shown.height < rows.height:
            where = f" in {csv}" if csv else ""
            console.print(f"{rows.height - shown.height} more{where} (top {shown.height} shown: each game's highest predictions)", highlight=False)
