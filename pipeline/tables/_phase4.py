"""Shared Polars helpers of the Phase 4 tables: who gets a row, and "as-of" windows over prior games.

**A figure for date D uses only games strictly before D, of D's season**, and D's own pre-game
facts (who is listed, who starts, who is inactive, home/away, the opponent) come only from
``nba_raw.pregame_roster`` and ``nba_raw.schedule``, which hold them for a date whose games are
not played yet as well as for one whose box scores are in.

Enforced twice. First by the declarations: every history input of a Phase 4 table is read with
:data:`HISTORY` (season to date, *before* the date) or :data:`HISTORY_WITH_PREVIOUS_SEASON` (the
same and the season before), so the rows of the date being built are not even read, and a date
does not wait for its own box scores. Second by the formulas: every Phase 4
table builds a whole shard in one pass, and its history holds the rows of the shard's earlier
dates, so each target date is matched only with games strictly before it:

How: each entity's game log (a player's played games, a team's games, the league's dates) is
sorted by date within ``(entity, season)`` and turned into cumulative sums; a target row
``(entity, season, D)`` is matched with an as-of join on ``game_date < D`` (strict:
``allow_exact_matches=False``) to the cumulative sums through the last game before D.
Window sums are differences of cumulative sums:

- season to date: the cumulative sum through the last game before D (resets at each season,
  because the log is grouped by season, and the season-to-date lookback starts at the opener);
- last N games: that sum minus the same sum shifted N games back within the group;
- last K days (dates D-K .. D-1): the sum before D minus the sum before D-K.

A window with no game gives sums of 0 and a game count of 0; averages are then NULL (never 0,
never last season's, never an all-time mean).

**The previous season** is the one exception to "of D's season", and it is named as such: a
table that reads it declares :data:`HISTORY_WITH_PREVIOUS_SEASON` (the whole season before D's,
which ends before D's opener, and D's season to date), and :func:`previous_season_sums` gives
the ``*_prev_season`` sums of that season only, every game of it. Early in a season the
``*_blended`` figures shrink last season toward this one as games accumulate
(:func:`blended`); a player or team with no previous season in the data (a rookie, the first
season) has no ``*_prev_season`` figures (NULL) and blended figures of this season alone.
There is no bootstrap window by default: rows start on each season's opener
(``phase4.bootstrap_days``, see :func:`pipeline.tables.registry`).

Row set of a player table for date D: the players of D's pregame roster who are not inactive
(``is_inactive``: the inactive list, ``DND`` / ``NWT`` in the box scores, or a slate's ``out`` /
``inactive``). Players who end up with a coach's-decision DNP do get a row: they are dressed and
may play, and whether they played is a result of D, which no Phase 4 figure may depend on.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping, Sequence

import polars as pl

from pipeline.tables.base import Input, Lookback
from pipeline.tables.schedule import season_before
from pipeline.tables.team_offense_game_summary import FREE_THROW_POSSESSION_WEIGHT

GAMES = "games"
# Far before any data: an as-of lookup "strictly before" this date finds nothing.
NO_DATE = dt.date(1900, 1, 1)

# How every Phase 4 table reads history: the season to date, strictly before the date built.
HISTORY = Lookback(season_to_date=True, before=True)
# The same and the whole season before it, for the *_prev_season and *_blended figures.
HISTORY_WITH_PREVIOUS_SEASON = Lookback(season_to_date=True, previous_season=True, before=True)

# Pre-game facts of the date itself, from nba_raw.pregame_roster.
PLAYER_PREGAME_COLUMNS = (
    "game_id", "game_date", "season", "season_type", "player_id", "player_name",
    "team_abbr", "opponent_abbr", "is_home", "starter", "is_inactive",
)  # fmt: skip
ROSTER = Input("nba_raw.pregame_roster", columns=(*PLAYER_PREGAME_COLUMNS, "birth_date", "source"))
PLAYER_ID_SCHEMA = {
    "game_id": pl.String,
    "game_date": pl.Date,
    "season": pl.String,
    "season_type": pl.String,
    "player_id": pl.Int32,
    "player_name": pl.String,
    "team_abbr": pl.String,
    "opponent_abbr": pl.String,
}
PLAYER_ID_COLUMNS = tuple(PLAYER_ID_SCHEMA)
PLAYER_KEY = ("game_date", "player_id")
TEAM_KEY = ("game_date", "team_abbr")

# A game counts as played when the player has minutes (DNP rows, and the 18 "0:00" rows, do not).
PLAYED = (~pl.col("did_not_play").fill_null(True)) & (pl.col("minutes").fill_null(0.0) > 0.0)


def plays(fga: pl.Expr, fta: pl.Expr, tov: pl.Expr) -> pl.Expr:
    """Possessions a player (or team) used: FGA + 0.44·FTA + TOV (the numerator of usage rate)."""
    return fga + FREE_THROW_POSSESSION_WEIGHT * fta + tov


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, NULL where the denominator is 0 or NULL (an empty window)."""
    return pl.when(denominator > 0).then(numerator / denominator)


def on_dates(frame: pl.DataFrame, dates: Iterable[dt.date]) -> pl.DataFrame:
    return frame.filter(pl.col("game_date").is_in(list(dates)))


def player_rows(pregame_roster: pl.DataFrame, dates: Sequence[dt.date], *also: str) -> pl.DataFrame:
    """One row per player listed for a game on ``dates`` and not inactive, with the pre-game
    columns (and those named in ``also``) of his roster row."""
    return (
        on_dates(pregame_roster, dates)
        .filter(~pl.col("is_inactive"))
        .select(*PLAYER_PREGAME_COLUMNS, *also)
        .drop("is_inactive")
        .sort("game_date", "game_id", "team_abbr", "player_id")
    )


def played_log(player_game_summary: pl.DataFrame, **extra: pl.Expr) -> pl.DataFrame:
    """The games players played (minutes > 0), the input of every player form window."""
    return player_game_summary.filter(PLAYED).with_columns(**extra)


def team_rows(schedule: pl.DataFrame, dates: Sequence[dt.date]) -> pl.DataFrame:
    """Two rows per game on ``dates`` (one per team) from the schedule: pre-game facts only."""
    games = on_dates(schedule, dates)
    home = games.select(
        "game_id", "game_date", "season", "season_type",
        team_abbr="home_team_abbr", opponent_abbr="away_team_abbr", is_home=pl.lit(True),
    )  # fmt: skip
    away = games.select(
        "game_id", "game_date", "season", "season_type",
        team_abbr="away_team_abbr", opponent_abbr="home_team_abbr", is_home=pl.lit(False),
    )  # fmt: skip
    return pl.concat([home, away]).sort("game_date", "game_id", "team_abbr")


# -- as-of windows -------------------------------------------------------------------------------


def _prepare(log: pl.DataFrame, group: list[str], values: Sequence[str], last_n: Sequence[int]) -> pl.DataFrame:
    """Cumulative sums per group in date order, plus the same sums ``n`` games back."""
    dupes = log.select(*group, "game_date").is_duplicated()
    if dupes.any():
        raise ValueError(f"a game log must have one row per {group} and date; {int(dupes.sum())} rows repeat")
    cols = [*values, GAMES]
    prepared = (
        log.select(*group, "game_date", *(pl.col(v).cast(pl.Float64) for v in values))
        .with_columns(pl.lit(1.0).alias(GAMES))
        .sort(*group, "game_date")
        .with_columns(pl.col(c).fill_null(0.0).cum_sum().over(group).alias(f"{c}#cum") for c in cols)
    )
    lags = [pl.col(f"{c}#cum").shift(n).over(group).fill_null(0.0).alias(f"{c}#cum{n}") for n in last_n for c in cols]
    # Date of the first game of the last-n window ending at this game (NO_DATE when fewer games).
    starts = [pl.col("game_date").shift(n - 1).over(group).fill_null(NO_DATE).alias(f"#start{n}") for n in last_n]
    return (
        prepared.with_columns(*lags, *starts, pl.col("game_date").alias("#last_date"))
        .drop(*cols)
        .sort("game_date")
    )


def _before(left: pl.DataFrame, prepared: pl.DataFrame, group: list[str], at: str, columns: Sequence[str]) -> pl.DataFrame:
    """``left`` with ``columns`` of the last prepared row of its group dated strictly before ``at``."""
    right = prepared.select(*group, pl.col("game_date").alias("#on"), *columns)
    joined = left.sort(at).join_asof(
        right, left_on=at, right_on="#on", by=group, strategy="backward", allow_exact_matches=False, coalesce=False,
        check_sortedness=False,  # both sides are sorted on the join key just above
    )
    return joined.drop("#on")


def prior_windows(
    targets: pl.DataFrame,
    log: pl.DataFrame,
    *,
    by: Sequence[str],
    values: Sequence[str],
    last_n: Sequence[int] = (),
    days: Sequence[int] = (),
) -> pl.DataFrame:
    """``targets`` (with ``by``, ``season``, ``game_date``) plus sums of ``log``'s ``values`` over
    the same entity's games of the same season strictly before each target's date.

    Adds, for every value ``v`` and for the game count ``games``:
    ``{v}_season`` (season to date), ``{v}_last{n}`` (last n games), ``{v}_{k}d`` (dates
    D-k..D-1), and ``last_game_date`` (NULL without a prior game this season). Sums over an
    empty window are 0 and the matching ``games_*`` is 0.
    """
    group = [*by, "season"]
    prepared = _prepare(log, group, values, last_n)
    cols = [*values, GAMES]
    keys = targets.select(*group, "game_date").unique()
    cum = [f"{c}#cum" for c in cols]
    lagged = [f"{c}#cum{n}" for n in last_n for c in cols]
    out = _before(keys, prepared, group, "game_date", [*cum, *lagged, "#last_date"])
    exprs: list[pl.Expr] = [pl.col("#last_date").alias("last_game_date")]
    exprs += [pl.col(f"{c}#cum").fill_null(0.0).alias(f"{c}_season") for c in cols]
    exprs += [
        (pl.col(f"{c}#cum") - pl.col(f"{c}#cum{n}")).fill_null(0.0).alias(f"{c}_last{n}") for n in last_n for c in cols
    ]
    for k in days:
        shifted = keys.with_columns(pl.col("game_date").dt.offset_by(f"-{k}d").alias("#at"))
        earlier = _before(shifted, prepared, group, "#at", cum).select(
            *group, "game_date", *(pl.col(f"{c}#cum").alias(f"{c}#cum_{k}d") for c in cols)
        )
        out = out.join(earlier, on=[*group, "game_date"], how="left")
        exprs += [
            (pl.col(f"{c}#cum").fill_null(0.0) - pl.col(f"{c}#cum_{k}d").fill_null(0.0)).alias(f"{c}_{k}d") for c in cols
        ]
    windows = out.select(*group, "game_date", *exprs)
    return targets.join(windows, on=[*group, "game_date"], how="left")


def previous_season_sums(targets: pl.DataFrame, log: pl.DataFrame, *, by: Sequence[str], values: Sequence[str]) -> pl.DataFrame:
    """``targets`` (with ``by`` and ``season``) plus the sums of ``log``'s ``values`` over the
    entity's games of the season before the target's: ``{v}_prev_season`` and
    ``games_prev_season`` (0, and NULL sums, without a game that season: a rookie, or the first
    season of the data). Rows of the target's own season are never summed here."""
    group = [*by, "season"]
    totals = (
        # Sorted first: a float sum in another row order can differ in its last bits, and the
        # warehouse returns rows in no set order.
        log.sort(*group, "game_date")
        .group_by(group)
        .agg(*(pl.col(v).cast(pl.Float64).fill_null(0.0).sum().alias(f"{v}_prev_season") for v in values), pl.len().cast(pl.Float64).alias("games_prev_season"))
        .rename({"season": "#previous"})
    )
    previous = {season: season_before(season) for season in targets["season"].unique().to_list()}
    keyed = targets.with_columns(pl.col("season").replace_strict(previous, return_dtype=pl.String).alias("#previous"))
    return (
        keyed.join(totals, on=[*by, "#previous"], how="left")
        .with_columns(pl.col("games_prev_season").fill_null(0.0))
        .drop("#previous")
    )


def blended(numerator: str, denominator: str, prior_games: float) -> pl.Expr:
    """A season figure Σ numerator / Σ denominator with ``prior_games`` games of last season's
    per-game figures added to this season's sums: (Σ_season n + k·n̄_prev) / (Σ_season d + k·d̄_prev).

    Reads ``{numerator}_season``, ``{numerator}_prev_season`` (likewise for ``denominator``;
    ``games`` for a per-game average) and ``games_prev_season``. On opening night it is last
    season's figure; after g games, last season weighs k / (g + k). Without a previous season
    it is this season's figure (NULL before the first game)."""

    def per_game(column: str) -> pl.Expr:
        return ratio(pl.col(f"{column}_prev_season"), pl.col("games_prev_season")).fill_null(0.0)

    k = pl.when(pl.col("games_prev_season") > 0).then(pl.lit(float(prior_games))).otherwise(0.0)
    return ratio(pl.col(f"{numerator}_season") + k * per_game(numerator), pl.col(f"{denominator}_season") + k * per_game(denominator))


LEAGUE_TEAM_GAMES = "team_games"


def league_before(dates_frame: pl.DataFrame, log: pl.DataFrame, values: Sequence[str]) -> pl.DataFrame:
    """League-wide season-to-date sums of ``values`` strictly before each ``(season, game_date)``
    of ``dates_frame``: every team-game of the season before the date, summed by date first.
    ``team_games_season`` counts those team-games (``games_season``, as for any log, counts
    their dates)."""
    per_date = log.group_by("season", "game_date").agg(
        *(pl.col(v).cast(pl.Float64).sum() for v in values), pl.len().cast(pl.Float64).alias(LEAGUE_TEAM_GAMES)
    )
    return prior_windows(dates_frame.select("season", "game_date").unique(), per_date, by=[], values=[*values, LEAGUE_TEAM_GAMES])


def team_window_shares(player_game_summary: pl.DataFrame, listed: pl.DataFrame, window: int = 10) -> pl.DataFrame:
    """Each listed player's share of his team's plays over the team's last ``window`` games of the
    season before the date.

    ``listed``: one row per (player_id, team_abbr, season, game_date) to look up, inactive ones
    included. share = Σ the player's plays (FGA + 0.44·FTA + TOV) in those team games / Σ the
    plays of every player of the team in them; a team game the player missed, or played for
    another team, counts as 0 for him. A star out for the whole window therefore frees nothing
    new: the team has already played without him. Adds ``team_games_season`` (team games this
    season before the date), ``played_in_last_{window}_team_games`` and
    ``plays_share_last_{window}_team_games`` (NULL when the team has no earlier game).
    """
    rows = player_game_summary.with_columns(
        plays=plays(pl.col("fga"), pl.col("fta"), pl.col("tov")).cast(pl.Float64),
        played=PLAYED.cast(pl.Float64),
    )
    # Integer sums first: a float sum would depend on the row order the warehouse returns.
    team_log = (
        rows.group_by("team_abbr", "season", "game_date")
        .agg(pl.col("fga", "fta", "tov").cast(pl.Int64).sum())
        .with_columns(team_plays=plays(pl.col("fga"), pl.col("fta"), pl.col("tov")).cast(pl.Float64))
    )
    team_group = ["team_abbr", "season"]
    team_prep = _prepare(team_log, team_group, ["team_plays"], [window])
    keys = listed.select("player_id", *team_group, "game_date").unique()
    at_team = _before(
        keys, team_prep, team_group, "game_date", ["team_plays#cum", f"team_plays#cum{window}", "games#cum", f"#start{window}"]
    ).with_columns(pl.col(f"#start{window}").fill_null(NO_DATE))
    player_group = ["player_id", *team_group]
    player_prep = _prepare(rows.select(*player_group, "game_date", "plays", "played"), player_group, ["plays", "played"], [])
    cols = ["plays#cum", "played#cum"]
    now = _before(at_team, player_prep, player_group, "game_date", cols)
    then = _before(
        at_team.select(*player_group, "game_date", f"#start{window}"), player_prep, player_group, f"#start{window}", cols
    ).select(*player_group, "game_date", *(pl.col(c).alias(f"{c}#start") for c in cols))
    shares = now.join(then, on=[*player_group, "game_date"], how="left").select(
        *player_group,
        "game_date",
        team_games_season=pl.col("games#cum").fill_null(0.0),
        **{
            f"played_in_last_{window}_team_games": pl.when(pl.col("games#cum") > 0).then(
                pl.col("played#cum").fill_null(0.0) - pl.col("played#cum#start").fill_null(0.0)
            ).otherwise(0.0),
            f"plays_share_last_{window}_team_games": ratio(
                pl.col("plays#cum").fill_null(0.0) - pl.col("plays#cum#start").fill_null(0.0),
                pl.col("team_plays#cum") - pl.col(f"team_plays#cum{window}"),
            ),
        },
    )
    return listed.join(shares, on=[*player_group, "game_date"], how="left")


def notes(*parts: pl.Expr) -> pl.Expr:
    """'; '-joined non-null notes, NULL when there is none."""
    joined = pl.concat_str(list(parts), separator="; ", ignore_nulls=True)
    return pl.when(joined != "").then(joined)


def attach(
    rows: pl.DataFrame, frame: pl.DataFrame, key: Sequence[str], columns: Sequence[str], rename: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """``rows`` with ``columns`` of a same-date table left-joined on ``key``. ``rename`` applies
    to the key too: renaming ``team_abbr`` to ``opponent_abbr`` looks up the opponent's row."""
    rename = dict(rename or {})
    picked = frame.select(pl.col(c).alias(rename.get(c, c)) for c in dict.fromkeys((*key, *columns)))
    return rows.join(picked, on=[rename.get(k, k) for k in key], how="left")
