"""``nba_precompute.player_daily_cache``: a player's form going into a game, from earlier games only.

One row per player listed for a game on the date and not listed inactive (DND / NWT, published
before tip-off); players who end up with a coach's-decision DNP have a row too. Every figure uses
only the player's *played* games (minutes > 0; DNP games do not count) of the same season
strictly before the date:

- ``*_avg_last_{3,5,10}``: mean over the last 3 / 5 / 10 played games (fewer early in the
  season); ``*_avg_season``: mean over every played game this season. NULL when the player has
  not played yet this season: a player's first game of a season has no season average (it is
  never last season's, nor an all-time mean).
- ``points_std_last_10``: sample standard deviation of points over the last 10 played games
  (NULL with fewer than 2).
- ``usage_avg_*``: minutes-weighted mean usage rate, Σ(usage_rate·minutes) / Σ minutes, so a
  few seconds of play (usage above 100) do not swamp the mean.
- ``points_per_minute_*`` = Σ points / Σ minutes; ``ts_pct_*`` = Σ PTS / (2·Σ(FGA + 0.44·FTA)).
- ``starts_last_10``: games started among the last 10 played.
- ``points_last_game`` / ``minutes_last_game``: the last played game before the date.

The lookback is season to date, so the last-N windows are within the season too. Beside it, the
player's whole previous season (every played game of the season before the date's, whatever the
season type; nothing of it where he did not play or the data has no such season):

- ``games_played_prev_season`` (0 without one); ``points_avg_prev_season``,
  ``minutes_avg_prev_season``, ``usage_avg_prev_season``, ``points_per_minute_prev_season``,
  ``fga_per_game_prev_season``, ``start_rate_prev_season``: as above, over that season (NULL
  without a game in it).
- ``points_avg_blended``, ``minutes_avg_blended``, ``usage_avg_blended``,
  ``points_per_minute_blended``: the season figure with ``prior_games`` (``phase4.prior_games``)
  games of last season's per-game figures added to this season's sums (see
  :func:`pipeline.tables._phase4.blended`): last season's figure on opening night, this
  season's more and more as games accumulate, this season's alone without a previous season.
- ``points_vs_prev_season`` = points_avg_season − points_avg_prev_season: how far this season
  has moved from the last.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._phase4 import (
    PLAYER_ID_SCHEMA,
    PLAYER_KEY,
    notes,
    played_log,
    HISTORY_WITH_PREVIOUS_SEASON,
    ROSTER,
    blended,
    player_rows,
    previous_season_sums,
    prior_windows,
    ratio,
)
from pipeline.tables.base import Input, table
from pipeline.tables.player_game_summary import shot_attempts

WINDOWS = (1, 3, 5, 10)

SCHEMA = {
    **PLAYER_ID_SCHEMA,
    "games_played_season": pl.Int16,
    "last_game_date": pl.Date,
    "points_last_game": pl.Float64,
    "minutes_last_game": pl.Float64,
    "points_avg_last_3": pl.Float64,
    "points_avg_last_5": pl.Float64,
    "points_avg_last_10": pl.Float64,
    "points_avg_season": pl.Float64,
    "points_std_last_10": pl.Float64,
    "minutes_avg_last_3": pl.Float64,
    "minutes_avg_last_5": pl.Float64,
    "minutes_avg_last_10": pl.Float64,
    "minutes_avg_season": pl.Float64,
    "usage_avg_last_5": pl.Float64,
    "usage_avg_last_10": pl.Float64,
    "usage_avg_season": pl.Float64,
    "fga_per_game_last_10": pl.Float64,
    "fta_per_game_last_10": pl.Float64,
    "fg3a_per_game_last_10": pl.Float64,
    "fga_per_game_season": pl.Float64,
    "fta_per_game_season": pl.Float64,
    "fg3a_per_game_season": pl.Float64,
    "points_per_minute_last_10": pl.Float64,
    "points_per_minute_season": pl.Float64,
    "ts_pct_last_10": pl.Float64,
    "ts_pct_season": pl.Float64,
    "rebounds_avg_last_10": pl.Float64,
    "assists_avg_last_10": pl.Float64,
    "starts_last_10": pl.Int16,
    "games_played_prev_season": pl.Int16,
    "points_avg_prev_season": pl.Float64,
    "minutes_avg_prev_season": pl.Float64,
    "usage_avg_prev_season": pl.Float64,
    "points_per_minute_prev_season": pl.Float64,
    "fga_per_game_prev_season": pl.Float64,
    "start_rate_prev_season": pl.Float64,
    "points_avg_blended": pl.Float64,
    "minutes_avg_blended": pl.Float64,
    "usage_avg_blended": pl.Float64,
    "points_per_minute_blended": pl.Float64,
    "points_vs_prev_season": pl.Float64,
    "cache_notes": pl.String,
}

HISTORY_COLUMNS = (
    "game_id", "game_date", "season", "season_type", "player_id", "player_name", "team_abbr", "opponent_abbr",
    "is_home", "starter", "is_inactive", "did_not_play", "minutes",
    "pts", "fga", "fta", "fg3a", "reb", "ast", "usage_rate",
)  # fmt: skip


def _avg(value: str, window: str) -> pl.Expr:
    return ratio(pl.col(f"{value}_{window}"), pl.col(f"games_{window}"))


def form_windows(player_game_summary: pl.DataFrame, rows: pl.DataFrame, prior_games: float) -> pl.DataFrame:
    """``rows`` (player rows of the target dates) with the player's form before each date, and
    over his previous season."""
    log = played_log(
        player_game_summary,
        pts_sq=pl.col("pts").cast(pl.Float64) ** 2,
        usage_x_min=pl.col("usage_rate") * pl.col("minutes"),
        min_with_usage=pl.when(pl.col("usage_rate").is_not_null()).then(pl.col("minutes")).otherwise(0.0),
        shots=shot_attempts(pl.col("fga"), pl.col("fta")),
        started=pl.col("starter").cast(pl.Float64),
    )
    values = ["pts", "pts_sq", "minutes", "usage_x_min", "min_with_usage", "fga", "fta", "fg3a", "shots", "reb", "ast", "started"]
    w = prior_windows(rows, log, by=["player_id"], values=values, last_n=WINDOWS)
    w = previous_season_sums(w, log, by=["player_id"], values=values)
    prev_games = pl.col("games_prev_season")
    n10 = pl.col("games_last10")
    variance = ratio(pl.col("pts_sq_last10") - pl.col("pts_last10") ** 2 / n10, n10 - 1)
    return w.with_columns(
        games_played_season=pl.col("games_season"),
        points_last_game=_avg("pts", "last1"),
        minutes_last_game=_avg("minutes", "last1"),
        points_avg_last_3=_avg("pts", "last3"),
        points_avg_last_5=_avg("pts", "last5"),
        points_avg_last_10=_avg("pts", "last10"),
        points_avg_season=_avg("pts", "season"),
        # Clipped at 0: the running-sum difference can come out a rounding error below it.
        points_std_last_10=pl.when(n10 >= 2).then(variance.clip(lower_bound=0.0).sqrt()),
        minutes_avg_last_3=_avg("minutes", "last3"),
        minutes_avg_last_5=_avg("minutes", "last5"),
        minutes_avg_last_10=_avg("minutes", "last10"),
        minutes_avg_season=_avg("minutes", "season"),
        usage_avg_last_5=ratio(pl.col("usage_x_min_last5"), pl.col("min_with_usage_last5")),
        usage_avg_last_10=ratio(pl.col("usage_x_min_last10"), pl.col("min_with_usage_last10")),
        usage_avg_season=ratio(pl.col("usage_x_min_season"), pl.col("min_with_usage_season")),
        fga_per_game_last_10=_avg("fga", "last10"),
        fta_per_game_last_10=_avg("fta", "last10"),
        fg3a_per_game_last_10=_avg("fg3a", "last10"),
        fga_per_game_season=_avg("fga", "season"),
        fta_per_game_season=_avg("fta", "season"),
        fg3a_per_game_season=_avg("fg3a", "season"),
        points_per_minute_last_10=ratio(pl.col("pts_last10"), pl.col("minutes_last10")),
        points_per_minute_season=ratio(pl.col("pts_season"), pl.col("minutes_season")),
        ts_pct_last_10=ratio(pl.col("pts_last10"), 2.0 * pl.col("shots_last10")),
        ts_pct_season=ratio(pl.col("pts_season"), 2.0 * pl.col("shots_season")),
        rebounds_avg_last_10=_avg("reb", "last10"),
        assists_avg_last_10=_avg("ast", "last10"),
        starts_last_10=pl.col("started_last10"),
        games_played_prev_season=prev_games,
        points_avg_prev_season=_avg("pts", "prev_season"),
        minutes_avg_prev_season=_avg("minutes", "prev_season"),
        usage_avg_prev_season=ratio(pl.col("usage_x_min_prev_season"), pl.col("min_with_usage_prev_season")),
        points_per_minute_prev_season=ratio(pl.col("pts_prev_season"), pl.col("minutes_prev_season")),
        fga_per_game_prev_season=_avg("fga", "prev_season"),
        start_rate_prev_season=_avg("started", "prev_season"),
        points_avg_blended=blended("pts", "games", prior_games),
        minutes_avg_blended=blended("minutes", "games", prior_games),
        usage_avg_blended=blended("usage_x_min", "min_with_usage", prior_games),
        points_per_minute_blended=blended("pts", "minutes", prior_games),
        points_vs_prev_season=_avg("pts", "season") - _avg("pts", "prev_season"),
        cache_notes=notes(
            pl.when(pl.col("games_season") == 0).then(pl.lit("no game played this season before this date")),
            pl.when(pl.col("games_season").is_between(1, 9)).then(
                pl.format("only {} game(s) played this season: last-10 figures cover fewer games", pl.col("games_season").cast(pl.Int32))
            ),
        ),
    )


@table(
    "nba_precompute.player_daily_cache",
    schema=SCHEMA,
    key=PLAYER_KEY,
    inputs=[
        ROSTER,
        Input("nba_analytics.player_game_summary", columns=HISTORY_COLUMNS, lookback=HISTORY_WITH_PREVIOUS_SEASON),
    ],
    phase=4,
    params={"prior_games": "phase4.prior_games"},
    cluster_by=("player_id",),
    split_by_team=True,
    version=3,  # 2: the date's rows from nba_raw.pregame_roster, history read before the date; 3: the previous season
)
def player_daily_cache(
    dates: list[dt.date], pregame_roster: pl.DataFrame, player_game_summary: pl.DataFrame, prior_games: float
) -> pl.DataFrame:
    """Rolling player form (points, minutes, usage, shooting) before each game date."""
    rows = player_rows(pregame_roster, dates)
    return form_windows(player_game_summary, rows, prior_games).select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr", "player_id")
