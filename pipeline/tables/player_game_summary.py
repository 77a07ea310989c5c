"""``nba_analytics.player_game_summary``: one row per player and game, with rate stats.

- usage_rate = 100 · (FGA + 0.44·FTA + TOV) · (team_minutes / 5)
  / (minutes · (team FGA + 0.44·team FTA + team TOV)). NULL only when the player did not play
  or played 0:00. A few seconds of play can exceed 100 (``usage_rate_above_100`` flags those
  rows; the value is kept).
- ts_pct = PTS / (2 · (FGA + 0.44·FTA)); efg_pct = (FGM + 0.5·FG3M) / FGA. A 0-for-N shooter
  gets 0.0; NULL only without attempts.
- dnp_reason_category groups the source's many comment spellings; ``is_inactive`` is true for
  players not dressed (``DND``) or not with the team (``NWT``), which the league publishes before
  tip-off, unlike a coach's decision (``DNP``).

The team totals come from ``team_offense_game_summary`` of the same date. The runner never runs
this table on a date where that input is incomplete; if it is forced to, the team columns are
NULL and so is usage, which validation reports as a coverage failure.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._raw import COUNT_COLUMNS
from pipeline.tables.base import Input, table
from pipeline.tables.team_offense_game_summary import FREE_THROW_POSSESSION_WEIGHT

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "player_id": pl.Int32,
    "player_name": pl.String,
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "starter": pl.Boolean,
    "did_not_play": pl.Boolean,
    "dnp_reason_category": pl.String,
    "is_inactive": pl.Boolean,
    "minutes": pl.Float64,
    **{c: pl.Int16 for c in COUNT_COLUMNS},
    "plus_minus": pl.Int16,
    "usage_rate": pl.Float64,
    "usage_rate_above_100": pl.Boolean,
    "ts_pct": pl.Float64,
    "efg_pct": pl.Float64,
    "birth_date": pl.Date,  # from the raw files when they have it, else NULL
}

# First match wins; matched against the lower-cased comment.
DNP_REASONS = (
    ("coach", "coach_decision"),
    ("suspension", "suspension"),
    ("trade", "trade_pending"),
    ("personal", "personal"),
    ("rest", "rest"),
    ("not with team", "not_with_team"),
    ("injury|illness|concussion|reconditioning|health", "injury_illness"),
)
INACTIVE_PREFIXES = r"^(DND|NWT)"


def dnp_reason_category(comment: pl.Expr, did_not_play: pl.Expr) -> pl.Expr:
    lowered = comment.str.to_lowercase().str.replace_all("_", " ")
    category = pl.when(comment.is_null()).then(pl.lit("unknown"))
    for pattern, name in DNP_REASONS:
        category = category.when(lowered.str.contains(pattern)).then(pl.lit(name))
    return pl.when(did_not_play).then(category.otherwise(pl.lit("other")))


def shot_attempts(fga: pl.Expr, fta: pl.Expr) -> pl.Expr:
    return fga + FREE_THROW_POSSESSION_WEIGHT * fta


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, NULL where the denominator is 0 (no attempts, no minutes)."""
    return pl.when(denominator > 0).then(numerator / denominator)


@table(
    "nba_analytics.player_game_summary",
    schema=SCHEMA,
    key=("game_id", "player_id"),
    inputs=[
        Input("nba_raw.player_boxscores"),
        Input(
            "nba_analytics.team_offense_game_summary",
            columns=("game_id", "team_abbr", "team_minutes", "fga", "fta", "tov"),
        ),
    ],
    phase=3,
    cluster_by=("player_id",),
    needs_box_scores=True,
)
def player_game_summary(
    dates: list[dt.date], player_boxscores: pl.DataFrame, team_offense_game_summary: pl.DataFrame
) -> pl.DataFrame:
    """Player box score per game with usage rate, true shooting and effective FG%."""
    team = team_offense_game_summary.select(
        "game_id", "team_abbr", "team_minutes", team_fga="fga", team_fta="fta", team_tov="tov"
    )
    played_minutes = pl.when(~pl.col("did_not_play")).then(pl.col("minutes"))
    player_plays = shot_attempts(pl.col("fga"), pl.col("fta")) + pl.col("tov")
    team_plays = shot_attempts(pl.col("team_fga"), pl.col("team_fta")) + pl.col("team_tov")
    usage = 100.0 * ratio(player_plays * (pl.col("team_minutes") / 5.0), played_minutes * team_plays)
    return (
        player_boxscores.join(team, on=["game_id", "team_abbr"], how="left")
        .with_columns(
            dnp_reason_category=dnp_reason_category(pl.col("comment"), pl.col("did_not_play")),
            is_inactive=pl.col("comment").str.contains(INACTIVE_PREFIXES).fill_null(False),
            usage_rate=usage,
            ts_pct=ratio(pl.col("pts"), 2.0 * shot_attempts(pl.col("fga"), pl.col("fta"))),
            efg_pct=ratio(pl.col("fgm") + 0.5 * pl.col("fg3m"), pl.col("fga")),
        )
        .with_columns(usage_rate_above_100=pl.col("usage_rate") > 100.0)
        .sort("game_date", "game_id", "team_abbr", "player_id")
    )
