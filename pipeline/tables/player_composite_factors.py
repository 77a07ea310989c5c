"""``nba_precompute.player_composite_factors``: four pre-game adjustment factors per player.

Built from the same date's Phase 4 rows (themselves built from games strictly before the date
plus the date's pre-game facts), one row per player row of ``upcoming_player_game_context``.
Each factor is NULL or exactly 0 only for a reason, which its ``*_reason`` column states
(``*_reason`` is NULL when the factor is an ordinary computed value; the mismatch's reason also
notes a value it clipped).

**Fatigue** (``fatigue_score``, 0 = fresh .. 100 = worn out)::

    rest  = {days_rest 0 (back-to-back): 1.0, 1: 0.5, 2: 0.25, 3 or more: 0.0}
    b2b   = min(back_to_backs_last_14d / 3, 1)
    load7 = min(minutes_last_7d / 144, 1)       # 144 = four 36-minute games in a week
    load14 = min(minutes_last_14d / 252, 1)     # 252 = seven 36-minute games in two weeks
    load  = 0.40·rest + 0.10·b2b + 0.30·load7 + 0.20·load14
    age   = min(max((age_years − 30) / 8, 0), 1)  # 0 up to 30, 1 from 38; 0 when age is unknown
    fatigue_score = min(100 · load · (1 + 0.25·age), 100)

Age scales the load (older players recover more slowly from the same minutes) rather than
adding to it, so a rested player is fresh at any age. It counts only where the raw files give
birth dates (``age_years`` in upcoming_player_game_context); the bundled ones do not, and there
the score is the load alone. NULL without a game played this season before the date; 0 when
the player has had no minutes in 14 days and at least 3 days of rest.

**Shot-zone mismatch** (``shot_zone_mismatch_score``, about −10 .. +10, positive = favourable)::

    score = 100 · Σ_zone share_zone · (opponent_allowed_zone − league_zone) / league_zone

over the zones two-point (FG% allowed on twos), three-point (FG% allowed on threes) and free
throw (FTA per FGA conceded), with share_zone the player's season share of points from the
zone (player_shot_zone_analysis) and the opponent and league figures season to date
(team_defense_zone_analysis). Roughly: the percentage by which the opponent's defence lets the
player's own scoring mix be more (or less) productive than an average defence. Clipped to
±10. NULL without the player's points this season or the opponent's games.

**Pace** (``pace_score``, possessions per 48 minutes)::

    pace_score = expected_game_pace − team_pace_last_10 = (opponent_pace_last_10 − team_pace_last_10) / 2

the change in possessions against this opponent from the player's team's recent games
(upcoming_team_game_context). 0 when both recent paces are equal.

**Usage spike** (``usage_spike_score``, usage-rate points)::

    freed = inactive_teammates_usage_share   # the team's last-10-game plays used by teammates listed inactive tonight
    projected_usage = usage_avg_last_10 / (1 − freed)
    usage_spike_score = projected_usage − usage_avg_last_10

The freed plays are shared out over the rest of the team in proportion to recent shares, so
every remaining player's share of the plays, and with it his usage rate, grows by the factor
1 / (1 − freed). (Spreading them over the dressed players only would divide by
``active_roster_usage_share``, which also drops for players missing without being listed,
traded or waived, and explodes in end-of-season games with most of the roster resting.)
A teammate who has been out for the whole window frees nothing new: the team already played
without him. 0 when no teammate is listed inactive or the inactive ones had no recent plays;
NULL without a played game this season (no recent usage).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._phase4 import PLAYER_ID_SCHEMA, PLAYER_KEY, TEAM_KEY, attach
from pipeline.tables.base import Input, table
from pipeline.tables.team_defense_zone_analysis import relative_to_league

SCHEMA = {
    **PLAYER_ID_SCHEMA,
    "fatigue_score": pl.Float64,
    "fatigue_reason": pl.String,
    "shot_zone_mismatch_score": pl.Float64,
    "shot_zone_mismatch_reason": pl.String,
    "pace_score": pl.Float64,
    "pace_reason": pl.String,
    "projected_usage": pl.Float64,
    "usage_spike_score": pl.Float64,
    "usage_spike_reason": pl.String,
}

# Fatigue weights and reference loads (see the module docstring).
FATIGUE_WEIGHTS = {"rest": 0.40, "b2b": 0.10, "load7": 0.30, "load14": 0.20}
FULL_LOAD_MINUTES_7D = 144.0
FULL_LOAD_MINUTES_14D = 252.0
BACK_TO_BACKS_FOR_FULL_TERM = 3.0
AGE_FROM_YEARS, AGE_FULL_AFTER_YEARS, AGE_WEIGHT = 30.0, 8.0, 0.25
MISMATCH_LIMIT = 10.0

PLAYER_CONTEXT_COLUMNS = (
    *PLAYER_ID_SCHEMA, "age_years", "games_played_season", "days_rest", "back_to_backs_last_14d", "minutes_last_7d",
    "minutes_last_14d", "inactive_teammates", "inactive_teammates_usage_share",
)  # fmt: skip
TEAM_CONTEXT_COLUMNS = ("game_date", "team_abbr", "team_games_season", "pace_last_10", "opponent_pace_last_10")
CACHE_COLUMNS = ("game_date", "player_id", "usage_avg_last_10")
ZONE_COLUMNS = (
    "game_date", "player_id", "games_played_season", "points_season",
    "pct_pts_2pt_season", "pct_pts_3pt_season", "pct_pts_ft_season",
)  # fmt: skip
DEFENSE_COLUMNS = (
    "game_date", "team_abbr", "games_season",
    "opp_fg2_pct_allowed_season", "opp_fg3_pct_allowed_season", "opp_fta_rate_allowed_season",
    "league_fg2_pct_season", "league_fg3_pct_season", "league_fta_rate_season",
)  # fmt: skip


def fatigue() -> tuple[pl.Expr, pl.Expr]:
    days_rest = pl.col("days_rest")
    rest = pl.when(days_rest <= 0).then(1.0).when(days_rest == 1).then(0.5).when(days_rest == 2).then(0.25).otherwise(0.0)
    terms = {
        "rest": rest,
        "b2b": (pl.col("back_to_backs_last_14d") / BACK_TO_BACKS_FOR_FULL_TERM).clip(upper_bound=1.0),
        "load7": (pl.col("minutes_last_7d") / FULL_LOAD_MINUTES_7D).clip(upper_bound=1.0),
        "load14": (pl.col("minutes_last_14d") / FULL_LOAD_MINUTES_14D).clip(upper_bound=1.0),
    }
    load = pl.sum_horizontal(FATIGUE_WEIGHTS[k] * v for k, v in terms.items())
    age = ((pl.col("age_years") - AGE_FROM_YEARS) / AGE_FULL_AFTER_YEARS).clip(0.0, 1.0).fill_null(0.0)
    score = (100.0 * load * (1.0 + AGE_WEIGHT * age)).clip(upper_bound=100.0)
    no_history = pl.col("games_played_season") == 0
    value = pl.when(~no_history).then(score)
    reason = (
        pl.when(no_history)
        .then(pl.lit("no game played this season before this date: no rest or load history"))
        .when(score == 0)
        .then(pl.lit("no minutes in the last 14 days and 3+ days of rest"))
    )
    return value, reason


def shot_zone_mismatch() -> tuple[pl.Expr, pl.Expr]:
    shares = {"fg2": "pct_pts_2pt_season", "fg3": "pct_pts_3pt_season", "fta": "pct_pts_ft_season"}
    raw = 100.0 * pl.sum_horizontal(pl.col(share) * relative_to_league(zone) for zone, share in shares.items())
    score = raw.clip(-MISMATCH_LIMIT, MISMATCH_LIMIT)
    missing = (
        pl.when(pl.col("zone_games").fill_null(0) == 0)
        .then(pl.lit("player has no game played this season before this date"))
        .when(pl.col("points_season").fill_null(0) == 0)
        .then(pl.lit("player has scored no points this season before this date: no zone mix"))
        .when(pl.col("games_season").fill_null(0) == 0)
        .then(pl.lit("opponent has no game this season before this date"))
        .when(pl.any_horizontal(relative_to_league(z).is_null() for z in shares))
        .then(pl.lit("opponent or league has no attempts in a zone this season"))
    )
    value = pl.when(missing.is_null()).then(score)
    reason = pl.coalesce(
        missing,
        pl.when(score == 0).then(pl.lit("opponent defence exactly league average in the player's zones")),
        pl.when(raw.abs() > MISMATCH_LIMIT).then(pl.format("clipped from {}", raw.round(2))),
    )
    return value, reason


def pace() -> tuple[pl.Expr, pl.Expr]:
    score = (pl.col("opponent_pace_last_10") - pl.col("pace_last_10")) / 2.0
    reason = (
        pl.when(pl.col("pace_last_10").is_null())
        .then(pl.lit("team has no game this season before this date"))
        .when(pl.col("opponent_pace_last_10").is_null())
        .then(pl.lit("opponent has no game this season before this date"))
        .when(score == 0)
        .then(pl.lit("team and opponent have the same pace over their last 10 games"))
    )
    return score, reason


def usage_spike() -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    recent, freed = pl.col("usage_avg_last_10"), pl.col("inactive_teammates_usage_share")
    projected = pl.when(freed < 1.0).then(recent / (1.0 - freed))
    reason = (
        pl.when(recent.is_null())
        .then(pl.lit("no game played this season before this date: no recent usage"))
        .when(freed >= 1.0)
        .then(pl.lit("teammates listed inactive used all of the team's recent plays: nothing to project from"))
        .when(pl.col("inactive_teammates") == 0)
        .then(pl.lit("no teammate listed inactive"))
        .when(freed == 0)
        .then(pl.lit("inactive teammates had no plays in the team's last 10 games"))
        .when(recent == 0)
        .then(pl.lit("player's recent usage is 0"))
    )
    return projected, projected - recent, reason


@table(
    "nba_precompute.player_composite_factors",
    schema=SCHEMA,
    key=PLAYER_KEY,
    inputs=[
        Input("nba_analytics.upcoming_player_game_context", columns=PLAYER_CONTEXT_COLUMNS),
        Input("nba_analytics.upcoming_team_game_context", columns=TEAM_CONTEXT_COLUMNS),
        Input("nba_precompute.player_daily_cache", columns=CACHE_COLUMNS),
        Input("nba_precompute.player_shot_zone_analysis", columns=ZONE_COLUMNS),
        Input("nba_precompute.team_defense_zone_analysis", columns=DEFENSE_COLUMNS),
    ],
    phase=4,
    cluster_by=("player_id",),
)
def player_composite_factors(
    dates: list[dt.date],
    upcoming_player_game_context: pl.DataFrame,
    upcoming_team_game_context: pl.DataFrame,
    player_daily_cache: pl.DataFrame,
    player_shot_zone_analysis: pl.DataFrame,
    team_defense_zone_analysis: pl.DataFrame,
) -> pl.DataFrame:
    """Fatigue, shot-zone mismatch, pace and usage-spike factors, each with its reason."""
    rows = upcoming_player_game_context.filter(pl.col("game_date").is_in(dates))
    frame = (
        rows.pipe(attach, upcoming_team_game_context, TEAM_KEY, TEAM_CONTEXT_COLUMNS)
        .pipe(attach, player_daily_cache, PLAYER_KEY, CACHE_COLUMNS)
        .pipe(attach, player_shot_zone_analysis, PLAYER_KEY, ZONE_COLUMNS, {"games_played_season": "zone_games"})
        .pipe(attach, team_defense_zone_analysis, TEAM_KEY, DEFENSE_COLUMNS, {"team_abbr": "opponent_abbr"})  # the opponent's row
    )
    fatigue_score, fatigue_reason = fatigue()
    mismatch, mismatch_reason = shot_zone_mismatch()
    pace_score, pace_reason = pace()
    projected, spike, spike_reason = usage_spike()
    out = frame.with_columns(
        fatigue_score=fatigue_score,
        fatigue_reason=fatigue_reason,
        shot_zone_mismatch_score=mismatch,
        shot_zone_mismatch_reason=mismatch_reason,
        pace_score=pace_score,
        pace_reason=pace_reason,
        projected_usage=projected,
        usage_spike_score=spike,
        usage_spike_reason=spike_reason,
    )
    return out.select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr", "player_id")
