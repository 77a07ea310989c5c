"""``nba_precompute.player_shot_zone_analysis``: where a player's points come from, from the box score.

The old system split the floor into paint / mid-range / three, which needs play-by-play shot
locations that this project does not have. The box score gives three zones exactly:

- two-point field goals: points 2·(FGM − FG3M), attempts FGA − FG3A;
- three-point field goals: points 3·FG3M, attempts FG3A;
- free throws: points FTM, attempts FTA.

For each player row (listed for a game on the date, not listed inactive) and each window over
the player's played games of the same season strictly before the date (season to date, last 10):

- ``pct_pts_{2pt,3pt,ft}_*``: the zone's share of the player's points (the three add up to 1);
- ``fg3a_rate_season`` = FG3A / FGA, ``fta_rate_season`` = FTA / FGA (attempt mix);
- ``fg2_pct_season``, ``fg3_pct_season``, ``ft_pct_season``: made / attempted per zone;
- ``primary_scoring_zone``: the zone with the largest season share of points.

NULL only when there is nothing to divide (no game played yet this season, no points, no
attempts in a zone); ``zone_null_reason`` says which.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._phase4 import (
    PLAYER_ID_SCHEMA,
    PLAYER_KEY,
    notes,
    played_log,
    HISTORY,
    ROSTER,
    player_rows,
    prior_windows,
    ratio,
)
from pipeline.tables.base import Input, table

ZONES = ("2pt", "3pt", "ft")

SCHEMA = {
    **PLAYER_ID_SCHEMA,
    "games_played_season": pl.Int16,
    "points_season": pl.Int32,
    "pct_pts_2pt_season": pl.Float64,
    "pct_pts_3pt_season": pl.Float64,
    "pct_pts_ft_season": pl.Float64,
    "pct_pts_2pt_last_10": pl.Float64,
    "pct_pts_3pt_last_10": pl.Float64,
    "pct_pts_ft_last_10": pl.Float64,
    "fg3a_rate_season": pl.Float64,
    "fta_rate_season": pl.Float64,
    "fg2_pct_season": pl.Float64,
    "fg3_pct_season": pl.Float64,
    "ft_pct_season": pl.Float64,
    "primary_scoring_zone": pl.String,
    "zone_null_reason": pl.String,
}

HISTORY_COLUMNS = (
    "game_id", "game_date", "season", "season_type", "player_id", "player_name", "team_abbr", "opponent_abbr",
    "is_home", "starter", "is_inactive", "did_not_play", "minutes",
    "fgm", "fga", "fg3m", "fg3a", "ftm", "fta", "pts",
)  # fmt: skip


def zone_points(window: str) -> dict[str, pl.Expr]:
    """Points per zone over a window of prior_windows' sums."""
    return {
        "2pt": 2.0 * (pl.col(f"fgm_{window}") - pl.col(f"fg3m_{window}")),
        "3pt": 3.0 * pl.col(f"fg3m_{window}"),
        "ft": pl.col(f"ftm_{window}"),
    }


@table(
    "nba_precompute.player_shot_zone_analysis",
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
def player_shot_zone_analysis(dates: list[dt.date], pregame_roster: pl.DataFrame, player_game_summary: pl.DataFrame) -> pl.DataFrame:
    """A player's two-point, three-point and free-throw shares of points and attempts."""
    values = ["fgm", "fga", "fg3m", "fg3a", "ftm", "fta", "pts"]
    rows = player_rows(pregame_roster, dates)
    w = prior_windows(rows, played_log(player_game_summary), by=["player_id"], values=values, last_n=(10,))
    season, last10 = zone_points("season"), zone_points("last10")
    shares = {f"pct_pts_{z}_season": ratio(season[z], pl.col("pts_season")) for z in ZONES}
    shares |= {f"pct_pts_{z}_last_10": ratio(last10[z], pl.col("pts_last10")) for z in ZONES}
    best = pl.max_horizontal(*(shares[f"pct_pts_{z}_season"] for z in ZONES))
    primary = pl.when(pl.col("pts_season") <= 0).then(None)
    for zone, name in (("2pt", "two_point"), ("3pt", "three_point"), ("ft", "free_throw")):
        primary = primary.when(shares[f"pct_pts_{zone}_season"] == best).then(pl.lit(name))
    out = w.with_columns(
        games_played_season=pl.col("games_season"),
        points_season=pl.col("pts_season"),
        **shares,
        fg3a_rate_season=ratio(pl.col("fg3a_season"), pl.col("fga_season")),
        fta_rate_season=ratio(pl.col("fta_season"), pl.col("fga_season")),
        fg2_pct_season=ratio(pl.col("fgm_season") - pl.col("fg3m_season"), pl.col("fga_season") - pl.col("fg3a_season")),
        fg3_pct_season=ratio(pl.col("fg3m_season"), pl.col("fg3a_season")),
        ft_pct_season=ratio(pl.col("ftm_season"), pl.col("fta_season")),
        primary_scoring_zone=primary,
        zone_null_reason=pl.when(pl.col("games_season") == 0)
        .then(pl.lit("no game played this season before this date"))
        .when(pl.col("pts_season") == 0)
        .then(pl.lit("no points scored this season before this date"))
        .otherwise(
            notes(
                pl.when(pl.col("pts_last10") == 0).then(pl.lit("no points in the last 10 games: last-10 shares NULL")),
                pl.when(pl.col("fga_season") == 0).then(pl.lit("no field-goal attempt this season")),
                pl.when((pl.col("fga_season") - pl.col("fg3a_season")) == 0).then(pl.lit("no two-point attempt this season")),
                pl.when(pl.col("fg3a_season") == 0).then(pl.lit("no three-point attempt this season")),
                pl.when(pl.col("fta_season") == 0).then(pl.lit("no free-throw attempt this season")),
            )
        ),
    )
    return out.select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr", "player_id")
