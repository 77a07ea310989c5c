"""``nba_precompute.team_defense_zone_analysis``: how a defence fares in each box-score zone.

The old paint / mid-range split needs play-by-play that we do not have; the box score gives
the opponents' twos, threes and free throws. Two rows per game on the date (one per team, from
the schedule: a pre-game fact). For each team, over its games of the same season strictly
before the date:

- ``opp_fg2_pct_allowed_*`` = Σ opponent (FGM − FG3M) / Σ opponent (FGA − FG3A);
  ``opp_fg3_pct_allowed_*`` = Σ opponent FG3M / Σ opponent FG3A;
  ``opp_fta_rate_allowed_season`` = Σ opponent FTA / Σ opponent FGA (free throws conceded per
  shot); ``opp_fg3a_share_allowed_season`` = Σ opponent FG3A / Σ opponent FGA.
- ``league_*_season``: the same ratios over every team-game of the season before the date
  (``league_games_season`` of them: NULL ratios on the opener, where there is none).
- ``fg2_pct_allowed_vs_league`` = 100 · (opp_fg2_pct_allowed_season − league_fg2_pct_season),
  in percentage points (positive: opponents shoot better than the league average, a weak
  defence in that zone); likewise ``fg3_pct_allowed_vs_league`` and
  ``fta_rate_allowed_vs_league`` (FTA per 100 FGA above the league's).
- ``weakest_zone`` / ``strongest_zone``: the zone (``two_point``, ``three_point``,
  ``free_throw``) with the largest / smallest allowed-vs-league ratio relative to the league
  (e.g. (fg3 allowed − league fg3) / league fg3).

NULL only without an earlier game this season (``zone_null_reason`` says so).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._phase4 import HISTORY, LEAGUE_TEAM_GAMES, TEAM_KEY, league_before, prior_windows, ratio, team_rows
from pipeline.tables.base import Input, table

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "games_season": pl.Int16,
    "opp_fg2_pct_allowed_season": pl.Float64,
    "opp_fg3_pct_allowed_season": pl.Float64,
    "opp_fta_rate_allowed_season": pl.Float64,
    "opp_fg3a_share_allowed_season": pl.Float64,
    "opp_fg2_pct_allowed_last_10": pl.Float64,
    "opp_fg3_pct_allowed_last_10": pl.Float64,
    "league_games_season": pl.Int16,
    "league_fg2_pct_season": pl.Float64,
    "league_fg3_pct_season": pl.Float64,
    "league_fta_rate_season": pl.Float64,
    "fg2_pct_allowed_vs_league": pl.Float64,
    "fg3_pct_allowed_vs_league": pl.Float64,
    "fta_rate_allowed_vs_league": pl.Float64,
    "points_allowed_avg_last_10": pl.Float64,
    "weakest_zone": pl.String,
    "strongest_zone": pl.String,
    "zone_null_reason": pl.String,
}

DEFENSE_COLUMNS = (
    "game_id", "game_date", "season", "defending_team_abbr",
    "points_allowed", "opp_fgm", "opp_fga", "opp_fg3m", "opp_fg3a", "opp_fta",
)  # fmt: skip
SCHEDULE_COLUMNS = ("game_id", "game_date", "season", "season_type", "home_team_abbr", "away_team_abbr")
VALUES = ("opp_fgm", "opp_fga", "opp_fg3m", "opp_fg3a", "opp_fta", "points_allowed", "opp_fg2m", "opp_fg2a")
ZONE_NAMES = {"fg2": "two_point", "fg3": "three_point", "fta": "free_throw"}


def zone_ratios(prefix: str, window: str) -> dict[str, pl.Expr]:
    """FG% on twos, on threes and FTA per FGA from window sums named ``{prefix}{value}_{window}``."""
    col = lambda v: pl.col(f"{prefix}{v}_{window}")  # noqa: E731
    return {
        "fg2": ratio(col("opp_fg2m"), col("opp_fg2a")),
        "fg3": ratio(col("opp_fg3m"), col("opp_fg3a")),
        "fta": ratio(col("opp_fta"), col("opp_fga")),
    }


def relative_to_league(zone: str) -> pl.Expr:
    """(allowed − league) / league for one zone of this table's columns: the mismatch input."""
    allowed = {"fg2": "opp_fg2_pct_allowed_season", "fg3": "opp_fg3_pct_allowed_season", "fta": "opp_fta_rate_allowed_season"}
    league = {"fg2": "league_fg2_pct_season", "fg3": "league_fg3_pct_season", "fta": "league_fta_rate_season"}
    return ratio(pl.col(allowed[zone]) - pl.col(league[zone]), pl.col(league[zone]))


@table(
    "nba_precompute.team_defense_zone_analysis",
    schema=SCHEMA,
    key=TEAM_KEY,
    inputs=[
        Input("nba_raw.schedule", columns=SCHEDULE_COLUMNS),
        Input("nba_analytics.team_defense_game_summary", columns=DEFENSE_COLUMNS, lookback=HISTORY),
    ],
    phase=4,
    cluster_by=("team_abbr",),
    version=4,  # 2: history read before the date; 3: league_games_season; 4: it counts team-games, not dates
)
def team_defense_zone_analysis(dates: list[dt.date], schedule: pl.DataFrame, team_defense_game_summary: pl.DataFrame) -> pl.DataFrame:
    """Opponent FG% allowed on twos and threes and free throws conceded, against the league."""
    log = team_defense_game_summary.rename({"defending_team_abbr": "team_abbr"}).with_columns(
        opp_fg2m=pl.col("opp_fgm") - pl.col("opp_fg3m"), opp_fg2a=pl.col("opp_fga") - pl.col("opp_fg3a")
    )
    rows = team_rows(schedule, dates)
    w = prior_windows(rows, log, by=["team_abbr"], values=VALUES, last_n=(10,))
    league = league_before(rows, log, VALUES).select(
        "season", "game_date", pl.col(f"{LEAGUE_TEAM_GAMES}_season").alias("league_games_season"), *(pl.col(f"{v}_season").alias(f"league_{v}_season") for v in VALUES)
    )
    team_season, team_last10, league_season = zone_ratios("", "season"), zone_ratios("", "last10"), zone_ratios("league_", "season")
    out = w.join(league, on=["season", "game_date"], how="left").with_columns(
        games_season=pl.col("games_season"),
        opp_fg2_pct_allowed_season=team_season["fg2"],
        opp_fg3_pct_allowed_season=team_season["fg3"],
        opp_fta_rate_allowed_season=team_season["fta"],
        opp_fg3a_share_allowed_season=ratio(pl.col("opp_fg3a_season"), pl.col("opp_fga_season")),
        opp_fg2_pct_allowed_last_10=team_last10["fg2"],
        opp_fg3_pct_allowed_last_10=team_last10["fg3"],
        league_fg2_pct_season=league_season["fg2"],
        league_fg3_pct_season=league_season["fg3"],
        league_fta_rate_season=league_season["fta"],
        points_allowed_avg_last_10=ratio(pl.col("points_allowed_last10"), pl.col("games_last10")),
    )
    out = out.with_columns(
        fg2_pct_allowed_vs_league=100.0 * (pl.col("opp_fg2_pct_allowed_season") - pl.col("league_fg2_pct_season")),
        fg3_pct_allowed_vs_league=100.0 * (pl.col("opp_fg3_pct_allowed_season") - pl.col("league_fg3_pct_season")),
        fta_rate_allowed_vs_league=100.0 * (pl.col("opp_fta_rate_allowed_season") - pl.col("league_fta_rate_season")),
    )
    relative = {z: relative_to_league(z) for z in ZONE_NAMES}
    top, bottom = pl.max_horizontal(*relative.values()), pl.min_horizontal(*relative.values())
    weakest, strongest = pl.when(pl.col("games_season") == 0).then(None), pl.when(pl.col("games_season") == 0).then(None)
    for zone, name in ZONE_NAMES.items():
        weakest = weakest.when(relative[zone] == top).then(pl.lit(name))
        strongest = strongest.when(relative[zone] == bottom).then(pl.lit(name))
    out = out.with_columns(
        weakest_zone=weakest,
        strongest_zone=strongest,
        zone_null_reason=pl.when(pl.col("games_season") == 0).then(pl.lit("team has no game this season before this date")),
    )
    return out.select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr")
