"""Phase 4 tables: leak-free windows, season reset, hand-checked numbers, shards equal per-date.

The Phase 2/3 tables are built in memory from the bundled raw files (each table's function fed
its inputs like the runner feeds it), then the Phase 4 tables are built from them with the
inputs sliced by the runner's own ``read_inputs``, over shards of dates (and of teams, for the
tables declared ``split_by_team``), skipping the bootstrap dates (none by default) as the runner
does. No Ray, no warehouse: the whole file runs in seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import RAW_DIR
from pipeline.calendar import Calendar
from pipeline.runner import read_inputs
from pipeline.tables import registry
from pipeline.tables._phase4 import HISTORY, HISTORY_WITH_PREVIOUS_SEASON, previous_season_sums, prior_windows
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, ID_COLUMNS, feature_matrix
from pipeline.warehouse.source import RawSource

TABLES = registry()
PHASE2_3 = [n for n, t in TABLES.items() if t.phase in (2, 3) and n != "nba_raw.quarantine"]
PHASE4 = [n for n, t in TABLES.items() if t.phase == 4]
EXPECTED_PHASE4 = {
    "nba_analytics.upcoming_player_game_context",
    "nba_analytics.upcoming_team_game_context",
    "nba_precompute.player_daily_cache",
    "nba_precompute.player_shot_zone_analysis",
    "nba_precompute.team_defense_zone_analysis",
    "nba_precompute.player_composite_factors",
    "nba_predictions.ml_feature_store",
}
PGS = "nba_analytics.player_game_summary"

ROSTER = "nba_raw.pregame_roster"

# Columns of the Phase 3 tables left alone by the leak test: the rows' identity (and birth dates,
# which the perturbation has no values for). Everything else of the date and later is replaced,
# starters, inactive flags and home/away of player_game_summary included: a date's own pre-game
# facts come from nba_raw.pregame_roster and the schedule, which are left as they are.
PREGAME = {
    PGS: {"game_id", "game_date", "season", "season_type", "player_id", "player_name", "team_abbr", "opponent_abbr", "birth_date"},
    "nba_analytics.team_offense_game_summary": {"game_id", "game_date", "season", "season_type", "team_abbr", "opponent_abbr", "is_home"},
    "nba_analytics.team_defense_game_summary": {"game_id", "game_date", "season", "season_type", "defending_team_abbr",
                                                "opponent_abbr", "is_home"},
}  # fmt: skip


class MemoryWarehouse:
    """Just enough of a warehouse for ``read_inputs``: reads from in-memory frames."""

    def __init__(self, frames: Mapping[str, pl.DataFrame], shuffle_seed: int = 7):
        self.frames = frames
        self.shuffle_seed = shuffle_seed

    def read(self, table, *, start=None, end=None, columns=None, where=None):
        frame = self.frames[table].filter(pl.col("game_date").is_between(start, end))
        for column, value in (where or {}).items():
            frame = frame.filter(pl.col(column).is_in(value) if isinstance(value, list) else pl.col(column) == value)
        # The warehouse promises no row order; make the tables prove they do not depend on it.
        frame = frame.sample(fraction=1.0, shuffle=True, seed=self.shuffle_seed)
        return frame.select(columns) if columns else frame


def phase3_frames(source: RawSource, calendar: Calendar) -> dict[str, pl.DataFrame]:
    frames: dict[str, pl.DataFrame] = {}
    for name in PHASE2_3:
        spec = TABLES[name]
        inputs = {
            i.table: source.read(i.table, calendar.first, calendar.last) if i.is_source else frames[i.table] for i in spec.inputs
        }
        frames[name] = spec.run(list(calendar.dates), inputs, {p: {"on_bad_rows": "fail", "aliases": {}}[p] for p in spec.params})
    return frames


PARAMS = {"prior_games": 10.0}  # phase4.prior_games in conf/config.yaml


def build_phase4(
    frames: Mapping[str, pl.DataFrame],
    calendar: Calendar,
    source: RawSource,
    dates: list[dt.date],
    shard_days: int,
    team_groups: int = 1,
    tables: Mapping[str, object] = TABLES,
    shuffle_seed: int = 7,
) -> dict[str, pl.DataFrame]:
    """The Phase 4 tables for ``dates`` as the runner builds them: bootstrap dates skipped, the
    rest cut into shards of ``shard_days`` dates, each shard's inputs read by ``read_inputs``;
    a ``split_by_team`` table's shards cut again into ``team_groups`` groups of teams, whose rows
    are kept as the runner keeps them (those of the shard's teams)."""
    frames = dict(frames)
    warehouse = MemoryWarehouse(frames, shuffle_seed)
    built = {}
    for name in PHASE4:
        spec = tables[name]
        params = {arg: PARAMS[arg] for arg in spec.params}
        todo = [d for d in dates if not calendar.in_bootstrap(d, spec.bootstrap_days)]
        parts = []
        for shard in (todo[i : i + shard_days] for i in range(0, len(todo), shard_days)):
            teams = sorted({t for d in shard for t in calendar.teams_of[calendar.season_of[d]]})
            groups = [teams[i::team_groups] for i in range(team_groups)] if spec.split_by_team and team_groups > 1 else [None]
            for group in groups:
                rows = spec.run(shard, read_inputs(warehouse, source.files, calendar, spec, shard, group), params)
                parts.append(rows if group is None else rows.filter(pl.col("team_abbr").is_in(group)))
        out = pl.concat(parts) if parts else pl.DataFrame(schema=spec.schema)
        assert out.filter(out.select(spec.key).is_duplicated()).is_empty(), f"{name}: duplicate keys"
        assert set(out["game_date"].unique()) <= set(todo), f"{name}: rows outside the dates asked for"
        frames[name] = built[name] = out.sort(*spec.key)
    return built


@pytest.fixture(scope="module")
def phase3(source, calendar) -> dict[str, pl.DataFrame]:
    return phase3_frames(source, calendar)


@pytest.fixture(scope="module")
def phase4(phase3, calendar, source) -> dict[str, pl.DataFrame]:
    """Every Phase 4 table over the full history, default shard size."""
    return build_phase4(phase3, calendar, source, list(calendar.dates), 64)


def raw_players(season: str) -> pl.DataFrame:
    return pl.read_parquet(RAW_DIR / f"player_boxscores_{season}.parquet")


# -- declarations ---------------------------------------------------------------------------------


def test_phase4_tables_read_history_before_the_date_and_take_the_bootstrap_window_from_the_config():
    assert set(PHASE4) == EXPECTED_PHASE4
    for name in PHASE4:
        spec = TABLES[name]
        assert spec.bootstrap_days == 0, name  # phase4.bootstrap_days defaults to 0
        assert registry(14)[name].bootstrap_days == 14, name
        assert spec.key in (("game_date", "player_id"), ("game_date", "team_abbr")), name
        for inp in spec.inputs:
            # Phase 3 history is read season to date (and the season before), strictly before the
            # date; same-date Phase 4 / roster / schedule rows only.
            assert inp.lookback in (HISTORY, HISTORY_WITH_PREVIOUS_SEASON) or inp.lookback.days == 0, (name, inp.table)
            assert (inp.lookback.days == 0 and not inp.lookback.season_to_date) or TABLES[inp.table].phase == 3, (name, inp.table)
    assert all(registry(14)[n].bootstrap_days == 0 for n in TABLES if TABLES[n].phase < 4)
    with pytest.raises(ValueError, match="bootstrap_days"):
        registry(-1)


def test_every_season_has_rows_from_its_opener_on_every_game_date(phase4, calendar):
    openers = dict(calendar.opener_of)
    assert openers == {"2022-23": dt.date(2022, 10, 18), "2023-24": dt.date(2023, 10, 24), "2024-25": dt.date(2024, 10, 22)}
    for name, frame in phase4.items():
        first_dates = dict(frame.group_by("season").agg(pl.col("game_date").min()).iter_rows())
        assert first_dates == openers, name
        assert set(frame["game_date"].unique()) == set(calendar.dates), name


def test_a_bootstrap_window_when_asked_for_leaves_its_dates_out(phase3, calendar, source):
    # phase4.bootstrap_days=14: no rows on the first 14 days of a season (the old system's rule).
    dates = calendar.between(dt.date(2023, 10, 20), dt.date(2023, 11, 10))
    built = build_phase4(phase3, calendar, source, dates, 64, tables=registry(14))
    for name, frame in built.items():
        assert set(frame["game_date"].unique()) == {d for d in dates if (d - dt.date(2023, 10, 24)).days >= 14}, name
        assert frame["game_date"].min() == dt.date(2023, 11, 8), name  # 2023-11-07, day 14, had no games


# -- the as-of window helper --------------------------------------------------------------------------


def test_prior_windows_use_only_earlier_games_of_the_same_season():
    d = dt.date
    log = pl.DataFrame(
        {
            "player_id": [1, 1, 1, 1, 1],
            "season": ["A", "B", "B", "B", "B"],
            "game_date": [d(2023, 4, 1), d(2023, 10, 25), d(2023, 10, 27), d(2023, 10, 28), d(2023, 11, 1)],
            "pts": [50, 10, 20, 30, 40],
        }
    )
    targets = pl.DataFrame(
        {
            "player_id": [1, 1, 1, 1],
            "season": ["B", "B", "B", "B"],
            "game_date": [d(2023, 10, 25), d(2023, 10, 28), d(2023, 11, 1), d(2023, 11, 3)],
        }
    )
    out = prior_windows(targets, log, by=["player_id"], values=["pts"], last_n=(2,), days=(3,)).sort("game_date")
    # 10-25: the season's first game: nothing before it (last season's 50 does not count).
    # 10-28: games of 10-25 and 10-27 (its own 30 is excluded); last 2 = 10 + 20; 3 days (10-25..10-27) = both.
    # 11-01: 10, 20, 30 before; last 2 = 20 + 30; 3 days (10-29..10-31): none.
    # 11-03: all four; last 2 = 30 + 40; 3 days (10-31..11-02): 40.
    assert out["games_season"].to_list() == [0, 2, 3, 4]
    assert out["pts_season"].to_list() == [0, 30, 60, 100]
    assert out["pts_last2"].to_list() == [0, 30, 50, 70]
    assert out["games_last2"].to_list() == [0, 2, 2, 2]
    assert out["pts_3d"].to_list() == [0, 30, 0, 40]
    assert out["last_game_date"].to_list() == [None, d(2023, 10, 27), d(2023, 10, 28), d(2023, 11, 1)]


# -- leaks ------------------------------------------------------------------------------------------------


def perturb(frames: Mapping[str, pl.DataFrame], day: dt.date, seed: int = 11, until: dt.date | None = None) -> dict[str, pl.DataFrame]:
    """Every column but the rows' identity (stats, minutes, plus-minus, DNP and inactive flags,
    starters, rates, team totals...) replaced by random values on ``day`` and after (up to
    ``until``, when given); the pregame roster (players listed, starters, inactive list,
    home/away, opponent) and the schedule left as they are."""
    rng = np.random.default_rng(seed)
    out = dict(frames)
    for name, keep in PREGAME.items():
        frame = frames[name]
        n = frame.height
        later = (pl.col("game_date") >= day) & (pl.col("game_date") <= (until or dt.date.max))
        replaced = []
        for column, dtype in frame.schema.items():
            if column in keep:
                continue
            if dtype == pl.Boolean:
                values = pl.Series(rng.random(n) < 0.5)
            elif dtype.is_integer():
                values = pl.Series(rng.integers(0, 40, n)).cast(dtype)
            elif dtype.is_float():
                values = pl.Series(np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 60.0)).fill_nan(None)
            elif dtype == pl.String:
                values = pl.Series(rng.choice(["coach_decision", "injury_illness", "other"], n))
            else:
                raise AssertionError(f"no perturbation for {name}.{column} ({dtype})")
            replaced.append(pl.when(later).then(pl.lit(values)).otherwise(pl.col(column)).cast(dtype).alias(column))
        out[name] = frame.with_columns(replaced)
        changed = out[name].filter(later).select(c for c in frame.columns if c not in keep)
        assert not changed.equals(frame.filter(later).select(changed.columns)), name
    return out


# Mid-season; the first day of the 2023 playoffs; the 2023-24 opener (the shard holds the end of
# 2022-23 too); the fourth day of 2024-25 (its first games are in the history).
LEAK_DATES = [dt.date(2024, 1, 6), dt.date(2023, 4, 15), dt.date(2023, 10, 24), dt.date(2024, 10, 25)]


@pytest.fixture(scope="module", params=LEAK_DATES, ids=str)
def leak_case(request, phase3, calendar, source):
    day = request.param
    # A shard of game dates around the day, so later (perturbed) dates sit in the same frames.
    index = calendar.dates.index(day)
    dates = list(calendar.dates[max(0, index - 30) : index + 30])
    original = build_phase4(phase3, calendar, source, dates, 64)
    changed = build_phase4(perturb(phase3, day), calendar, source, dates, 64)
    return day, original, changed


@pytest.mark.parametrize("name", sorted(EXPECTED_PHASE4))
def test_results_of_the_day_and_later_do_not_change_the_rows_of_the_day(leak_case, name):
    day, original, changed = leak_case
    before = original[name].filter(pl.col("game_date") <= day)
    after = changed[name].filter(pl.col("game_date") <= day)
    assert before.filter(pl.col("game_date") == day).height > 0
    assert_frame_equal(after, before)


def test_the_perturbation_does_reach_the_next_dates(leak_case):
    # Guard against a test that passes because nothing changed: rows after the day do move.
    day, original, changed = leak_case
    for name in ("nba_precompute.player_daily_cache", "nba_predictions.ml_feature_store"):
        later_before = original[name].filter(pl.col("game_date") > day)
        later_after = changed[name].filter(pl.col("game_date") > day)
        assert not later_after.equals(later_before), name


def test_previous_season_figures_come_only_from_the_previous_season(phase3, calendar, source):
    # Every result of 2022-23 scrambled: the first weeks of 2024-25 (whose previous season is
    # 2023-24) do not move, and those of 2023-24 (whose previous season it is) do.
    scrambled = perturb(phase3, dt.date(2022, 10, 1), until=dt.date(2023, 6, 30))
    for opening in (calendar.between(dt.date(2024, 10, 22), dt.date(2024, 11, 5)), calendar.between(dt.date(2023, 10, 24), dt.date(2023, 11, 7))):
        original = build_phase4(phase3, calendar, source, opening, 64)
        changed = build_phase4(scrambled, calendar, source, opening, 64)
        moved = {name for name in PHASE4 if not changed[name].equals(original[name])}
        if opening[0].year == 2024:
            assert moved == set(), moved
        else:
            assert {"nba_precompute.player_daily_cache", "nba_analytics.upcoming_team_game_context", "nba_predictions.ml_feature_store"} <= moved
            # ... through the previous-season and blended figures only.
            cache = "nba_precompute.player_daily_cache"
            prev = [c for c in original[cache].columns if c.endswith(("_prev_season", "_blended")) or c == "points_vs_prev_season"]
            assert_frame_equal(changed[cache].drop(prev), original[cache].drop(prev))


def test_previous_season_sums_never_read_the_targets_own_season():
    d = dt.date
    log = pl.DataFrame(
        {
            "player_id": [1, 1, 1, 2],
            "season": ["2021-22", "2022-23", "2023-24", "2022-23"],
            "game_date": [d(2022, 3, 1), d(2023, 3, 1), d(2023, 11, 1), d(2023, 3, 2)],
            "pts": [99, 20, 40, 7],
        }
    )
    targets = pl.DataFrame({"player_id": [1, 1, 3], "season": ["2023-24", "2022-23", "2023-24"], "game_date": [d(2023, 11, 5)] * 2 + [d(2023, 11, 5)]})
    out = previous_season_sums(targets, log, by=["player_id"], values=["pts"])
    # 2023-24 sees 2022-23's 20 (not its own 40, not 2021-22's 99); 2022-23 sees 2021-22's 99; a rookie nothing.
    assert out["pts_prev_season"].to_list() == [20.0, 99.0, None]
    assert out["games_prev_season"].to_list() == [1.0, 1.0, 0.0]


def test_row_set_is_the_listed_players_who_are_not_inactive(phase3, phase4):
    day = dt.date(2024, 1, 6)
    listed = phase3[PGS].filter(game_date=day)
    expected = set(listed.filter(~pl.col("is_inactive"))["player_id"])
    assert listed.filter(pl.col("is_inactive")).height > 0  # the date has inactive players to leave out
    coach_dnp = set(listed.filter(pl.col("dnp_reason_category") == "coach_decision")["player_id"])
    assert coach_dnp and coach_dnp <= expected  # dressed but did not play: still a row
    for name in PHASE4:
        if "player_id" in TABLES[name].key:
            assert set(phase4[name].filter(game_date=day)["player_id"]) == expected, name


# -- season reset and hand-checked numbers ---------------------------------------------------------------


def test_first_game_of_a_season_has_no_season_average_and_last_seasons_instead(phase4):
    # Ja Morant played 61 regular-season and 5 playoff games in 2022-23 (1,719 points: 26.05 a
    # game) and was suspended for the start of 2023-24 (listed NWT, so no rows, but for one
    # "DNP - League Suspension" on 2023-10-28); his first 2023-24 game was 2023-12-19.
    cache = phase4["nba_precompute.player_daily_cache"].filter(player_name="Ja Morant", season="2023-24").sort("game_date")
    assert cache["game_date"].head(2).to_list() == [dt.date(2023, 10, 28), dt.date(2023, 12, 19)]
    cache = cache.filter(pl.col("game_date") >= dt.date(2023, 12, 19))
    first = cache.row(0, named=True)
    assert first["game_date"] == dt.date(2023, 12, 19)
    assert first["games_played_prev_season"] == 66 and first["points_avg_prev_season"] == pytest.approx(1719 / 66)
    assert first["points_avg_blended"] == pytest.approx(1719 / 66)  # nothing of this season yet: last season's
    assert first["points_vs_prev_season"] is None
    assert first["games_played_season"] == 0
    assert first["points_avg_season"] is None
    assert first["points_avg_last_5"] is None and first["points_avg_last_10"] is None
    assert first["minutes_avg_season"] is None
    context = phase4["nba_analytics.upcoming_player_game_context"].filter(player_name="Ja Morant", game_date=dt.date(2023, 12, 19))
    assert context["days_rest"].to_list() == [None] and context["back_to_back"].to_list() == [False]
    assert "no game played this season" in context["context_notes"][0]
    composite = phase4["nba_precompute.player_composite_factors"].filter(player_name="Ja Morant", game_date=dt.date(2023, 12, 19))
    assert composite["fatigue_score"].to_list() == [None] and composite["fatigue_reason"][0].startswith("no game played")
    # His second game: the average is the 34 points of his first game alone.
    second = cache.row(1, named=True)
    assert second["game_date"] == dt.date(2023, 12, 21)
    assert second["games_played_season"] == 1 and second["points_avg_season"] == 34.0
    # Blended with 10 games of last season's average (phase4.prior_games): (34 + 10 · 26.05) / 11.
    assert second["points_avg_blended"] == pytest.approx((34 + 10 * 1719 / 66) / 11)
    assert second["points_vs_prev_season"] == pytest.approx(34 - 1719 / 66)
    # A rookie of 2023-24 (Victor Wembanyama) has no previous season: NULL, and blended = this season's.
    rookie = phase4["nba_precompute.player_daily_cache"].filter(player_name="Victor Wembanyama").sort("game_date")
    assert rookie["games_played_prev_season"].head(1).to_list() == [0] and rookie["points_avg_prev_season"].null_count() == rookie.filter(season="2023-24").height
    later = rookie.filter(pl.col("games_played_season") > 0, season="2023-24")
    assert later["points_avg_blended"].to_list() == later["points_avg_season"].to_list()


def test_season_figures_never_reach_into_the_previous_season(phase4, calendar):
    context = phase4["nba_analytics.upcoming_player_game_context"]
    openers = pl.DataFrame({"season": list(calendar.opener_of), "opener": list(calendar.opener_of.values())})
    checked = context.join(openers, on="season")
    assert checked.filter(pl.col("last_game_date") < pl.col("opener")).is_empty()
    # No more games than there were game dates since the opener (a traded player may have
    # played more games than his new team, so the team's count is no bound).
    dates_before = pl.DataFrame(
        {"game_date": list(calendar.dates), "dates_since_opener": [len(calendar.between(calendar.opener(d), d)) - 1 for d in calendar.dates]}
    )
    checked = checked.join(dates_before, on="game_date")
    assert checked.filter(pl.col("games_played_season") > pl.col("dates_since_opener")).is_empty()


def test_hand_checked_jayson_tatum_2024_01_06(phase4):
    """Jayson Tatum (BOS) before BOS @ IND (0022300493) on 2024-01-06, second night of a back-to-back.

    His 2023-24 games before it, newest first (2023-12-29 was "DND - Injury/Illness", no minutes,
    so it is not a game played and is skipped):
      01-05 30, 01-02 30, 12-31 25, 12-28 31, 12-25 25 | 12-23 30, 12-19 15, 12-17 23, 12-15 30, 12-14 27
    last 5  = (30+30+25+31+25)/5 = 141/5 = 28.2
    last 10 = (141 + 30+15+23+30+27)/10 = 266/10 = 26.6
    days of rest: last game 01-05, so 0; back-to-back: yes
    games in the last 7 days (12-30 .. 01-05): 12-31, 01-02, 01-05 = 3, minutes 30:50 + 37:36 + 24:38 = 93:04
    games in the last 14 days (12-23 .. 01-05): 12-23, 12-25, 12-28, 12-31, 01-02, 01-05 = 6
    """
    day = dt.date(2024, 1, 6)
    raw = raw_players("2023-24").filter(player_name="Jayson Tatum")
    player_id = raw["player_id"][0]
    played = raw.filter(~pl.col("did_not_play") & (pl.col("minutes") > 0) & (pl.col("game_date") < day)).sort(
        "game_date", descending=True
    )
    expected = {
        "points_avg_last_5": played["pts"].head(5).cast(pl.Float64).mean(),
        "points_avg_last_10": played["pts"].head(10).cast(pl.Float64).mean(),
        "days_rest": (day - played["game_date"][0]).days - 1,
        "games_last_7d": played.filter(pl.col("game_date") >= day - dt.timedelta(days=7)).height,
        "games_last_14d": played.filter(pl.col("game_date") >= day - dt.timedelta(days=14)).height,
        "minutes_last_7d": played.filter(pl.col("game_date") >= day - dt.timedelta(days=7))["minutes"].sum(),
    }
    by_hand = {"points_avg_last_5": 28.2, "points_avg_last_10": 26.6, "days_rest": 0, "games_last_7d": 3, "games_last_14d": 6,
               "minutes_last_7d": 93 + 4 / 60}  # fmt: skip
    assert expected == pytest.approx(by_hand)

    cache = phase4["nba_precompute.player_daily_cache"].filter(game_date=day, player_id=player_id).row(0, named=True)
    context = phase4["nba_analytics.upcoming_player_game_context"].filter(game_date=day, player_id=player_id).row(0, named=True)
    assert cache["points_avg_last_5"] == pytest.approx(by_hand["points_avg_last_5"])
    assert cache["points_avg_last_10"] == pytest.approx(by_hand["points_avg_last_10"])
    assert context["days_rest"] == by_hand["days_rest"]
    assert context["back_to_back"] is True
    assert context["games_last_7d"] == by_hand["games_last_7d"]
    assert context["games_last_14d"] == by_hand["games_last_14d"]
    assert context["minutes_last_7d"] == pytest.approx(by_hand["minutes_last_7d"])
    assert (context["team_abbr"], context["opponent_abbr"], context["is_home"], context["starter"]) == ("BOS", "IND", False, True)
    team = phase4["nba_analytics.upcoming_team_game_context"].filter(game_date=day, team_abbr="BOS").row(0, named=True)
    assert team["days_rest"] == 0 and team["back_to_back"] is True
    features = phase4["nba_predictions.ml_feature_store"].filter(game_date=day, player_id=player_id).row(0, named=True)
    assert features["points_avg_last_10"] == pytest.approx(26.6) and features["back_to_back"] is True


def test_team_pace_matches_the_summed_possessions(phase3, phase4):
    # BOS before 2024-01-06: pace over its last 10 games = Σ possessions · 48 / Σ(team minutes / 5).
    day = dt.date(2024, 1, 6)
    games = (
        phase3["nba_analytics.team_offense_game_summary"]
        .filter(team_abbr="BOS", season="2023-24")
        .filter(pl.col("game_date") < day)
        .sort("game_date", descending=True)
        .head(10)
    )
    expected = games["possessions"].sum() * 48.0 / (games["team_minutes"].cast(pl.Float64).sum() / 5.0)
    row = phase4["nba_analytics.upcoming_team_game_context"].filter(game_date=day, team_abbr="BOS").row(0, named=True)
    assert row["pace_last_10"] == pytest.approx(expected)
    assert 90 < row["pace_last_10"] < 110
    # Every 2022-23 game of BOS (playoffs included) makes its previous-season pace; on its first
    # 2023-24 game that is its blended pace too, and 10 games' worth of it after one game.
    last_season = phase3["nba_analytics.team_offense_game_summary"].filter(team_abbr="BOS", season="2022-23")
    possessions, minutes, games = last_season["possessions"].sum(), last_season["team_minutes"].cast(pl.Float64).sum(), last_season.height
    first_two = phase4["nba_analytics.upcoming_team_game_context"].filter(team_abbr="BOS", season="2023-24").sort("game_date").head(2)
    opener, second = first_two.row(0, named=True), first_two.row(1, named=True)
    assert opener["team_games_season"] == 0 and opener["pace_last_10"] is None
    assert opener["pace_prev_season"] == pytest.approx(possessions * 48.0 / (minutes / 5.0)) == opener["pace_blended"]
    game = phase3["nba_analytics.team_offense_game_summary"].filter(team_abbr="BOS", game_date=opener["game_date"]).row(0, named=True)
    blended = (game["possessions"] + 10 * possessions / games) * 48.0 / ((game["team_minutes"] + 10 * minutes / games) / 5.0)
    assert second["pace_blended"] == pytest.approx(blended)


# -- composite factors and the feature store ------------------------------------------------------------------


@pytest.mark.parametrize("factor", ["fatigue", "shot_zone_mismatch", "pace", "usage_spike"])
def test_a_zero_or_null_factor_always_states_its_reason(phase4, factor):
    frame = phase4["nba_precompute.player_composite_factors"]
    score = pl.col(f"{factor}_score")
    unexplained = frame.filter((score.is_null() | (score == 0)) & pl.col(f"{factor}_reason").is_null())
    assert unexplained.is_empty(), unexplained.head(3)
    # Most rows have an ordinary value.
    assert frame.filter(score.is_not_null()).height > 0.95 * frame.height


def test_pace_states_why_it_is_null_or_zero():
    """Each case built by hand (the bundled data has a NULL pace only on a team's first game of
    a season, and no zero pace)."""
    from pipeline.tables.player_composite_factors import pace

    score, reason = pace()
    frame = pl.DataFrame({"pace_last_10": [None, 100.0, 99.0, 98.0], "opponent_pace_last_10": [101.0, None, 99.0, 102.0]})
    out = frame.select(score=score, reason=reason)
    assert out["score"].to_list() == [None, None, 0.0, 2.0]
    assert out["reason"].to_list() == [
        "team has no game this season before this date",
        "opponent has no game this season before this date",
        "team and opponent have the same pace over their last 10 games",
        None,
    ]


def test_usage_spike_comes_from_inactive_teammates(phase4):
    context = phase4["nba_analytics.upcoming_player_game_context"]
    per_team = context.group_by("game_id", "team_abbr").agg(
        pl.col("inactive_teammates_usage_share").first() + pl.col("active_roster_usage_share").first()
    )
    assert per_team["inactive_teammates_usage_share"].max() <= 1.0 + 1e-9
    joined = phase4["nba_precompute.player_composite_factors"].join(
        context.select("game_date", "player_id", "inactive_teammates", "inactive_teammates_usage_share"), on=["game_date", "player_id"]
    )
    spikes = joined.filter(pl.col("usage_spike_score") > 0)
    assert spikes.height > 1000
    assert spikes.filter((pl.col("inactive_teammates") == 0) | (pl.col("inactive_teammates_usage_share") == 0)).is_empty()
    assert joined.filter(pl.col("inactive_teammates") == 0)["usage_spike_score"].drop_nulls().unique().to_list() == [0.0]


def test_feature_store_contract(phase4):
    store = phase4["nba_predictions.ml_feature_store"]
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    assert set(ID_COLUMNS) >= {"game_id", "game_date", "season", "player_id", "player_name", "team_abbr", "opponent_abbr"}
    assert not set(ID_COLUMNS) & set(FEATURE_COLUMNS)
    assert set(ID_COLUMNS) | set(FEATURE_COLUMNS) <= set(store.columns)
    # The target stays out: no actual points, minutes or box-score line of the game itself.
    for banned in ("pts", "points", "actual_points", "minutes", "fgm", "plus_minus", "did_not_play"):
        assert banned not in store.columns
    # The baseline models need these.
    for needed in ("points_avg_last_5", "points_avg_last_10", "points_avg_season", "fatigue_score", "shot_zone_mismatch_score",
                   "pace_score", "usage_spike_score", "back_to_back", "is_home", "days_rest", "rest_advantage",
                   "games_last_7d", "starter", "projected_usage"):  # fmt: skip
        assert needed in FEATURE_COLUMNS, needed
    matrix = feature_matrix(store)
    assert matrix.shape == (store.height, len(FEATURE_COLUMNS)) and matrix.dtype == np.float64
    assert store.height == phase4["nba_analytics.upcoming_player_game_context"].height
    # Every row has the core form features once the player has played this season.
    experienced = store.filter(pl.col("games_played_season") >= 1)
    assert experienced["points_avg_last_5"].null_count() == 0 and experienced["fatigue_score"].null_count() == 0


# -- shards --------------------------------------------------------------------------------------------------


def test_rows_are_the_same_to_the_last_bit_whatever_order_the_warehouse_returns(phase3, calendar, source):
    # Prediction fingerprints hash the feature values: a float summed in another row order (the
    # warehouse promises none) would change them. The opening weeks of 2023-24 read all of 2022-23.
    dates = calendar.between(dt.date(2023, 10, 24), dt.date(2023, 11, 3))
    one, other = (build_phase4(phase3, calendar, source, dates, 64, shuffle_seed=seed) for seed in (7, 8))
    for name in PHASE4:
        assert_frame_equal(one[name], other[name], check_exact=True)


def test_sharded_output_equals_per_date_output(phase3, calendar, source):
    # End of 2022-23 (finals) and the start of 2023-24 from its opener: a 64-date shard spans
    # both seasons, and the per-date frames hold only each date's own lookback (its season to
    # date, and the season before for the previous-season figures).
    dates = calendar.between(dt.date(2023, 6, 1), dt.date(2023, 12, 10))
    sharded = build_phase4(phase3, calendar, source, dates, 64)
    per_date = build_phase4(phase3, calendar, source, dates, 1)
    weekly = build_phase4(phase3, calendar, source, dates, 7)
    # The player tables built in four groups of teams (every fourth team, so each group holds
    # teams of both conferences and traded players' old and new teams often fall apart).
    by_team = build_phase4(phase3, calendar, source, dates, 64, team_groups=4)
    for name in PHASE4:
        assert sharded[name].height > 0
        assert dt.date(2023, 6, 12) in set(sharded[name]["game_date"]), name
        assert_frame_equal(per_date[name], sharded[name])
        assert_frame_equal(weekly[name], sharded[name])
        assert_frame_equal(by_team[name], sharded[name])
    assert {n for n in PHASE4 if TABLES[n].split_by_team} == {
        "nba_analytics.upcoming_player_game_context", "nba_precompute.player_daily_cache", "nba_precompute.player_shot_zone_analysis",
    }  # fmt: skip
