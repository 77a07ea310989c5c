"""The raw input: a folder of box-score files, a folder of slates (tonight's listed players) and a
folder of prop lines, read as the ``source.*`` inputs of Phase 2. A folder is local or in Cloud
Storage (``gs://``, where the scrapers put the files): both are read the same way
(:mod:`pipeline.warehouse.storage`), by the driver when it checks them and by a Ray worker on any
machine when it reads a shard.

Every row keeps the file it came from and its 1-based row number, so a bad row can be named.
A file missing a column fails every shard that needs its dates (naming the file and the
column), and leaves the other files' dates to load.

Every file is checked once, when a run starts (:class:`RawSource`); after that a shard reads
only its own dates from the files (:class:`RawFiles`, small enough to send to a Ray worker that
reads them itself), so no process holds the whole input.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import polars as pl

from pipeline.fingerprint import fingerprints_of, row_hashes
from pipeline.tables._raw import COUNT_COLUMNS, SOURCE_FILE, SOURCE_ROW, RawDataError
from pipeline.calendar import Calendar
from pipeline.tables.schedule import CALENDAR_COLUMNS, games
from pipeline.warehouse.storage import is_remote, open_filesystem

_COUNTS = {c: pl.Int16 for c in COUNT_COLUMNS}


@dataclass(frozen=True)
class SourceSpec:
    name: str  # the input name tables declare: source.<name>
    patterns: tuple[str, ...]  # file globs inside the source's folder
    columns: dict[str, pl.DataType]  # required columns and the types they are read as
    calendar_columns: tuple[str, ...]  # needed just to place the rows on the calendar
    optional: dict[str, pl.DataType] = field(default_factory=dict)  # read when a file has them, else NULL
    folder: str = "raw"  # which folder: data.raw_dir, data.slate_dir ("slates") or data.lines_dir ("lines")
    # Groups of optional columns of which a file must have at least one (a player's name or id).
    one_of: tuple[tuple[str, ...], ...] = ()
    # Columns a file may lack and that are derived from others, before anything else reads it.
    derive: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None

    @property
    def all_columns(self) -> dict[str, pl.DataType]:
        return {**self.columns, **self.optional}


PLAYER_BOXSCORES = SourceSpec(
    name="source.player_boxscores",
    patterns=("player_boxscores_*.parquet",),
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_id": pl.Int32,
        "team_abbr": pl.String,
        "opponent_id": pl.Int32,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "player_id": pl.Int32,
        "player_name": pl.String,
        "starter": pl.Boolean,
        "comment": pl.String,
        "did_not_play": pl.Boolean,
        "minutes_raw": pl.String,
        **_COUNTS,
        "plus_minus": pl.Int16,
    },
    calendar_columns=CALENDAR_COLUMNS,  # what nba_raw.schedule, and so the calendar, is built from
    optional={"birth_date": pl.Date},  # the player's; not in the bundled files (fatigue uses age when known)
)

TEAM_GAME_LOGS = SourceSpec(
    name="source.team_game_logs",
    patterns=("team_game_logs*.parquet",),
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_id": pl.Int32,
        "team_abbr": pl.String,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "min": pl.Int16,
        **_COUNTS,
    },
    calendar_columns=("game_date",),
)

# Tonight's listed players, before any box score: one row per player and game (see data/README.md).
SLATES = SourceSpec(
    name="source.slates",
    patterns=("*.parquet", "*.csv"),
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_abbr": pl.String,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "player_id": pl.Int32,
        "player_name": pl.String,
    },
    calendar_columns=("game_id", "game_date", "season", "season_type", "team_abbr", "opponent_abbr", "is_home"),
    optional={
        "team_id": pl.Int32,
        "starter": pl.Boolean,  # NULL until the lineups are announced
        "status": pl.String,  # active, questionable, out, inactive; NULL: active
        "points_line": pl.Float64,
        "bookmaker": pl.String,
        "birth_date": pl.Date,
    },
    folder="slates",
)


# The time zone of a game date: the NBA's dates are US Eastern, so a 7:30 pm tip-off on the west
# coast is 02:30 UTC the next day but still the same game date.
GAME_DATE_TIME_ZONE = "America/New_York"


def game_date_from_tipoff(scan: pl.LazyFrame) -> pl.LazyFrame:
    """A lines file without ``game_date`` gets it from ``commence_time`` (the US Eastern date of the
    tip-off); a file with neither is refused for lacking ``game_date``."""
    schema = scan.collect_schema()
    if "game_date" in schema or "commence_time" not in schema:
        return scan
    tipoff = read_as("commence_time", schema["commence_time"], pl.Datetime("us"), strict=False)
    eastern = tipoff.dt.replace_time_zone("UTC").dt.convert_time_zone(GAME_DATE_TIME_ZONE).dt.date()
    return scan.with_columns(eastern.alias("game_date"))


# Historical and tonight's player points lines (see data/README.md): one row per side of a line
# (``side``, ``price``) or one per line (``over_price``, ``under_price``); matched to NBA player
# and game ids in nba_raw.prop_lines.
PROP_LINES = SourceSpec(
    name="source.lines",
    patterns=("*.parquet", "*.csv"),
    columns={
        "game_date": pl.Date,  # the US Eastern date; derived from commence_time when absent
        "home_team": pl.String,  # full names (Boston Celtics) or abbreviations (BOS)
        "away_team": pl.String,
        "bookmaker": pl.String,
        "line": pl.Float64,
    },
    calendar_columns=("game_date",),
    optional={
        "player_name": pl.String,
        "player_id": pl.Int32,  # the NBA person id, when the feed has it
        "commence_time": pl.Datetime("us"),  # scheduled tip-off, UTC
        "captured_at": pl.Datetime("us"),  # when the line was seen, UTC
        "side": pl.String,  # Over / Under: one row per side, priced by `price`
        "price": pl.Float64,  # American odds of `side`
        "over_price": pl.Float64,  # one row per line: American odds of each side
        "under_price": pl.Float64,
        "real_prices": pl.Boolean,  # the prices are a sportsbook's odds (lines.real_price_books names whole books)
    },
    folder="lines",
    one_of=(("player_name", "player_id"),),
    derive=game_date_from_tipoff,
)

SOURCES = {s.name: s for s in (PLAYER_BOXSCORES, TEAM_GAME_LOGS, SLATES, PROP_LINES)}


@dataclass(frozen=True)
class BrokenFile:
    path: str
    problem: str
    dates: frozenset[dt.date]
    fingerprint: str


@dataclass(frozen=True)
class GoodFile:
    path: str
    types: tuple[tuple[str, pl.DataType], ...]  # the file's own type of each column of the spec it has


@dataclass(frozen=True)
class RawFiles:
    """Which files of each source passed the checks, and which did not: enough to read any date
    range again, in this process or in a Ray worker that sees the same folder."""

    good: dict[str, tuple[GoodFile, ...]]
    broken: dict[str, tuple[BrokenFile, ...]]
    boxscores_through: dt.date | None = None  # box scores of later dates are set aside
    endpoint_url: str | None = None  # gs:// files: a Cloud Storage emulator instead of Google's

    def read(self, name: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Rows of source ``name`` dated ``start..end``, each with its file and 1-based row number."""
        if SOURCES[name].folder == "raw" and self.boxscores_through is not None:
            end = min(end, self.boxscores_through)
        for bad in self.broken[name]:
            hit = sorted(d for d in bad.dates if start <= d <= end)
            if hit:
                raise RawDataError(f"{bad.path}: {bad.problem} (needed for {hit[0]}..{hit[-1]})")
        spec = SOURCES[name]
        parts = []
        for f in self.good[name]:
            types = dict(f.types)
            columns = [read_as(c, types[c], t) if c in types else pl.lit(None, t).alias(c) for c, t in spec.all_columns.items()]
            parts.append(
                scan_source_file(spec, f.path, self.endpoint_url)
                .with_row_index(SOURCE_ROW, offset=1)
                .select(*columns, pl.lit(f.path).alias(SOURCE_FILE), pl.col(SOURCE_ROW).cast(pl.Int64))
                .filter(pl.col("game_date").is_between(start, end))
                .collect()
            )
        return pl.concat([pl.DataFrame(schema=_schema(spec)), *parts], how="vertical")


def _schema(spec: SourceSpec) -> dict[str, pl.DataType]:
    return {**spec.all_columns, SOURCE_FILE: pl.String, SOURCE_ROW: pl.Int64}


class RawSource:
    """The raw files of one folder (and the slates of another), each checked once per run: which
    files are good, a fingerprint and a row count of each date's raw rows, and the calendar the
    rows place games on. Shards then read their own dates (:attr:`files`).

    A file whose columns or types are wrong is held back with its dates (a shard that needs one
    of them fails naming the file); every other file's dates still build."""

    def __init__(
        self,
        raw_dir: str | Path,
        slate_dir: str | Path | None = None,
        boxscores_through: dt.date | None = None,
        lines_dir: str | Path | None = None,
        *,
        endpoint_url: str | None = None,
    ):
        self.raw_dir = str(raw_dir)
        self.endpoint_url = endpoint_url
        if not folder_exists(self.raw_dir, endpoint_url):
            raise RawDataError(f"raw data folder {self.raw_dir} does not exist (data.raw_dir)")
        # No slate folder is the usual case for history: every date's roster comes from its box scores.
        self.slate_dir = str(slate_dir) if slate_dir else None
        # No lines folder (null): no prop lines. A folder named but missing is a mistake, not "no lines".
        self.lines_dir = str(lines_dir) if lines_dir else None
        if self.lines_dir is not None and not folder_exists(self.lines_dir, endpoint_url):
            raise RawDataError(f"prop lines folder {self.lines_dir} does not exist (data.lines_dir; null for no lines)")
        self.folders = {"raw": self.raw_dir, "slates": self.slate_dir, "lines": self.lines_dir}
        # The morning of a date whose box scores are already in the folder (a backtest, the example).
        self.boxscores_through = boxscores_through
        good: dict[str, tuple[GoodFile, ...]] = {}
        broken: dict[str, tuple[BrokenFile, ...]] = {}
        self.calendar_rows: dict[str, pl.DataFrame] = {}
        self.rows_per_date: dict[str, dict[dt.date, int]] = {}
        self._fingerprints: dict[str, dict[dt.date, str]] = {}
        for spec in SOURCES.values():
            good[spec.name], broken[spec.name], self.calendar_rows[spec.name], hashes = self._load(spec)
            fingerprints = fingerprints_of(hashes)
            for bad in broken[spec.name]:
                for day in bad.dates:
                    fingerprints[day] = f"broken:{bad.fingerprint}"
            self._fingerprints[spec.name] = fingerprints
            self.rows_per_date[spec.name] = dict(hashes.group_by("game_date").len().iter_rows())
        self.files = RawFiles(good, broken, boxscores_through, endpoint_url)
        if not good[PLAYER_BOXSCORES.name] and not broken[PLAYER_BOXSCORES.name]:
            raise RawDataError(f"no {PLAYER_BOXSCORES.patterns[0]} files in {self.raw_dir}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(SOURCES)

    def _load(self, spec: SourceSpec) -> tuple[tuple[GoodFile, ...], tuple[BrokenFile, ...], pl.DataFrame, pl.DataFrame]:
        """Check every file of ``spec``: (good files, broken files, calendar rows, hashes of the good rows)."""
        good: list[GoodFile] = []
        hashes: list[pl.DataFrame] = []
        broken: list[BrokenFile] = []
        placed: list[pl.DataFrame] = []
        folder = self.folders[spec.folder]
        for name in list_files(folder, spec.patterns, self.endpoint_url) if folder else []:
            suffix = posixpath.splitext(name)[1].lstrip(".").upper()
            try:
                scan = scan_source_file(spec, name, self.endpoint_url)
                if spec.folder == "raw" and self.boxscores_through is not None:
                    scan = scan.filter(pl.col("game_date").cast(pl.String) <= self.boxscores_through.isoformat())
                frame = scan.collect()
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
                raise RawDataError(f"{name}: cannot read as {suffix}: {exc}") from exc
            missing_for_calendar = [c for c in spec.calendar_columns if c not in frame.columns]
            if missing_for_calendar:
                raise RawDataError(f"{name}: missing column(s) {missing_for_calendar}; the file cannot be placed on the calendar")
            try:
                placed.append(frame.select(read_as(c, frame.schema[c], spec.columns[c]) for c in spec.calendar_columns).unique())
            except pl.exceptions.PolarsError as exc:
                raise RawDataError(f"{name}: calendar columns {list(spec.calendar_columns)} do not parse: {exc}") from exc
            types = tuple((c, frame.schema[c]) for c in spec.all_columns if c in frame.columns)
            missing = [c for c in spec.columns if c not in frame.columns]
            problem = f"missing column(s) {missing}" if missing else None
            lacking = [" or ".join(group) for group in spec.one_of if not any(c in frame.columns for c in group)]
            if problem is None and lacking:
                problem = f"missing column(s): needs {'; '.join(lacking)}"
            if problem is None:
                original = frame
                try:
                    frame = frame.select(
                        read_as(c, frame.schema[c], t) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in spec.all_columns.items()
                    )
                except pl.exceptions.PolarsError as exc:
                    problem = first_uncastable(original, spec.all_columns) or f"a column does not have the expected type ({exc})".replace("\n", " ")
                else:  # text parsed leniently (CSV booleans and times): a value that did not parse is still wrong
                    lenient = {c: t for c, t in spec.all_columns.items() if t in (pl.Boolean, pl.Datetime) and original.schema.get(c) == pl.String}
                    problem = first_uncastable(original, lenient)
            if problem is None:
                null_dates = frame.with_row_index(SOURCE_ROW, offset=1).filter(pl.col("game_date").is_null())
                if null_dates.height:
                    problem = f"row {null_dates[SOURCE_ROW][0]} has no game_date ({null_dates.height} such rows)"
            if problem is not None:
                broken.append(
                    BrokenFile(
                        path=name,
                        problem=problem,
                        dates=frozenset(placed[-1]["game_date"].drop_nulls()),
                        fingerprint=hashlib.blake2b(read_bytes(name, self.endpoint_url), digest_size=16).hexdigest(),
                    )
                )
                continue
            good.append(GoodFile(name, types))
            hashes.append(row_hashes(frame))
        empty = pl.DataFrame(schema=spec.all_columns)
        calendar = pl.concat([empty.select(spec.calendar_columns), *placed]).drop_nulls("game_date")
        return tuple(good), tuple(broken), calendar, pl.concat([row_hashes(empty), *hashes])

    def describe(self) -> str:
        return self.raw_dir

    @classmethod
    def from_config(cls, data: Mapping) -> "RawSource":
        """The source of ``data.raw_dir``, ``data.slate_dir``, ``data.boxscores_through`` and
        ``data.lines_dir`` (the ``data:`` group of the config)."""
        through = data.get("boxscores_through")
        if through is not None and not isinstance(through, dt.date):
            try:
                through = dt.date.fromisoformat(str(through))
            except ValueError:
                raise RawDataError(f"data.boxscores_through must be a date (YYYY-MM-DD), not {through!r}") from None
        endpoint = (data.get("storage") or {}).get("endpoint_url")
        return cls(data["raw_dir"], data.get("slate_dir"), through, data.get("lines_dir"), endpoint_url=endpoint)

    def calendar(self) -> Calendar:
        """Every game date of the box scores and the slates, with its season, opener and teams."""
        return Calendar.from_schedule(games(self.calendar_frame()), played=self.calendar_rows[PLAYER_BOXSCORES.name]["game_date"])

    def calendar_frame(self) -> pl.DataFrame:
        """The distinct calendar columns (``CALENDAR_COLUMNS``) of the player rows of every box-score
        and slate file, the broken ones included: the games of every date, played or not yet."""
        frames = [
            self.calendar_rows[spec.name].select(
                pl.col(c) if c in spec.calendar_columns else pl.lit(None, spec.all_columns[c]).alias(c) for c in CALENDAR_COLUMNS
            )
            for spec in (PLAYER_BOXSCORES, SLATES)
        ]
        return pl.concat(frames).unique(maintain_order=True)

    def read(self, name: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self.files.read(name, start, end)

    def fingerprints(self, name: str) -> dict[dt.date, str]:
        """{date: fingerprint of that date's raw rows} for one source."""
        return self._fingerprints[name]


def scan_source_file(spec: SourceSpec, path: str, endpoint_url: str | None = None) -> pl.LazyFrame:
    """A file of ``spec`` with the columns it derives (:attr:`SourceSpec.derive`)."""
    scan = scan_file(path, endpoint_url)
    return spec.derive(scan) if spec.derive else scan


def scan_file(path: str, endpoint_url: str | None = None) -> pl.LazyFrame:
    """A raw or slate file, Parquet or CSV (every CSV column read as text, then typed by
    :func:`read_as`); a ``gs://`` file is fetched whole (the files are a season each, or a night)."""
    csv = path.endswith(".csv")
    if is_remote(path):
        data = io.BytesIO(read_bytes(path, endpoint_url))
        return (pl.read_csv(data, infer_schema=False) if csv else pl.read_parquet(data)).lazy()
    return pl.scan_csv(path, infer_schema=False) if csv else pl.scan_parquet(path)


@functools.lru_cache(maxsize=8)
def _filesystem(url_scheme_root: str, endpoint_url: str | None):
    """One file system per bucket (or the local one) and process, kept: a Ray worker reads many shards."""
    return open_filesystem(url_scheme_root, endpoint_url)[0]


def _fs_and_path(url: str, endpoint_url: str | None):
    """The file system of ``url`` and its path there (a bucket path for ``gs://``)."""
    try:
        if is_remote(url):
            fs = _filesystem("gs://" + url[len("gs://") :].split("/", 1)[0], endpoint_url)
            return fs, fs._strip_protocol(url).rstrip("/")
        return _filesystem("/", None), str(Path(url).absolute())
    except ValueError as exc:
        raise RawDataError(f"{exc} (data.raw_dir, data.slate_dir)") from None


def folder_exists(url: str, endpoint_url: str | None) -> bool:
    fs, path = _fs_and_path(url, endpoint_url)

    def look() -> bool:
        try:  # a gs:// "folder" is a prefix of objects: it exists if anything is below it
            return fs.isdir(path) or (is_remote(url) and bool(fs.ls(path)))
        except FileNotFoundError:
            return False

    return bool(_storage(f"looking for {url}", look))


def list_files(folder: str, patterns: tuple[str, ...], endpoint_url: str | None) -> list[str]:
    """The files of ``folder`` matching any of ``patterns``, sorted, named as people name them
    (a local path, or ``gs://bucket/...``); none if the folder does not exist."""
    fs, path = _fs_and_path(folder, endpoint_url)
    if not folder_exists(folder, endpoint_url):
        return []
    found = {name for pattern in patterns for name in _storage(f"listing {folder}", lambda p=pattern: fs.glob(posixpath.join(path, p)))}
    return sorted(("gs://" + name if is_remote(folder) else name) for name in found)


def read_bytes(path: str, endpoint_url: str | None) -> bytes:
    fs, name = _fs_and_path(path, endpoint_url)
    return _storage(f"reading {path}", lambda: fs.cat_file(name))


def _storage(what: str, action):
    """A storage failure (a missing bucket, no permission) as bad input naming what was being done."""
    try:
        return action()
    except RawDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - named for the person reading it
        raise RawDataError(f"failed {what}: {type(exc).__name__}: {exc}") from exc


TRUE_TEXT = ("true", "t", "1", "yes")
FALSE_TEXT = ("false", "f", "0", "no")


# Text times: ISO 8601 with a UTC offset (``Z``, ``+01:00``) or without one (read as UTC), "T" or a
# space between date and time, seconds and their fractions optional.
_TIME_WITH_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")
_TIME_WITHOUT_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")


def read_as(column: str, source: pl.DataType, dtype: pl.DataType, *, strict: bool = True) -> pl.Expr:
    """``column`` as ``dtype``; text dates in ISO form (YYYY-MM-DD), text booleans (true/false,
    1/0, yes/no) and text times (ISO 8601) are parsed. Times come out naive, in UTC."""
    if source == pl.String and dtype == pl.Date:
        return pl.col(column).str.to_date("%Y-%m-%d", strict=strict)
    if dtype == pl.Datetime:
        if source == pl.String:
            # Other text reads as NULL; RawSource refuses such a file (first_uncastable finds the row).
            text = pl.col(column).str.strip_chars().str.replace(r"[zZ]$", "+00:00").str.replace(" ", "T")
            aware = [text.str.to_datetime(f, time_zone="UTC", time_unit="us", strict=False) for f in _TIME_WITH_OFFSET]
            naive = [text.str.to_datetime(f, time_unit="us", strict=False).dt.replace_time_zone("UTC") for f in _TIME_WITHOUT_OFFSET]
            return pl.coalesce(*aware, *naive).dt.replace_time_zone(None).alias(column)
        if isinstance(source, pl.Datetime) and source.time_zone is not None:
            return pl.col(column).dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.cast_time_unit("us")
    if source == pl.String and dtype == pl.Boolean:
        # Other text reads as NULL; RawSource refuses such a file (first_uncastable finds the row).
        text = pl.col(column).str.strip_chars().str.to_lowercase()
        return pl.when(text.is_in(TRUE_TEXT)).then(True).when(text.is_in(FALSE_TEXT)).then(False).alias(column)
    return pl.col(column).cast(dtype, strict=strict)


def first_uncastable(frame: pl.DataFrame, types: dict[str, pl.DataType]) -> str | None:
    """The first column and row whose value cannot be read as its declared type, as text."""
    for column, dtype in types.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        try:
            read = frame.select(read_as(column, values.dtype, dtype, strict=False)).to_series()
            bad = (read.is_null() & values.is_not_null()).arg_true()
        except pl.exceptions.PolarsError:
            return f"a column does not have the expected type: column {column!r} is {values.dtype}, not {dtype}"
        if bad.len():
            row = int(bad[0])
            return f"a column does not have the expected type: column {column!r} row {row + 1} holds {values[row]!r}, which does not read as {dtype}"
    return None
