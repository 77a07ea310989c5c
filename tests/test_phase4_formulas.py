"""Phase 4 formulas against numbers worked out by hand from real games.

As in tests/test_phase3_formulas.py, every expected value below is arithmetic written out in the
test from the box-score lines quoted beside it (the bundled raw files), never read back from the
pipeline; where a sum runs over many lines, the test also sums those raw rows itself and checks
the quoted total. The cases sit in the first weeks of 2023-24 wherever they can, so that each
window holds a few games and the arithmetic stays short.

The tables are built in memory as the runner builds them (tests/test_phase4.py's build_phase4:
each table's inputs sliced by the runner's own read_inputs), on the few dates the cases need:
the whole module runs in seconds.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from conftest import RAW_DIR
from pipeline.tables.player_composite_factors import fatigue
from test_phase4 import ROSTER, build_phase4, phase3_frames

D = dt.date
CONTEXT = "nba_analytics.upcoming_player_game_context"
TEAM_CONTEXT = "nba_analytics.upcoming_team_game_context"
CACHE = "nba_precompute.player_daily_cache"
ZONES = "nba_precompute.player_shot_zone_analysis"
DEFENSE = "nba_precompute.team_defense_zone_analysis"
FACTORS = "nba_precompute.player_composite_factors"
STORE = "nba_predictions.ml_feature_store"

# Every date a case below reads.
DATES = [
    D(2023, 10, 25), D(2023, 10, 26), D(2023, 10, 27), D(2023, 10, 28), D(2023, 11, 1), D(2023, 11, 6), D(2023, 11, 16),
    D(2023, 11, 20), D(2024, 1, 22), D(2024, 1, 24), D(2024, 1, 25),
]  # fmt: skip

# Player ids, from the raw files.
BAM, BUTLER, HERRO, LOWRY, ROBINSON, LEBRON, DURANT, ROZIER = 1628389, 202710, 1629639, 200768, 1629130, 2544, 201142, 1626179


def m(minutes: int, seconds: int) -> float:
    """A box score's MM:SS as minutes."""
    return minutes + seconds / 60


def usage(plays: float, team_plays: float, minutes: float, team_minutes: int = 240) -> float:
    """Usage rate as Phase 3 defines it (hand-checked in test_phase3_formulas):
    100 · plays · (team minutes / 5) / (minutes · team plays), plays = FGA + 0.44·FTA + TOV."""
    return 100 * plays * (team_minutes / 5) / (minutes * team_plays)


@pytest.fixture(scope="module")
def phase3(source, calendar) -> dict[str, pl.DataFrame]:
    return phase3_frames(source, calendar)


@pytest.fixture(scope="module")
def built(phase3, calendar, source) -> dict[str, pl.DataFrame]:
    return build_phase4(phase3, calendar, source, DATES, 1)


def row(frame: pl.DataFrame, day: dt.date, **key) -> dict:
    rows = frame.filter(pl.col("game_date") == day, **key)
    assert rows.height == 1, (day, key, rows.height)
    return rows.row(0, named=True)


def raw_players(season: str) -> pl.DataFrame:
    return pl.read_parquet(RAW_DIR / f"player_boxscores_{season}.parquet")


def raw_teams() -> pl.DataFrame:
    return pl.read_parquet(RAW_DIR / "team_game_logs_regular_season.parquet")


# -- fatigue -------------------------------------------------------------------------------------


def test_fatigue_weights_rest_ladder_and_loads_bam_adebayo(built):
    """Bam Adebayo (MIA), minutes of his first games of 2023-24 (box scores):
    10-25 32:08, 10-27 35:01, 10-28 32:54, 11-01 33:06, 11-03 29:59.

    load = 0.40·rest + 0.10·min(b2b / 3, 1) + 0.30·min(min7 / 144, 1) + 0.20·min(min14 / 252, 1),
    rest = 1.0 after 0 days of rest, 0.5 after 1, 0.25 after 2, 0.0 after 3 or more. The bundled
    files give no birth dates, so fatigue_score = 100 · load.

      date   days of rest      rest  b2b in D-14..D-1   minutes D-7..D-1       minutes D-14..D-1
      10-27  1 (10-26)         0.5   0                  32:08                  32:08
      10-28  0                 1.0   0                  32:08+35:01 = 67:09    67:09
      11-01  3 (10-29..10-31)  0.0   1 (10-28)          67:09+32:54 = 100:03   100:03
      11-06  2 (11-04, 11-05)  0.25  1                  33:06+29:59 = 63:05    100:03+63:05 = 163:08
    """
    by_hand = {
        D(2023, 10, 27): (1, 0, m(32, 8), m(32, 8), 100 * (0.40 * 0.5 + 0.10 * 0 / 3 + 0.30 * m(32, 8) / 144 + 0.20 * m(32, 8) / 252)),
        D(2023, 10, 28): (0, 0, m(67, 9), m(67, 9), 100 * (0.40 * 1.0 + 0.10 * 0 / 3 + 0.30 * m(67, 9) / 144 + 0.20 * m(67, 9) / 252)),
        D(2023, 11, 1): (3, 1, m(100, 3), m(100, 3), 100 * (0.40 * 0.0 + 0.10 * 1 / 3 + 0.30 * m(100, 3) / 144 + 0.20 * m(100, 3) / 252)),
        D(2023, 11, 6): (2, 1, m(63, 5), m(163, 8), 100 * (0.40 * 0.25 + 0.10 * 1 / 3 + 0.30 * m(63, 5) / 144 + 0.20 * m(163, 8) / 252)),
    }
    for day, (days_rest, b2b, minutes_7d, minutes_14d, score) in by_hand.items():
        context = row(built[CONTEXT], day, player_id=BAM)
        assert (context["days_rest"], context["back_to_backs_last_14d"]) == (days_rest, b2b), day
        assert (context["minutes_last_7d"], context["minutes_last_14d"]) == pytest.approx((minutes_7d, minutes_14d), rel=1e-12), day
        factors = row(built[FACTORS], day, player_id=BAM)
        assert factors["fatigue_score"] == pytest.approx(score, rel=1e-12), day
        assert factors["fatigue_reason"] is None
        assert row(built[STORE], day, player_id=BAM)["fatigue_score"] == factors["fatigue_score"]


def test_age_scales_the_load_where_birth_dates_are_known(phase3, calendar, source):
    """MIA on 2023-10-28, the second night of a back-to-back (rest 1.0, no earlier back-to-back),
    with birth dates given to four players, so that their ages on the day are whole numbers of
    365.25-day years: age = min(max((age − 30) / 8, 0), 1); score = 100 · load · (1 + 0.25 · age).

      player        minutes 10-25 + 10-27     age (days before 10-28)   multiplier
      Bam Adebayo   32:08 + 35:01 = 67:09     36 (13149)                1 + 0.25 · 6/8 = 1.1875
      Kyle Lowry    31:52 + 31:49 = 63:41     40 (14610)                1 + 0.25 · 1   = 1.25 (from 38 on)
      D. Robinson   22:06 + 24:19 = 46:25     32 (11688)                1 + 0.25 · 2/8 = 1.0625
      Tyler Herro   34:30 + 40:18 = 74:48     28 (10227)                1 (30 and younger)
    """
    day = D(2023, 10, 28)
    cases = {  # player: (days since birth, minutes of the last 7 and 14 days, multiplier)
        BAM: (13149, m(67, 9), 1 + 0.25 * (36 - 30) / 8),
        LOWRY: (14610, m(63, 41), 1 + 0.25 * 1),
        ROBINSON: (11688, m(46, 25), 1 + 0.25 * (32 - 30) / 8),
        HERRO: (10227, m(74, 48), 1.0),
    }
    births = {player: day - dt.timedelta(days=days) for player, (days, _, _) in cases.items()}
    frames = dict(phase3)
    frames[ROSTER] = phase3[ROSTER].with_columns(birth_date=pl.col("player_id").replace_strict(births, default=None, return_dtype=pl.Date))
    built = build_phase4(frames, calendar, source, [day], 1)
    ages = dict(built[CONTEXT].select("player_id", "age_years").iter_rows())
    assert {p: a for p, a in ages.items() if a is not None} == pytest.approx({BAM: 36.0, LOWRY: 40.0, ROBINSON: 32.0, HERRO: 28.0}, rel=1e-12)
    scores = dict(built[FACTORS].select("player_id", "fatigue_score").iter_rows())
    for player, (_, minutes, multiplier) in cases.items():
        load = 0.40 * 1.0 + 0.10 * 0 / 3 + 0.30 * minutes / 144 + 0.20 * minutes / 252
        assert scores[player] == pytest.approx(100 * load * multiplier, rel=1e-12), player


def test_fatigue_terms_and_score_are_capped():
    """Rows made up to reach each cap alone (no rest term: 3 days of rest; no age unless given)."""
    frame = pl.DataFrame(
        {
            "games_played_season": [30] * 5,
            "days_rest": [3, 3, 1, 0, 0],
            "back_to_backs_last_14d": [6, 0, 0, 0, 5],
            "minutes_last_7d": [0.0, 288.0, 0.0, 72.0, 200.0],
            "minutes_last_14d": [0.0, 288.0, 0.0, 126.0, 300.0],
            "age_years": [None, None, 45.0, 45.0, 45.0],
        }
    )
    value, _ = fatigue()
    by_hand = [
        100 * 0.10 * 1,  # 6 back-to-backs count as 3
        100 * (0.30 * 1 + 0.20 * 1),  # 288 minutes count as 144 in a week, and as 252 in two
        100 * 0.40 * 0.5 * (1 + 0.25 * 1),  # age 45 counts as 38
        100 * (0.40 * 1 + 0.30 * 72 / 144 + 0.20 * 126 / 252) * 1.25,  # 81.25, not capped
        100.0,  # 100 · (0.40 + 0.10 + 0.30 + 0.20) · 1.25 = 125, capped
    ]
    assert frame.select(value).to_series().to_list() == pytest.approx(by_hand, rel=1e-12)


# -- usage: recent usage, freed plays, projected usage ---------------------------------------------

# MIA at DET on 2023-10-25, its only game before 2023-10-27: the team's plays, summed over its
# players' lines (FGA 13+7+2+10+3+18+9+1+5+24 = 92, FTA 10+9+2+5 = 26, TOV 2+1+1+1+2 = 7).
MIA_1025_PLAYS = 92 + 0.44 * 26 + 7  # 110.44
MARTIN_1025_PLAYS = 7 + 0.44 * 0 + 0  # Caleb Martin: 7 FGA; listed inactive (DND) on 10-27
BAM_1025 = (13 + 0.44 * 10 + 2, m(32, 8))  # plays, minutes
HERRO_1025 = (24 + 0.44 * 0 + 2, m(34, 30))


def test_usage_spike_and_projected_usage_from_an_inactive_teammate(built):
    """MIA at BOS, 2023-10-27: Caleb Martin is listed inactive. He used 7 of MIA's 110.44 plays in
    its one game so far, so freed = 7 / 110.44, and every other player's share of the plays, and
    with it his usage, grows by 1 / (1 − freed): projected = recent / (1 − freed)."""
    day = D(2023, 10, 27)
    freed = MARTIN_1025_PLAYS / MIA_1025_PLAYS
    for player, (plays, minutes) in {BAM: BAM_1025, HERRO: HERRO_1025}.items():
        recent = usage(plays, MIA_1025_PLAYS, minutes)  # Bam 100·19.4·48 / (32.133·110.44) = 26.24
        context = row(built[CONTEXT], day, player_id=player)
        assert context["plays_share_last_10_team_games"] == pytest.approx(plays / MIA_1025_PLAYS, rel=1e-12)
        assert (context["inactive_teammates"], context["inactive_teammate_names"]) == (1, "Caleb Martin")
        assert context["inactive_teammates_usage_share"] == pytest.approx(freed, rel=1e-12)
        # Everyone else was listed and not inactive: the active share is the rest of the plays.
        assert context["active_roster_usage_share"] == pytest.approx((MIA_1025_PLAYS - MARTIN_1025_PLAYS) / MIA_1025_PLAYS, rel=1e-12)
        assert row(built[CACHE], day, player_id=player)["usage_avg_last_10"] == pytest.approx(recent, rel=1e-12)
        factors = row(built[FACTORS], day, player_id=player)
        assert factors["projected_usage"] == pytest.approx(recent / (1 - freed), rel=1e-12)
        assert factors["usage_spike_score"] == pytest.approx(recent / (1 - freed) - recent, rel=1e-9)
        assert factors["usage_spike_reason"] is None


def test_recent_usage_is_weighted_by_minutes(built):
    """Bam Adebayo on 2023-10-28, after two games: Σ(usage · minutes) / Σ minutes.

    10-25 at DET: 13 FGA, 10 FTA, 2 TOV in 32:08; MIA 110.44 plays (above).
    10-27 at BOS: 23 FGA, 9 FTA, 3 TOV in 35:01; MIA 89 FGA, 23 FTA, 12 TOV: 89 + 10.12 + 12 = 111.12.
    """
    u1 = usage(BAM_1025[0], MIA_1025_PLAYS, BAM_1025[1])  # 26.24
    u2 = usage(23 + 0.44 * 9 + 3, 89 + 0.44 * 23 + 12, m(35, 1))  # 36.96
    weighted = (u1 * m(32, 8) + u2 * m(35, 1)) / (m(32, 8) + m(35, 1))  # 31.83; the plain mean would be 31.60
    cache = row(built[CACHE], D(2023, 10, 28), player_id=BAM)
    assert cache["usage_avg_last_10"] == pytest.approx(weighted, rel=1e-12)
    assert cache["usage_avg_last_5"] == cache["usage_avg_season"] == cache["usage_avg_last_10"]
    assert row(built[STORE], D(2023, 10, 28), player_id=BAM)["usage_avg_last_10"] == cache["usage_avg_last_10"]


# Jimmy Butler's 11 games of 2023-24 before 2023-11-20, all regulation, all started (box scores):
#   date, minutes, his FGA, FTA, TOV, points, and MIA's FGA, FTA, TOV
BUTLER_GAMES = [
    ("10-25", m(34, 28), 18, 9, 0, 19, 92, 26, 7), ("10-27", m(33, 41), 11, 9, 1, 14, 89, 23, 12),
    ("10-30", m(28, 43), 11, 4, 1, 13, 86, 20, 14), ("11-01", m(34, 6), 16, 8, 1, 20, 91, 18, 16),
    ("11-03", m(31, 23), 11, 6, 2, 20, 80, 14, 19), ("11-06", m(36, 34), 15, 7, 3, 28, 88, 16, 17),
    ("11-08", m(34, 37), 13, 3, 1, 15, 77, 32, 19), ("11-12", m(36, 32), 14, 9, 2, 19, 89, 30, 4),
    ("11-14", m(34, 3), 14, 14, 3, 32, 83, 28, 7), ("11-16", m(34, 34), 19, 11, 4, 36, 81, 24, 9),
    ("11-18", m(33, 27), 16, 7, 2, 25, 77, 23, 15),
]  # fmt: skip


def test_form_windows_jimmy_butler_after_eleven_games(built):
    """Jimmy Butler before 2023-11-20: last 5 = his games 7..11, last 10 = 2..11, season = all 11.

    usage · minutes = 100 · plays · 48 / team plays (regulation), so the minutes-weighted usage of a
    window is 4800 · Σ(plays / team plays) / Σ minutes.
    """
    games = raw_players("2023-24").filter(player_id=BUTLER).filter(pl.col("game_date") < D(2023, 11, 20), pl.col("minutes") > 0)
    assert games.sort("game_date").select("fga", "fta", "tov", "pts").rows() == [g[2:6] for g in BUTLER_GAMES]

    def usage_over(window: list[tuple]) -> float:
        return 4800 * sum((fga + 0.44 * fta + tov) / (tfga + 0.44 * tfta + ttov) for _, _, fga, fta, tov, _, tfga, tfta, ttov in window) / sum(
            g[1] for g in window
        )

    points = [g[5] for g in BUTLER_GAMES]  # 19, 14, 13, 20, 20, 28, 15, 19, 32, 36, 25
    last10 = points[1:]
    mean10 = sum(last10) / 10  # 222 / 10
    cache = row(built[CACHE], D(2023, 11, 20), player_id=BUTLER)
    assert (cache["games_played_season"], cache["starts_last_10"]) == (11, 10)
    assert (cache["usage_avg_last_5"], cache["usage_avg_last_10"], cache["usage_avg_season"]) == pytest.approx(
        (usage_over(BUTLER_GAMES[6:]), usage_over(BUTLER_GAMES[1:]), usage_over(BUTLER_GAMES)), rel=1e-12
    )
    assert (cache["points_avg_last_5"], cache["points_avg_last_10"], cache["points_avg_season"]) == pytest.approx(
        ((15 + 19 + 32 + 36 + 25) / 5, 222 / 10, 241 / 11), rel=1e-12
    )
    assert cache["points_std_last_10"] == pytest.approx((sum((p - mean10) ** 2 for p in last10) / 9) ** 0.5, rel=1e-9)  # 7.83
    # True shooting: points / (2 · (FGA + 0.44 · FTA)); points per minute over the season.
    shots10 = sum(g[2] + 0.44 * g[3] for g in BUTLER_GAMES[1:])
    assert cache["ts_pct_last_10"] == pytest.approx(222 / (2 * shots10), rel=1e-12)
    assert cache["points_per_minute_season"] == pytest.approx(241 / sum(g[1] for g in BUTLER_GAMES), rel=1e-12)


# -- shot zones and the zone defence ----------------------------------------------------------------


def test_player_zone_shares_jimmy_butler_after_eleven_games(built):
    """Jimmy Butler (MIA) before 2023-11-20: 11 games played (season sums below, checked against
    the raw rows); the last 10 leave out his first, 10-25 at DET: 6 FGM, 0 FG3M, 7 FTM, 19 points.

    season:  FGM 76, FGA 158, FG3M 13, FG3A 29, FTM 76, FTA 87, PTS 241
             points from twos 2·(76 − 13) = 126, threes 3·13 = 39, free throws 76 (126+39+76 = 241)
    last 10: twos 2·(70 − 13) = 114, threes 39, free throws 69 (of 222 points)
    """
    day = D(2023, 11, 20)
    games = raw_players("2023-24").filter(player_id=BUTLER).filter(pl.col("game_date") < day, pl.col("minutes") > 0)
    sums = games.select(pl.col("fgm", "fga", "fg3m", "fg3a", "ftm", "fta", "pts").sum()).row(0, named=True)
    assert (games.height, sums) == (11, {"fgm": 76, "fga": 158, "fg3m": 13, "fg3a": 29, "ftm": 76, "fta": 87, "pts": 241})

    zones = row(built[ZONES], day, player_id=BUTLER)
    assert (zones["games_played_season"], zones["points_season"]) == (11, 241)
    assert [zones[f"pct_pts_{z}_season"] for z in ("2pt", "3pt", "ft")] == pytest.approx([126 / 241, 39 / 241, 76 / 241], rel=1e-12)
    assert [zones[f"pct_pts_{z}_last_10"] for z in ("2pt", "3pt", "ft")] == pytest.approx([114 / 222, 39 / 222, 69 / 222], rel=1e-12)
    assert (zones["fg3a_rate_season"], zones["fta_rate_season"]) == pytest.approx((29 / 158, 87 / 158), rel=1e-12)
    assert (zones["fg2_pct_season"], zones["fg3_pct_season"], zones["ft_pct_season"]) == pytest.approx(
        ((76 - 13) / (158 - 29), 13 / 29, 76 / 87), rel=1e-12
    )
    assert (zones["primary_scoring_zone"], zones["zone_null_reason"]) == ("two_point", None)


# The 2023-24 opener, 2023-10-24 (DEN v LAL, GSW v PHX), team lines from the raw game logs:
#        FGM FGA FG3M FG3A FTA  -> twos made / attempted
#   DEN  48  91  14   34   12      34 / 57
#   LAL  41  90  10   29   20      31 / 61
#   GSW  36  101 10   43   28      26 / 58
#   PHX  42  95  11   33   17      31 / 62
# League before 2023-10-26: the 28 team lines of 10-24 and 10-25 (summed from the raw rows in the test).
LEAGUE_1026 = {"fg2m": 819, "fg2a": 1574, "fg3m": 345, "fg3a": 993, "fta": 593, "fga": 2567}


def test_league_figures_are_every_team_game_before_the_date(built):
    # On 2023-10-25 the league is the opener's four team lines.
    league = row(built[DEFENSE], D(2023, 10, 25), team_abbr="BOS")
    assert league["league_games_season"] == 4
    assert league["league_fg2_pct_season"] == pytest.approx((34 + 31 + 26 + 31) / (57 + 61 + 58 + 62), rel=1e-12)  # 122 / 238
    assert league["league_fg3_pct_season"] == pytest.approx((14 + 10 + 10 + 11) / (34 + 29 + 43 + 33), rel=1e-12)  # 45 / 139
    assert league["league_fta_rate_season"] == pytest.approx((12 + 20 + 28 + 17) / (91 + 90 + 101 + 95), rel=1e-12)  # 77 / 377
    # BOS had not played: its own figures are NULL, and say why.
    assert league["games_season"] == 0 and league["opp_fg2_pct_allowed_season"] is None and league["weakest_zone"] is None
    assert league["zone_null_reason"] == "team has no game this season before this date"

    lines = raw_teams().filter(pl.col("game_date") < D(2023, 10, 26), season="2023-24")
    summed = lines.select(
        fg2m=(pl.col("fgm") - pl.col("fg3m")).sum(), fg2a=(pl.col("fga") - pl.col("fg3a")).sum(),
        fg3m=pl.col("fg3m").sum(), fg3a=pl.col("fg3a").sum(), fta=pl.col("fta").sum(), fga=pl.col("fga").sum(),
    ).row(0, named=True)  # fmt: skip
    assert (lines.height, summed) == (28, LEAGUE_1026)
    later = row(built[DEFENSE], D(2023, 10, 26), team_abbr="LAL")
    assert later["league_games_season"] == 28
    assert (later["league_fg2_pct_season"], later["league_fg3_pct_season"], later["league_fta_rate_season"]) == pytest.approx(
        (819 / 1574, 345 / 993, 593 / 2567), rel=1e-12
    )


def test_zone_defence_against_the_league_lal_and_phx_2023_10_26(built):
    """LAL v PHX, 2023-10-26: each had played once, on the opener. LAL allowed DEN's line (twos 34 / 57,
    threes 14 / 34, 12 FTA on 91 FGA, 119 points), PHX allowed GSW's (26 / 58, 10 / 43, 28 FTA on 101
    FGA, 104 points); the league before the date is LEAGUE_1026.

    relative to the league, (allowed − league) / league:
      LAL  twos (0.5965 − 0.5203) / 0.5203 = +0.146, threes (0.4118 − 0.3474) / 0.3474 = +0.185, FT rate (0.1319 − 0.2310) / 0.2310 = −0.429
      PHX  twos −0.138, threes −0.331, FT rate (0.2772 − 0.2310) / 0.2310 = +0.200
    """
    league = (819 / 1574, 345 / 993, 593 / 2567)
    cases = {
        "LAL": ((34 / 57, 14 / 34, 12 / 91), 34 / 91, 119, "three_point", "free_throw"),
        "PHX": ((26 / 58, 10 / 43, 28 / 101), 43 / 101, 104, "free_throw", "three_point"),
    }
    for team, (allowed, fg3a_share, points, weakest, strongest) in cases.items():
        defence = row(built[DEFENSE], D(2023, 10, 26), team_abbr=team)
        assert defence["games_season"] == 1
        got = (defence["opp_fg2_pct_allowed_season"], defence["opp_fg3_pct_allowed_season"], defence["opp_fta_rate_allowed_season"])
        assert got == pytest.approx(allowed, rel=1e-12)
        assert (defence["opp_fg2_pct_allowed_last_10"], defence["opp_fg3_pct_allowed_last_10"]) == pytest.approx(allowed[:2], rel=1e-12)
        assert defence["opp_fg3a_share_allowed_season"] == pytest.approx(fg3a_share, rel=1e-12)
        assert defence["points_allowed_avg_last_10"] == points
        vs_league = (defence["fg2_pct_allowed_vs_league"], defence["fg3_pct_allowed_vs_league"], defence["fta_rate_allowed_vs_league"])
        assert vs_league == pytest.approx([100 * (a - b) for a, b in zip(allowed, league)], rel=1e-12)
        assert (defence["weakest_zone"], defence["strongest_zone"]) == (weakest, strongest), team
        # The feature store reads the opponent's row.
        opponent = "PHX" if team == "LAL" else "LAL"
        store = built[STORE].filter(game_date=D(2023, 10, 26), team_abbr=opponent)
        assert store["opp_fg2_pct_allowed_vs_league"].unique().to_list() == [defence["fg2_pct_allowed_vs_league"]]


def test_shot_zone_mismatch_kevin_durant_and_lebron_james_2023_10_26(built):
    """score = 100 · Σ_zone share_zone · (opponent allowed − league) / league, clipped to ±10.

    Kevin Durant (PHX) v LAL, his 10-24 line 7 FGM, 1 FG3M, 3 FTM, 18 points: shares 12/18, 3/18, 3/18;
      100 · (12/18 · (+0.146) + 3/18 · (+0.185) + 3/18 · (−0.429)) = +5.69.
    LeBron James (LAL) v PHX, his 10-24 line 10 FGM, 1 FG3M, 0 FTM, 21 points: shares 18/21, 3/21, 0;
      100 · (18/21 · (−0.138) + 3/21 · (−0.331)) = −16.59: clipped to −10, and said so.
    """

    def relative(allowed: float, league: float) -> float:
        return (allowed - league) / league

    l2, l3, lf = 819 / 1574, 345 / 993, 593 / 2567
    durant = 100 * (12 / 18 * relative(34 / 57, l2) + 3 / 18 * relative(14 / 34, l3) + 3 / 18 * relative(12 / 91, lf))
    lebron = 100 * (18 / 21 * relative(26 / 58, l2) + 3 / 21 * relative(10 / 43, l3) + 0 / 21 * relative(28 / 101, lf))
    assert 5.6 < durant < 5.8 and -16.7 < lebron < -16.5
    day = D(2023, 10, 26)
    factors = row(built[FACTORS], day, player_id=DURANT)
    assert factors["shot_zone_mismatch_score"] == pytest.approx(durant, rel=1e-12) and factors["shot_zone_mismatch_reason"] is None
    factors = row(built[FACTORS], day, player_id=LEBRON)
    assert factors["shot_zone_mismatch_score"] == -10.0
    assert factors["shot_zone_mismatch_reason"] == f"clipped from {round(lebron, 2)}"


# -- team context --------------------------------------------------------------------------------


def test_opponent_rating_win_pct_and_rest_advantage_early_in_the_season(built):
    """Possessions = FGA + 0.44·FTA + TOV − OREB; a defensive rating is 100 · points allowed / the
    opponents' possessions.

    BOS v MIA, 2023-10-27: MIA's one game, 10-25 at DET, a 103-102 win; DET's line 92 FGA, 15 FTA,
      16 TOV, 17 OREB: 92 + 6.6 + 16 − 17 = 97.6 possessions for 102 points.
    MIA at MIN, 2023-10-28: MIA played 10-27 (0 days of rest) and is 1-1; MIN last played 10-25, a
      97-94 loss at TOR (2 days of rest, 0-1); TOR's line 90 FGA, 16 FTA, 14 TOV, 8 OREB:
      90 + 7.04 + 14 − 8 = 103.04 possessions for 97 points.
    """
    bos = row(built[TEAM_CONTEXT], D(2023, 10, 27), team_abbr="BOS")
    assert bos["opponent_def_rating_last_10"] == pytest.approx(100 * 102 / (92 + 0.44 * 15 + 16 - 17), rel=1e-12)  # 104.51
    assert (bos["opponent_win_pct_season"], bos["rest_advantage"]) == (1 / 1, 1 - 1)

    day = D(2023, 10, 28)
    mia, mn = row(built[TEAM_CONTEXT], day, team_abbr="MIA"), row(built[TEAM_CONTEXT], day, team_abbr="MIN")
    assert (mia["days_rest"], mia["opponent_days_rest"], mia["rest_advantage"], mn["rest_advantage"]) == (0, 2, 0 - 2, 2 - 0)
    assert (mia["win_pct_season"], mia["opponent_win_pct_season"], mn["win_pct_season"]) == (1 / 2, 0 / 1, 0 / 1)
    assert mia["opponent_def_rating_last_10"] == pytest.approx(100 * 97 / (90 + 0.44 * 16 + 14 - 8), rel=1e-12)  # 94.14
    # The feature store's rest advantage is the player's own rest against the opponent team's.
    store = row(built[STORE], day, player_id=BAM)
    assert (store["days_rest"], store["opponent_days_rest"], store["rest_advantage"]) == (0, 2, -2)
    assert store["opponent_def_rating_last_10"] == mia["opponent_def_rating_last_10"]


# BKN's first 11 games of 2023-24 and its opponents' lines (raw game logs): result, opponent, points
# allowed, and the opponent's FGA + 0.44·FTA + TOV − OREB.
BKN_GAMES = [
    ("L", "CLE", 114, 94 + 0.44 * 10 + 10 - 9), ("L", "DAL", 125, 91 + 0.44 * 28 + 9 - 8), ("W", "CHA", 121, 96 + 0.44 * 20 + 9 - 8),
    ("W", "MIA", 105, 91 + 0.44 * 18 + 16 - 11), ("W", "CHI", 107, 89 + 0.44 * 14 + 10 - 9), ("L", "BOS", 124, 90 + 0.44 * 27 + 11 - 10),
    ("L", "MIL", 129, 96 + 0.44 * 24 + 10 - 12), ("W", "LAC", 93, 91 + 0.44 * 13 + 15 - 11), ("L", "BOS", 121, 94 + 0.44 * 28 + 7 - 17),
    ("W", "WAS", 94, 88 + 0.44 * 25 + 12 - 7), ("W", "ORL", 104, 82 + 0.44 * 21 + 14 - 9),
]  # fmt: skip


def test_opponent_season_and_last_10_figures_bkn_after_eleven_games(built):
    """MIA v BKN, 2023-11-16: BKN had played 11 games, 6 won; its last 10 leave out the first (v CLE)."""
    lines = raw_teams().filter(team_abbr="BKN", season="2023-24").filter(pl.col("game_date") < D(2023, 11, 16)).sort("game_date")
    assert list(zip(lines["wl"], lines["opponent_abbr"])) == [(wl, opponent) for wl, opponent, _, _ in BKN_GAMES]
    allowed = [points for _, _, points, _ in BKN_GAMES]  # 1,237 in all
    possessions = [p for _, _, _, p in BKN_GAMES]  # 1,114.32 in all
    mia = row(built[TEAM_CONTEXT], D(2023, 11, 16), team_abbr="MIA")
    assert (mia["opponent_games_season"], mia["opponent_win_pct_season"]) == (11, pytest.approx(6 / 11, rel=1e-12))
    assert mia["opponent_def_rating_season"] == pytest.approx(100 * sum(allowed) / sum(possessions), rel=1e-12)  # 111.01
    assert mia["opponent_def_rating_last_10"] == pytest.approx(100 * sum(allowed[1:]) / sum(possessions[1:]), rel=1e-12)  # 110.65
    bkn = row(built[TEAM_CONTEXT], D(2023, 11, 16), team_abbr="BKN")
    assert bkn["win_pct_season"] == pytest.approx(6 / 11, rel=1e-12)
    assert bkn["def_rating_last_10"] == mia["opponent_def_rating_last_10"]


# BKN's opponents' lines before 2023-11-16, first to last: (opponent, FGM, FGA, FG3M, FG3A, FTA).
BKN_ALLOWED = [
    ("CLE", 44, 94, 17, 43, 10), ("DAL", 44, 91, 15, 36, 28), ("CHA", 47, 96, 8, 31, 20), ("MIA", 39, 91, 13, 38, 18),
    ("CHI", 43, 89, 11, 28, 14), ("BOS", 43, 90, 15, 45, 27), ("MIL", 46, 96, 16, 48, 24), ("LAC", 36, 91, 8, 36, 13),
    ("BOS", 41, 94, 19, 52, 28), ("WAS", 33, 88, 10, 41, 25), ("ORL", 36, 82, 16, 46, 21),
]  # fmt: skip


def test_zone_defence_season_and_last_10_bkn_after_eleven_games(built):
    """BKN on 2023-11-16, after 11 games: the season's figures sum all 11 opponents' lines, the last
    10 leave out CLE's (twos 44 − 17 = 27 of 94 − 43 = 51, threes 17 / 43).

    season: FGM 452, FG3M 148, so twos 304 / (1,002 − 444 = 558) = 0.5448; threes 148 / 444 = 0.3333;
            FTA 228 on 1,002 FGA = 0.2275; FG3A share 444 / 1,002
    last 10: twos 277 / 507 = 0.5464; threes 131 / 401 = 0.3267; points allowed (1,237 − 114) / 10 = 112.3
    """
    opponents = raw_teams().join(
        raw_teams().filter(team_abbr="BKN", season="2023-24").filter(pl.col("game_date") < D(2023, 11, 16)).select("game_id"), on="game_id"
    ).filter(pl.col("team_abbr") != "BKN").sort("game_date")
    assert [tuple(r) for r in opponents.select("team_abbr", "fgm", "fga", "fg3m", "fg3a", "fta").iter_rows()] == BKN_ALLOWED
    assert [sum(line[i] for line in BKN_ALLOWED) for i in range(1, 6)] == [452, 1002, 148, 444, 228]

    bkn = row(built[DEFENSE], D(2023, 11, 16), team_abbr="BKN")
    assert bkn["games_season"] == 11
    season = (bkn["opp_fg2_pct_allowed_season"], bkn["opp_fg3_pct_allowed_season"], bkn["opp_fta_rate_allowed_season"])
    assert season == pytest.approx((304 / 558, 148 / 444, 228 / 1002), rel=1e-12)
    assert bkn["opp_fg3a_share_allowed_season"] == pytest.approx(444 / 1002, rel=1e-12)
    last_10 = (bkn["opp_fg2_pct_allowed_last_10"], bkn["opp_fg3_pct_allowed_last_10"])
    assert last_10 == pytest.approx(((304 - 27) / (558 - 51), (148 - 17) / (444 - 43)), rel=1e-12)
    assert bkn["points_allowed_avg_last_10"] == pytest.approx((1237 - 114) / 10, rel=1e-12)
    league = (bkn["league_fg2_pct_season"], bkn["league_fg3_pct_season"], bkn["league_fta_rate_season"])
    vs_league = (bkn["fg2_pct_allowed_vs_league"], bkn["fg3_pct_allowed_vs_league"], bkn["fta_rate_allowed_vs_league"])
    assert vs_league == pytest.approx([100 * (a - b) for a, b in zip((304 / 558, 148 / 444, 228 / 1002), league)], rel=1e-12)


# -- tonight's roster in the feature store -----------------------------------------------------------


def test_feature_store_roster_shares_mia_2023_10_27(built):
    """MIA at BOS, 2023-10-27: 13 players listed and not inactive (Caleb Martin is inactive). Each
    one's last-10 figures are his line of 10-25 (the team's only game; four did not play: NULL, which
    counts as 0). Points of 10-25: Adebayo 22, Martin 2, Smith 2, D. Robinson 15, Jaquez 6, Butler 19,
    Love 13, Lowry 0, Bryant 8, Herro 16 (103, the team's). Minutes: 32:08, 19:31, 8:40, 22:06, 13:11,
    34:28, 27:44, 31:52, 15:51, 34:30 (240:01). Tonight's starters: Adebayo, Butler, Love, Lowry, Herro.

      roster points   = 103 − 2 (Martin) = 101;  starters' = 22 + 19 + 13 + 0 + 16 = 70;  vacated = 103 − 101 = 2
      roster minutes  = 240:01 − 19:31 = 220:30
      Adebayo: points share 22 / 101, projected 103 · 22 / 101; minutes share 32:08 / 220:30, projected 240 · that
    """
    day = D(2023, 10, 27)
    bam = row(built[STORE], day, player_id=BAM)
    assert bam["players_listed"] == 13
    assert (bam["roster_points_last_10"], bam["starters_points_last_10"], bam["team_points_vacated"]) == pytest.approx((101, 70, 2), rel=1e-12)
    assert bam["roster_minutes_last_10"] == pytest.approx(m(220, 30), rel=1e-12)
    assert (bam["points_share_of_roster"], bam["points_projected"]) == pytest.approx((22 / 101, 103 * 22 / 101), rel=1e-12)
    assert (bam["minutes_share_of_roster"], bam["minutes_projected"]) == pytest.approx(
        (m(32, 8) / m(220, 30), 240 * m(32, 8) / m(220, 30)), rel=1e-12
    )
    # Recent scoring scaled by the freed usage: 22 · projected / recent = 22 / (1 − 7 / 110.44).
    assert bam["points_usage_adjusted"] == pytest.approx(22 / (1 - MARTIN_1025_PLAYS / MIA_1025_PLAYS), rel=1e-12)
    every = built[STORE].filter(game_date=day, team_abbr="MIA")
    assert every.height == 13 and every["roster_points_last_10"].unique().to_list() == [bam["roster_points_last_10"]]
    assert every["points_projected"].sum() == pytest.approx(103, rel=1e-12)  # the team's recent scoring, shared out


# -- a player traded mid-season ---------------------------------------------------------------------


def test_form_of_a_player_traded_mid_season_terry_rozier(built):
    """Terry Rozier: 30 games for CHA in 2023-24 (696 points), traded to MIA, first MIA game 2024-01-24.
    His form follows him (his games, whichever team); his share of his team's plays is of his new team.

    points, newest first, before 01-24: 01-22 11, 01-20 19, 01-19 17, 01-17 25, 01-14 26 |
      01-12 16, 01-10 22, 01-08 39, 01-05 15, 01-02 34 (all for CHA); 01-24 at MEM (MIA) 9.
    MIA's 10 games through 01-24 (raw game logs): FGA 839, FTA 220, TOV 139: 839 + 96.8 + 139 = 1074.8
      plays, of which Rozier's 01-24 line used 11 FGA, 2 FTA, 3 TOV: 14.88.
    """
    played = raw_players("2023-24").filter(player_id=ROZIER).filter(pl.col("game_date") < D(2024, 1, 24), pl.col("minutes") > 0)
    assert (played.height, played["pts"].sum(), set(played["team_abbr"])) == (30, 696, {"CHA"})
    mia = raw_teams().filter(team_abbr="MIA", season="2023-24").filter(pl.col("game_date") <= D(2024, 1, 24)).sort("game_date").tail(10)
    assert mia.select(pl.col("fga", "fta", "tov").sum()).row(0) == (839, 220, 139)

    cases = {  # date: team, games, last 3, last 5, last 10, days of rest, team games he played in of the last 10, share
        D(2024, 1, 22): ("CHA", 29, (25 + 17 + 19) / 3, (26 + 25 + 17 + 19 + 16) / 5, None, 1, None, None),
        D(2024, 1, 24): ("MIA", 30, (17 + 19 + 11) / 3, (26 + 25 + 17 + 19 + 11) / 5, (98 + 16 + 22 + 39 + 15 + 34) / 10, 1, 0, 0.0),
        D(2024, 1, 25): ("MIA", 31, (19 + 11 + 9) / 3, (25 + 17 + 19 + 11 + 9) / 5, None, 0, 1, (11 + 0.44 * 2 + 3) / (839 + 0.44 * 220 + 139)),
    }
    for day, (team, games, last3, last5, last10, rest, played_in, share) in cases.items():
        cache = row(built[CACHE], day, player_id=ROZIER)
        context = row(built[CONTEXT], day, player_id=ROZIER)
        assert (cache["team_abbr"], cache["games_played_season"], context["days_rest"]) == (team, games, rest), day
        assert (cache["points_avg_last_3"], cache["points_avg_last_5"]) == pytest.approx((last3, last5), rel=1e-12), day
        if last10 is not None:
            assert cache["points_avg_last_10"] == pytest.approx(last10, rel=1e-12)
            assert cache["points_avg_season"] == pytest.approx(696 / 30, rel=1e-12)
        if share is not None:
            assert context["played_in_last_10_team_games"] == played_in, day
            assert context["plays_share_last_10_team_games"] == pytest.approx(share, rel=1e-12), day
    # The same night his old team lists him no more: of CHA's last 10 games (through 01-22: FGA 883,
    # FTA 173, TOV 133) he used 173 FGA, 47 FTA, 18 TOV, a share that is neither active nor inactive now.
    cha_games = raw_teams().filter(team_abbr="CHA", season="2023-24").filter(pl.col("game_date") < D(2024, 1, 24)).sort("game_date").tail(10)
    his = raw_players("2023-24").filter(player_id=ROZIER).join(cha_games.select("game_date"), on="game_date")
    assert cha_games.select(pl.col("fga", "fta", "tov").sum()).row(0) == (883, 173, 133)
    assert his.select(pl.col("fga", "fta", "tov").sum()).row(0) == (173, 47, 18)
    cha = built[CONTEXT].filter(game_date=D(2024, 1, 24), team_abbr="CHA")
    assert cha.height > 0 and ROZIER not in cha["player_id"].to_list()
    listed = (cha["active_roster_usage_share"] + cha["inactive_teammates_usage_share"]).unique().to_list()
    assert listed == pytest.approx([1 - (173 + 0.44 * 47 + 18) / (883 + 0.44 * 173 + 133)], rel=1e-12)
