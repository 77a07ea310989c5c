"""``nba_raw.quarantine``: raw, slate and lines rows left out of ``nba_raw`` with the reason, when
``data.on_bad_rows=quarantine``. Empty in the default ``fail`` mode, where such rows stop the
shard instead. Built on every date any raw table is built (``built_with``), whichever tables a
run asks for, so no bad row is left out without its record here."""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables import player_boxscores as player_table
from pipeline.tables import pregame_roster as roster_table
from pipeline.tables import prop_lines as lines_table
from pipeline.tables import team_boxscores as team_table
from pipeline.tables._raw import SOURCE_FILE, SOURCE_ROW, find_bad_rows
from pipeline.tables.base import Input, table

SCHEMA = {
    "game_date": pl.Date,
    "source_file": pl.String,
    "source_row": pl.Int64,
    "game_id": pl.String,
    "team_abbr": pl.String,
    "player_id": pl.Int32,
    "reason": pl.String,
    "raw_row": pl.String,
}


@table(
    "nba_raw.quarantine",
    schema=SCHEMA,
    key=(SOURCE_FILE, SOURCE_ROW),
    inputs=[Input("source.player_boxscores"), Input("source.team_game_logs"), Input("source.slates"), Input("source.lines")],
    params={"on_bad_rows": "data.on_bad_rows"},
    phase=2,
    built_with=("nba_raw.player_boxscores", "nba_raw.team_boxscores", "nba_raw.pregame_roster", "nba_raw.prop_lines"),
    version=3,  # 2: bad slate rows too; 3: bad lines rows too
)
def quarantine(
    dates: list[dt.date],
    player_boxscores: pl.DataFrame,
    team_game_logs: pl.DataFrame,
    slates: pl.DataFrame,
    lines: pl.DataFrame,
    on_bad_rows: str,
) -> pl.DataFrame:
    """Bad raw rows with their file, row number and reason (quarantine mode only)."""
    if on_bad_rows != "quarantine":
        return pl.DataFrame(schema=SCHEMA)
    found = [
        find_bad_rows(player_boxscores, player_table.KEY, has_minutes=True),
        find_bad_rows(team_game_logs, team_table.KEY, has_minutes=False).with_columns(player_id=pl.lit(None, pl.Int32)),
        find_bad_rows(slates, roster_table.KEY, **roster_table.slate_checks()),
        find_bad_rows(lines, lines_table.ROW_KEY, **lines_table.line_checks()),  # no game or team: not matched yet
    ]
    return pl.concat(
        [
            bad.with_columns(raw_row=pl.struct(pl.exclude("reason")).struct.json_encode()).select(
                *(pl.col(c) if c in bad.columns else pl.lit(None, t).alias(c) for c, t in SCHEMA.items() if c != "raw_row"), "raw_row"
            )
            for bad in found
        ],
        how="vertical_relaxed",
    ).filter(pl.col("game_date").is_not_null())
