"""``nba_analytics.upcoming_team_game_context``: what is known about both teams before tip-off.

Two rows per game on the date (one per team), from the schedule: the game, the team, its
opponent and home/away are pre-game facts. Everything else comes from the team's games of the
same season strictly before the date (the date's own results are never read):

- ``days_rest`` = days since the team's last game minus 1 (0 = back-to-back); ``back_to_back``;
  ``games_last_7d`` / ``games_last_14d``: games on the dates D-7 .. D-1 / D-14 .. D-1.
- ``pace_*`` = Σ possessions · 48 / Σ(team minutes / 5) (possessions per 48 minutes, overtime
  counted from real minutes); ``off_rating_*`` = 100 · Σ points / Σ possessions;
  ``def_rating_*`` = 100 · Σ points allowed / Σ opponent possessions. ``*_last_10``: the team's
  last 10 games; ``*_season``: every game this season before the date. Ratios of sums, so a
  long overtime game weighs by its possessions.
- ``win_pct_season``: wins / games this season before the date.
- ``*_prev_season``: the same over every game of the season before the date's (NULL without
  one: the first season of the data); ``pace_blended``, ``off_rating_blended``,
  ``def_rating_blended``: the season figure with ``prior_games`` (``phase4.prior_games``)
  games of last season's per-game sums added (:func:`pipeline.tables._phase4.blended`): last
  season's on opening night, this season's more and more as games accumulate.
- ``opponent_*``: the same figures of the opponent on the same date.
- ``expected_game_pace`` = (pace_last_10 + opponent_pace_last_10) / 2;
  ``rest_advantage`` = days_rest − opponent_days_rest.

Other than the previous season's and blended figures, NULL only when the team (or opponent) has
no earlier game this season, which ``context_notes`` states.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.tables._phase4 import (
    HISTORY_WITH_PREVIOUS_SEASON,
    TEAM_KEY,
    blended,
    notes,
    previous_season_sums,
    prior_windows,
    ratio,
    team_rows,
)
from pipeline.tables.base import Input, table

SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
    "is_home": pl.Boolean,
    "team_games_season": pl.Int16,
    "last_game_date": pl.Date,
    "days_rest": pl.Int16,
    "back_to_back": pl.Boolean,
    "games_last_7d": pl.Int16,
    "games_last_14d": pl.Int16,
    "win_pct_season": pl.Float64,
    "pace_last_10": pl.Float64,
    "pace_season": pl.Float64,
    "off_rating_last_10": pl.Float64,
    "off_rating_season": pl.Float64,
    "def_rating_last_10": pl.Float64,
    "def_rating_season": pl.Float64,
    "points_avg_last_10": pl.Float64,
    "points_allowed_avg_last_10": pl.Float64,
    "win_pct_prev_season": pl.Float64,
    "pace_prev_season": pl.Float64,
    "off_rating_prev_season": pl.Float64,
    "def_rating_prev_season": pl.Float64,
    "pace_blended": pl.Float64,
    "off_rating_blended": pl.Float64,
    "def_rating_blended": pl.Float64,
    "opponent_games_season": pl.Int16,
    "opponent_days_rest": pl.Int16,
    "opponent_back_to_back": pl.Boolean,
    "opponent_win_pct_season": pl.Float64,
    "opponent_pace_last_10": pl.Float64,
    "opponent_off_rating_last_10": pl.Float64,
    "opponent_def_rating_last_10": pl.Float64,
    "opponent_def_rating_season": pl.Float64,
    "opponent_pace_blended": pl.Float64,
    "opponent_off_rating_blended": pl.Float64,
    "opponent_def_rating_blended": pl.Float64,
    "expected_game_pace": pl.Float64,
    "rest_advantage": pl.Int16,
    "context_notes": pl.String,
}

OFFENSE_COLUMNS = ("game_id", "game_date", "season", "team_abbr", "team_minutes", "pts", "possessions", "win_flag")
DEFENSE_COLUMNS = ("game_id", "game_date", "season", "defending_team_abbr", "points_allowed", "opp_possessions")
SCHEDULE_COLUMNS = ("game_id", "game_date", "season", "season_type", "home_team_abbr", "away_team_abbr")

# Figures copied from the opponent's own row of the same date.
OPPONENT_FIGURES = {
    "days_rest": "opponent_days_rest",
    "back_to_back": "opponent_back_to_back",
    "win_pct_season": "opponent_win_pct_season",
    "pace_last_10": "opponent_pace_last_10",
    "off_rating_last_10": "opponent_off_rating_last_10",
    "def_rating_last_10": "opponent_def_rating_last_10",
    "def_rating_season": "opponent_def_rating_season",
    "pace_blended": "opponent_pace_blended",
    "off_rating_blended": "opponent_off_rating_blended",
    "def_rating_blended": "opponent_def_rating_blended",
    "team_games_season": "opponent_games_season",
}


def team_game_log(team_offense_game_summary: pl.DataFrame, team_defense_game_summary: pl.DataFrame) -> pl.DataFrame:
    """One row per team and game: offence and what it allowed."""
    allowed = team_defense_game_summary.select(
        "game_id", team_abbr="defending_team_abbr", points_allowed="points_allowed", opp_possessions="opp_possessions"
    )
    return team_offense_game_summary.select(OFFENSE_COLUMNS).join(allowed, on=["game_id", "team_abbr"], how="left").with_columns(
        wins=pl.col("win_flag").cast(pl.Float64)
    )


def team_form(log: pl.DataFrame, rows: pl.DataFrame, prior_games: float) -> pl.DataFrame:
    values = ["team_minutes", "pts", "possessions", "points_allowed", "opp_possessions", "wins"]
    w = prior_windows(rows, log, by=["team_abbr"], values=values, last_n=(10,), days=(7, 14))
    w = previous_season_sums(w, log, by=["team_abbr"], values=values)
    days_rest = (pl.col("game_date") - pl.col("last_game_date")).dt.total_days() - 1
    figures = {}
    for suffix, window in (("last_10", "last10"), ("season", "season"), ("prev_season", "prev_season")):
        figures[f"pace_{suffix}"] = ratio(pl.col(f"possessions_{window}") * 48.0, pl.col(f"team_minutes_{window}") / 5.0)
        figures[f"off_rating_{suffix}"] = ratio(100.0 * pl.col(f"pts_{window}"), pl.col(f"possessions_{window}"))
        figures[f"def_rating_{suffix}"] = ratio(100.0 * pl.col(f"points_allowed_{window}"), pl.col(f"opp_possessions_{window}"))
    # Blended ratings: 100 · Σ points / Σ possessions with last season's per-game sums added;
    # pace: Σ possessions · 48 / Σ(team minutes / 5), likewise.
    figures["pace_blended"] = 48.0 * 5.0 * blended("possessions", "team_minutes", prior_games)
    figures["off_rating_blended"] = 100.0 * blended("pts", "possessions", prior_games)
    figures["def_rating_blended"] = 100.0 * blended("points_allowed", "opp_possessions", prior_games)
    return w.with_columns(
        team_games_season=pl.col("games_season"),
        days_rest=days_rest,
        back_to_back=(days_rest == 0).fill_null(False),
        games_last_7d=pl.col("games_7d"),
        games_last_14d=pl.col("games_14d"),
        win_pct_season=ratio(pl.col("wins_season"), pl.col("games_season")),
        win_pct_prev_season=ratio(pl.col("wins_prev_season"), pl.col("games_prev_season")),
        points_avg_last_10=ratio(pl.col("pts_last10"), pl.col("games_last10")),
        points_allowed_avg_last_10=ratio(pl.col("points_allowed_last10"), pl.col("games_last10")),
        **figures,
    )


@table(
    "nba_analytics.upcoming_team_game_context",
    schema=SCHEMA,
    key=TEAM_KEY,
    inputs=[
        Input("nba_raw.schedule", columns=SCHEDULE_COLUMNS),
        Input("nba_analytics.team_offense_game_summary", columns=OFFENSE_COLUMNS, lookback=HISTORY_WITH_PREVIOUS_SEASON),
        Input("nba_analytics.team_defense_game_summary", columns=DEFENSE_COLUMNS, lookback=HISTORY_WITH_PREVIOUS_SEASON),
    ],
    phase=4,
    params={"prior_games": "phase4.prior_games"},
    cluster_by=("team_abbr",),
    version=3,  # 2: history read before the date; 3: the previous season
)
def upcoming_team_game_context(
    dates: list[dt.date],
    schedule: pl.DataFrame,
    team_offense_game_summary: pl.DataFrame,
    team_defense_game_summary: pl.DataFrame,
    prior_games: float,
) -> pl.DataFrame:
    """Pre-game team context: rest, recent pace and ratings of the team and its opponent."""
    log = team_game_log(team_offense_game_summary, team_defense_game_summary)
    rows = team_form(log, team_rows(schedule, dates), prior_games)
    opponent = rows.select(
        "game_id", pl.col("team_abbr").alias("opponent_abbr"), *(pl.col(c).alias(a) for c, a in OPPONENT_FIGURES.items())
    )
    out = rows.join(opponent, on=["game_id", "opponent_abbr"], how="left").with_columns(
        expected_game_pace=(pl.col("pace_last_10") + pl.col("opponent_pace_last_10")) / 2.0,
        rest_advantage=pl.col("days_rest") - pl.col("opponent_days_rest"),
        context_notes=notes(
            pl.when(pl.col("team_games_season") == 0).then(pl.lit("team has no game this season before this date")),
            pl.when(pl.col("opponent_games_season").fill_null(0) == 0).then(
                pl.lit("opponent has no game this season before this date")
            ),
        ),
    )
    return out.select(list(SCHEMA)).sort("game_date", "game_id", "team_abbr")
