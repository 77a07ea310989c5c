"""Baselines as code, scored on exactly the rows the model is scored on.

Each baseline is a small function of feature-store columns (``nba_predictions.ml_feature_store``),
so it sees only what the model sees: figures from games strictly before the date plus the
date's pre-game facts.

- :func:`rules_core`: the old rules model's own core, without its adjustments (below)::

      0.35·points_avg_last_5 + 0.40·points_avg_last_10 + 0.25·points_avg_season

- :func:`last10`: ``points_avg_last_10``, the mean of the player's last 10 played games this season.
- :func:`season_avg`: ``points_avg_season``, the mean over every played game this season.
- :func:`prior_season_avg`: on a row with fewer than 5 earlier played games this season
  (``games_played_season``), the player's average points over his played games of the season
  before (``points_avg_prev_season``: every game of that season, regular season to playoffs,
  known before the season starts); otherwise, and for a player without a played game the season
  before, ``points_avg_season`` as :func:`season_avg`.
- :func:`rules`: the old production rules model ("mock XGBoost", 25 inputs), without its random
  noise (it added ``N(0, 0.3)`` to every prediction)::

      base = 0.35·points_avg_last_5 + 0.40·points_avg_last_10 + 0.25·points_avg_season
      prediction = clip(base + Σ adjustments, 0, 60)

  Its fixed adjustments, in points, and where each input comes from now:

  ============  ====================================================  ==========================
  adjustment    rule (as in the old model)                            input here (table)
  ============  ====================================================  ==========================
  fatigue       freshness < 50: −2.5; < 70: −1.0; > 85: +0.5; else 0  freshness = 100 −
                                                                      ``fatigue_score``
                                                                      (player_composite_factors)
  zone          0.35 · shot-zone mismatch                             ``shot_zone_mismatch_score``
                                                                      (player_composite_factors)
  pace          pace · 0.12 if usage rate > 28, else pace · 0.08      ``pace_score`` (composite),
                                                                      ``usage_avg_last_10``
                                                                      (player_daily_cache)
  usage         spike · 0.35 if abs(spike) > 5, else spike · 0.25     ``usage_spike_score``
                                                                      (player_composite_factors)
  defence       opponent def. rating < 108: −1.5; > 118: +1.0         ``opponent_def_rating_last_10``
                                                                      (upcoming_team_game_context;
                                                                      the old one used 15 games)
  back-to-back  −2.2 on the second night of a back-to-back            ``back_to_back``
                                                                      (upcoming_player_game_context)
  home/away     home +1.0, away −0.6                                  ``is_home`` (same)
  minutes       recent minutes > 36: +0.8; < 25: −1.2                 ``minutes_avg_last_10``
                                                                      (player_daily_cache)
  shot profile  paint share > 45 % and opp. def. rating > 115: +0.8;  paint share: ``100 ·
                else three-point rate > 40 % and rating < 110: −0.5   pct_pts_2pt_season``;
                                                                      three-point rate: ``100 ·
                                                                      fg3a_rate_season``
                                                                      (player_shot_zone_analysis)
  ============  ====================================================  ==========================

  Two inputs changed meaning and are mapped, not copied: the old fatigue score ran from 0 (worn
  out) to 100 (fully rested), ours runs the other way (0 = fresh), so the rule reads
  ``100 − fatigue_score``; the old paint share needed play-by-play we do not have, so the
  two-point share of the player's points stands in for it (the box score's closest figure).

NULLs, explicitly: the base needs all three averages; a row without one (a player with no played
game this season) gets no rules prediction (NULL), and no rules-core prediction either; the same
holds for the two averages, and for the prior-season average of a player with neither a
previous season nor a played game this season.
Evaluation rows (at least 5 earlier games this season) always have all three. A NULL input of an
adjustment (e.g. no zone mix yet, no usage history) makes that adjustment 0: unknown is neutral.
"""

from __future__ import annotations

import polars as pl

from training.data import TARGET

RULES_BASE_WEIGHTS = {"points_avg_last_5": 0.35, "points_avg_last_10": 0.40, "points_avg_season": 0.25}

# Every feature-store column a baseline reads.
BASELINE_INPUTS: tuple[str, ...] = (
    "points_avg_last_5", "points_avg_last_10", "points_avg_season", "fatigue_score", "shot_zone_mismatch_score",
    "pace_score", "usage_avg_last_10", "usage_spike_score", "opponent_def_rating_last_10", "back_to_back", "is_home",
    "minutes_avg_last_10", "pct_pts_2pt_season", "fg3a_rate_season", "games_played_season", "points_avg_prev_season",
)  # fmt: skip
# Below this many earlier played games this season, prior_season_avg uses the season before.
PRIOR_SEASON_BELOW_GAMES = 5

PREDICTION_RANGE = (0.0, 60.0)


def _zero_if_null(expr: pl.Expr) -> pl.Expr:
    return expr.fill_null(0.0)


def rules_adjustments() -> dict[str, pl.Expr]:
    """The old model's nine fixed adjustments (points), each 0 when its input is NULL."""
    freshness = 100.0 - pl.col("fatigue_score")
    usage = pl.col("usage_avg_last_10")
    spike = pl.col("usage_spike_score")
    opp_def = pl.col("opponent_def_rating_last_10")
    minutes = pl.col("minutes_avg_last_10")
    paint_share = 100.0 * pl.col("pct_pts_2pt_season")
    three_rate = 100.0 * pl.col("fg3a_rate_season")
    return {
        "fatigue": pl.when(freshness < 50).then(-2.5).when(freshness < 70).then(-1.0).when(freshness > 85).then(0.5).otherwise(0.0),
        "zone": 0.35 * pl.col("shot_zone_mismatch_score"),
        "pace": pl.col("pace_score") * pl.when(usage > 28).then(0.12).otherwise(0.08),
        "usage": spike * pl.when(spike.abs() > 5).then(0.35).otherwise(0.25),
        "defence": pl.when(opp_def < 108).then(-1.5).when(opp_def > 118).then(1.0).otherwise(0.0),
        "back_to_back": pl.when(pl.col("back_to_back")).then(-2.2).otherwise(0.0),
        "home_away": pl.when(pl.col("is_home")).then(1.0).when(~pl.col("is_home")).then(-0.6),
        "minutes": pl.when(minutes > 36).then(0.8).when(minutes < 25).then(-1.2).otherwise(0.0),
        "shot_profile": pl.when((paint_share > 45) & (opp_def > 115))
        .then(0.8)
        .when((three_rate > 40) & (opp_def < 110))
        .then(-0.5)
        .otherwise(0.0),
    }


def _rules_base() -> tuple[pl.Expr, pl.Expr]:
    base = pl.sum_horizontal(w * pl.col(c) for c, w in RULES_BASE_WEIGHTS.items())
    base_known = pl.all_horizontal(pl.col(c).is_not_null() for c in RULES_BASE_WEIGHTS)
    return base, base_known


def rules() -> pl.Expr:
    """The old rules model's prediction, without its random noise (see the module docstring)."""
    base, base_known = _rules_base()
    adjustment = pl.sum_horizontal(_zero_if_null(e) for e in rules_adjustments().values())
    low, high = PREDICTION_RANGE
    return pl.when(base_known).then((base + adjustment).clip(low, high))


def rules_core() -> pl.Expr:
    """The rules model's base alone: 0.35·last 5 + 0.40·last 10 + 0.25·season; NULL without all three."""
    base, base_known = _rules_base()
    return pl.when(base_known).then(base)


def last10() -> pl.Expr:
    return pl.col("points_avg_last_10").cast(pl.Float64)


def season_avg() -> pl.Expr:
    return pl.col("points_avg_season").cast(pl.Float64)


def prior_season_avg() -> pl.Expr:
    """Under 5 earlier games this season: last season's average if he played then; else the season average."""
    prior = pl.col("points_avg_prev_season").cast(pl.Float64)
    early = pl.col("games_played_season").fill_null(0) < PRIOR_SEASON_BELOW_GAMES
    return pl.when(early & prior.is_not_null()).then(prior).otherwise(season_avg())


BASELINES: dict[str, callable] = {
    "rules": rules, "rules_core": rules_core, "last10": last10, "season_avg": season_avg, "prior_season_avg": prior_season_avg,
}  # fmt: skip


# Each predictor's name in sentences: the headline, the printed summaries, the sweep summary.
SHORT_LABELS = {
    "model": "model",
    "rules": "old rules model",
    "rules_core": "rules core",
    "last10": "last-10 avg",
    "season_avg": "season avg",
    "prior_season_avg": "prior-season avg",
}


def best_baseline_of(model_mae: float, baselines: dict[str, dict]) -> dict:
    """The baseline with the lowest MAE on the same rows (the first listed on a tie), and model / it."""
    name = min(baselines, key=lambda n: baselines[n]["mae"])
    return {"name": name, "mae": baselines[name]["mae"], "ratio": model_mae / baselines[name]["mae"]}


def baseline_predictions(frame: pl.DataFrame) -> pl.DataFrame:
    """One column per baseline (``rules``, ``rules_core``, ``last10``, ``season_avg``,
    ``prior_season_avg``) for feature-store rows."""
    return frame.select(**{name: fn().cast(pl.Float64) for name, fn in BASELINES.items()})



def opening_fallback_points(train_opening: pl.DataFrame) -> tuple[float, int]:
    """What a baseline without a value predicts in the opening-weeks section: the mean points of
    the training split's played rows with 0 earlier games this season (a league-wide figure for a
    player's first game of a season, known before any validation or test date), and how many rows
    it is the mean of; 0.0 points when the training split has no such row."""
    first_games = train_opening.filter(pl.col("games_played_season").fill_null(0) == 0)
    if first_games.is_empty():
        return 0.0, 0
    return float(first_games[TARGET].cast(pl.Float64).mean()), first_games.height


def fill_missing(predictions: pl.DataFrame, value: float) -> pl.DataFrame:
    """Every baseline's NULL (no value: e.g. no played game this season yet) replaced by ``value``."""
    return predictions.with_columns(pl.all().fill_null(float(value)))
