"""``nba_predictions.ml_feature_store``: every model feature, one row per player and game date.

This module is the single definition of the model's inputs: training reads rows of this table,
and prediction builds (or reads) the same rows with the same code, so the two cannot diverge.

- :data:`ID_COLUMNS`: who and which game a row is about (not features).
- :data:`FEATURE_COLUMNS`: the model's features, in the order the model takes them;
  :func:`feature_matrix` turns rows into that matrix (booleans as 0/1, NULL as NaN).
- The target (the player's actual points) is **not** in this table. Training joins it from
  ``nba_analytics.player_game_summary`` on ``(game_id, player_id)``; a row whose player ends up
  not playing (coach's decision) has no actual minutes, and training decides what to do with it.

Every feature is known before tip-off: it comes from the same date's Phase 4 rows, which use
only games strictly before the date plus the date's pre-game facts (roster, starters, players
listed inactive, home/away, opponent). Row set: the players listed for the date's games who are
not listed inactive (``upcoming_player_game_context``). Features not copied from an upstream
table are derived here:

- ``is_playoffs``: playoff or play-in game (``season_type``);
- ``rest_advantage`` = the player's ``days_rest`` − the opponent team's ``days_rest``;
- ``start_rate_last_10`` = starts / games over the last 10 played games;
  ``starter_role_change`` = starter (0/1) − start_rate_last_10 (a bench player starting
  tonight gives about +1);
- ``minutes_trend`` = minutes_avg_last_5 − minutes_avg_season;
  ``points_trend`` = points_avg_last_5 − points_avg_season;
- ``points_usage_adjusted`` = points_avg_last_10 · projected_usage / usage_avg_last_10 (recent
  scoring scaled by the usage freed by inactive teammates);
- ``opp_*_vs_league`` and ``opponent_points_allowed_avg_last_10``: the opponent's
  ``team_defense_zone_analysis`` row.
- Tonight's roster, over the team's rows here (its players listed and not inactive, this one
  included): ``players_listed``; ``roster_points_last_10`` / ``roster_minutes_last_10`` = the
  sums of their ``points_avg_last_10`` / ``minutes_avg_last_10`` (NULL as 0);
  ``starters_points_last_10`` = the same over tonight's starters;
  ``points_share_of_roster`` = points_avg_last_10 / roster_points_last_10 and
  ``points_projected`` = that share · the team's ``points_avg_last_10`` (its recent scoring
  shared out over who is available tonight); ``minutes_share_of_roster`` likewise and
  ``minutes_projected`` = 240 · minutes_share_of_roster; ``team_points_vacated`` = the team's
  points_avg_last_10 − roster_points_last_10 (scoring of recent games whose players are not
  here). Chosen on validation MAE (4.401 → 4.385 for this group alone).
- The previous season (``player_daily_cache``, ``upcoming_team_game_context``): the player's
  ``*_prev_season`` figures and ``points_vs_prev_season``, his ``*_blended`` figures (last
  season's on opening night, this season's as games accumulate), the team's and the opponent's
  blended pace and ratings, and ``team_games_season`` / ``opponent_games_season`` (how far into
  the season each team is). They give a row from the season's first game something to go on.
  Chosen on validation MAE (3 seeds, ``benchmarks/model_ablation.py``): 4.4025 → 4.3843 on the
  default split, 4.4238 → 4.4121 on the seed's window. Candidates measured and left out (each
  moved validation MAE by less than 0.0025 either way, alone): games missed before tonight, the
  opponent's defence by the player's position, blowout risk (the gap in net ratings), rest and
  travel of both teams, the opponent's missing players.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
import polars as pl

from pipeline.tables._phase4 import PLAYER_ID_SCHEMA, PLAYER_KEY, TEAM_KEY, attach, ratio
from pipeline.tables.base import Input, table

FEATURE_VERSION = 3

ID_SCHEMA: dict[str, pl.DataType] = dict(PLAYER_ID_SCHEMA)
ID_COLUMNS: list[str] = list(ID_SCHEMA)

# The model's features by group (the ablation in benchmarks/model_ablation.py adds or drops a
# group at a time): feature name -> type, in model order.
FEATURE_GROUPS: dict[str, dict[str, pl.DataType]] = {
    # Recent form (player_daily_cache)
    "recent form": {
        "points_avg_last_3": pl.Float64,
        "points_avg_last_5": pl.Float64,
        "points_avg_last_10": pl.Float64,
        "points_avg_season": pl.Float64,
        "points_std_last_10": pl.Float64,
        "points_last_game": pl.Float64,
        "minutes_avg_last_3": pl.Float64,
        "minutes_avg_last_5": pl.Float64,
        "minutes_avg_last_10": pl.Float64,
        "minutes_avg_season": pl.Float64,
        "minutes_last_game": pl.Float64,
        "usage_avg_last_5": pl.Float64,
        "usage_avg_last_10": pl.Float64,
        "usage_avg_season": pl.Float64,
        "fga_per_game_last_10": pl.Float64,
        "fta_per_game_last_10": pl.Float64,
        "fg3a_per_game_last_10": pl.Float64,
        "fga_per_game_season": pl.Float64,
        "points_per_minute_last_10": pl.Float64,
        "points_per_minute_season": pl.Float64,
        "ts_pct_last_10": pl.Float64,
        "ts_pct_season": pl.Float64,
        "rebounds_avg_last_10": pl.Float64,
        "assists_avg_last_10": pl.Float64,
        "games_played_season": pl.Int16,
        "start_rate_last_10": pl.Float64,
    },
    # Pre-game context (upcoming_player_game_context)
    "pre-game context": {
        "days_rest": pl.Int16,
        "back_to_back": pl.Boolean,
        "games_last_7d": pl.Int16,
        "minutes_last_7d": pl.Float64,
        "games_last_14d": pl.Int16,
        "minutes_last_14d": pl.Float64,
        "back_to_backs_last_14d": pl.Int16,
        "is_home": pl.Boolean,
        "starter": pl.Boolean,
        "is_playoffs": pl.Boolean,
        "played_in_last_10_team_games": pl.Int16,
        "plays_share_last_10_team_games": pl.Float64,
        "inactive_teammates": pl.Int16,
        "inactive_teammates_usage_share": pl.Float64,
        "active_roster_usage_share": pl.Float64,
    },
    # Team and opponent (upcoming_team_game_context)
    "team and opponent": {
        "team_win_pct_season": pl.Float64,
        "team_pace_last_10": pl.Float64,
        "team_off_rating_last_10": pl.Float64,
        "opponent_win_pct_season": pl.Float64,
        "opponent_pace_last_10": pl.Float64,
        "opponent_def_rating_last_10": pl.Float64,
        "opponent_def_rating_season": pl.Float64,
        "opponent_days_rest": pl.Int16,
        "opponent_back_to_back": pl.Boolean,
        "expected_game_pace": pl.Float64,
        "rest_advantage": pl.Int16,
    },
    # Zones (player_shot_zone_analysis, opponent's team_defense_zone_analysis)
    "shot zones": {
        "pct_pts_2pt_season": pl.Float64,
        "pct_pts_3pt_season": pl.Float64,
        "pct_pts_ft_season": pl.Float64,
        "fg3a_rate_season": pl.Float64,
        "fta_rate_season": pl.Float64,
        "opp_fg2_pct_allowed_vs_league": pl.Float64,
        "opp_fg3_pct_allowed_vs_league": pl.Float64,
        "opp_fta_rate_allowed_vs_league": pl.Float64,
        "opponent_points_allowed_avg_last_10": pl.Float64,
    },
    # Composite factors (player_composite_factors)
    "composite factors": {
        "fatigue_score": pl.Float64,
        "shot_zone_mismatch_score": pl.Float64,
        "pace_score": pl.Float64,
        "projected_usage": pl.Float64,
        "usage_spike_score": pl.Float64,
    },
    # Tonight's roster (derived here)
    "tonight's roster": {
        "players_listed": pl.Int16,
        "roster_points_last_10": pl.Float64,
        "roster_minutes_last_10": pl.Float64,
        "starters_points_last_10": pl.Float64,
        "points_share_of_roster": pl.Float64,
        "points_projected": pl.Float64,
        "minutes_share_of_roster": pl.Float64,
        "minutes_projected": pl.Float64,
        "team_points_vacated": pl.Float64,
    },
    # Derived here
    "role and trends": {
        "starter_role_change": pl.Float64,
        "minutes_trend": pl.Float64,
        "points_trend": pl.Float64,
        "points_usage_adjusted": pl.Float64,
    },
    # Previous season, this season blended with it, and how far into this season each team is
    # (player_daily_cache, upcoming_team_game_context)
    "previous season": {
        "team_games_season": pl.Int16,
        "opponent_games_season": pl.Int16,
        "games_played_prev_season": pl.Int16,
        "points_avg_prev_season": pl.Float64,
        "minutes_avg_prev_season": pl.Float64,
        "usage_avg_prev_season": pl.Float64,
        "points_per_minute_prev_season": pl.Float64,
        "start_rate_prev_season": pl.Float64,
        "points_avg_blended": pl.Float64,
        "minutes_avg_blended": pl.Float64,
        "usage_avg_blended": pl.Float64,
        "points_per_minute_blended": pl.Float64,
        "points_vs_prev_season": pl.Float64,
        "team_pace_blended": pl.Float64,
        "team_off_rating_blended": pl.Float64,
        "opponent_pace_blended": pl.Float64,
        "opponent_def_rating_blended": pl.Float64,
    },
}
FEATURES: dict[str, pl.DataType] = {name: dtype for group in FEATURE_GROUPS.values() for name, dtype in group.items()}
FEATURE_COLUMNS: list[str] = list(FEATURES)

SCHEMA = {**PLAYER_ID_SCHEMA, **FEATURES, "feature_version": pl.Int16}

CONTEXT_COLUMNS = (
    *PLAYER_ID_SCHEMA, "is_home", "starter", "days_rest", "back_to_back", "games_last_7d", "minutes_last_7d",
    "games_last_14d", "minutes_last_14d", "back_to_backs_last_14d", "played_in_last_10_team_games",
    "plays_share_last_10_team_games", "inactive_teammates", "inactive_teammates_usage_share", "active_roster_usage_share",
)  # fmt: skip
CACHE_COLUMNS = (
    "game_date", "player_id",
    "points_avg_last_3", "points_avg_last_5", "points_avg_last_10", "points_avg_season", "points_std_last_10",
    "points_last_game", "minutes_avg_last_3", "minutes_avg_last_5", "minutes_avg_last_10", "minutes_avg_season",
    "minutes_last_game", "usage_avg_last_5", "usage_avg_last_10", "usage_avg_season", "fga_per_game_last_10",
    "fta_per_game_last_10", "fg3a_per_game_last_10", "fga_per_game_season", "points_per_minute_last_10",
    "points_per_minute_season", "ts_pct_last_10", "ts_pct_season", "rebounds_avg_last_10", "assists_avg_last_10",
    "games_played_season", "starts_last_10", "games_played_prev_season", "points_avg_prev_season",
    "minutes_avg_prev_season", "usage_avg_prev_season", "points_per_minute_prev_season", "start_rate_prev_season",
    "points_avg_blended", "minutes_avg_blended", "usage_avg_blended", "points_per_minute_blended", "points_vs_prev_season",
)  # fmt: skip
TEAM_COLUMNS = (
    "game_date", "team_abbr", "team_games_season", "opponent_games_season", "points_avg_last_10", "win_pct_season", "pace_last_10", "off_rating_last_10", "opponent_win_pct_season",
    "opponent_pace_last_10", "opponent_def_rating_last_10", "opponent_def_rating_season", "opponent_days_rest",
    "opponent_back_to_back", "expected_game_pace", "pace_blended", "off_rating_blended", "opponent_pace_blended",
    "opponent_def_rating_blended",
)  # fmt: skip
TEAM_RENAME = {
    "points_avg_last_10": "team_points_avg_last_10",
    "win_pct_season": "team_win_pct_season",
    "pace_last_10": "team_pace_last_10",
    "off_rating_last_10": "team_off_rating_last_10",
    "pace_blended": "team_pace_blended",
    "off_rating_blended": "team_off_rating_blended",
}
ZONE_COLUMNS = (
    "game_date", "player_id", "pct_pts_2pt_season", "pct_pts_3pt_season", "pct_pts_ft_season", "fg3a_rate_season", "fta_rate_season",
)  # fmt: skip
DEFENSE_COLUMNS = (
    "game_date", "team_abbr", "fg2_pct_allowed_vs_league", "fg3_pct_allowed_vs_league", "fta_rate_allowed_vs_league",
    "points_allowed_avg_last_10",
)  # fmt: skip
DEFENSE_RENAME = {
    "team_abbr": "opponent_abbr",
    "fg2_pct_allowed_vs_league": "opp_fg2_pct_allowed_vs_league",
    "fg3_pct_allowed_vs_league": "opp_fg3_pct_allowed_vs_league",
    "fta_rate_allowed_vs_league": "opp_fta_rate_allowed_vs_league",
    "points_allowed_avg_last_10": "opponent_points_allowed_avg_last_10",
}
COMPOSITE_COLUMNS = (
    "game_date", "player_id", "fatigue_score", "shot_zone_mismatch_score", "pace_score", "projected_usage", "usage_spike_score",
)  # fmt: skip
PLAYOFF_TYPES = ("playoffs", "play_in")


ROSTER = ("game_id", "team_abbr")  # a team's rows of one game: its players listed and not inactive
TEAM_MINUTES = 240.0  # five players for 48 minutes (a regulation game)


def roster_sums() -> dict[str, pl.Expr]:
    points, minutes = pl.col("points_avg_last_10").fill_null(0.0), pl.col("minutes_avg_last_10").fill_null(0.0)
    return {
        "players_listed": pl.len().over(ROSTER),
        "roster_points_last_10": points.sum().over(ROSTER),
        "roster_minutes_last_10": minutes.sum().over(ROSTER),
        "starters_points_last_10": pl.when(pl.col("starter")).then(points).otherwise(0.0).sum().over(ROSTER),
    }


def feature_matrix(frame: pl.DataFrame, columns: Sequence[str] = FEATURE_COLUMNS) -> np.ndarray:
    """The model input of feature-store rows: FEATURE_COLUMNS (or the model's ``columns``) in
    order, float64, NULL as NaN."""
    return frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()


@table(
    "nba_predictions.ml_feature_store",
    schema=SCHEMA,
    key=PLAYER_KEY,
    inputs=[
        Input("nba_analytics.upcoming_player_game_context", columns=CONTEXT_COLUMNS),
        Input("nba_analytics.upcoming_team_game_context", columns=TEAM_COLUMNS),
        Input("nba_precompute.player_daily_cache", columns=CACHE_COLUMNS),
        Input("nba_precompute.player_shot_zone_analysis", columns=ZONE_COLUMNS),
        Input("nba_precompute.team_defense_zone_analysis", columns=DEFENSE_COLUMNS),
        Input("nba_precompute.player_composite_factors", columns=COMPOSITE_COLUMNS),
    ],
    phase=4,
    cluster_by=("player_id",),
)
def ml_feature_store(
    dates: list[dt.date],
    upcoming_player_game_context: pl.DataFrame,
    upcoming_team_game_context: pl.DataFrame,
    player_daily_cache: pl.DataFrame,
    player_shot_zone_analysis: pl.DataFrame,
    team_defense_zone_analysis: pl.DataFrame,
    player_composite_factors: pl.DataFrame,
) -> pl.DataFrame:
    """Every model feature per player and game date, known before tip-off; no target."""
    # Sorted, so that the roster sums add up in the same order whatever order the rows came in.
    rows = upcoming_player_game_context.filter(pl.col("game_date").is_in(dates)).sort("game_date", "game_id", "team_abbr", "player_id")
    frame = (
        rows.pipe(attach, player_daily_cache, PLAYER_KEY, CACHE_COLUMNS)
        .pipe(attach, upcoming_team_game_context, TEAM_KEY, TEAM_COLUMNS, TEAM_RENAME)
        .pipe(attach, player_shot_zone_analysis, PLAYER_KEY, ZONE_COLUMNS)
        .pipe(attach, team_defense_zone_analysis, TEAM_KEY, DEFENSE_COLUMNS, DEFENSE_RENAME)  # the opponent's row
        .pipe(attach, player_composite_factors, PLAYER_KEY, COMPOSITE_COLUMNS)
    )
    frame = frame.with_columns(**roster_sums())
    start_rate = ratio(pl.col("starts_last_10"), pl.min_horizontal(pl.col("games_played_season"), pl.lit(10)))
    out = frame.with_columns(
        start_rate_last_10=start_rate,
        is_playoffs=pl.col("season_type").is_in(PLAYOFF_TYPES),
        rest_advantage=pl.col("days_rest") - pl.col("opponent_days_rest"),
    ).with_columns(
        starter_role_change=pl.col("starter").cast(pl.Float64) - pl.col("start_rate_last_10"),
        minutes_trend=pl.col("minutes_avg_last_5") - pl.col("minutes_avg_season"),
        points_trend=pl.col("points_avg_last_5") - pl.col("points_avg_season"),
        points_usage_adjusted=pl.col("points_avg_last_10") * ratio(pl.col("projected_usage"), pl.col("usage_avg_last_10")),
        points_share_of_roster=ratio(pl.col("points_avg_last_10"), pl.col("roster_points_last_10")),
        minutes_share_of_roster=ratio(pl.col("minutes_avg_last_10"), pl.col("roster_minutes_last_10")),
        team_points_vacated=pl.col("team_points_avg_last_10") - pl.col("roster_points_last_10"),
    ).with_columns(
        points_projected=pl.col("team_points_avg_last_10") * pl.col("points_share_of_roster"),
        minutes_projected=TEAM_MINUTES * pl.col("minutes_share_of_roster"),
        feature_version=pl.lit(FEATURE_VERSION),
    )
    return out.select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr", "player_id")
