"""How a prop line's player and teams are recognised: normalised names and team names.

- :func:`name_key`: a player's name as lower-case letters and digits, accents removed (``Jokić``
  is ``jokic``), periods and apostrophes dropped (``P.J.`` is ``pj``, ``De'Aaron`` is
  ``deaaron``), any other run of punctuation or spaces one space (``Gilgeous-Alexander``), and
  the generational suffixes ``Jr``, ``Sr``, ``II``, ``III``, ``IV``, ``V`` dropped at the end
  (``Jaime Jaquez Jr.`` and ``Jaime Jaquez Jr`` are both ``jaime jaquez``). Then the alias table
  (``lines.aliases``: nicknames feeds use for a roster's name, both sides normalised the same
  way) maps a key to another: ``Herb Jones`` to ``Herbert Jones``. Applied to the roster's names
  and the feed's alike, so a line matches whichever of the two spellings either side uses.
- :func:`team_abbr`: a team's full name, city-less name or abbreviation (as the box scores spell
  them, or as feeds do: ``GS``, ``NY``, ``PHO``, ``BRK``, ``UTAH``, ``WSH``...) as the box
  scores' abbreviation; NULL when the text is not one of them (:data:`TEAM_NAMES`).
"""

from __future__ import annotations

from typing import Mapping

import polars as pl

SUFFIXES = ("jr", "sr", "ii", "iii", "iv", "v")

# The box scores' abbreviation of each team, with the names feeds use for it (compared after
# :func:`team_key`: lower case, punctuation dropped).
TEAM_NAMES: dict[str, tuple[str, ...]] = {
    "ATL": ("Atlanta Hawks", "Atlanta", "Hawks"),
    "BOS": ("Boston Celtics", "Boston", "Celtics"),
    "BKN": ("Brooklyn Nets", "Brooklyn", "Nets", "BRK", "BKLYN"),
    "CHA": ("Charlotte Hornets", "Charlotte", "Hornets", "CHO"),
    "CHI": ("Chicago Bulls", "Chicago", "Bulls"),
    "CLE": ("Cleveland Cavaliers", "Cleveland", "Cavaliers", "Cavs"),
    "DAL": ("Dallas Mavericks", "Dallas", "Mavericks", "Mavs"),
    "DEN": ("Denver Nuggets", "Denver", "Nuggets"),
    "DET": ("Detroit Pistons", "Detroit", "Pistons"),
    "GSW": ("Golden State Warriors", "Golden State", "Warriors", "GS"),
    "HOU": ("Houston Rockets", "Houston", "Rockets"),
    "IND": ("Indiana Pacers", "Indiana", "Pacers"),
    "LAC": ("Los Angeles Clippers", "LA Clippers", "Clippers"),
    "LAL": ("Los Angeles Lakers", "LA Lakers", "Lakers"),
    "MEM": ("Memphis Grizzlies", "Memphis", "Grizzlies"),
    "MIA": ("Miami Heat", "Miami", "Heat"),
    "MIL": ("Milwaukee Bucks", "Milwaukee", "Bucks"),
    "MIN": ("Minnesota Timberwolves", "Minnesota", "Timberwolves", "Wolves"),
    "NOP": ("New Orleans Pelicans", "New Orleans", "Pelicans", "NO", "NOR"),
    "NYK": ("New York Knicks", "New York", "Knicks", "NY"),
    "OKC": ("Oklahoma City Thunder", "Oklahoma City", "Thunder"),
    "ORL": ("Orlando Magic", "Orlando", "Magic"),
    "PHI": ("Philadelphia 76ers", "Philadelphia", "76ers", "Sixers"),
    "PHX": ("Phoenix Suns", "Phoenix", "Suns", "PHO"),
    "POR": ("Portland Trail Blazers", "Portland", "Trail Blazers", "Blazers"),
    "SAC": ("Sacramento Kings", "Sacramento", "Kings"),
    "SAS": ("San Antonio Spurs", "San Antonio", "Spurs", "SA"),
    "TOR": ("Toronto Raptors", "Toronto", "Raptors"),
    "UTA": ("Utah Jazz", "Utah", "Jazz", "UTAH", "UTH"),
    "WAS": ("Washington Wizards", "Washington", "Wizards", "WSH"),
}


def _team_key(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower().replace(".", "")).split())


TEAM_KEYS: dict[str, str] = {_team_key(name): abbr for abbr, names in TEAM_NAMES.items() for name in (abbr, *names)}


def team_key(team: pl.Expr) -> pl.Expr:
    """A team's text as :data:`TEAM_KEYS` has it: lower case, periods dropped, other punctuation a space."""
    text = team.str.to_lowercase().str.replace_all(".", "", literal=True)
    return text.str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


def team_abbr(team: pl.Expr) -> pl.Expr:
    """The box scores' abbreviation of a team's name or abbreviation; NULL if it is neither."""
    return team_key(team).replace_strict(TEAM_KEYS, default=None, return_dtype=pl.String)


def _normalise(name: pl.Expr) -> pl.Expr:
    text = name.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    text = text.str.replace_all(r"[.'’`]", "").str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()
    return text.str.replace_all(rf"( ({'|'.join(SUFFIXES)}))+$", "").str.strip_chars()


def normalised_aliases(aliases: Mapping[str, str] | None) -> dict[str, str]:
    """The alias table with both sides normalised as :func:`name_key` normalises names."""
    if not aliases:
        return {}
    pairs = pl.DataFrame({"alias": list(aliases), "name": [str(v) for v in aliases.values()]}, schema={"alias": pl.String, "name": pl.String})
    normalised = pairs.select(_normalise(pl.col("alias")).alias("alias"), _normalise(pl.col("name")).alias("name"))
    return dict(normalised.iter_rows())


def name_key(name: pl.Expr, aliases: Mapping[str, str] | None = None) -> pl.Expr:
    """A player's name as the matching compares it (module docstring), aliases applied."""
    key = _normalise(name)
    table = normalised_aliases(aliases)
    return key.replace(table) if table else key
