"""``nba_analytics.upcoming_player_game_context``: what is known about a player before tip-off.

One row per player listed for a game on the date and not listed inactive. Two kinds of input:

- **Pre-game facts of the date itself**, from ``nba_raw.pregame_roster`` (a slate, or derived
  from the box scores): the game, team, opponent, home/away, whether the player starts (NULL
  until the lineups are announced), which teammates are inactive (the league's inactive list,
  or a slate's ``out`` / ``inactive``), and ``age_years`` on the game date where birth dates are
  known (the bundled files have none: NULL). The date's box scores are not read at all.
- **Earlier games of the same season**, strictly before the date (games played: minutes > 0):

  - ``days_rest`` = days between the last played game and this one, minus 1 (0 = second night of
    a back-to-back); ``back_to_back`` = ``days_rest == 0``. NULL / false without an earlier
    game this season (``context_notes`` says so).
  - ``games_last_7d`` / ``minutes_last_7d``: games played and minutes on the dates D-7 .. D-1;
    ``*_14d`` likewise for D-14 .. D-1; ``back_to_backs_last_14d``: games in D-14 .. D-1 that
    were the second night of a back-to-back.
  - ``plays_share_last_10_team_games``: the player's share of his team's plays
    (FGA + 0.44·FTA + TOV) over the team's last 10 games of the season, counting games he missed
    as 0 (see :func:`pipeline.tables._phase4.team_window_shares`).
  - ``inactive_teammates``: teammates listed inactive for this game;
    ``inactive_teammates_usage_share``: the sum of their ``plays_share_last_10_team_games``: the
    share of the team's recent plays that is missing tonight; ``active_roster_usage_share``: the
    same sum over the players listed and not inactive (this player included). 1 minus both is
    the recent share of players not listed at all (traded, waived, or out without being
    listed). Player composite factors turn the inactive share into projected usage.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._phase4 import (
    PLAYER_KEY,
    notes,
    on_dates,
    played_log,
    HISTORY,
    ROSTER,
    player_rows,
    prior_windows,
    team_window_shares,
)
from pipeline.tables.base import Input, table

TEAM_WINDOW = 10

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
    "roster_source": pl.String,  # where the date's facts came from: 'slate' or 'boxscores'
    "age_years": pl.Float64,
    "games_played_season": pl.Int16,
    "last_game_date": pl.Date,
    "days_rest": pl.Int16,
    "back_to_back": pl.Boolean,
    "games_last_7d": pl.Int16,
    "minutes_last_7d": pl.Float64,
    "games_last_14d": pl.Int16,
    "minutes_last_14d": pl.Float64,
    "back_to_backs_last_14d": pl.Int16,
    "team_games_season": pl.Int16,
    "played_in_last_10_team_games": pl.Int16,
    "plays_share_last_10_team_games": pl.Float64,
    "inactive_teammates": pl.Int16,
    "inactive_teammates_usage_share": pl.Float64,
    "active_roster_usage_share": pl.Float64,
    "inactive_teammate_names": pl.String,
    "context_notes": pl.String,
}

HISTORY_COLUMNS = (
    "game_id", "game_date", "season", "season_type", "player_id", "player_name", "team_abbr", "opponent_abbr",
    "is_home", "starter", "is_inactive", "did_not_play", "minutes", "fga", "fta", "tov",
)  # fmt: skip
DAYS_PER_YEAR = 365.25


def rest_and_load(player_game_summary: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Rest days, back-to-backs and games / minutes over the last 7 and 14 days before the date."""
    log = (
        played_log(player_game_summary)
        .sort("player_id", "season", "game_date")
        .with_columns(
            second_of_back_to_back=(
                (pl.col("game_date") - pl.col("game_date").shift(1).over("player_id", "season")).dt.total_days() == 1
            ).fill_null(False)
        )
    )
    w = prior_windows(rows, log, by=["player_id"], values=["minutes", "second_of_back_to_back"], days=(7, 14))
    days_rest = (pl.col("game_date") - pl.col("last_game_date")).dt.total_days() - 1
    return w.with_columns(
        games_played_season=pl.col("games_season"),
        days_rest=days_rest,
        back_to_back=(days_rest == 0).fill_null(False),
        games_last_7d=pl.col("games_7d"),
        minutes_last_7d=pl.col("minutes_7d"),
        games_last_14d=pl.col("games_14d"),
        minutes_last_14d=pl.col("minutes_14d"),
        back_to_backs_last_14d=pl.col("second_of_back_to_back_14d"),
    )


def inactive_teammates(
    pregame_roster: pl.DataFrame, player_game_summary: pl.DataFrame, dates: list[dt.date]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every listed player's recent team share, per team-game totals of inactive / active shares)."""
    listed = on_dates(pregame_roster, dates).select(
        "game_id", "game_date", "season", "player_id", "player_name", "team_abbr", "is_inactive"
    )
    share = f"plays_share_last_{TEAM_WINDOW}_team_games"
    shares = team_window_shares(player_game_summary, listed, TEAM_WINDOW)
    # Sorted first so that the float sums add up in the same order whatever order the rows came in.
    per_team = shares.sort("game_id", "team_abbr", "player_id").group_by("game_id", "team_abbr").agg(
        inactive_teammates=pl.col("is_inactive").sum(),
        inactive_teammates_usage_share=pl.col(share).filter(pl.col("is_inactive")).fill_null(0.0).sum(),
        active_roster_usage_share=pl.col(share).filter(~pl.col("is_inactive")).fill_null(0.0).sum(),
        inactive_teammate_names=pl.col("player_name").filter(pl.col("is_inactive")).sort().str.join("; "),
    )
    return shares.filter(~pl.col("is_inactive")), per_team


@table(
    "nba_analytics.upcoming_player_game_context",
    schema=SCHEMA,
    key=PLAYER_KEY,
    inputs=[
        ROSTER,
        Input("nba_analytics.player_game_summary", columns=HISTORY_COLUMNS, lookback=HISTORY),
    ],
    phase=4,
    cluster_by=("player_id",),
    split_by_team=True,
    version=2,  # 2: the date's rows from nba_raw.pregame_roster, history read before the date
)
def upcoming_player_game_context(dates: list[dt.date], pregame_roster: pl.DataFrame, player_game_summary: pl.DataFrame) -> pl.DataFrame:
    """Pre-game player context: rest, back-to-backs, recent load, role, inactive teammates."""
    rows = rest_and_load(player_game_summary, player_rows(pregame_roster, dates, "birth_date", "source"))
    shares, per_team = inactive_teammates(pregame_roster, player_game_summary, dates)
    share_cols = ["team_games_season", f"played_in_last_{TEAM_WINDOW}_team_games", f"plays_share_last_{TEAM_WINDOW}_team_games"]
    out = (
        rows.join(shares.select("game_date", "player_id", *share_cols), on=["game_date", "player_id"], how="left")
        .join(per_team, on=["game_id", "team_abbr"], how="left")
        .with_columns(
            roster_source=pl.col("source"),
            age_years=(pl.col("game_date") - pl.col("birth_date")).dt.total_days() / DAYS_PER_YEAR,
            inactive_teammate_names=pl.when(pl.col("inactive_teammate_names") != "").then(pl.col("inactive_teammate_names")),
            context_notes=notes(
                pl.when(pl.col("games_played_season") == 0).then(
                    pl.lit("no game played this season before this date: days_rest NULL, back_to_back false")
                ),
                pl.when(pl.col("team_games_season") == 0).then(pl.lit("team has no game this season before this date")),
                pl.when(pl.col("inactive_teammates") == 0).then(pl.lit("no teammate listed inactive")),
            ),
        )
    )
    return out.select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr", "player_id")

