"""Prop lines in: a hand-made lines folder with every trap of the feeds, read from real files
(``pipeline/warehouse/source/``), matched by ``nba_raw.prop_lines`` against hand-made rosters,
and turned into the line of each player-game (``training/lines.py``), from a real DuckDB file.

The traps, each with the status the module docstring of ``pipeline/tables/prop_lines.py``
documents: accents (``Schroder`` for ``Schröder``), ``Jr`` and ``Jr.``, a nickname (``Herb`` for
``Herbert``, through ``lines.aliases``), a player on two teams' rosters across a trade, a player
listed but not dressed, a player not listed at all, two players whose names normalise alike, a
duplicate row, lines with capture times (an earlier one, a later one, one after tip-off),
different lines of one book without capture times, a game that does not exist, a file of one row
per line with only the tip-off time (its game date is the US Eastern date of the tip-off), and
bad rows (refused naming the file and row, or quarantined).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import RAW_DIR
from pipeline.tables._raw import RawDataError
from pipeline.tables.pregame_roster import SCHEMA as ROSTER_SCHEMA
from pipeline.tables.pregame_roster import pregame_roster
from pipeline.tables.prop_lines import ROSTER_COLUMNS, prop_lines
from pipeline.tables.quarantine import quarantine
from pipeline.warehouse import PartitionWrite
from pipeline.warehouse.duckdb import DuckDBWarehouse
from pipeline.warehouse.source import RawSource
from training.lines import consensus_lines, read_lines

D1, D2 = dt.date(2025, 1, 9), dt.date(2025, 1, 11)
ALIASES = {"Herb Jones": "Herbert Jones"}
UTC = dt.timezone.utc

# game_id, date, team, opponent, is_home, players (id, name[, inactive])
GAMES = [
    ("G1", D1, "BKN", "MIL", False, [(203471, "Dennis Schröder"), (1001, "Marcus Morris")]),
    ("G1", D1, "MIL", "BKN", True, [(203507, "Giannis Antetokounmpo"), (1002, "Marcus Morris Sr.")]),
    ("G2", D1, "DEN", "NOP", True, [(203999, "Nikola Jokić")]),
    ("G2", D1, "NOP", "DEN", False, [(1630529, "Herbert Jones"), (1630530, "Trey Murphy III"), (1629627, "Zion Williamson", True)]),
    # Two days later Schröder has been traded to Golden State; Brooklyn plays Toronto without him.
    ("G3", D2, "GSW", "MEM", True, [(203471, "Dennis Schröder")]),
    ("G3", D2, "MEM", "GSW", False, [(1628991, "Jaren Jackson Jr.")]),
    ("G4", D2, "BKN", "TOR", False, [(1629661, "Cam Johnson")]),
    ("G4", D2, "TOR", "BKN", True, [(1630567, "Scottie Barnes")]),
]


def roster() -> pl.DataFrame:
    """``nba_raw.pregame_roster`` rows of the hand-made games (Zion listed inactive: did not dress)."""
    rows = [
        {"game_id": g, "game_date": d, "team_abbr": t, "opponent_abbr": o, "is_home": home, "player_id": p[0], "player_name": p[1],
         "status": "inactive" if len(p) > 2 else "active", "is_inactive": len(p) > 2, "source": "boxscores"}
        for g, d, t, o, home, players in GAMES for p in players
    ]  # fmt: skip
    return pl.DataFrame(rows).with_columns(pl.lit(None).alias(c) for c in ROSTER_SCHEMA if c not in rows[0]).select(
        pl.col(c).cast(t) for c, t in ROSTER_SCHEMA.items()
    )


def tip(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


G1_TIP = tip(D1 + dt.timedelta(days=1), 0)  # 7 pm Eastern on D1
G2_TIP = tip(D1 + dt.timedelta(days=1), 2)  # 9 pm Eastern on D1
G3_TIP = tip(D2 + dt.timedelta(days=1), 1)
G4_TIP = tip(D2, 23)

# One row per side (Over, Under), as the bundled file: what each line is and what becomes of it.
# (name, date, home, away, tip-off, bookmaker, line, captured_at, expected status)
SIDE_LINES = [
    ("Dennis Schroder", D1, "Milwaukee Bucks", "Brooklyn Nets", G1_TIP, "BookA", 16.5, None, "used"),  # 1-2: accents
    ("Dennis Schroder", D2, "Golden State Warriors", "Memphis Grizzlies", G3_TIP, "BookA", 13.5, None, "used"),  # 3-4: his new team
    ("Dennis Schroder", D2, "Toronto Raptors", "Brooklyn Nets", G4_TIP, "BookA", 14.5, None, "no_player"),  # 5-6: his old team's game
    ("Nikola Jokic", D1, "DEN", "NOP", G2_TIP, "BookA", 29.5, tip(D1, 15), "superseded"),  # 7-8: captured earlier
    ("Nikola Jokic", D1, "DEN", "NOP", G2_TIP, "BookA", 30.5, tip(D1, 22), "used"),  # 9-10: the latest before tip-off
    ("Nikola Jokic", D1, "DEN", "NOP", G2_TIP, "BookA", 33.5, G2_TIP + dt.timedelta(minutes=30), "after_tipoff"),  # 11-12
    ("Nikola Jokić", D1, "Denver Nuggets", "New Orleans Pelicans", G2_TIP, "BookB", 31.5, None, "used"),  # 13-14
    ("Herb Jones", D1, "DEN", "NOP", G2_TIP, "BookA", 11.5, None, "used"),  # 15-16: a nickname (lines.aliases)
    ("Zion Williamson", D1, "DEN", "NOP", G2_TIP, "BookA", 22.5, None, "used"),  # 17-18: listed, did not dress
    ("Brandon Ingram", D1, "DEN", "NOP", G2_TIP, "BookA", 20.5, None, "no_player"),  # 19-20: not listed at all
    ("Marcus Morris", D1, "MIL", "BKN", G1_TIP, "BookA", 8.5, None, "ambiguous_player"),  # 21-22: two names alike
    ("Herb Jones", D1, "DEN", "NOP", G2_TIP, "BookA", 11.5, None, "duplicate"),  # 23-24: rows 15-16 again
    ("Trey Murphy", D1, "DEN", "NOP", G2_TIP, "BookB", 18.5, None, "used"),  # 25-26: III dropped; two lines,
    ("Trey Murphy III", D1, "DEN", "NOP", G2_TIP, "BookB", 19.5, None, "used"),  # 27-28: no capture times
    ("Giannis Antetokounmpo", D1, "Boston Celtics", "Brooklyn Nets", G1_TIP, "BookA", 30.5, None, "no_game"),  # 29-30
    # 31-36: BookC's lines, two captured and one not: which was latest is not known, so all are used.
    ("Herbert Jones", D1, "DEN", "NOP", G2_TIP, "BookC", 10.5, tip(D1, 16), "used"),
    ("Herbert Jones", D1, "DEN", "NOP", G2_TIP, "BookC", 11.0, tip(D1, 18), "used"),
    ("Herbert Jones", D1, "DEN", "NOP", G2_TIP, "BookC", 13.5, None, "used"),
]

# One row per line, tip-off time only (no game_date): 01:00 UTC on Jan 12 is the evening of Jan 11 in New York.
LINE_ROWS = [
    ("Jaren Jackson Jr", "Memphis Grizzlies", "GSW", "2025-01-12T01:00:00Z", "BookC", 21.5, "-115", "-105", "used"),
    ("Jaren Jackson Jr.", "Memphis Grizzlies", "GSW", "2025-01-12T01:00:00Z", "BookD", 22.5, "", "", "used"),
]


def write_side_file(path: Path) -> Path:
    rows = []
    for name, day, home, away, tipoff, book, line, captured, _ in SIDE_LINES:
        for side in ("Over", "Under"):
            rows.append(
                {"game_date": day, "commence_time": tipoff, "player_name": name, "bookmaker": book, "side": side, "line": line,
                 "price": -137, "home_team": home, "away_team": away, "captured_at": captured}
            )  # fmt: skip
    pl.DataFrame(rows, schema_overrides={"captured_at": pl.Datetime("us", "UTC"), "commence_time": pl.Datetime("us", "UTC")}).write_parquet(path)
    return path


def write_line_file(path: Path, rows=LINE_ROWS) -> Path:
    header = "player_name,home_team,away_team,commence_time,bookmaker,line,over_price,under_price\n"
    path.write_text(header + "".join(",".join(str(v) for v in row[:-1]) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lines")
    write_side_file(folder / "sides.parquet")
    write_line_file(folder / "lines.csv")
    (folder / "README.md").write_text("not a lines file: only *.parquet and *.csv are read\n")
    return folder


def read_source(lines_dir: Path) -> pl.DataFrame:
    return RawSource(RAW_DIR, lines_dir=lines_dir).read("source.lines", D1, D2)


def build(lines: pl.DataFrame, on_bad_rows: str = "fail") -> pl.DataFrame:
    frames = {"source.lines": lines, "nba_raw.pregame_roster": roster().select(ROSTER_COLUMNS)}
    return prop_lines.run([D1, D2], frames, {"aliases": ALIASES, "on_bad_rows": on_bad_rows})


@pytest.fixture(scope="module")
def matched(lines_dir) -> pl.DataFrame:
    return build(read_source(lines_dir))


def test_every_row_is_read_and_the_tipoff_gives_the_game_date(lines_dir):
    lines = read_source(lines_dir)
    assert lines.height == 2 * len(SIDE_LINES) + len(LINE_ROWS)
    from_csv = lines.filter(pl.col("source_file").str.ends_with("lines.csv"))
    assert from_csv["game_date"].to_list() == [D2, D2]  # derived: 20:00 Eastern on Jan 11
    assert from_csv["commence_time"].to_list() == [dt.datetime(2025, 1, 12, 1)] * 2  # naive UTC
    assert from_csv["over_price"].to_list() == [-115.0, None]
    from_parquet = lines.filter(pl.col("source_file").str.ends_with("sides.parquet")).sort("source_row")
    assert from_parquet["captured_at"][6] == dt.datetime(2025, 1, 9, 15)  # tz-aware UTC in the file, naive UTC here


def test_each_trap_gets_its_documented_status(matched):
    sides = matched.filter(pl.col("source_file").str.ends_with("sides.parquet")).sort("source_row")
    expected = [status for *_, status in SIDE_LINES for _ in ("Over", "Under")]
    assert sides["status"].to_list() == expected
    csv = matched.filter(pl.col("source_file").str.ends_with("lines.csv"))
    assert csv["status"].to_list() == ["used", "used"]
    assert csv["player_id"].to_list() == [1628991, 1628991]
    assert csv["game_id"].to_list() == ["G3", "G3"]

    def row(n: int) -> dict:
        return sides.row(n - 1, named=True)

    # Accents, the trade: the player and game of each date's own rosters.
    assert (row(1)["game_id"], row(1)["player_id"], row(1)["team_abbr"]) == ("G1", 203471, "BKN")
    assert (row(3)["game_id"], row(3)["player_id"], row(3)["team_abbr"]) == ("G3", 203471, "GSW")
    # Never by name across games: on D2 Brooklyn's game does not have him, whatever GSW's has.
    assert (row(5)["game_id"], row(5)["player_id"]) == ("G4", None)
    assert "'Dennis Schroder' is not on the rosters of TOR vs BKN on 2025-01-11" in row(5)["reason"]
    assert row(15)["player_id"] == 1630529 and row(15)["player_name"] == "Herb Jones"  # the alias; the feed's spelling kept
    assert row(17)["player_id"] == 1629627  # listed inactive: matched (no prediction will use it)
    assert row(21)["reason"] == "2 players on the rosters of MIL vs BKN on 2025-01-09 match 'Marcus Morris'"
    assert row(23)["reason"] == "duplicate of sides.parquet row 15"  # the file's name: the same rows wherever the folder is
    assert row(29)["reason"] == "no game BOS vs BKN on 2025-01-09"
    assert row(7)["reason"] == "BookA posted 30.5 later, at 2025-01-09 22:00 UTC, before tip-off"
    assert row(11)["reason"] == "captured 2025-01-10 02:30 UTC, at or after tip-off 2025-01-10 02:00 UTC"
    assert row(25)["reason"] == row(27)["reason"] == "one of 2 lines of BookB for the player-game, not all with a capture time: their median is the book's line"
    assert row(31)["reason"] == "one of 3 lines of BookC for the player-game, not all with a capture time: their median is the book's line"
    # Both sides of a line keep their price as over_price / under_price.
    assert (row(1)["side"], row(1)["over_price"], row(1)["under_price"]) == ("over", -137.0, None)
    assert (row(2)["side"], row(2)["over_price"], row(2)["under_price"]) == ("under", None, -137.0)


def test_the_line_of_each_player_game(matched):
    picked = {(r["game_id"], r["player_id"]): (r["points_line"], r["bookmaker"]) for r in consensus_lines(matched).iter_rows(named=True)}
    assert picked == {
        ("G1", 203471): (16.5, "BookA"),
        ("G3", 203471): (13.5, "BookA"),
        # BookA's latest before tip-off (30.5: not the earlier 29.5, not the 33.5 after tip-off) and BookB's 31.5.
        ("G2", 203999): ((30.5 + 31.5) / 2, "median of 2: BookA, BookB"),
        ("G2", 1630529): ((11.5 + 11.0) / 2, "median of 2: BookA, BookC"),  # BookC: the median of 10.5, 11.0, 13.5
        ("G2", 1629627): (22.5, "BookA"),
        ("G2", 1630530): ((18.5 + 19.5) / 2, "BookB"),  # the median of BookB's two lines without capture times
        ("G3", 1628991): ((21.5 + 22.5) / 2, "median of 2: BookC, BookD"),
    }
    only_a = consensus_lines(matched, "BookA")
    assert dict(zip(only_a["player_id"], only_a["points_line"]))[203999] == 30.5
    assert 1630530 not in only_a["player_id"].to_list()  # BookA has no line for him


def test_a_slate_line_comes_first_and_a_line_after_tipoff_never(matched, tmp_path):
    slate = roster().with_columns(
        points_line=pl.when(pl.col("player_id") == 1630529).then(12.5),
        bookmaker=pl.when(pl.col("player_id") == 1630529).then(pl.lit("Slate book")),
    )
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        for table, frame in ((pregame_roster, slate), (prop_lines, matched)):
            warehouse.ensure_table(table.warehouse_schema)
            warehouse.write([PartitionWrite(table.name, [D1, D2], frame)])
        lines = read_lines(warehouse, D1, D2)
    by_player = {(r["game_id"], r["player_id"]): r["points_line"] for r in lines.iter_rows(named=True)}
    assert by_player[("G2", 1630529)] == 12.5  # the slate's, not the feeds' 11.25
    assert by_player[("G2", 203999)] == 31.0
    assert 33.5 not in lines["points_line"].to_list()
    assert lines.height == 7


def test_bad_rows_are_refused_naming_the_file_and_row_or_quarantined(lines_dir, tmp_path):
    bad = [
        ("Jaren Jackson Jr", "Gotham Knights", "GSW", "2025-01-12T01:00:00Z", "BookC", 21.5, "", "", None),
        ("", "Memphis Grizzlies", "GSW", "2025-01-12T01:00:00Z", "BookC", 21.5, "", "", None),
        ("Jaren Jackson Jr", "Memphis Grizzlies", "GSW", "2025-01-12T01:00:00Z", "BookC", -3, "", "", None),
    ]
    path = write_line_file(tmp_path / "bad.csv", [*LINE_ROWS, *bad])
    source = RawSource(RAW_DIR, lines_dir=tmp_path)
    lines = source.read("source.lines", D1, D2)
    with pytest.raises(RawDataError) as refused:
        build(lines)
    message = str(refused.value)
    assert f"3 bad prop line row(s) in {path}" in message
    assert "row 3 (game_date 2025-01-11, source_file" in message
    assert "unknown team 'Gotham Knights' in home_team" in message
    assert "row 4" in message and "no player_name or player_id" in message
    assert "row 5" in message and "negative line (-3.0)" in message
    # Quarantined: the good rows are matched, the bad ones are kept aside with their reason.
    kept = build(lines, on_bad_rows="quarantine")
    assert kept["source_row"].to_list() == [1, 2]
    raw = {i.table: source.read(i.table, D1, D2) for i in quarantine.inputs}  # the real box scores of those dates: no bad row
    aside = quarantine.run([D1, D2], raw, {"on_bad_rows": "quarantine"})
    assert aside.select("source_row", "game_date").to_dicts() == [{"source_row": r, "game_date": D2} for r in (3, 4, 5)]


def test_a_file_without_a_player_column_is_held_back_with_its_dates(tmp_path):
    pl.DataFrame({"game_date": [D1], "home_team": ["DEN"], "away_team": ["NOP"], "bookmaker": ["BookA"], "line": [20.5]}).write_parquet(tmp_path / "x.parquet")
    source = RawSource(RAW_DIR, lines_dir=tmp_path)
    with pytest.raises(RawDataError, match=r"x.parquet: missing column\(s\): needs player_name or player_id \(needed for 2025-01-09..2025-01-09\)"):
        source.read("source.lines", D1, D2)


def test_a_lines_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(RawDataError, match=f"prop lines folder {tmp_path / 'nowhere'} does not exist \\(data.lines_dir; null for no lines\\)"):
        RawSource(RAW_DIR, lines_dir=tmp_path / "nowhere")


def test_the_matching_is_the_same_whatever_the_order_of_the_rows(lines_dir):
    lines = read_source(lines_dir)
    shuffled = lines.sample(fraction=1.0, shuffle=True, seed=7)
    assert_frame_equal(build(shuffled), build(lines))
